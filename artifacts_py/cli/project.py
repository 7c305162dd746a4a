"""Commands on a project's Artifacts.toml: add, create, bind, unbind, publish,
fetch, path, status."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .. import core, depot
from ..errors import ArtifactError, ArtifactNotFoundError, ArtifactsTomlError, GobblerError
from .common import (Commands, check_file_url, failure_summary, human, one_line, platform,
                     print_json, progress, source_summary, toml_path)


def _pinned(toml: Path, name: str) -> Optional[Tuple[str, str]]:
    """(tree hash, sources) that ``name`` is bound to now, or None if unbound."""
    from ..tomlmodel import load_file

    if not toml.exists():
        return None
    f = load_file(toml)
    if name not in f:
        return None
    try:
        entry = f.variants(name)[0]
    except ArtifactError as e:
        return "(unreadable)", f"a malformed entry: {one_line(e)}"
    return entry.git_tree_sha1, source_summary(entry)


def cmd_add(args: argparse.Namespace) -> int:
    from ..authoring import bind_resolved, resolve_source
    from ..binding import check_name

    toml = toml_path(args, must_exist=False)
    check_name(args.name, toml)  # before a long download, not after
    source = args.source
    kwargs: Dict[str, Any] = {}
    if "://" in source:
        check_file_url(source, toml, args.allow_file_url)
        kwargs["tarball_url"] = source
    else:
        gypsum = source.startswith("gypsum:")
        coords, _, version = source[len("gypsum:") if gypsum else 0:].partition("@")
        parts = coords.split("/")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"{source!r}: expected a tarball URL, PROJECT/ASSET[@VERSION] "
                             "(Gobbler) or gypsum:PROJECT/ASSET[@VERSION]")
        kwargs.update(project=parts[0], asset=parts[1], version=version or None, url=args.url)
        if gypsum:
            if args.registry:
                raise ValueError("--registry is a Gobbler option; a gypsum version is read "
                                 "from its service (--url)")
            kwargs.update(gypsum=True, probation=args.probation)
        else:
            kwargs.update(registry=args.registry)
    old = None if args.force else _pinned(toml, args.name)
    info = resolve_source(progress=progress(args), **kwargs)
    backend = "gobbler" if "gobbler" in info else "gypsum" if "gypsum" in info else None
    new_source = (f"{backend}:{info[backend]['project']}/{info[backend]['asset']}/"
                  f"{info[backend]['version']}" if backend else info["url"])
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
        out = {k: v for k, v in info.items() if k != "size"}
        if "size" in info:  # pin's "size" is the tarball's; "size" means the tree's here
            out["archive_size"] = info["size"]
        print_json({"name": args.name, "toml": str(toml), **out,
                    "size": depot.tree_size(Path(info["path"]))})
    else:
        print(f"pinned {args.name} = {info['git_tree_sha1']} ({new_source}) in {toml}")
        print(f"installed at {info['path']}")
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    from ..authoring import create_artifact

    if not Path(args.directory).is_dir():
        raise FileNotFoundError(f"{args.directory}: not a directory; `artifacts create` "
                                "hashes (and packs) a folder")
    # Without --compression the library decides (from the archive's name).
    extra = (args.compression,) if args.compression else ()
    result: Dict[str, Any] = dict(create_artifact(args.directory, args.archive, *extra))
    result["size"] = depot.tree_size(Path(args.directory))
    if "archive_path" in result:
        result["archive_size"] = Path(result["archive_path"]).stat().st_size
    if args.json:
        print_json(result)
    else:
        print(f"git-tree-sha1 = {result['git_tree_sha1']}")
        if "sha256" in result:
            print(f"sha256        = {result['sha256']}  ({result['archive_path']})")
    return 0


def cmd_bind(args: argparse.Namespace) -> int:
    from ..binding import bind_artifact

    gobbler = None
    if args.project or args.asset or args.version or args.url or args.registry:
        gobbler = {"project": args.project, "asset": args.asset, "version": args.version,
                   "url": args.url, "registry": args.registry}
    if bool(args.download_url) != bool(args.sha256):
        raise ValueError("--download-url and --sha256 go together")
    toml = toml_path(args, must_exist=False)
    check_file_url(args.download_url, toml, args.allow_file_url)
    bind_artifact(toml, args.name, args.git_tree_sha1, args.download_url, args.sha256,
                  lazy=args.lazy, force=args.force, gobbler=gobbler, platform=platform(args))
    if args.json:
        print_json({"name": args.name, "git_tree_sha1": args.git_tree_sha1.lower(),
                    "toml": str(toml), "platform": args.platform, "lazy": args.lazy,
                    "download": [{"url": args.download_url, "sha256": args.sha256}]
                    if args.download_url else [],
                    "gobbler": {k: v for k, v in (gobbler or {}).items() if v} or None})
    else:
        print(f"bound {args.name} = {args.git_tree_sha1.lower()} in {toml}")
    return 0


def cmd_unbind(args: argparse.Namespace) -> int:
    from ..binding import unbind_artifact

    toml = toml_path(args)
    if not unbind_artifact(toml, args.name, platform=platform(args)):
        raise KeyError(f"{toml}: no artifact named {args.name!r}; nothing to unbind")
    if args.json:
        print_json({"name": args.name, "toml": str(toml), "platform": args.platform})
    else:
        print(f"unbound {args.name} from {toml}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from ..tomlmodel import load_file

    toml = toml_path(args)
    f = load_file(toml)

    def wanted(name: str) -> bool:
        try:
            return bool(args.include_lazy or not f.entry(name).lazy)
        except ArtifactNotFoundError:
            return False  # bound for other platforms only: nothing to fetch here (Julia)
        except ArtifactError:
            return True  # let the fetch below report what is wrong with it

    names = args.names or [n for n in f.names() if wanted(n)]
    out: Dict[str, str] = {}
    failed: Dict[str, BaseException] = {}
    for name in names:  # one bad name does not stop the others
        try:
            if args.force:
                out[name] = str(reinstall(f.entry(name), progress(args)))
            else:
                out[name] = str(core.ensure_artifact_installed(name, toml,
                                                               progress=progress(args)))
        except (ArtifactError, OSError, ValueError, KeyError) as e:
            failed[name] = e
            continue
        if not args.json:
            print(f"{name}\t{out[name]}")
    if args.json:
        print_json({"toml": str(toml), "installed": out,
                    "failed": {n: one_line(e) for n, e in failed.items()}})
    if failed:
        raise failure_summary("fetch", failed, len(names))
    return 0


def reinstall(entry: Any, bar: Optional[bool]) -> Path:
    """Remove ``entry``'s tree from the first depot, then install it again from its sources."""
    from ..errors import NotInstalledError
    from ..sources.plan import plan
    from ..store import remove_artifact

    if not plan(entry):  # keep the only copy there is
        raise NotInstalledError(f"artifact {entry.name!r} has no source to re-install from; "
                                "nothing was removed")
    remove_artifact(entry.git_tree_sha1)
    return core.install_entry(entry, progress=bar)


