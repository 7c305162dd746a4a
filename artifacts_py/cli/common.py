"""What every ``artifacts`` command shares: the command table, the Artifacts.toml
it works on, JSON and size output, and errors turned into one CLI line."""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import settings
from ..errors import ArtifactError, InstallError
from ..tomlmodel import ArtifactEntry

Handler = Callable[[argparse.Namespace], int]


class Commands:
    """The subcommand table: ``add(name, help, examples)`` gives the command's parser.

    Every command's help ends with its examples; ``--toml`` and ``--json``
    are added on request, with the same help text everywhere.
    """

    def __init__(self, sub: Any) -> None:
        self.sub = sub

    def add(self, name: str, help: str, examples: str, func: Handler, *,
            json_out: bool = False, toml: bool = True) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = self.sub.add_parser(
            name, help=help, description=help[:1].upper() + help[1:] + ".",
            epilog="examples:\n" + examples.rstrip(),
            formatter_class=argparse.RawDescriptionHelpFormatter)
        if toml:
            sp.add_argument("--toml", metavar="PATH", help="the Artifacts.toml (default: "
                            "$ARTIFACTS_PY_TOML, else ./Artifacts.toml or a parent's)")
        if json_out:
            sp.add_argument("--json", action="store_true", help="print the result as JSON")
        sp.set_defaults(func=func)
        return sp


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def toml_path(args: argparse.Namespace, must_exist: bool = True) -> Path:
    """The Artifacts.toml the command works on: --toml, the env var, or ./Artifacts.toml.

    A file that is to be created must be in an existing folder: a typo in
    ``--toml`` must not leave new folders behind.
    """
    from ..tomlmodel import find_artifacts_toml, toml_in_dir

    if args.toml:
        given = Path(args.toml)
        if given.is_dir():
            inside = toml_in_dir(given)  # a directory means the file in it
            if inside is not None:
                return Path(inside)
            if must_exist:
                raise FileNotFoundError(f"{given}: no JuliaArtifacts.toml or Artifacts.toml "
                                        "in this directory")
            return given / "Artifacts.toml"  # a new file in that directory
        if not must_exist and not given.parent.is_dir():
            raise FileNotFoundError(f"{given}: the folder {given.parent} does not exist; "
                                    "create it first, or fix the --toml path")
        return given
    env = settings.toml_path()
    if env:
        return Path(env)
    found = find_artifacts_toml(os.getcwd())
    if found is not None:
        return found
    if must_exist:
        raise FileNotFoundError(f"no Artifacts.toml in {os.getcwd()} or its parents; "
                                "pass --toml PATH")
    return Path("Artifacts.toml")


def human(n: Any) -> str:
    """``1.5 MiB`` for a byte count, ``-`` for none."""
    if not isinstance(n, (int, float)):
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def platform(args: argparse.Namespace) -> Any:
    """The --platform triplet (e.g. x86_64-linux-gnu) as a Platform, or None."""
    if not args.platform:
        return None
    from ..platforms import parse_triplet

    return parse_triplet(args.platform)


def progress(args: argparse.Namespace) -> Optional[bool]:
    """A command's ``-q``: no bar (None: a bar only on a terminal)."""
    return False if getattr(args, "quiet", False) else None


def source_summary(entry: ArtifactEntry) -> str:
    parts = []
    if entry.gobbler:
        parts.append(f"gobbler:{entry.gobbler.coordinates}")
    if entry.gypsum:
        parts.append(f"gypsum:{entry.gypsum.coordinates}")
    parts.extend(d.url for d in entry.downloads)
    return ", ".join(parts) or "(no source)"


def check_file_url(url: Optional[str], toml: Path, allowed: bool) -> None:
    """Refuse to bind a ``file://`` URL into a file that looks committed (see publish)."""
    from ..publish import refuse_file_url

    if url:
        refuse_file_url(url, toml, allowed)


# Python spellings in library messages, and how the command line says them.
_CLI_WORDS: List[Tuple[str, str]] = [
    ("force=True (or --force)", "--force"),
    ("force=True", "--force"),
    ("allow_file_url=True", "--allow-file-url"),
    ("url='http://host:port'", "--url http://host:port"),
    ("create_artifact packs a folder", "`artifacts create` hashes a folder"),
]
_SAME_PREFIX = re.compile(r"^(\S+): \1: ")


def one_line(err: BaseException) -> str:
    """The error as one line, in the CLI's words, without repeated URLs."""
    if isinstance(err, InstallError) and err.failures:
        head = str(err).split("\n", 1)[0]
        tried = [f"({i}) {label}: {_without(label, e)}"
                 for i, (label, e) in enumerate(err.failures, 1)]
        return _cli_words(f"{head} {'; '.join(tried)}")
    text = str(err)
    if isinstance(err, KeyError) and text.startswith(("'", '"')) and len(err.args) == 1:
        text = str(err.args[0])
    return _cli_words(" ".join(_SAME_PREFIX.sub(r"\1: ", text).split()))


def _without(label: str, err: BaseException) -> str:
    """A source's error without the URL its label already says."""
    text = " ".join(str(err).split())
    for prefix in (label, getattr(err, "url", None)):
        if prefix and text.startswith(f"{prefix}: "):
            text = text[len(prefix) + 2:]
    return text


def _cli_words(text: str) -> str:
    for python, cli in _CLI_WORDS:
        text = text.replace(python, cli)
    return text


def failure_summary(what: str, failed: Dict[str, BaseException], total: int) -> BaseException:
    """One error for several failed names (the error itself when it is the only name)."""
    if total == 1 and len(failed) == 1:
        return next(iter(failed.values()))
    return ArtifactError(f"could not {what} {len(failed)} of {total} artifact(s): "
                         + "; ".join(f"{n}: {one_line(e)}" for n, e in failed.items()))
