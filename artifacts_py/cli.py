"""The ``artifacts`` command line.

Every subcommand exits 0 on success and, on failure, non-zero with one clear
line on stderr (``artifacts: error: ...``). ``--json`` prints data as JSON.
Global options come before the command: ``-v`` (INFO logs: which source
served an install, waits for locks; ``-vv`` adds every retry), ``-q``,
``--offline``, ``--no-progress``, ``--toml``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, NoReturn, Optional, Sequence, Tuple

from . import core, depot, settings
from ._version import __version__
from .errors import ArtifactError, ArtifactNotFoundError, InstallError
from .tomlmodel import ArtifactEntry


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _toml(args: argparse.Namespace, must_exist: bool = True) -> Path:
    """The Artifacts.toml the command works on: --toml, the env var, or ./Artifacts.toml."""
    from .tomlmodel import find_artifacts_toml, toml_in_dir

    if args.toml:
        given = Path(args.toml)
        if not given.is_dir():
            return given
        inside = toml_in_dir(given)  # a directory means the file in it
        if inside is not None:
            return Path(inside)
        if not must_exist:
            return given / "Artifacts.toml"  # a new file in that directory
        raise FileNotFoundError(f"{given}: no JuliaArtifacts.toml or Artifacts.toml in this directory")
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


def _human(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def _platform(args: argparse.Namespace) -> Any:
    """The --platform triplet (e.g. x86_64-linux-gnu) as a Platform, or None."""
    if not args.platform:
        return None
    from .platforms import parse_triplet

    return parse_triplet(args.platform)


def _progress(args: argparse.Namespace) -> Optional[bool]:
    return False if getattr(args, "quiet", False) else None


# ------------------------------------------------------------------ commands

def _pinned(toml: Path, name: str) -> Optional[Tuple[str, str]]:
    """(tree hash, sources) that ``name`` is bound to now, or None if unbound."""
    from .tomlmodel import load_file

    if not toml.exists():
        return None
    f = load_file(toml)
    if name not in f:
        return None
    try:
        entry = f.variants(name)[0]
    except ArtifactError as e:
        return "(unreadable)", f"a malformed entry: {_one_line(e)}"
    return entry.git_tree_sha1, _source_summary(entry)


def cmd_add(args: argparse.Namespace) -> int:
    from .authoring import bind_resolved, resolve_source
    from .binding import check_name

    toml = _toml(args, must_exist=False)
    check_name(args.name, toml)  # before a long download, not after
    source = args.source
    kwargs: Dict[str, Any] = {}
    if "://" in source:
        kwargs["tarball_url"] = source
    else:
        coords, _, version = source.partition("@")
        parts = coords.split("/")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"{source!r}: expected a tarball URL or PROJECT/ASSET[@VERSION]")
        kwargs.update(project=parts[0], asset=parts[1], version=version or None,
                      url=args.url, registry=args.registry)
    old = None if args.force else _pinned(toml, args.name)
    info = resolve_source(progress=_progress(args), **kwargs)
    new_source = (f"gobbler:{info['gobbler']['project']}/{info['gobbler']['asset']}/"
                  f"{info['gobbler']['version']}" if "gobbler" in info else info["url"])
    if old is not None:
        old_hash, old_source = old
        if old_hash == info["git_tree_sha1"] and new_source in old_source.split(", "):
            print(f"{args.name} is already pinned to {new_source} ({old_hash}); nothing to change")
            return 0
        raise ValueError(
            f"{toml}: {args.name} is pinned to {old_hash} ({old_source}); re-pinning would "
            f"bind {info['git_tree_sha1']} ({new_source}); pass --force to re-pin")
    bind_resolved(toml, args.name, info, lazy=args.lazy, force=args.force)
    if args.json:
        _print_json(info)
    else:
        print(f"pinned {args.name} = {info['git_tree_sha1']} ({new_source}) in {toml}")
        print(f"installed at {info['path']}")
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    from .authoring import create_artifact

    result = create_artifact(args.directory, args.archive, args.compression)
    if args.json:
        _print_json(result)
    else:
        print(f"git-tree-sha1 = {result['git_tree_sha1']}")
        if "sha256" in result:
            print(f"sha256        = {result['sha256']}  ({result['archive_path']})")
    return 0


def cmd_bind(args: argparse.Namespace) -> int:
    from .binding import bind_artifact

    gobbler = None
    if args.project or args.asset or args.version or args.url or args.registry:
        gobbler = {"project": args.project, "asset": args.asset, "version": args.version,
                   "url": args.url, "registry": args.registry}
    if bool(args.download_url) != bool(args.sha256):
        raise ValueError("--download-url and --sha256 go together")
    toml = _toml(args, must_exist=False)
    bind_artifact(toml, args.name, args.git_tree_sha1, args.download_url, args.sha256,
                  lazy=args.lazy, force=args.force, gobbler=gobbler, platform=_platform(args))
    print(f"bound {args.name} = {args.git_tree_sha1.lower()} in {toml}")
    return 0


def cmd_unbind(args: argparse.Namespace) -> int:
    from .binding import unbind_artifact

    toml = _toml(args)
    if not unbind_artifact(toml, args.name, platform=_platform(args)):
        raise KeyError(f"{toml}: no artifact named {args.name!r}; nothing to unbind")
    print(f"unbound {args.name} from {toml}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from .tomlmodel import load_file

    toml = _toml(args)
    f = load_file(toml)

    def wanted(name: str) -> bool:
        try:
            return args.include_lazy or not f.entry(name).lazy
        except ArtifactNotFoundError:
            return False  # bound for other platforms only: nothing to fetch here (Julia)
        except ArtifactError:
            return True  # let the fetch below report what is wrong with it

    names = args.names or [n for n in f.names() if wanted(n)]
    out: Dict[str, str] = {}
    failed: List[str] = []
    for name in names:  # one bad name does not stop the others
        try:
            out[name] = str(core.ensure_artifact_installed(name, toml, progress=_progress(args)))
        except (ArtifactError, OSError, ValueError, KeyError) as e:
            failed.append(f"{name}: {_one_line(e)}")
            continue
        if not args.json:
            print(f"{name}\t{out[name]}")
    if args.json:
        _print_json(out)
    if failed:
        raise ArtifactError(f"could not fetch {len(failed)} of {len(names)} artifact(s): "
                            + " || ".join(failed))
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    toml = _toml(args)
    if args.no_install:
        from .tomlmodel import load_file

        name, _, sub = args.name.replace("\\", "/").partition("/")  # Name/sub/file, as artifact()
        entry = load_file(toml).entry(name)
        path = depot.find_installed(entry.git_tree_sha1)
        if path is None:
            raise FileNotFoundError(f"artifact {name!r} ({entry.git_tree_sha1}) is not "
                                    f"installed; run `artifacts fetch {name}`")
        path = path / sub if sub else path
    else:
        path = core.artifact(args.name, toml)
    print(path)
    return 0


def _source_summary(entry: ArtifactEntry) -> str:
    parts = []
    if entry.gobbler:
        parts.append(f"gobbler:{entry.gobbler.coordinates}")
    parts.extend(d.url for d in entry.downloads)
    return ", ".join(parts) or "(no source)"


def cmd_status(args: argparse.Namespace) -> int:
    from .tomlmodel import load_file

    toml = _toml(args)
    f = load_file(toml)
    rows: List[Dict[str, Any]] = []
    for name in f.names():
        try:
            entry = f.entry(name)
        except ArtifactError as e:
            rows.append({"name": name, "error": str(e)})
            continue
        path = depot.find_installed(entry.git_tree_sha1)
        rows.append({"name": name, "git_tree_sha1": entry.git_tree_sha1,
                     "installed": path is not None, "path": str(path) if path else None,
                     "size": depot.tree_size(path) if path else None, "lazy": entry.lazy,
                     "source": _source_summary(entry)})
    if args.json:
        _print_json({"toml": str(toml), "artifacts": rows})
        return 0
    print(f"# {toml}")
    for r in rows:
        if "error" in r:
            print(f"{r['name']:<20} ERROR  {r['error']}")
            continue
        state = "installed" if r["installed"] else ("lazy     " if r["lazy"] else "missing  ")
        print(f"{r['name']:<20} {state} {_human(r['size']):>10}  {r['git_tree_sha1']}  {r['source']}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .tomlmodel import load_file
    from .treehash import compute_git_tree_sha1

    results: Dict[str, str] = {}
    if args.all:
        if args.names:
            raise ValueError("give names or --all, not both")
        for d in depot.depot_stack():  # every copy in every depot, by path
            for h in depot.installed_hashes(d):
                path = depot.artifacts_dir(d) / h
                results[str(path)] = "ok" if compute_git_tree_sha1(path) == h else "CORRUPT"
    else:
        f = load_file(_toml(args))
        for name in args.names or f.names():
            try:
                h = f.entry(name).git_tree_sha1
            except ArtifactError as e:
                if args.names:
                    raise
                if not isinstance(e, ArtifactNotFoundError):  # not for this platform: skip
                    results[name] = f"invalid ({_one_line(e)})"
                continue
            if depot.find_installed(h) is None:
                results[name] = "missing"
            else:
                results[name] = "ok" if core.verify_artifact(h) else "CORRUPT"
    if args.json:
        _print_json(results)
    else:
        for label, state in results.items():
            print(f"{state:<8} {label}")
    bad = [k for k, v in results.items() if v == "CORRUPT"]
    if bad:
        raise ArtifactError(f"{len(bad)} artifact(s) do not match their hash: {', '.join(bad)}; "
                            "remove them with `artifacts gc` or re-fetch them")
    missing = [k for k, v in results.items() if v == "missing"]
    if args.names and missing:
        raise ArtifactError(f"not installed, so not verified: {', '.join(missing)}; "
                            "run `artifacts fetch` first")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    rows = []
    for d in depot.depot_stack():
        for h in depot.installed_hashes(d):
            p = depot.artifacts_dir(d) / h
            rows.append({"hash": h, "depot": str(d), "path": str(p), "size": depot.tree_size(p)})
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"{r['hash']}  {_human(r['size']):>10}  {r['depot']}")
        cache = depot.get_cache_dir() / "gobbler"
        if cache.is_dir():
            print(f"gobbler client cache  {_human(depot.tree_size(cache)):>10}  {cache}")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from .gc import collect_garbage, parse_size

    report = collect_garbage(dry_run=args.dry_run,
                             max_size=parse_size(args.max_size) if args.max_size else None)
    if args.json:
        _print_json(report.as_dict())
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for r in report.removed:
        print(f"{verb} {r['hash']}  {_human(r['size'])}")
    for t in report.temp_removed:
        print(f"{verb} leftover {t}")
    if report.client_cache_bytes:
        print(f"{verb} the Gobbler client cache ({_human(report.client_cache_bytes)})")
    print(f"{verb} {len(report.removed)} artifact(s), {_human(report.freed_bytes)}; "
          f"kept {len(report.kept)}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from .authoring import publish_artifact

    toml = _toml(args, must_exist=False)
    result = publish_artifact(toml, args.name, args.directory, project=args.project,
                              asset=args.asset, version=args.version, url=args.url,
                              staging=args.staging, registry=args.registry,
                              probation=args.probation, archive=args.archive,
                              force=args.force, progress=_progress(args))
    if args.json:
        _print_json(result)
    else:
        print(f"published {args.project}/{args.asset}/{args.version} "
              f"(git-tree-sha1 {result['git_tree_sha1']}) and bound {args.name} in {toml}")
    return 0


def serve_home() -> Path:
    """Where ``artifacts serve`` keeps its registry and staging by default.

    User data, not cache: a registry is source data that ``gc`` and cache
    cleaners must never touch.
    """
    import platformdirs

    return Path(platformdirs.user_data_dir("artifacts-py", appauthor=False)) / "gobbler-server"


def cmd_serve(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from .servers.gobbler import server

    argv = list(extra)
    names = {a.split("=")[0].lstrip("-") for a in argv if a.startswith("-")}
    base = serve_home()
    if "registry" not in names:
        (base / "registry").mkdir(parents=True, exist_ok=True)
        argv += ["-registry", str(base / "registry")]
    if "staging" not in names:
        (base / "staging").mkdir(parents=True, exist_ok=True)
        os.chmod(base / "staging", 0o1777)
        argv += ["-staging", str(base / "staging")]
    if "admin" not in names:
        import getpass

        argv += ["-admin", getpass.getuser()]
    # The server's own parser prints argparse's usage block; say it in one line.
    import contextlib
    import io

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            server.parse_args(argv)
    except SystemExit as e:
        if e.code:
            lines = [ln for ln in captured.getvalue().splitlines() if ln.strip()]
            why = lines[-1].split(": error: ", 1)[-1] if lines else "bad arguments"
            print(f"artifacts serve: error: {why} (see `artifacts serve --help`)",
                  file=sys.stderr)
            return 2
    return server.main(argv) or 0


# -------------------------------------------------------------------- parser

class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr, like every other error."""

    def error(self, message: str) -> "NoReturn":
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _global_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-V", "--version", action="version", version=f"artifacts-py {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log what happens (-v: installs and waits, -vv: every retry)")
    p.add_argument("-q", "--quiet", action="store_true", dest="global_quiet",
                   help="no progress bars and no logs")
    p.add_argument("--offline", action="store_true",
                   help="never touch the network (as ARTIFACTS_PY_OFFLINE=1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--toml", metavar="PATH", dest="global_toml",
                   help="the Artifacts.toml for every command (as ARTIFACTS_PY_TOML)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="artifacts", description="Julia-compatible, content-addressed artifacts "
        "(Artifacts.toml) backed by Gobbler registries and tarball mirrors.")
    _global_options(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def cmd(name: str, help: str, json_out: bool = False, toml: bool = True) -> Any:
        sp = sub.add_parser(name, help=help, description=help)
        if toml:
            sp.add_argument("--toml", metavar="PATH", help="the Artifacts.toml (default: "
                            "$ARTIFACTS_PY_TOML, else ./Artifacts.toml or a parent's)")
        if json_out:
            sp.add_argument("--json", action="store_true", help="print the result as JSON")
        return sp

    sp = cmd("add", "pin a tarball URL or a Gobbler PROJECT/ASSET[@VERSION]: install, hash, bind", True)
    sp.add_argument("name")
    sp.add_argument("source", help="tarball URL, or PROJECT/ASSET[@VERSION] (latest if no version)")
    sp.add_argument("--url", help="Gobbler REST API URL")
    sp.add_argument("--registry", help="mounted Gobbler registry path")
    sp.add_argument("--lazy", action="store_true", help="mark the binding lazy")
    sp.add_argument("--force", action="store_true", help="re-pin a name that is already bound")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_add)

    sp = cmd("create", "compute a folder's git-tree-sha1 and optionally pack a deterministic tarball",
             True, toml=False)
    sp.add_argument("directory")
    sp.add_argument("--archive", metavar="PATH", help="write a tarball of the folder here")
    sp.add_argument("--compression", default="gz", choices=["gz", "bz2", "xz", "zst", "none"])
    sp.set_defaults(func=cmd_create)

    sp = cmd("bind", "bind NAME to a known git-tree-sha1 and sources")
    sp.add_argument("name")
    sp.add_argument("git_tree_sha1")
    sp.add_argument("--download-url", help="tarball mirror URL")
    sp.add_argument("--sha256", help="sha256 of that tarball")
    sp.add_argument("--project")
    sp.add_argument("--asset")
    sp.add_argument("--version", dest="version")
    sp.add_argument("--url", help="Gobbler REST API URL")
    sp.add_argument("--registry", help="mounted Gobbler registry path")
    sp.add_argument("--lazy", action="store_true")
    sp.add_argument("--force", action="store_true")
    sp.add_argument("--platform", metavar="TRIPLET", help="bind one platform variant "
                    "([[NAME]] entry), e.g. x86_64-linux-gnu or aarch64-apple-darwin")
    sp.set_defaults(func=cmd_bind)

    sp = cmd("unbind", "remove NAME from the Artifacts.toml")
    sp.add_argument("name")
    sp.add_argument("--platform", metavar="TRIPLET", help="remove only this platform variant")
    sp.set_defaults(func=cmd_unbind)

    sp = cmd("publish", "upload a folder to Gobbler and bind it as NAME", True)
    sp.add_argument("name")
    sp.add_argument("directory")
    sp.add_argument("--project", required=True)
    sp.add_argument("--asset", required=True)
    sp.add_argument("--version", required=True)
    sp.add_argument("--url", help="Gobbler REST API URL (default $ARTIFACTS_PY_GOBBLER_URL)")
    sp.add_argument("--staging", help="staging directory (default: from the service's /info)")
    sp.add_argument("--registry", help="registry path (default: from the service's /info)")
    sp.add_argument("--probation", action="store_true", help="upload on probation")
    sp.add_argument("--archive", metavar="PATH", help="also write a tarball and add it as a mirror URL")
    sp.add_argument("--force", action="store_true", help="re-bind a name that is already bound")
    sp.add_argument("-q", "--quiet", action="store_true")
    sp.set_defaults(func=cmd_publish)

    sp = cmd("fetch", "install artifacts (all non-lazy ones by default)", True)
    sp.add_argument("names", nargs="*")
    sp.add_argument("--include-lazy", action="store_true")
    sp.add_argument("-q", "--quiet", action="store_true")
    sp.set_defaults(func=cmd_fetch)

    sp = cmd("path", "print the local path of NAME (installing it if needed)")
    sp.add_argument("name")
    sp.add_argument("--no-install", action="store_true", help="fail instead of installing")
    sp.set_defaults(func=cmd_path)

    sp = cmd("status", "list the Artifacts.toml entries: installed or not, size, source", True)
    sp.set_defaults(func=cmd_status)

    sp = cmd("verify", "re-hash installed artifacts against their git-tree-sha1", True)
    sp.add_argument("names", nargs="*")
    sp.add_argument("--all", action="store_true", help="every artifact in the depot stack")
    sp.set_defaults(func=cmd_verify)

    sp = cmd("ls", "list what the depots hold", True, toml=False)
    sp.set_defaults(func=cmd_ls)

    sp = cmd("gc", "remove artifacts that no recorded Artifacts.toml uses", True, toml=False)
    sp.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    sp.add_argument("--max-size", metavar="SIZE", help="then evict the oldest until the depot fits (e.g. 50G)")
    sp.set_defaults(func=cmd_gc)

    sp = cmd("serve", "start the embedded Gobbler-compatible server on loopback "
             "(other flags go to artifacts-gobbler: -port, -registry, -staging, -admin, ...)",
             toml=False)
    sp.set_defaults(func=None)
    return p


def _one_line(err: BaseException) -> str:
    text = str(err)
    if isinstance(err, KeyError) and text.startswith(("'", '"')) and len(err.args) == 1:
        text = str(err.args[0])
    if isinstance(err, InstallError):
        return text.replace("\n  - ", " | ")
    return " ".join(text.split("\n"))


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``artifacts`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if "serve" in argv:  # everything after it goes to artifacts-gobbler's own flags
        i = argv.index("serve")
        head, rest = argv[:i + 1], argv[i + 1:]
        if any(a in ("-h", "--help") for a in rest):
            parser.parse_args(head + ["--help"])
        args = parser.parse_args(head)
        if args.command == "serve":
            _configure(args)
            return _run(lambda: cmd_serve(args, rest))
    args = parser.parse_args(argv)
    _configure(args)
    return _run(lambda: int(args.func(args) or 0))


def _configure(args: argparse.Namespace) -> None:
    """Apply the global options: logging, offline, progress bars, the Artifacts.toml."""
    import logging

    from . import progress

    if args.offline:
        settings.set_offline(True)
    if args.global_quiet or args.no_progress:
        progress.disable()
    if getattr(args, "toml", None) is None and args.global_toml:
        args.toml = args.global_toml
    if args.verbose and not args.global_quiet:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("artifacts: %(message)s"))
        log = logging.getLogger("artifacts_py")
        log.addHandler(handler)
        log.setLevel(logging.DEBUG if args.verbose > 1 else logging.INFO)


def _run(fn: Callable[[], int]) -> int:
    try:
        return int(fn() or 0)
    except KeyboardInterrupt:
        print("artifacts: interrupted", file=sys.stderr)
        return 130
    except (ArtifactError, OSError, ValueError, KeyError) as e:
        print(f"artifacts: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - a bug: still one line; the traceback on request
        if settings.debug():
            raise
        print(f"artifacts: internal error: {type(e).__name__}: {_one_line(e)} "
              "(set ARTIFACTS_PY_DEBUG=1 for a traceback, and please report it)", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
