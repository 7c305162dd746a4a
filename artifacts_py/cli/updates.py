"""``artifacts outdated`` and ``artifacts update``: keeping Gobbler and gypsum pins current."""

from __future__ import annotations

import argparse

from .common import Commands, print_json, progress, toml_path


def cmd_outdated(args: argparse.Namespace) -> int:
    from ..updates import pins

    toml = toml_path(args)
    every = pins(toml)
    behind = [p for p in every if p.outdated]
    if args.json:
        print_json([p.as_dict() for p in behind])
        return 0
    for p in behind:
        print(f"{p.name:<20} {p.backend:<8} {p.pinned} -> {p.latest}")
    for p in every:
        if p.error:
            print(f"{p.name:<20} {p.backend:<8} cannot tell: {p.error}")
        elif p.backend == "tarball":
            print(f"{p.name:<20} tarball  (not updatable: tarball mirrors have no latest)")
    if not behind:
        print(f"every Gobbler and gypsum pin in {toml} is at its asset's latest version")
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    from ..updates import update

    toml = toml_path(args)
    done = update(toml, args.names, dry_run=args.dry_run, progress=progress(args))
    if args.json:
        print_json([u._asdict() for u in done])
        return 0
    verb = "would update" if args.dry_run else "updated"
    for u in done:
        tree = f" ({u.old_tree[:12]} -> {u.new_tree[:12]})" if u.new_tree else ""
        note = "; its [[download]] mirrors were dropped (they hold the old tree)" \
            if u.dropped_mirrors and not args.dry_run else ""
        print(f"{verb} {u.name}: {u.backend} {u.old_version} -> {u.new_version}{tree}{note}")
    if not done:
        print(f"nothing to update in {toml}")
    return 0


def register(c: Commands) -> None:
    """Add this module's commands to the table."""
    c.add("outdated", "list Gobbler and gypsum pins whose asset has a newer latest version",
          """\
  artifacts outdated
  artifacts outdated --json""", cmd_outdated, json_out=True)
    sp = c.add("update", "re-pin outdated Gobbler and gypsum entries to their latest version "
               "(installs them, rewrites the entries in place)", """\
  artifacts update --dry-run
  artifacts update Counts Brain""", cmd_update, json_out=True)
    sp.add_argument("names", nargs="*", help="the entries to update (default: every outdated one)")
    sp.add_argument("--dry-run", action="store_true", help="only say what would change")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
