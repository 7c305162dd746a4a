"""Building a version's ``..manifest`` at upload start: file checks, dedup, links (§5.3-5.5)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Set, Tuple

from artifacts_py.servers.gypsum.documents import read_json
from artifacts_py.servers.gypsum.errors import GypsumError
from artifacts_py.servers.gypsum.names import check_names, check_path
from artifacts_py.servers.gypsum.store import Store

_HEX_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")
_LINK_FIELDS = ("project", "asset", "version", "path")


@dataclass
class Plan:
    """The files of a new version: those to upload and those that are links."""

    uploads: List[Dict[str, Any]] = field(default_factory=list)
    dedup: List[Dict[str, Any]] = field(default_factory=list)
    links: List[Tuple[str, Dict[str, Any]]] = field(default_factory=list)  # (path, link)


def check_files(files: Any, prefix: str) -> Plan:
    """Validate ``files`` in order, with the §5.3 reasons (always 400 here)."""
    if not isinstance(files, list):
        raise GypsumError(400, "expected the 'files' property to be an array")
    plan = Plan()
    seen: Set[str] = set()
    for entry in files:
        if not isinstance(entry, dict):
            raise GypsumError(400, "'files' should be an array of objects")
        path = entry.get("path")
        if not isinstance(path, str):
            raise GypsumError(400, "'files.path' should be a string")
        check_path(path, prefix)
        if path in seen:
            raise GypsumError(400, f"duplicated value '{path}' in 'files.path'")
        seen.add(path)
        kind = entry.get("type")
        if not isinstance(kind, str):
            raise GypsumError(400, "'files.type' should be a string")
        if kind in ("simple", "dedup"):
            (plan.uploads if kind == "simple" else plan.dedup).append(_content(entry, path))
        elif kind == "link":
            link = entry.get("link")
            if not isinstance(link, dict):
                raise GypsumError(400, "'files.link' should be an object")
            for name in _LINK_FIELDS:
                if not isinstance(link.get(name), str):
                    raise GypsumError(400, f"'files.link.{name}' should be a string")
            check_names(link["project"], link["asset"], link["version"])
            plan.links.append((path, dict(link)))
        else:
            raise GypsumError(400, "invalid 'files.type'")
    return plan


def _content(entry: Dict[str, Any], path: str) -> Dict[str, Any]:
    md5 = entry.get("md5sum")
    if not isinstance(md5, str):
        raise GypsumError(400, "'files.md5sum' should be a string")
    if not _HEX_MD5.match(md5):  # the worker crashes or mis-signs on these (§9.1.5)
        raise GypsumError(400, "'files.md5sum' should be a 32-digit hexadecimal MD5")
    size = entry.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise GypsumError(400, "'files.size' should be a non-negative integer")
    return {"path": path, "size": size, "md5sum": md5.lower()}


def deduplicate(store: Store, project: str, asset: str, plan: Plan) -> List[Tuple[str, Dict[str, Any]]]:
    """Turn dedup entries matching the asset's latest version into links (§5.4).

    Unmatched entries join ``plan.uploads``; returns the new links.
    """
    if not plan.dedup:
        return []
    latest = read_json(store, f"{project}/{asset}/..latest")
    version = latest.get("version") if isinstance(latest, dict) else None
    if not isinstance(version, str):
        plan.uploads.extend(plan.dedup)
        return []
    manifest = read_json(store, f"{project}/{asset}/{version}/..manifest")
    if not isinstance(manifest, dict):
        raise GypsumError(400, "no manifest available for link target inside "
                               f"'{project}/{asset}/{version}'")
    index = {f"{e.get('md5sum')}_{e.get('size')}": p for p, e in manifest.items()
             if isinstance(e, dict)}
    links = []
    for entry in plan.dedup:
        match = index.get(f"{entry['md5sum']}_{entry['size']}")
        if match is None:
            plan.uploads.append(entry)
        else:
            links.append((entry["path"], {"project": project, "asset": asset,
                                          "version": version, "path": match}))
    return links


def resolve_links(store: Store, here: Tuple[str, str, str],
                  links: List[Tuple[str, Dict[str, Any]]]) -> Dict[str, Dict[str, Any]]:
    """Manifest entries of the links, grouped by target version (§5.5)."""
    groups: Dict[Tuple[str, str, str], List[Tuple[str, Dict[str, Any]]]] = {}
    for path, link in links:
        groups.setdefault((link["project"], link["asset"], link["version"]), []).append(
            (path, link))
    entries: Dict[str, Dict[str, Any]] = {}
    for target, members in groups.items():
        manifest = _target_manifest(store, here, target, members[0])
        for path, link in members:
            found = manifest.get(link["path"])
            if not isinstance(found, dict):
                raise GypsumError(400, f"failed to link from '{path}' to "
                                       f"'{'/'.join(target)}/{link['path']}'")
            final = dict(link)
            inner = found.get("link")
            if isinstance(inner, dict):
                final["ancestor"] = inner.get("ancestor", inner)
            entries[path] = {"size": found.get("size"), "md5sum": found.get("md5sum"),
                             "link": final}
    return entries


def _target_manifest(store: Store, here: Tuple[str, str, str], target: Tuple[str, str, str],
                     first: Tuple[str, Dict[str, Any]]) -> Dict[str, Any]:
    path, link = first
    where = f"'{path}' to '{'/'.join(target)}/{link['path']}'"
    if target == here:
        raise GypsumError(400, f"detected circular link from {where}")
    summary = read_json(store, "/".join(target) + "/..summary")
    if not isinstance(summary, dict):
        raise GypsumError(400, f"cannot find version summary for link from {where}")
    if summary.get("on_probation") is True:
        raise GypsumError(400, f"cannot refer to probational version for link from {where}")
    if "upload_finish" not in summary:
        raise GypsumError(400, f"cannot refer to incomplete upload for link from {where}")
    manifest = read_json(store, "/".join(target) + "/..manifest")
    if not isinstance(manifest, dict):
        raise GypsumError(400, "no manifest available for link target inside "
                               f"'{'/'.join(target)}'")
    return manifest
