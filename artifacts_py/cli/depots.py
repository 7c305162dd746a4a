"""Commands on the depots: verify (and repair), rm, ls, gc, depot."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List, Optional

from .. import core, depot
from ..errors import ArtifactError, ArtifactNotFoundError
from .common import Commands, human, one_line, print_json, progress, toml_path
from .project import quiet_option, reinstall

REPAIR_ADVICE = ("re-install them with `artifacts verify --repair` (or `artifacts fetch "
                 "--force NAME`; `artifacts rm NAME` only removes one)")


def cmd_verify(args: argparse.Namespace) -> int:
    if args.all:
        if args.names:
            raise ValueError("give names or --all, not both")
        results = _verify_depots(args.repair)
    else:
        results = _verify_names(args)
    if args.json:
        print_json(results)
    else:
        for label, state in results.items():
            print(f"{state:<8} {label}")
    bad = [k for k, v in results.items() if v.startswith("CORRUPT")]
    if bad:
        advice = ("`artifacts verify --all --repair` removes those in the first depot (they "
                  "are re-installed when next used), or `artifacts rm HASH`" if args.all
                  else REPAIR_ADVICE)
        raise ArtifactError(f"{len(bad)} artifact(s) do not match their hash: "
                            f"{', '.join(bad)}; {advice}")
    invalid = [k for k, v in results.items() if v.startswith("invalid")]
    if invalid:
        raise ArtifactError(f"malformed entries, not verified: {', '.join(invalid)}; fix "
                            "them in the Artifacts.toml (`artifacts status` shows why)")
    missing = [k for k, v in results.items() if v.startswith("missing")]
    if missing:
        raise ArtifactError(f"not installed, so not verified: {', '.join(missing)}; run "
                            "`artifacts fetch` (or `artifacts verify --repair`)")
    return 0


def _verify_names(args: argparse.Namespace) -> Dict[str, str]:
    """State per name: ok, CORRUPT, missing, lazy (not installed), invalid; repaired with --repair."""
    from ..tomlmodel import load_file

    f = load_file(toml_path(args))
    results: Dict[str, str] = {}
    for name in args.names or f.names():
        try:
            entry = f.entry(name)
        except ArtifactError as e:
            if args.names:
                raise
            if not isinstance(e, ArtifactNotFoundError):  # not for this platform: skip
                results[name] = f"invalid ({one_line(e)})"
            continue
        if depot.find_installed(entry.git_tree_sha1) is None:
            state = "lazy" if entry.lazy and not args.names else "missing"
        else:
            state = "ok" if core.verify_artifact(entry.git_tree_sha1) else "CORRUPT"
        if args.repair and state in ("missing", "CORRUPT"):
            try:
                reinstall(entry, progress(args))
            except (ArtifactError, OSError, ValueError) as e:
                state = f"{state} (repair failed: {one_line(e)})"
            else:
                state = "repaired" if state == "CORRUPT" else "installed"
        results[name] = state
    return results


def _verify_depots(repair: bool) -> Dict[str, str]:
    """State per installed tree in every depot, by path; --repair removes corrupt first-depot ones."""
    from ..store import remove_artifact
    from ..treehash import compute_git_tree_sha1

    results: Dict[str, str] = {}
    stack = depot.depot_stack()
    for d in stack:  # every copy in every depot
        for h in depot.installed_hashes(d):
            path = depot.artifacts_dir(d) / h
            state = "ok" if compute_git_tree_sha1(path) == h else "CORRUPT"
            if state == "CORRUPT" and repair:
                if d == stack[0] and remove_artifact(h, d):
                    state = "removed"
                else:
                    state = "CORRUPT (in a read-only depot: not repaired)"
            results[str(path)] = state
    return results


def cmd_rm(args: argparse.Namespace) -> int:
    from ..overrides import is_overridden
    from ..store import remove_artifact
    from ..tomlmodel import ArtifactsFile, load_file
    from ..depot import is_sha1_hex

    first = depot.depot_stack()[0]
    f: Optional[ArtifactsFile] = None
    removed: List[Dict[str, str]] = []
    kept: List[Dict[str, str]] = []
    for target in args.targets:
        if is_sha1_hex(target):
            tree = target.lower()
        else:
            f = f or load_file(toml_path(args))
            tree = f.entry(target).git_tree_sha1
        gone = remove_artifact(tree, first)
        if gone:
            removed.append({"target": target, "git_tree_sha1": tree, "path": str(gone[0])})
            continue
        where = depot.find_installed(tree)
        why = ("bound in Overrides.toml; not removed" if is_overridden(tree) else
               f"only in the read-only depot {where}; not removed" if where else
               "not installed")
        kept.append({"target": target, "git_tree_sha1": tree, "reason": why})
    if args.json:
        print_json({"depot": str(first), "removed": removed, "not_removed": kept})
    else:
        for r in removed:
            label = r["target"] if r["target"] == r["git_tree_sha1"] else \
                f"{r['target']} ({r['git_tree_sha1']})"
            print(f"removed {label} from {first}")
    if kept:
        raise ArtifactError("; ".join(f"{k['target']}: {k['reason']} in {first}"
                                      if k["reason"] == "not installed" else
                                      f"{k['target']}: {k['reason']}" for k in kept))
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    stack = depot.depot_stack()
    rows = []
    for d in stack:
        for h in depot.installed_hashes(d):
            p = depot.artifacts_dir(d) / h
            rows.append({"hash": h, "depot": str(d), "path": str(p), "size": depot.tree_size(p)})
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print(f"no artifacts installed in {_stack_text(stack)}")
    for r in rows:
        print(f"{r['hash']}  {human(r['size']):>10}  {r['depot']}")
    cache = depot.get_cache_dir() / "gobbler"
    if cache.is_dir():
        print(f"gobbler client cache  {human(depot.tree_size(cache)):>10}  {cache}")
    return 0


def _stack_text(stack: List[Path]) -> str:
    return str(stack[0]) if len(stack) == 1 else \
        f"{stack[0]} (nor in {', '.join(map(str, stack[1:]))})"


def cmd_depot(args: argparse.Namespace) -> int:
    from .. import settings

    stack = depot.depot_stack()
    rows: List[Dict[str, Any]] = [
        {"path": str(d), "role": "first (installs and removals)" if i == 0 else "read-only",
         "exists": d.is_dir(), "artifacts": len(depot.installed_hashes(d))}
        for i, d in enumerate(stack)]
    origin = (f"${settings.DEPOT_PATH}" if settings.depot_path() else "the default")
    if args.json:
        print_json({"from": origin, "depots": rows})
        return 0
    print(f"# depot stack (from {origin})")
    for r in rows:
        print(f"{r['path']}  {r['role']}, {r['artifacts']} artifact(s)"
              + ("" if r["exists"] else ", not created yet"))
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from ..gc import collect_garbage, parse_size

    report = collect_garbage(dry_run=args.dry_run,
                             max_size=parse_size(args.max_size) if args.max_size else None)
    if args.json:
        print_json(report.as_dict())
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for r in report.removed:
        print(f"{verb} {r['hash']}  {human(r['size'])}")
    for t in report.temp_removed:
        print(f"{verb} leftover {t}")
    if report.client_cache_bytes:
        print(f"{verb} the registry clients' and parsed-TOML caches "
              f"({human(report.client_cache_bytes)})")
    print(f"{verb} {len(report.removed)} artifact(s), {human(report.freed_bytes)}; "
          f"kept {len(report.kept)}")
    return 0


def register(c: Commands) -> None:
    """Add this module's commands to the table."""
    sp = c.add("verify", "re-hash installed artifacts against their git-tree-sha1", """\
  artifacts verify
  artifacts verify --repair        # re-install what is corrupt or missing""",
               cmd_verify, json_out=True)
    sp.add_argument("names", nargs="*", metavar="NAME", help="artifacts to verify (default: "
                    "every one in the Artifacts.toml)")
    sp.add_argument("--all", action="store_true", help="every artifact in the depot stack")
    sp.add_argument("--repair", action="store_true", help="re-install what is corrupt or "
                    "missing (with --all: remove corrupt trees from the first depot)")
    quiet_option(sp)

    sp = c.add("rm", "remove installed artifacts from the first depot (shared depots are "
               "never touched)", """\
  artifacts rm Counts
  artifacts rm 83f7a2c5e0d4b1a9f6e3c2d1b0a9f8e7d6c5b4a3 --json""", cmd_rm, json_out=True)
    sp.add_argument("targets", nargs="+", metavar="HASH|NAME",
                    help="a tree hash, or a name in the Artifacts.toml")

    c.add("ls", "list what the depots hold", """\
  artifacts ls
  artifacts ls --json""", cmd_ls, json_out=True, toml=False)

    c.add("depot", "print the depot stack: the first is written, the others are read-only",
          """\
  artifacts depot
  ARTIFACTS_PY_DEPOT_PATH=~/depot:/shared/depot artifacts depot --json""",
          cmd_depot, json_out=True, toml=False)

    sp = c.add("gc", "remove artifacts that no recorded Artifacts.toml uses", """\
  artifacts gc --dry-run
  artifacts gc --max-size 50G""", cmd_gc, json_out=True, toml=False)
    sp.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    sp.add_argument("--max-size", metavar="SIZE",
                    help="then evict the oldest until the depot fits (e.g. 50G)")
