"""Re-walking a version in place: ``reindex_version``, ``validate_version`` (§6.11).

Both walk the version directory with :class:`VersionWalker`, reading the
parents of its symlinks from the ``..links`` files; reindex rewrites the
metadata from the walk, validate compares the two with Go's wording.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Dict, Optional, Tuple, cast

from artifacts_py.servers.gobbler.access import (
    enter_asset, latest_or_none, load_manifest, load_summary, read_or_500, require_version,
)
from artifacts_py.servers.gobbler.auth import require_admin
from artifacts_py.servers.gobbler.config import Config
from artifacts_py.servers.gobbler.registry import (
    ActionError, is_local_path, is_reserved, links_by_directory, parse_rfc3339, read_json,
    write_links, write_log, write_manifest,
)
from artifacts_py.servers.gobbler.request import Request, names
from artifacts_py.servers.gobbler.shapes import Link, LinkFile, Manifest, Summary
from artifacts_py.servers.gobbler.walker import VersionWalker


def existing_links(version_dir: str) -> Dict[str, Dict[str, Any]]:
    """Every ``..links`` file under a version: directory rel -> its parsed content."""
    found: Dict[str, Dict[str, Any]] = {}
    for dirpath, dirnames, filenames in os.walk(version_dir):
        dirnames[:] = [d for d in dirnames if not is_reserved(d)]
        if "..links" in filenames:
            rel = os.path.relpath(dirpath, version_dir)
            path = os.path.join(dirpath, "..links")
            content = read_or_500(read_json, path, repr(path))
            found["" if rel == "." else rel] = content if isinstance(content, dict) else {}
    return found


def _index_walk(cfg: Config, project: str, asset: str, version: str,
                version_dir: str) -> Tuple[VersionWalker, Dict[str, Dict[str, Any]]]:
    """Walk a version in the registry as reindex/validate do (§6.11)."""
    existing = existing_links(version_dir)
    # Malformed entries are caught when the walk compares symlinks with them.
    recorded = {f"{d}/{base}" if d else base: cast(Link, link)
                for d, links in existing.items() for base, link in links.items()
                if isinstance(link, dict)}
    walker = VersionWalker(cfg, project, asset, version, version_dir, ignore_dot=False,
                           recorded=recorded)
    walker.walk()
    walker.resolve_local_links()
    walker.add_empty_dirs()
    return walker, existing


def _admin_version_request(cfg: Config, req: Request) -> Tuple[str, str, str]:
    """Names first, then the admin check (reindex and validate, §3.5.11)."""
    project, asset, version = names(req.body(), "project", "asset", "version")
    require_admin(cfg, req.user())
    return project, asset, version


def reindex_version(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``reindex_version``: regenerate ``..manifest`` and ``..links`` (§6.11)."""
    project, asset, version = _admin_version_request(cfg, req)
    with enter_asset(cfg, project, asset) as asset_dir:
        version_dir = require_version(asset_dir, version)
        walker, existing = _index_walk(cfg, project, asset, version, version_dir)
        walker.place_links(version_dir, walker.link_rels())
        rewrite_metadata(version_dir, walker.manifest, existing)
        summary = load_summary(version_dir)
        if not summary.get("on_probation"):
            write_log(cfg.registry, {"type": "reindex-version", "project": project,
                                     "asset": asset, "version": version,
                                     "latest": latest_or_none(asset_dir) == version})
    return {}


def rewrite_metadata(version_dir: str, manifest: Manifest,
                     existing: Dict[str, Any]) -> None:
    """Write ``..manifest`` and the ``..links`` files; remove ``existing`` ones now unneeded."""
    write_manifest(version_dir, manifest)
    written = set(write_links(version_dir, manifest))
    for directory in existing:
        if directory not in written:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(version_dir, directory, "..links"))


