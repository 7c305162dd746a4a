"""Link entries and the walk that turns a directory tree into a manifest (§6.3-6.8, §6.11).

:class:`VersionWalker` serves uploads (walking the source) as well as
reindex and validate (walking a version already in the registry).
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import Callable, Dict, List, Optional, Set, Tuple

from artifacts_py.servers.gobbler.access import load_manifest, load_summary
from artifacts_py.servers.gobbler.config import Config
from artifacts_py.servers.gobbler.registry import (
    NOFOLLOW_DIR, NOFOLLOW_FILE, ActionError, is_local_path, is_reserved, link_target, md5_fd,
    md5_file,
)
from artifacts_py.servers.gobbler.request import never, stop_if_cancelled
from artifacts_py.servers.gobbler.shapes import Link, LinkTarget, Manifest, ManifestEntry, Summary

# "size-md5" -> (latest version, path, entry) of the files an upload may link to (§6.5).
DedupIndex = Dict[str, Tuple[str, str, ManifestEntry]]


def link_object(project: str, asset: str, version: str, path: str) -> Link:
    """A ``link`` object (§2.3.8) naming ``path`` inside a version."""
    return {"project": project, "asset": asset, "version": version, "path": path}


def link_path(link: LinkTarget) -> str:
    """``P/A/V/path`` of a link object."""
    return "/".join((link["project"], link["asset"], link["version"], link["path"]))


def link_from_path(path: str) -> Link:
    """The link object of ``P/A/V/path`` (the inverse of :func:`link_path`)."""
    project, asset, version, rest = path.split("/", 3)
    return link_object(project, asset, version, rest)


def link_to(target: ManifestEntry, immediate: Link) -> Link:
    """The ``link`` of an entry whose immediate target is the entry ``target`` (§6.4)."""
    link = immediate.copy()
    target_link = target.get("link")
    if target_link:
        link["ancestor"] = link_target(target_link.get("ancestor") or target_link)
    return link


def linked_entry(target: ManifestEntry, immediate: Link) -> ManifestEntry:
    """A manifest entry with ``target``'s size and MD5 that links to it through ``immediate``."""
    return {"size": target["size"], "md5sum": target["md5sum"],
            "link": link_to(target, immediate)}


def final_target(link: Link) -> LinkTarget:
    """Where the on-disk symlink of a link entry points: ancestor, else link."""
    return link.get("ancestor") or link


def place_symlink(cfg: Config, dest: str, link: Link) -> None:
    """Create (replacing) a relative symlink at ``dest`` towards the link's final target."""
    target = os.path.join(cfg.registry, link_path(final_target(link)))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(dest)
    os.symlink(os.path.relpath(target, os.path.dirname(dest)), dest)


