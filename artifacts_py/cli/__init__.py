"""The ``artifacts`` command line.

Every subcommand exits 0 on success and, on failure, non-zero with one clear
line on stderr (``artifacts: error: ...``). ``--json`` prints data as JSON.
Global options come before the command: ``-v`` (INFO logs: which source
served an install, waits for locks, retries; ``-vv`` DEBUG), ``-q``,
``--offline``, ``--no-progress``, ``--toml``. On a terminal, HTTP retries
are shown without ``-v`` ("retrying (1/2): connection refused").

The command table is built from one ``register(commands)`` per module:
:mod:`.project` (the Artifacts.toml), :mod:`.updates` (outdated, update),
:mod:`.depots` (verify, rm, ls, depot, gc), :mod:`.gobbler` (serve and the
Gobbler admin actions). A new family of
commands is one more module with a ``register`` and one line in
:data:`FAMILIES`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Dict, List, NoReturn, Optional

from .. import settings
from .._version import __version__
from ..errors import ArtifactError
from . import depots, gobbler, project, updates
from .common import Commands, one_line
from .gobbler import serve_home

# Each module adds its commands, in the order `artifacts --help` lists them.
FAMILIES = [project.register, updates.register, depots.register, gobbler.register]

__all__ = ["main", "build_parser", "serve_home"]

_EPILOG = """\
examples:
  artifacts add Counts https://zenodo.org/records/1/files/counts.tar.gz
  artifacts fetch && artifacts status

environment:
  ARTIFACTS_PY_DEPOT_PATH   depot stack (the first is written), os.pathsep-separated
  ARTIFACTS_PY_TOML         the Artifacts.toml when --toml is not given
  ARTIFACTS_PY_OFFLINE=1    never touch the network (--offline)
  ARTIFACTS_PY_GOBBLER_URL  the Gobbler service (publish, add, gobbler ...)
  ARTIFACTS_PY_GYPSUM_URL   the gypsum service (default the public one)
  GYPSUM_TOKEN              GitHub token for gypsum uploads (else GITHUB_TOKEN)
  ARTIFACTS_PY_RETRIES      retries of a failed download (default 5)
  ARTIFACTS_PY_TIMEOUT      seconds to wait for a connection or the next bytes (default 60)
`artifacts help COMMAND` (or `artifacts COMMAND --help`) explains one command."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _global_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-V", "--version", action="version", version=f"artifacts-py {__version__}",
                   help="print the version and exit")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log what happens (-v: installs, waits and retries; -vv: debug)")
    p.add_argument("-q", "--quiet", action="store_true", dest="global_quiet",
                   help="no progress bars and no logs")
    p.add_argument("--offline", action="store_true",
                   help="never touch the network (as ARTIFACTS_PY_OFFLINE=1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--toml", metavar="PATH", dest="global_toml",
                   help="the Artifacts.toml for every command (as ARTIFACTS_PY_TOML)")


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree (also what shell completion is generated from)."""
    p = _Parser(prog="artifacts", epilog=_EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Julia-compatible, content-addressed artifacts (Artifacts.toml) "
                "backed by Gobbler and gypsum registries and tarball mirrors.")
    _global_options(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    commands = Commands(sub)
    for register in FAMILIES:
        register(commands)
    names = list(sub.choices)

    def show_help(args: argparse.Namespace) -> int:
        if args.topic == "serve":
            return gobbler.serve_help(sub.choices["serve"])
        (sub.choices[args.topic] if args.topic else p).print_help()
        return 0

    sp = commands.add("help", "show the help of artifacts or of one command", """\
  artifacts help
  artifacts help publish""", show_help, toml=False)
    sp.add_argument("topic", nargs="?", metavar="COMMAND", choices=names,
                    help="the command to explain")

    def completion(args: argparse.Namespace) -> int:
        from .completion import script

        sys.stdout.write(script(p, args.shell))
        return 0

    sp = commands.add("completion", "print a shell completion script", """\
  source <(artifacts completion bash)          # in ~/.bashrc
  artifacts completion fish > ~/.config/fish/completions/artifacts.fish""",
                      completion, toml=False)
    sp.add_argument("shell", choices=["bash", "zsh", "fish"], help="the shell")
    return p


def _command_index(argv: List[str]) -> Optional[int]:
    """Where the command is in ``argv`` (after the global options), if anywhere."""
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg == "--toml":  # the one global option with a value
            skip = True
        elif not arg.startswith("-"):
            return i
    return None


def _subparsers(parser: argparse.ArgumentParser) -> Dict[str, argparse.ArgumentParser]:
    """The top-level commands' parsers, by name."""
    return next(a.choices for a in parser._actions
                if isinstance(a, argparse._SubParsersAction))


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``artifacts`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    i = _command_index(argv)
    if i is not None and argv[i] == "serve":  # what follows goes to artifacts-gobbler
        head, rest = argv[:i + 1], argv[i + 1:]
        if any(a in ("-h", "--help") for a in rest):
            return gobbler.serve_help(_subparsers(parser)["serve"])
        args = parser.parse_args(head + (["--json"] if "--json" in rest else []))
        _configure(args)
        rest = [a for a in rest if a != "--json"]
        return _run(lambda: gobbler.cmd_serve(args, rest))
    args = parser.parse_args(argv)
    if args.command is None:  # bare `artifacts`: the overview
        parser.print_help()
        return 0
    _configure(args)
    return _run(lambda: int(args.func(args) or 0))


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log lines on stderr that do not tear a progress bar (tqdm redraws it below)."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm = sys.modules.get("tqdm")
        if tqdm is None:
            super().emit(record)
            return
        try:
            tqdm.tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def _configure(args: argparse.Namespace) -> None:
    """Apply the global options: logging, offline, progress bars, the Artifacts.toml."""
    from .. import progress

    if args.offline:
        settings.set_offline(True)
    if args.global_quiet or args.no_progress:
        progress.disable()
    if getattr(args, "toml", None) is None and args.global_toml:
        args.toml = args.global_toml
    if args.global_quiet:
        return
    handler = _Handler(sys.stderr)
    handler.setFormatter(logging.Formatter("artifacts: %(message)s"))
    if args.verbose:
        log = logging.getLogger("artifacts_py")
        log.setLevel(logging.DEBUG if args.verbose > 1 else logging.INFO)
    elif sys.stderr.isatty():  # retries are news on a terminal, even without -v
        log = logging.getLogger("artifacts_py.transport.retry")
        log.setLevel(logging.INFO)
    else:
        return
    if not any(isinstance(h, _Handler) for h in log.handlers):  # main() may run again
        log.addHandler(handler)


def _run(fn: Callable[[], int]) -> int:
    try:
        return int(fn() or 0)
    except KeyboardInterrupt:
        print("artifacts: interrupted", file=sys.stderr)
        return 130
    except (ArtifactError, OSError, ValueError, KeyError) as e:
        print(f"artifacts: error: {one_line(e)}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - a bug: still one line; the traceback on request
        if settings.debug():
            raise
        print(f"artifacts: internal error: {type(e).__name__}: {one_line(e)} "
              "(set ARTIFACTS_PY_DEBUG=1 for a traceback, and please report it)", file=sys.stderr)
        return 70