def validate_version(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``validate_version``: check a version against its metadata (500 on mismatch)."""
    project, asset, version = _admin_version_request(cfg, req)
    with enter_asset(cfg, project, asset) as asset_dir:
        version_dir = require_version(asset_dir, version)
        walker, existing = _index_walk(cfg, project, asset, version, version_dir)
        _compare_manifests(load_manifest(version_dir), walker.manifest, version_dir)
        _compare_links(existing, links_by_directory(walker.manifest), version_dir)
        _check_symlink_targets(cfg, walker, version_dir)
        _check_summary(load_summary(version_dir), version_dir)
    return {}


def _invalid(reason: str) -> ActionError:
    """A 500 worded like the Go service's validation failures."""
    return ActionError(500, f"failed to validate project; {reason}")


def _q(text: str) -> str:
    """Quote like Go's ``%q``, so reasons read the same as the Go service's."""
    return json.dumps(text, ensure_ascii=False)


def _compare_manifests(stored: Dict[str, Any], actual: Manifest,
                       where: str) -> None:
    """Go's checks and wording: stored entries first, then extra files."""
    for path in sorted(stored):
        old = stored[path]
        new = actual.get(path)
        if new is None:
            raise _invalid(f"{_q(path)} listed in manifest cannot be found in directory "
                           f"{_q(where)}")
        if not isinstance(old, dict) or old.get("size") != new["size"]:
            raise _invalid(f"incorrect size in manifest for {_q(path)} in directory {_q(where)}")
        if old.get("md5sum") != new["md5sum"]:
            raise _invalid(f"incorrect MD5 checksum in manifest for {_q(path)} in directory "
                           f"{_q(where)}")
        problem = _link_problem(old.get("link"), new.get("link"))
        if problem:
            raise _invalid(f"mismatching link information for {_q(path)} in directory "
                           f"{_q(where)}; {problem}")
    for path in sorted(actual):
        if path not in stored:
            raise _invalid(f"extra file {_q(path)} is not present in manifest for directory "
                           f"{_q(where)}")


def _link_problem(observed: Any, expected: Any, what: str = "link") -> Optional[str]:
    """Go's ``compareLinks``: None when equal, else what differs."""
    if not expected:
        return f"unexpected {what} in manifest" if observed else None
    if not isinstance(observed, dict) or not observed:
        return f"expected {what} in manifest"
    for key in ("project", "asset", "version", "path"):
        if observed.get(key) != expected.get(key):
            return f"mismatching {what} {key} in manifest"
    if what == "link":
        return _link_problem(observed.get("ancestor"), expected.get("ancestor"), "link ancestor")
    return None


def _compare_links(existing: Dict[str, Any], expected: Dict[str, LinkFile],
                   where: str) -> None:
    for directory in sorted(expected):
        lpath = directory or "."
        if directory not in existing:
            raise _invalid(f"expected a linkfile at {_q(lpath)} in directory {_q(where)}")
        have, want = existing[directory], expected[directory]
        for base in sorted(want):
            if base not in have:
                raise _invalid(f"missing path {_q(base)} from linkfile {_q(lpath)} in "
                               f"directory {_q(where)}")
            problem = _link_problem(have[base], want[base])
            if problem:
                raise _invalid(f"mismatching link information for {_q(base)} in linkfile "
                               f"{_q(lpath)} in directory {_q(where)}; {problem}")
        for base in sorted(have):
            if base not in want:
                raise _invalid(f"extra path {_q(base)} in linkfile {_q(lpath)} in directory "
                               f"{_q(where)}")
    for directory in sorted(existing):
        if directory not in expected:
            raise _invalid(f"extra linkfile {_q(directory or '.')} in directory {_q(where)}")


def _check_symlink_targets(cfg: Config, walker: VersionWalker, version_dir: str) -> None:
    for rel in walker.link_rels():
        link = os.path.join(version_dir, rel)
        raw = os.readlink(link)
        if os.path.isabs(raw):
            raise ActionError(500, f"symbolic link {link!r} has an absolute target {raw!r}")
        target = os.path.normpath(os.path.join(os.path.dirname(link), raw))
        # A local link whose target is itself a link points at the ancestor, outside.
        local = rel in walker.local_links and not walker.manifest[rel]["link"].get("ancestor")
        inside = version_dir if local else cfg.registry
        if not is_local_path(target, inside):
            raise ActionError(500, f"symbolic link {link!r} points outside {inside!r}")


def _check_summary(summary: Summary, where: str) -> None:
    if not summary.get("upload_user_id"):
        raise ActionError(500, f"invalid 'upload_user_id' in the summary file at {_q(where)}")
    for key in ("upload_start", "upload_finish"):
        try:
            parse_rfc3339(summary.get(key))
        except ValueError as exc:
            raise ActionError(500, f"could not parse '{key}' from the summary file at "
                                   f"{_q(where)}; {exc}") from exc