def cmd_path(args: argparse.Namespace) -> int:
    from ..tomlmodel import load_file

    toml = toml_path(args)
    name, _, sub = args.name.replace("\\", "/").partition("/")  # Name/sub/file, as artifact()
    if args.no_install:
        entry = load_file(toml).entry(name)
        root = depot.find_installed(entry.git_tree_sha1)
        if root is None:
            raise FileNotFoundError(f"artifact {name!r} ({entry.git_tree_sha1}) is not "
                                    f"installed; run `artifacts fetch {name}`")
    else:
        root = core.artifact(name, toml)
    path = root / sub if sub else root
    if not path.exists():
        raise FileNotFoundError(f"{sub!r} is not in artifact {name!r} ({root}); "
                                f"`ls {root}` shows what it holds")
    if args.json:
        print_json({"name": name, "path": str(path), "root": str(root)})
    else:
        print(path)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from ..tomlmodel import load_file

    toml = toml_path(args)
    f = load_file(toml)
    rows: List[Dict[str, Any]] = []
    for name in f.names():
        try:
            entry = f.entry(name)
        except ArtifactNotFoundError:  # bound for other platforms only
            continue
        except ArtifactError as e:
            rows.append({"name": name, "error": one_line(e)})
            continue
        path = depot.find_installed(entry.git_tree_sha1)
        rows.append({"name": name, "git_tree_sha1": entry.git_tree_sha1,
                     "installed": path is not None, "path": str(path) if path else None,
                     "size": depot.tree_size(path) if path else None, "lazy": entry.lazy,
                     "source": source_summary(entry)})
    if args.json:
        print_json({"toml": str(toml), "artifacts": rows})
    else:
        print(f"# {toml}")
        for r in rows:
            if "error" in r:
                print(f"{r['name']:<20} ERROR  {r['error']}")
                continue
            state = "installed" if r["installed"] else ("lazy     " if r["lazy"] else "missing  ")
            print(f"{r['name']:<20} {state} {human(r['size']):>10}  {r['git_tree_sha1']}  "
                  f"{r['source']}")
    bad = [r["name"] for r in rows if "error" in r]
    if bad:
        raise ArtifactsTomlError(f"{toml}: {len(bad)} malformed entr{'y' if len(bad) == 1 else 'ies'}"
                                 f" ({', '.join(bad)}); fix them (see above)")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from ..authoring import publish_artifact

    if args.archive_url and not args.archive:
        raise ValueError("--archive-url names where the --archive tarball will be served; "
                         "give --archive PATH too")
    toml = toml_path(args, must_exist=False)
    try:
        result = publish_artifact(toml, args.name, args.directory, project=args.project,
                                  asset=args.asset, version=args.version, url=args.url,
                                  staging=args.staging, registry=args.registry,
                                  probation=args.probation, archive=args.archive,
                                  archive_url=args.archive_url, force=args.force,
                                  progress=progress(args), allow_file_url=args.allow_file_url,
                                  gypsum=args.gypsum)
    except GobblerError as e:
        if e.status != 404 or f'project "{args.project}" does not exist' not in str(e):
            raise
        raise GobblerError(f"{e}; create the project first: `artifacts gobbler create-project "
                           f"{args.project}`", status=e.status, url=e.url) from None
    if args.json:
        print_json(result)
    else:
        print(f"published {args.project}/{args.asset}/{args.version} "
              f"(git-tree-sha1 {result['git_tree_sha1']}) and bound {args.name} in {toml}")
    return 0