class VersionWalker:
    """Classifies the content of a directory tree into a manifest (§6.3, §6.11).

    Used for uploads (``root`` is the source, ``ignore_dot`` as requested,
    deduplication against ``dedup``) and for reindex/validate (``root`` is the
    version directory itself, ``recorded`` holds the parent links of ``..links``).
    """

    def __init__(self, cfg: Config, project: str, asset: str, version: str, root: str,
                 ignore_dot: bool, dedup: Optional[DedupIndex] = None,
                 recorded: Optional[Dict[str, Link]] = None,
                 cancelled: Callable[[], bool] = never) -> None:
        self.cfg, self.project, self.asset, self.version = cfg, project, asset, version
        self.cancelled = cancelled
        self.root, self.ignore_dot = root, ignore_dot
        self.dedup, self.recorded = dedup, recorded or {}
        self.manifest: Manifest = {}
        self.dirs: List[str] = []
        self.copies: List[Tuple[str, str]] = []       # (rel, md5) to copy into place
        self.local_links: Dict[str, str] = {}          # rel -> target rel
        self.registry_links: Set[str] = set()          # rels whose link points into the registry
        self.whitelisted: Dict[str, str] = {}          # rel -> absolute target
        self._versions: Dict[str, Tuple[Summary, Manifest]] = {}

    def skip(self, name: str) -> bool:
        """Whether the walk leaves out an entry called ``name``."""
        return is_reserved(name) or (self.ignore_dot and name.startswith("."))

    def walk(self, root_fd: Optional[int] = None) -> None:
        """First pass: classify every entry under ``root`` in lexical order.

        Everything is opened relative to directory descriptors without
        following symlinks, so a user swapping parts of the tree cannot make
        the service read outside it. ``root_fd`` is an open descriptor of
        ``root`` (opened here when None).
        """
        if self.skip(os.path.basename(self.root)):
            return
        fd = os.open(self.root, NOFOLLOW_DIR) if root_fd is None else os.dup(root_fd)
        try:
            self._walk_dir(fd, "")
        finally:
            os.close(fd)

    def _walk_dir(self, fd: int, rel: str) -> None:
        try:
            with os.scandir(fd) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise ActionError(500, f"failed to list {os.path.join(self.root, rel)!r}; {exc}") from exc
        for entry in entries:
            stop_if_cancelled(self.cancelled)
            if self.skip(entry.name):
                continue
            child = f"{rel}/{entry.name}" if rel else entry.name
            try:
                if entry.is_symlink():
                    self._symlink(os.readlink(entry.name, dir_fd=fd), child)
                elif entry.is_dir(follow_symlinks=False):
                    self.dirs.append(child)
                    child_fd = os.open(entry.name, NOFOLLOW_DIR, dir_fd=fd)
                    try:
                        self._walk_dir(child_fd, child)
                    finally:
                        os.close(child_fd)
                elif entry.is_file(follow_symlinks=False):
                    self._file(os.open(entry.name, NOFOLLOW_FILE, dir_fd=fd), child)
                else:
                    raise ActionError(500, f"{child!r} is not a regular file, directory or symlink")
            except OSError as exc:
                raise ActionError(500, f"failed to read {os.path.join(self.root, child)!r}; "
                                       f"{exc}") from exc

    def _file(self, fd: int, rel: str) -> None:
        """Hash a regular file (``fd`` is consumed) and dedup or queue it for copying."""
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ActionError(500, f"{rel!r} changed while it was being read")
            size, md5 = info.st_size, md5_fd(fd)
        finally:
            os.close(fd)
        if self.dedup is not None:
            match = self.dedup.get(f"{size}-{md5}")
            if match is not None:
                latest, target_path, target = match
                immediate = link_object(self.project, self.asset, latest, target_path)
                self.manifest[rel] = {"size": size, "md5sum": md5,
                                      "link": link_to(target, immediate)}
                self.registry_links.add(rel)
                return
        self.manifest[rel] = {"size": size, "md5sum": md5}
        self.copies.append((rel, md5))

    def _symlink(self, raw: str, rel: str) -> None:
        """Classify a symlink whose text is ``raw`` (local, registry, whitelisted)."""
        here = os.path.dirname(os.path.join(self.root, rel))
        target = os.path.normpath(os.path.join(here, raw))
        recorded = self.recorded.get(rel)
        if recorded is not None:
            parent = os.path.join(self.cfg.registry, link_path(recorded))
            ancestor = recorded.get("ancestor")
            if ancestor and target == os.path.join(self.cfg.registry, link_path(ancestor)):
                target = parent
            elif target != parent:
                raise ActionError(500, f"symbolic link {rel!r} points to {target!r}, which is "
                                       "neither its recorded parent nor ancestor in '..links'")
        try:
            info = os.stat(target)
        except OSError as exc:
            raise ActionError(500, f"failed to stat the target {target!r} of symbolic link "
                                   f"{rel!r}; {exc}") from exc
        if stat.S_ISDIR(info.st_mode):
            raise ActionError(500, f"target of link {rel!r} is a directory")
        if is_local_path(target, self.root) and target != self.root:
            self.local_links[rel] = os.path.relpath(target, self.root)
        elif is_local_path(target, self.cfg.registry):
            self._registry_link(rel, os.path.relpath(target, self.cfg.registry))
        elif any(is_local_path(target, w) for w in self.cfg.whitelist):
            if not stat.S_ISREG(info.st_mode):
                raise ActionError(500, f"target {target!r} of link {rel!r} is not a regular file")
            try:
                md5 = md5_file(target)
            except OSError as exc:
                raise ActionError(500, f"failed to read {target!r}; {exc}") from exc
            self.manifest[rel] = {"size": info.st_size, "md5sum": md5}
            self.whitelisted[rel] = target
        else:
            raise ActionError(500, f'symbolic link "{rel}" to file "{target}" outside the '
                                   "registry directory is not allowed")

    def _target_version(self, project: str, asset: str, version: str) -> Tuple[Summary, Manifest]:
        key = f"{project}/{asset}/{version}"
        if key not in self._versions:
            version_dir = os.path.join(self.cfg.registry, project, asset, version)
            self._versions[key] = (load_summary(version_dir), load_manifest(version_dir))
        return self._versions[key]

    def _registry_link(self, rel: str, reg_rel: str) -> None:
        parts = reg_rel.split("/")
        if len(parts) <= 3:
            raise ActionError(500, f"unexpected link to file outside of a project asset version "
                                   f"directory ({rel!r} -> {reg_rel!r})")
        if any(is_reserved(p) for p in parts):
            raise ActionError(500, f"symbolic link {rel!r} cannot point to a '..' file ({reg_rel!r})")
        project, asset, version = parts[:3]
        inner = "/".join(parts[3:])
        if (project, asset, version) == (self.project, self.asset, self.version):
            raise ActionError(500, f"symbolic link {rel!r} cannot point to the version being "
                                   f"indexed through the registry path ({reg_rel!r})")
        summary, manifest = self._target_version(project, asset, version)
        if summary.get("on_probation"):
            raise ActionError(500, "cannot link to file inside a probational project version "
                                   f"asset directory ({rel!r} -> {reg_rel!r})")
        target = manifest.get(inner)
        if target is None:
            raise ActionError(500, f"could not find {inner!r} in the manifest of "
                                   f"{project}/{asset}/{version} (linked from {rel!r})")
        self.manifest[rel] = linked_entry(target, link_object(project, asset, version, inner))
        self.registry_links.add(rel)

    def resolve_local_links(self) -> None:
        """Third pass: turn local links into link entries of this version (§6.7)."""
        for rel in sorted(self.local_links):
            self._resolve_local(rel, set())

    def _resolve_local(self, rel: str, visiting: Set[str]) -> ManifestEntry:
        if rel in self.manifest:
            return self.manifest[rel]
        target = self.local_links[rel]
        if target not in self.manifest:
            if target in self.local_links:
                if target in visiting:
                    raise ActionError(500, f"cyclic symbolic links detected at {rel!r}")
                self._resolve_local(target, visiting | {rel})
            else:
                raise ActionError(500, f'symlink at "{rel}" should point to a file in the '
                                       "manifest or another symlink")
        self.manifest[rel] = linked_entry(
            self.manifest[target], link_object(self.project, self.asset, self.version, target))
        return self.manifest[rel]

    def add_empty_dirs(self) -> None:
        """Record leaf directories with nothing beneath them (§6.8)."""
        occupied: Set[str] = set()
        for path in list(self.manifest) + self.dirs:
            parent = path.rpartition("/")[0]
            while parent:
                if parent in occupied:
                    break
                occupied.add(parent)
                parent = parent.rpartition("/")[0]
        for directory in self.dirs:
            if directory not in occupied and directory not in self.manifest:
                self.manifest[directory] = {"size": 0, "md5sum": ""}

    def link_rels(self) -> List[str]:
        """Entries whose on-disk symlinks point into the registry (local or registry links)."""
        return sorted(set(self.local_links) | self.registry_links)

    def place_links(self, version_dir: str, rels: List[str]) -> None:
        """Create the on-disk symlinks of the link entries ``rels`` under ``version_dir``."""
        for rel in rels:
            place_symlink(self.cfg, os.path.join(version_dir, rel), self.manifest[rel]["link"])

