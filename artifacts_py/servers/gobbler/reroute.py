"""The ``reroute_links`` action (§3.5.13, §6.12): keep links working when versions go away.

Plans, for every surviving version, the link entries that point into the
versions about to be deleted, and either re-points them along their link
chain or replaces them by real copies.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Dict, List, Optional, Set, Tuple

from artifacts_py.servers.gobbler.access import load_manifest
from artifacts_py.servers.gobbler.auth import require_admin
from artifacts_py.servers.gobbler.config import Config
from artifacts_py.servers.gobbler.registry import (
    ActionError, add_usage, check_name, dir_lock, subdirectories,
)
from artifacts_py.servers.gobbler.reindex import existing_links, rewrite_metadata
from artifacts_py.servers.gobbler.request import Request, optional_bool
from artifacts_py.servers.gobbler.shapes import Manifest, ManifestEntry, RerouteChange
from artifacts_py.servers.gobbler.walker import link_from_path, link_path, place_symlink


class _Reroute:
    """Plans and applies ``reroute_links`` (§6.12) under the exclusive registry lock."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._manifests: Dict[str, Manifest] = {}

    def manifest(self, key: str) -> Manifest:
        if key not in self._manifests:
            self._manifests[key] = load_manifest(os.path.join(self.cfg.registry, key))
        return self._manifests[key]

    def entry(self, path: str) -> Optional[ManifestEntry]:
        parts = path.split("/", 3)
        if len(parts) < 4:
            return None
        return self.manifest("/".join(parts[:3])).get(parts[3])

    def listing(self, *parts: str) -> List[str]:
        path = os.path.join(self.cfg.registry, *parts)
        try:
            return subdirectories(path)
        except OSError as exc:
            raise ActionError(500, f"failed to list the directory {path!r}; {exc}") from exc

    def versions(self, project: str, asset: Optional[str] = None) -> List[str]:
        assets = [asset] if asset is not None else self.listing(project)
        return [f"{project}/{a}/{v}" for a in assets for v in self.listing(project, a)]

    def chain(self, start: str) -> List[str]:
        """``start`` and every hop its ``link`` fields lead to, until a real file."""
        hops = [start]
        while True:
            entry = self.entry(hops[-1])
            if not entry or not entry.get("link"):
                return hops
            nxt = link_path(entry["link"])
            if nxt in hops:
                return hops
            hops.append(nxt)

    def plan(self, doomed: Set[str]) -> Tuple[List[RerouteChange], Dict[str, Manifest]]:
        """The changes, and per surviving version the manifest entries to replace."""
        deleted = {f"{key}/{path}" for key in doomed for path in self.manifest(key)}
        changes: List[RerouteChange] = []
        updates: Dict[str, Manifest] = {}
        if not deleted:
            return changes, updates
        for project in self.listing():
            for key in self.versions(project):
                if key in doomed:
                    continue
                for path, entry in sorted(self.manifest(key).items()):
                    planned = self._plan_entry(f"{key}/{path}", entry, deleted)
                    if planned is not None:
                        changes.append(planned[0])
                        updates.setdefault(key, {})[path] = planned[1]
        return changes, updates

    def _plan_entry(self, full: str, entry: ManifestEntry,
                    deleted: Set[str]) -> Optional[Tuple[RerouteChange, ManifestEntry]]:
        link = entry.get("link")
        if not link:
            return None
        parent = link_path(link)
        ancestor = link_path(link["ancestor"]) if link.get("ancestor") else None
        copy: Tuple[RerouteChange, ManifestEntry] = (
            {"copy": True, "path": full, "source": parent, "usage": entry["size"]},
            {"size": entry["size"], "md5sum": entry["md5sum"]})
        if ancestor is None:
            return copy if parent in deleted else None
        if parent not in deleted and ancestor not in deleted:
            return None
        survivors = [hop for hop in self.chain(parent) if hop not in deleted]
        if parent in deleted and not survivors:
            return copy
        new_parent = survivors[0]
        new_ancestor: Optional[str] = ancestor
        if ancestor in deleted:
            new_ancestor = survivors[-1] if survivors else None
        if new_ancestor == new_parent:
            new_ancestor = None
        new_link = link_from_path(new_parent)
        if new_ancestor is not None:
            new_link["ancestor"] = link_from_path(new_ancestor)
        source = parent if parent in deleted else ancestor
        return ({"copy": False, "path": full, "source": source, "usage": 0},
                {"size": entry["size"], "md5sum": entry["md5sum"], "link": new_link})

    def apply(self, changes: List[RerouteChange], updates: Dict[str, Manifest]) -> None:
        registry = self.cfg.registry
        by_path = {c["path"]: c for c in changes}
        added: Dict[str, int] = {}
        for key in sorted(updates):
            version_dir = os.path.join(registry, key)
            manifest = dict(self.manifest(key))
            for path, new_entry in sorted(updates[key].items()):
                dest = os.path.join(version_dir, path)
                change = by_path[f"{key}/{path}"]
                if change["copy"]:
                    _copy_over(os.path.join(registry, change["source"]), dest)
                    project = key.split("/", 1)[0]
                    added[project] = added.get(project, 0) + int(change["usage"])
                else:
                    place_symlink(self.cfg, dest, new_entry["link"])
                manifest[path] = new_entry
            rewrite_metadata(version_dir, manifest, existing_links(version_dir))
        for project, delta in sorted(added.items()):
            if delta:
                add_usage(os.path.join(registry, project), delta)


def _copy_over(source: str, dest: str) -> None:
    """Replace the symlink ``dest`` by a real 0644 copy of ``source`` (links followed)."""
    temp = dest + ".reroute-tmp"
    shutil.copyfile(source, temp)
    os.chmod(temp, 0o644)
    os.replace(temp, dest)


def reroute_links(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``reroute_links`` (§3.5.13, §6.12): ``{"changes": [...]}``."""
    require_admin(cfg, req.user())
    body = req.body()
    scopes = body.get("to_delete")
    if scopes is None:
        raise ActionError(400, "expected a 'to_delete' property in the request details")
    if not isinstance(scopes, list):
        raise ActionError(400, "expected 'to_delete' to be an array")
    parsed: List[Tuple[str, Optional[str], Optional[str]]] = []
    for scope in scopes:
        if not isinstance(scope, dict):
            raise ActionError(400, "expected each entry of 'to_delete' to be a JSON object")
        project = check_name(scope, "project")
        asset = check_name(scope, "asset") if scope.get("asset") is not None else None
        version = None
        if scope.get("version") is not None:
            if asset is None:
                raise ActionError(400, "'version' in 'to_delete' requires 'asset'")
            version = check_name(scope, "version")
        parsed.append((project, asset, version))
    dry_run = optional_bool(body, "dry_run")

    with dir_lock(cfg.registry, True):
        rerouter = _Reroute(cfg)
        doomed: Set[str] = set()
        for project, asset, version in parsed:
            if version is not None:
                doomed.add(f"{project}/{asset}/{version}")
            else:
                doomed.update(rerouter.versions(project, asset))
        changes, updates = rerouter.plan(doomed)
        if not dry_run:
            rerouter.apply(changes, updates)
    return {"changes": changes}