def quiet_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _allow_file_url(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--allow-file-url", action="store_true",
                    help="bind a file:// URL even into an Artifacts.toml inside a git work tree")


def register(c: Commands) -> None:
    """Add this module's commands to the table."""
    sp = c.add("add", "pin a tarball URL, a Gobbler PROJECT/ASSET[@VERSION] or a gypsum "
               "gypsum:PROJECT/ASSET[@VERSION]: install, hash, bind", """\
  artifacts add Counts https://zenodo.org/records/1/files/counts.tar.gz
  artifacts add Brain scrnaseq/zeisel-brain@2024-01-05 --url http://127.0.0.1:8080
  artifacts add Zeisel gypsum:scRNAseq/zeisel-brain-2015""",
               cmd_add, json_out=True)
    sp.add_argument("name", help="the artifact's name in the Artifacts.toml")
    sp.add_argument("source", help="tarball URL, PROJECT/ASSET[@VERSION] (Gobbler) or "
                    "gypsum:PROJECT/ASSET[@VERSION]; the latest version if none is given")
    sp.add_argument("--url", help="the Gobbler REST API, or the gypsum service (default "
                    "$ARTIFACTS_PY_GYPSUM_URL, else the public one)")
    sp.add_argument("--probation", action="store_true",
                    help="gypsum: accept (and pin) a version that is still on probation")
    sp.add_argument("--registry", help="mounted Gobbler registry path")
    sp.add_argument("--lazy", action="store_true", help="mark the binding lazy")
    sp.add_argument("--force", action="store_true", help="re-pin a name that is already bound")
    _allow_file_url(sp)
    quiet_option(sp)

    sp = c.add("create", "compute a folder's git-tree-sha1 and optionally pack a "
               "deterministic tarball", """\
  artifacts create data/
  artifacts create data/ --archive data.tar.gz --json""", cmd_create, json_out=True,
               toml=False)
    sp.add_argument("directory", help="the folder to hash")
    sp.add_argument("--archive", metavar="PATH", help="write a tarball of the folder here")
    sp.add_argument("--compression", choices=["gz", "bz2", "xz", "zst", "none"],
                    help="the tarball's compression (default: from the archive's name, "
                    "e.g. data.tar.xz)")

    sp = c.add("bind", "bind NAME to a known git-tree-sha1 and its sources", """\
  artifacts bind Counts 83f7...e1 --download-url https://host/counts.tar.gz --sha256 4b1c...
  artifacts bind Brain 83f7...e1 --project scrnaseq --asset zeisel --version v1 --url URL""",
               cmd_bind, json_out=True)
    sp.add_argument("name", help="the artifact's name in the Artifacts.toml")
    sp.add_argument("git_tree_sha1", help="the tree hash (40 hex digits)")
    sp.add_argument("--download-url", metavar="URL", help="tarball mirror URL")
    sp.add_argument("--sha256", help="sha256 of that tarball")
    sp.add_argument("--project", help="Gobbler project")
    sp.add_argument("--asset", help="Gobbler asset")
    sp.add_argument("--version", dest="version", help="Gobbler version")
    sp.add_argument("--url", help="Gobbler REST API URL")
    sp.add_argument("--registry", help="mounted Gobbler registry path")
    sp.add_argument("--lazy", action="store_true", help="mark the binding lazy")
    sp.add_argument("--force", action="store_true", help="replace an existing binding")
    sp.add_argument("--platform", metavar="TRIPLET", help="bind one platform variant "
                    "([[NAME]] entry), e.g. x86_64-linux-gnu or aarch64-apple-darwin")
    _allow_file_url(sp)

    sp = c.add("unbind", "remove NAME from the Artifacts.toml", """\
  artifacts unbind Counts
  artifacts unbind Tool --platform aarch64-apple-darwin""", cmd_unbind, json_out=True)
    sp.add_argument("name", help="the artifact's name in the Artifacts.toml")
    sp.add_argument("--platform", metavar="TRIPLET", help="remove only this platform variant")

    sp = c.add("publish", "upload a folder to Gobbler (or gypsum) as a version and bind it as "
               "NAME", """\
  artifacts publish Counts data/ --project demo --asset counts --version v1 --url URL
  GYPSUM_TOKEN=... artifacts publish Counts data/ --gypsum --project demo --asset counts \\
      --version v1
  artifacts publish Counts data/ --project demo --asset counts --version v2 \\
      --archive counts.tar.gz --archive-url https://zenodo.org/records/1/files/counts.tar.gz""",
               cmd_publish, json_out=True)
    sp.add_argument("name", help="the artifact's name in the Artifacts.toml")
    sp.add_argument("directory", help="the folder to upload")
    sp.add_argument("--project", required=True, help="Gobbler project (must exist: "
                    "`artifacts gobbler create-project`)")
    sp.add_argument("--asset", required=True, help="Gobbler asset (created if new)")
    sp.add_argument("--version", required=True, help="the new version's name")
    sp.add_argument("--url", help="Gobbler REST API URL (default $ARTIFACTS_PY_GOBBLER_URL)")
    sp.add_argument("--staging", help="staging directory (default: from the service's /info)")
    sp.add_argument("--registry", help="registry path (default: from the service's /info)")
    sp.add_argument("--probation", action="store_true", help="upload on probation")
    sp.add_argument("--gypsum", action="store_true",
                    help="publish to a gypsum service (--url, default $ARTIFACTS_PY_GYPSUM_URL; "
                    "token from $GYPSUM_TOKEN or $GITHUB_TOKEN) instead of Gobbler")
    sp.add_argument("--archive", metavar="PATH",
                    help="also write a tarball of the folder and bind it as a mirror")
    sp.add_argument("--archive-url", metavar="URL", help="the URL the --archive tarball "
                    "will be served from (default: its file:// URL)")
    sp.add_argument("--force", action="store_true", help="re-bind a name that is already bound")
    _allow_file_url(sp)
    quiet_option(sp)

    sp = c.add("fetch", "install artifacts (all non-lazy ones by default)", """\
  artifacts fetch
  artifacts fetch Counts --force   # re-install it (a corrupt copy is replaced)""",
               cmd_fetch, json_out=True)
    sp.add_argument("names", nargs="*", metavar="NAME", help="artifacts to install (default: "
                    "every non-lazy one)")
    sp.add_argument("--include-lazy", action="store_true", help="lazy artifacts too")
    sp.add_argument("--force", action="store_true", help="re-install even if installed "
                    "(removes the first depot's copy first)")
    quiet_option(sp)

    sp = c.add("path", "print the local path of NAME or NAME/FILE (installing it if needed)",
               """\
  artifacts path Counts
  artifacts path Counts/matrix.csv --no-install""", cmd_path, json_out=True)
    sp.add_argument("name", metavar="NAME[/FILE]", help="an artifact, or a path inside it")
    sp.add_argument("--no-install", action="store_true", help="fail instead of installing")

    c.add("status", "list the Artifacts.toml entries: installed or not, size, source", """\
  artifacts status
  artifacts --toml other/Artifacts.toml status --json""", cmd_status, json_out=True)
