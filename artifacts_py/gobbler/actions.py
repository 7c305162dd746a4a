"""The Gobbler actions (``gobbler-protocol.md`` §3.5, §5, §6), independent of HTTP.

Each action is a function ``action(cfg, req) -> dict``: it raises
:class:`ActionError` with the HTTP status and reason on failure, and returns
the extra JSON fields of the success response (``{}`` for most actions).
``req`` is a :class:`Request`, which reads the request file's JSON and its
owner lazily so each action can keep Go's order of checks.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import stat
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

from artifacts_py.gobbler.registry import (
    LOCK_USAGE_NAME, NOFOLLOW_DIR, NOFOLLOW_FILE, ActionError, acquire_lock, add_usage,
    asset_usage, check_name, dir_lock, is_local_path, is_reserved, links_by_directory, lock,
    make_summary, manifest_usage, md5_fd, md5_file, newdir_lock, now_rfc3339, open_beneath,
    ordered_permissions, ordered_uploader, parse_rfc3339, project_usage, read_json,
    read_latest, read_manifest, read_permissions, read_summary, release_lock, subdirectories,
    version_usage, write_json, write_latest, write_links, write_log, write_manifest,
    write_usage,
)

MAX_REQUEST_BYTES = 1 << 20
DAY = 86400.0


# ---------------------------------------------------------------- configuration


@dataclass
class SpoofRule:
    """Whom one spoofer may act as (§5.2)."""

    everyone: bool = False
    allowed: Set[str] = field(default_factory=set)
    excluded: Set[str] = field(default_factory=set)

    def permits(self, user: str) -> bool:
        if self.everyone:
            return user not in self.excluded
        return user in self.allowed


@dataclass
class Config:
    """Everything the actions need to know about this server instance."""

    registry: str
    staging: str
    admins: List[str] = field(default_factory=list)
    spoof: Dict[str, SpoofRule] = field(default_factory=dict)
    whitelist: List[str] = field(default_factory=list)
    probation_days: int = -1
    concurrency: int = 100

    def __post_init__(self) -> None:
        # Absolute internally so link classification does not depend on the cwd.
        self.registry = os.path.abspath(self.registry)
        self.staging = os.path.abspath(self.staging)
        self.whitelist = [os.path.normpath(w) for w in self.whitelist]


def parse_spoof_rules(text: str, where: str = "spoof file") -> Dict[str, SpoofRule]:
    """Parse ``spoofer:user1,user2`` lines; blank lines are ignored.

    Raises ValueError for a line that does not split into exactly two fields.
    """
    rules: Dict[str, SpoofRule] = {}
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip() == "":
            continue
        fields = line.split(":")
        if len(fields) != 2:
            raise ValueError(f"{where}, line {number}: expected 'spoofer:user1,user2', got {line!r}")
        spoofer, users = fields
        if users == "":
            continue
        rule = SpoofRule()
        for user in users.split(","):
            if user == "*":
                rule.everyone = True
            elif user.startswith("-"):
                rule.excluded.add(user[1:])
            else:
                rule.allowed.add(user)
        rules[spoofer] = rule
    return rules


def parse_whitelist(text: str, where: str = "whitelist file") -> List[str]:
    """Parse one absolute directory per line; blank lines are ignored.

    Raises ValueError for a relative line, as the Go service refuses to start.
    """
    out = []
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip() == "":
            continue
        if not os.path.isabs(line):
            raise ValueError(f"{where}, line {number}: {line!r} is not an absolute path")
        out.append(os.path.normpath(line))
    return out


# ---------------------------------------------------------------- requests


def user_name(uid: int, what: str) -> str:
    """Map a UID to a user name through NSS; 403 when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        raise ActionError(403, f"cannot find a user name for UID {uid}, the owner of {what}; "
                               "ask the administrator to add it to the user database") from None


class Request:
    """A request file in the staging directory, read lazily."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._body: Optional[Dict[str, Any]] = None
        self._user: Optional[str] = None

    def user(self) -> str:
        """The name of the request file's owner (§5.1)."""
        if self._user is None:
            try:
                uid = os.stat(self.path).st_uid
            except OSError as exc:
                raise ActionError(400, f"failed to stat request file {self.path!r}; {exc}") from exc
            self._user = user_name(uid, f"request file {self.path!r}")
        return self._user

    def body(self) -> Dict[str, Any]:
        """The parsed JSON object of the request file; 400 when it is not one."""
        if self._body is None:
            try:
                # No symlink swapped in after the checks, and never block on a FIFO.
                fd = os.open(self.path, NOFOLLOW_FILE)
                with os.fdopen(fd, "rb") as handle:
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        raise ActionError(400, f"request file {self.path!r} is not a regular file")
                    raw = handle.read(MAX_REQUEST_BYTES + 1)
            except OSError as exc:
                raise ActionError(400, f"failed to read request file {self.path!r}; {exc}") from exc
            if len(raw) > MAX_REQUEST_BYTES:
                raise ActionError(400, f"request file {self.path!r} is larger than "
                                       f"{MAX_REQUEST_BYTES} bytes")
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise ActionError(400, f"failed to parse JSON from {self.path!r}; {exc}") from exc
            if not isinstance(body, dict):
                raise ActionError(400, f"expected a JSON object in {self.path!r}")
            self._body = body
        return self._body


def optional_bool(body: Dict[str, Any], key: str) -> bool:
    """``body[key]`` as a bool, False when absent or null; 400 for other types."""
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ActionError(400, f"expected '{key}' to be a boolean")
    return value


def spoofed_identity(cfg: Config, real: str, body: Dict[str, Any]) -> str:
    """The identity to use: ``body["spoof"]`` when ``real`` may act as them (§5.2)."""
    target = body.get("spoof")
    if target is None:
        return real
    if not isinstance(target, str):
        raise ActionError(400, "expected 'spoof' to be a string")
    if target == real:
        return real
    rule = cfg.spoof.get(real)
    if rule is None or not rule.permits(target):
        raise ActionError(403, f'user "{real}" is not authorized to spoof "{target}"')
    return target


# ---------------------------------------------------------------- permissions


def is_admin(cfg: Config, user: str) -> bool:
    return user in cfg.admins


def require_admin(cfg: Config, user: str) -> None:
    if not is_admin(cfg, user):
        raise ActionError(403, f'user "{user}" is not an administrator')


def is_owner(perms: Dict[str, Any], user: str) -> bool:
    return user in (perms.get("owners") or [])


def validate_permissions(perms: Any, *, asset_level: bool) -> Dict[str, Any]:
    """Check the types of a ``permissions`` request object; 400 when wrong.

    Returns a dict with only the fields that were given (non-null).
    """
    if not isinstance(perms, dict):
        raise ActionError(400, "expected 'permissions' to be a JSON object")
    out: Dict[str, Any] = {}
    owners = perms.get("owners")
    if owners is not None:
        if not isinstance(owners, list) or not all(isinstance(o, str) for o in owners):
            raise ActionError(400, "expected 'owners' to be an array of strings")
        out["owners"] = list(owners)
    uploaders = perms.get("uploaders")
    if uploaders is not None:
        if not isinstance(uploaders, list):
            raise ActionError(400, "expected 'uploaders' to be an array")
        checked = []
        for entry in uploaders:
            checked.append(validate_uploader(entry, asset_level=asset_level))
        out["uploaders"] = checked
    global_write = perms.get("global_write")
    if global_write is not None and not asset_level:
        if not isinstance(global_write, bool):
            raise ActionError(400, "expected 'global_write' to be a boolean")
        out["global_write"] = global_write
    return out


def validate_uploader(entry: Any, *, asset_level: bool) -> Dict[str, Any]:
    """One ``uploaders`` entry: ``id`` required, ``until`` RFC 3339; 400 otherwise."""
    if not isinstance(entry, dict):
        raise ActionError(400, "expected each entry of 'uploaders' to be a JSON object")
    if not isinstance(entry.get("id"), str):
        raise ActionError(400, "expected an 'id' string property in each entry of 'uploaders'")
    for key in ("asset", "version", "until"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise ActionError(400, f"expected '{key}' in 'uploaders' to be a string")
    if entry.get("trusted") is not None and not isinstance(entry["trusted"], bool):
        raise ActionError(400, "expected 'trusted' in 'uploaders' to be a boolean")
    if entry.get("until") is not None:
        try:
            parse_rfc3339(entry["until"])
        except ValueError:
            raise ActionError(400, f"invalid 'until' {entry['until']!r} in 'uploaders'; "
                                   "expected an RFC 3339 time such as 2026-01-01T00:00:00Z") from None
    clean = dict(entry)
    if asset_level:
        clean.pop("asset", None)
    return ordered_uploader(clean)


def merge_asset_permissions(project: Dict[str, Any], asset_perms: Dict[str, Any],
                            asset: str) -> Dict[str, Any]:
    """Project permissions plus asset owners and asset uploaders (bound to ``asset``)."""
    merged = dict(project)
    merged["owners"] = list(project.get("owners") or []) + list(asset_perms.get("owners") or [])
    extra = [dict(u, asset=asset) for u in asset_perms.get("uploaders") or []]
    merged["uploaders"] = list(project.get("uploaders") or []) + extra
    return merged


def upload_trust(cfg: Config, perms: Dict[str, Any], user: str, asset: str,
                 version: str) -> Optional[bool]:
    """None if ``user`` may not upload here, else whether they are trusted (§5.3)."""
    if is_admin(cfg, user) or is_owner(perms, user):
        return True
    now = datetime.now(timezone.utc)
    for entry in perms.get("uploaders") or []:
        if not isinstance(entry, dict) or entry.get("id") != user:
            continue
        if entry.get("asset") is not None and entry["asset"] != asset:
            continue
        if entry.get("version") is not None and entry["version"] != version:
            continue
        if entry.get("until") is not None:
            try:
                if parse_rfc3339(entry["until"]) <= now:
                    continue
            except ValueError:
                continue
        return bool(entry.get("trusted"))
    return None


def load_permissions(path: str) -> Dict[str, Any]:
    """Read a permissions file, turning failures into 500s that name the file."""
    try:
        return read_permissions(path)
    except (OSError, ValueError) as exc:
        raise ActionError(500, f"failed to read permissions from {path!r}; {exc}") from exc


# ---------------------------------------------------------------- lock helpers


@contextlib.contextmanager
def enter_project(cfg: Config, project: str, exclusive: bool = False,
                  missing_ok: bool = False) -> Iterator[Optional[str]]:
    """Shared registry lock, check the project exists, then lock the project.

    Yields the project directory, or None when it is missing and
    ``missing_ok`` (otherwise 404).
    """
    with dir_lock(cfg.registry, False):
        project_dir = os.path.join(cfg.registry, project)
        with newdir_lock(cfg.registry, False):
            exists = os.path.isdir(project_dir)
        if not exists:
            if not missing_ok:
                raise ActionError(404, f'project "{project}" does not exist')
            yield None
            return
        with dir_lock(project_dir, exclusive):
            yield project_dir


@contextlib.contextmanager
def enter_asset(cfg: Config, project: str, asset: str,
                before: Optional[Callable[[str], None]] = None,
                missing_ok: bool = False) -> Iterator[Optional[str]]:
    """Lock down to an existing asset exclusively (404, or None with ``missing_ok``).

    ``before(project_dir)`` runs under the project lock before the asset
    check, for actions whose authorisation comes before the 404 on the asset.
    """
    with enter_project(cfg, project, missing_ok=missing_ok) as project_dir:
        if project_dir is None:
            yield None
            return
        asset_dir = os.path.join(project_dir, asset)
        with newdir_lock(project_dir, False):
            if before is not None:
                before(project_dir)
            exists = os.path.isdir(asset_dir)
        if not exists:
            if not missing_ok:
                raise ActionError(404, f'asset "{asset}" does not exist in project "{project}"')
            yield None
            return
        with dir_lock(asset_dir, True):
            yield asset_dir


def require_version(asset_dir: str, version: str) -> str:
    version_dir = os.path.join(asset_dir, version)
    if not os.path.isdir(version_dir):
        raise ActionError(404, f'version "{version}" does not exist in {asset_dir!r}')
    return version_dir


def names(body: Dict[str, Any], *fields: str) -> List[str]:
    """Validate the named fields of ``body`` as names (400)."""
    return [check_name(body, f) for f in fields]


def load_summary(version_dir: str) -> Dict[str, Any]:
    path = os.path.join(version_dir, "..summary")
    try:
        return read_summary(path)
    except (OSError, ValueError) as exc:
        raise ActionError(500, f"failed to read the summary {path!r}; {exc}") from exc


def load_manifest(version_dir: str) -> Dict[str, Dict[str, Any]]:
    path = os.path.join(version_dir, "..manifest")
    try:
        return read_manifest(path)
    except (OSError, ValueError) as exc:
        raise ActionError(500, f"failed to read the manifest {path!r}; {exc}") from exc


def finish_time(summary: Dict[str, Any], where: str) -> datetime:
    try:
        return parse_rfc3339(summary.get("upload_finish"))
    except ValueError as exc:
        raise ActionError(500, f"invalid 'upload_finish' in {where!r}; {exc}") from exc


def recompute_latest(asset_dir: str) -> Optional[str]:
    """Write (or delete) ``..latest`` from every version's summary (§6.9)."""
    best: Optional[Tuple[datetime, str]] = None
    for version in subdirectories(asset_dir):
        version_dir = os.path.join(asset_dir, version)
        summary = load_summary(version_dir)
        if summary.get("on_probation"):
            continue
        when = finish_time(summary, version_dir)
        if best is None or when > best[0]:
            best = (when, version)
    if best is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(asset_dir, "..latest"))
        return None
    write_latest(asset_dir, best[1])
    return best[1]


# ---------------------------------------------------------------- walking versions


def link_object(project: str, asset: str, version: str, path: str) -> Dict[str, str]:
    return {"project": project, "asset": asset, "version": version, "path": path}


def link_path(link: Dict[str, Any]) -> str:
    """``P/A/V/path`` of a link object."""
    return "/".join((link["project"], link["asset"], link["version"], link["path"]))


def link_to(target: Dict[str, Any], immediate: Dict[str, str]) -> Dict[str, Any]:
    """The ``link`` of an entry whose immediate target is the entry ``target`` (§6.4)."""
    link = dict(immediate)
    target_link = target.get("link")
    if target_link:
        link["ancestor"] = dict(target_link.get("ancestor") or link_object(
            target_link["project"], target_link["asset"], target_link["version"],
            target_link["path"]))
    return link


def final_target(link: Dict[str, Any]) -> Dict[str, Any]:
    """Where the on-disk symlink of a link entry points: ancestor, else link."""
    return link.get("ancestor") or link


def place_symlink(cfg: Config, dest: str, link: Dict[str, Any]) -> None:
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
                 ignore_dot: bool, dedup: Optional["DedupIndex"] = None,
                 recorded: Optional[Dict[str, Dict[str, Any]]] = None) -> None:
        self.cfg, self.project, self.asset, self.version = cfg, project, asset, version
        self.root, self.ignore_dot = root, ignore_dot
        self.dedup, self.recorded = dedup, recorded or {}
        self.manifest: Dict[str, Dict[str, Any]] = {}
        self.dirs: List[str] = []
        self.copies: List[Tuple[str, str]] = []       # (rel, md5) to copy into place
        self.local_links: Dict[str, str] = {}          # rel -> target rel
        self.registry_links: Set[str] = set()          # rels whose link points into the registry
        self.whitelisted: Dict[str, str] = {}          # rel -> absolute target
        self._versions: Dict[str, Tuple[Dict[str, Any], Dict[str, Any]]] = {}

    def skip(self, name: str) -> bool:
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

    def _target_version(self, project: str, asset: str, version: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
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
        self.manifest[rel] = {"size": target["size"], "md5sum": target["md5sum"],
                              "link": link_to(target, link_object(project, asset, version, inner))}
        self.registry_links.add(rel)

    def resolve_local_links(self) -> None:
        """Third pass: turn local links into link entries of this version (§6.7)."""
        for rel in sorted(self.local_links):
            self._resolve_local(rel, set())

    def _resolve_local(self, rel: str, visiting: Set[str]) -> Dict[str, Any]:
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
        entry = self.manifest[target]
        immediate = link_object(self.project, self.asset, self.version, target)
        self.manifest[rel] = {"size": entry["size"], "md5sum": entry["md5sum"],
                              "link": link_to(entry, immediate)}
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


# ---------------------------------------------------------------- upload


DedupIndex = Dict[str, Tuple[str, str, Dict[str, Any]]]


def _dedup_index(asset_dir: str) -> Optional[DedupIndex]:
    """``"size-md5" -> (latest version, path, entry)`` over the ``..latest`` manifest (§6.5)."""
    latest = read_latest(asset_dir)
    if latest is None:
        return None
    manifest = load_manifest(os.path.join(asset_dir, latest))
    index: DedupIndex = {}
    for path in sorted(manifest, reverse=True):  # the lexically first path wins
        entry = manifest[path]
        if entry.get("md5sum"):
            index[f"{entry['size']}-{entry['md5sum']}"] = (latest, path, entry)
    return index


def _copy_into(root_fd: int, rel: str, dest: str, md5: str, consume: bool) -> None:
    """Second pass for one file: move or copy, then check the checksum (§6.6).

    The source is re-opened under ``root_fd`` without following symlinks and
    the destination's MD5 must match the first pass, so a file swapped in
    the meantime is refused rather than published.
    """
    parent_fd = open_beneath(root_fd, os.path.dirname(rel), directory=True)
    base = os.path.basename(rel)
    try:
        src_fd = os.open(base, NOFOLLOW_FILE, dir_fd=parent_fd)
        try:
            info = os.fstat(src_fd)
            if not stat.S_ISREG(info.st_mode):
                raise ActionError(500, f"{rel!r} changed while it was being uploaded")
            if consume and info.st_uid == os.geteuid() and \
                    _move_into(parent_fd, base, src_fd, info, dest):
                return
            out_fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            with os.fdopen(out_fd, "wb") as out, os.fdopen(os.dup(src_fd), "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
        finally:
            os.close(src_fd)
        if md5_file(dest) != md5:
            raise ActionError(500, f"mismatch in checksums between source and destination files "
                                   f"({rel!r} -> {dest!r})")
        if consume:
            with contextlib.suppress(OSError):
                os.unlink(base, dir_fd=parent_fd)
    finally:
        os.close(parent_fd)


def _move_into(parent_fd: int, base: str, src_fd: int, info: os.stat_result,
               dest: str) -> bool:
    """Rename a service-owned source file into place; False to fall back to copying."""
    try:
        os.fchmod(src_fd, 0o644)
    except OSError:
        return False
    try:
        os.rename(base, dest, src_dir_fd=parent_fd)
    except OSError:
        return False
    moved = os.lstat(dest)
    if (moved.st_dev, moved.st_ino) != (info.st_dev, info.st_ino):
        os.unlink(dest)  # something else was swapped in: do not publish it
        return False
    return True


def _transfer(cfg: Config, root_fd: int, source_dir: str, version_dir: str, project: str,
              asset: str, version: str, ignore_dot: bool, consume: bool,
              asset_dir: str) -> Dict[str, Dict[str, Any]]:
    """The three passes of an upload (§6.3-6.8); returns the manifest."""
    walker = VersionWalker(cfg, project, asset, version, source_dir, ignore_dot,
                           dedup=_dedup_index(asset_dir))
    walker.walk(root_fd)
    for directory in walker.dirs:
        os.mkdir(os.path.join(version_dir, directory), 0o755)
    for rel in sorted(walker.registry_links):
        place_symlink(cfg, os.path.join(version_dir, rel), walker.manifest[rel]["link"])
    for rel, target in walker.whitelisted.items():
        os.symlink(target, os.path.join(version_dir, rel))
    jobs = [(root_fd, rel, os.path.join(version_dir, rel), md5, consume)
            for rel, md5 in walker.copies]
    workers = max(1, min(cfg.concurrency, 4, len(jobs)))
    if workers == 1:
        for job in jobs:
            _copy_into(*job)
    else:
        with ThreadPoolExecutor(workers) as pool:
            for future in [pool.submit(_copy_into, *job) for job in jobs]:
                future.result()
    walker.resolve_local_links()
    for rel in sorted(walker.local_links):
        place_symlink(cfg, os.path.join(version_dir, rel), walker.manifest[rel]["link"])
    walker.add_empty_dirs()
    return walker.manifest


def upload(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``upload`` (§3.5.1, §6)."""
    start = now_rfc3339()
    body = req.body()
    user = spoofed_identity(cfg, req.user(), body)

    source = body.get("source")
    if not isinstance(source, str) or source == "":
        raise ActionError(400, "expected a 'source' string property in the request details")
    if os.path.basename(source) != source or source in (".", ".."):
        raise ActionError(400, f"'source' ({source!r}) should be the name of a directory "
                               "directly inside the staging directory")
    source_dir = os.path.join(os.path.dirname(req.path), source)
    try:
        info = os.lstat(source_dir)
    except OSError as exc:
        raise ActionError(400, f"failed to stat the 'source' directory {source_dir!r}; {exc}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise ActionError(400, f"'source' ({source_dir!r}) should be a directory")
    try:
        root_fd = os.open(source_dir, NOFOLLOW_DIR)
    except OSError as exc:
        raise ActionError(400, f"failed to open the 'source' directory {source_dir!r}; {exc}") from exc
    try:
        return _upload_from(cfg, body, user, start, source_dir, root_fd)
    finally:
        os.close(root_fd)


def _upload_from(cfg: Config, body: Dict[str, Any], user: str, start: str, source_dir: str,
                 root_fd: int) -> Dict[str, Any]:
    owner = spoofed_identity(cfg, user_name(os.fstat(root_fd).st_uid,
                                            f"directory {source_dir!r}"), body)
    if owner != user:
        raise ActionError(403, "requesting user must be the same as the owner of the 'source' directory")

    project, asset, version = names(body, "project", "asset", "version")
    probation = optional_bool(body, "on_probation")
    ignore_dot = optional_bool(body, "ignore_dot")
    consume = optional_bool(body, "consume")

    with enter_project(cfg, project) as project_dir:
        asset_dir = os.path.join(project_dir, asset)
        asset_lock = os.path.join(asset_dir, "..LOCK")
        with newdir_lock(project_dir, True):
            perms = load_permissions(os.path.join(project_dir, "..permissions"))
            if os.path.isdir(asset_dir):
                probation = _authorise_existing_asset(cfg, perms, asset_dir, user, project,
                                                      asset, version, probation)
            else:
                if not perms.get("global_write"):
                    trust = upload_trust(cfg, perms, user, asset, version)
                    if trust is None:
                        raise ActionError(403, f'user "{user}" is not authorized to upload to '
                                               f'project "{project}"')
                    probation = probation or not trust
                os.mkdir(asset_dir, 0o755)
                if perms.get("global_write"):
                    write_json(os.path.join(asset_dir, "..permissions"),
                               {"owners": [user], "uploaders": None})
            acquire_lock(asset_lock, True)
        try:
            version_dir = os.path.join(asset_dir, version)
            if os.path.lexists(version_dir):
                raise ActionError(400, f'version "{version}" already exists in {asset_dir!r}')
            os.mkdir(version_dir, 0o755)
            try:
                manifest = _transfer(cfg, root_fd, source_dir, version_dir, project, asset,
                                     version, ignore_dot, consume, asset_dir)
                write_manifest(version_dir, manifest)
                write_links(version_dir, manifest)
                write_json(os.path.join(version_dir, "..summary"),
                           make_summary(user, start, now_rfc3339(), probation))
                add_usage(project_dir, manifest_usage(manifest))
                if not probation:
                    write_latest(asset_dir, version)
                    write_log(cfg.registry, {"type": "add-version", "project": project,
                                             "asset": asset, "version": version, "latest": True})
            except BaseException:
                shutil.rmtree(version_dir, ignore_errors=True)
                raise
        finally:
            release_lock(asset_lock)
    return {}


def _authorise_existing_asset(cfg: Config, perms: Dict[str, Any], asset_dir: str, user: str,
                              project: str, asset: str, version: str, probation: bool) -> bool:
    asset_perms_path = os.path.join(asset_dir, "..permissions")
    if os.path.exists(asset_perms_path):
        perms = merge_asset_permissions(perms, load_permissions(asset_perms_path), asset)
    trust = upload_trust(cfg, perms, user, asset, version)
    if trust is None:
        raise ActionError(403, f'user "{user}" is not authorized to upload to asset "{asset}" '
                               f'of project "{project}"')
    return probation or not trust


# ---------------------------------------------------------------- projects and permissions


def create_project(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``create_project`` (§3.5.2), admins only."""
    user = req.user()
    require_admin(cfg, user)
    body = req.body()
    (project,) = names(body, "project")
    given = body.get("permissions")
    given = {} if given is None else validate_permissions(given, asset_level=False)
    perms: Dict[str, Any] = {
        "owners": given.get("owners", [user]),
        "uploaders": given.get("uploaders", []),
    }
    if "global_write" in given:
        perms["global_write"] = given["global_write"]

    with dir_lock(cfg.registry, True):
        project_dir = os.path.join(cfg.registry, project)
        if os.path.lexists(project_dir):
            raise ActionError(400, f'project "{project}" already exists')
        os.makedirs(project_dir, 0o755)
        write_json(os.path.join(project_dir, "..permissions"), ordered_permissions(perms))
        year = time.localtime().tm_year
        for name, text in (("..quota", '{ "baseline": 1000000000, "growth_rate": 1000000000, '
                                       f'"year": {year} }}'),
                           ("..usage", '{ "total": 0 }')):
            with open(os.path.join(project_dir, name), "w", encoding="utf-8") as handle:
                handle.write(text)
    return {}


def set_permissions(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``set_permissions`` (§3.5.3), project or asset level; replaces given fields."""
    body = req.body()
    user = spoofed_identity(cfg, req.user(), body)
    (project,) = names(body, "project")
    asset = check_name(body, "asset") if body.get("asset") is not None else None
    if body.get("permissions") is None:
        raise ActionError(400, "expected a 'permissions' property in the request details")
    given = validate_permissions(body["permissions"], asset_level=asset is not None)

    if asset is None:
        with enter_project(cfg, project, exclusive=True) as project_dir:
            path = os.path.join(project_dir, "..permissions")
            perms = load_permissions(path)
            if not (is_admin(cfg, user) or is_owner(perms, user)):
                raise ActionError(403, f'user "{user}" is not authorized to modify permissions '
                                       f'of project "{project}"')
            perms.update(given)
            write_json(path, ordered_permissions(perms))
        return {}

    with enter_project(cfg, project) as project_dir:
        project_perms = load_permissions(os.path.join(project_dir, "..permissions"))
        asset_dir = os.path.join(project_dir, asset)
        path = os.path.join(asset_dir, "..permissions")
        allowed = is_admin(cfg, user) or is_owner(project_perms, user)
        with newdir_lock(project_dir, True):
            exists = os.path.isdir(asset_dir)
            if not exists:
                if not allowed:
                    raise ActionError(403, f'user "{user}" is not authorized to create asset '
                                           f'"{asset}" in project "{project}"')
                os.mkdir(asset_dir, 0o755)
            acquire_lock(os.path.join(asset_dir, "..LOCK"), True)
        try:
            perms = load_permissions(path) if os.path.exists(path) else {"owners": [], "uploaders": []}
            if not (allowed or is_owner(perms, user)):
                raise ActionError(403, f'user "{user}" is not authorized to modify permissions '
                                       f'of asset "{asset}" in project "{project}"')
            perms.update(given)
            perms.pop("global_write", None)
            write_json(path, ordered_permissions(perms))
        finally:
            release_lock(os.path.join(asset_dir, "..LOCK"))
    return {}


def health_check(cfg: Config, req: Request) -> Dict[str, Any]:
    """Deprecated action ``health_check``: always succeeds, reads nothing."""
    return {}


# ---------------------------------------------------------------- request files


class RecentRequests:
    """Request names seen in the last ``ttl`` seconds (each file is used once, §3.3)."""

    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._until: Dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, name: str) -> bool:
        """Remember ``name``; False if it was already seen within ``ttl``."""
        now = time.monotonic()
        with self._lock:
            if len(self._until) > 1000:
                self._until = {k: v for k, v in self._until.items() if v > now}
            if self._until.get(name, 0.0) > now:
                return False
            self._until[name] = now + self.ttl
            return True


REQUEST_PREFIX = "request-"
REQUEST_MAX_AGE = 60.0


def check_request_file(cfg: Config, recent: RecentRequests, name: str) -> str:
    """Apply the request-file checks of §3.3 and return the file's path (400 on failure)."""
    if not name.startswith(REQUEST_PREFIX):
        raise ActionError(400, f'file name should start with "{REQUEST_PREFIX}"')
    if os.path.basename(name) != name:
        raise ActionError(400, f"{name!r} should be a bare file name in the staging directory")
    path = os.path.join(cfg.staging, name)
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise ActionError(400, f"failed to stat {path!r}; {exc.strerror}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise ActionError(400, f"{path!r} is a directory")
    if stat.S_ISLNK(info.st_mode):
        raise ActionError(400, f"{path!r} is a symbolic link")
    if not stat.S_ISREG(info.st_mode):
        raise ActionError(400, f"{path!r} is not a regular file")
    if info.st_nlink != 1:
        raise ActionError(400, f"{path!r} should not have multiple hard links")
    if time.time() - info.st_mtime >= REQUEST_MAX_AGE:
        raise ActionError(400, "request file is expired")
    if not recent.add(name):
        raise ActionError(400, "path is already being processed")
    return path


def run_request(cfg: Config, recent: RecentRequests, name: str) -> Dict[str, Any]:
    """Check the request file ``name`` in staging and run its action.

    Returns the extra fields of the success response; raises ActionError.
    Unexpected exceptions become 500s whose reason names the request.
    """
    path = check_request_file(cfg, recent, name)
    kind = name[len(REQUEST_PREFIX):]
    for prefix, action in ACTIONS.items():
        if kind.startswith(prefix + "-"):
            break
    else:
        raise ActionError(400, "invalid request type")
    try:
        return action(cfg, Request(path))
    except ActionError:
        raise
    except Exception as exc:  # I/O errors and the like: 500 with the cause
        raise ActionError(500, f"failed to process {name!r}; {type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------- probation


def _probation_request(cfg: Config, req: Request) -> Tuple[str, str, str, str]:
    body = req.body()
    user = spoofed_identity(cfg, req.user(), body)
    project, asset, version = names(body, "project", "asset", "version")
    return user, project, asset, version


def _project_owner_check(cfg: Config, user: str, project: str) -> Callable[[str], None]:
    """A ``before`` hook for :func:`enter_asset`: admins and project owners only."""
    def check(project_dir: str) -> None:
        perms = load_permissions(os.path.join(project_dir, "..permissions"))
        if not (is_admin(cfg, user) or is_owner(perms, user)):
            raise ActionError(403, f'user "{user}" is not an owner of project "{project}"')
    return check


def _probational_summary(version_dir: str) -> Dict[str, Any]:
    summary = load_summary(version_dir)
    if not summary.get("on_probation"):
        raise ActionError(500, f"version at {version_dir!r} is not on probation")
    return summary


def approve_probation(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``approve_probation`` (§3.5.4)."""
    user, project, asset, version = _probation_request(cfg, req)
    with enter_asset(cfg, project, asset, before=_project_owner_check(cfg, user, project)) as asset_dir:
        version_dir = require_version(asset_dir, version)
        summary = _probational_summary(version_dir)
        write_json(os.path.join(version_dir, "..summary"),
                   make_summary(summary.get("upload_user_id", ""), summary.get("upload_start", ""),
                                summary.get("upload_finish", ""), False))
        latest = read_latest(asset_dir)
        moved = latest is None or finish_time(summary, version_dir) > finish_time(
            load_summary(os.path.join(asset_dir, latest)), os.path.join(asset_dir, latest))
        if moved:
            write_latest(asset_dir, version)
        write_log(cfg.registry, {"type": "add-version", "project": project, "asset": asset,
                                 "version": version, "latest": moved})
    return {}


def reject_probation(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``reject_probation`` (§3.5.5): delete a probational version."""
    user, project, asset, version = _probation_request(cfg, req)
    force = optional_bool(req.body(), "force")
    with enter_asset(cfg, project, asset, before=_project_owner_check(cfg, user, project)) as asset_dir:
        version_dir = require_version(asset_dir, version)
        _probational_summary(version_dir)
        _remove_version(version_dir, force)
    return {}


def _remove_version(version_dir: str, force: bool) -> None:
    """Delete a version and take its usage off the project (500 unless ``force``)."""
    usage = _usage_or_none(lambda: version_usage(version_dir), version_dir, force)
    shutil.rmtree(version_dir)
    if usage:
        add_usage(os.path.dirname(os.path.dirname(version_dir)), -usage)


def _usage_or_none(compute: Callable[[], int], where: str, force: bool) -> Optional[int]:
    try:
        return compute()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if force:
            return None
        raise ActionError(500, f"failed to compute the usage of {where!r}; {exc} "
                               "(set 'force' to delete anyway)") from exc


# ---------------------------------------------------------------- deletion and refreshes


def _admin_request(cfg: Config, req: Request, *fields: str) -> Tuple[Dict[str, Any], List[str]]:
    """identity -> admin (403) -> JSON (400) -> names (400), Go's order for admin actions."""
    require_admin(cfg, req.user())
    body = req.body()
    return body, names(body, *fields)


def delete_project(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``delete_project`` (§3.5.6); a missing project is a success."""
    _, (project,) = _admin_request(cfg, req, "project")
    with dir_lock(cfg.registry, True):
        project_dir = os.path.join(cfg.registry, project)
        if os.path.isdir(project_dir):
            shutil.rmtree(project_dir)
            write_log(cfg.registry, {"type": "delete-project", "project": project})
    return {}


def delete_asset(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``delete_asset`` (§3.5.7); a missing project or asset is a success."""
    body, (project, asset) = _admin_request(cfg, req, "project", "asset")
    force = optional_bool(body, "force")
    with enter_project(cfg, project, exclusive=True, missing_ok=True) as project_dir:
        if project_dir is None:
            return {}
        asset_dir = os.path.join(project_dir, asset)
        if not os.path.isdir(asset_dir):
            return {}
        usage = _usage_or_none(lambda: asset_usage(asset_dir), asset_dir, force)
        shutil.rmtree(asset_dir)
        if usage:
            add_usage(project_dir, -usage)
        write_log(cfg.registry, {"type": "delete-asset", "project": project, "asset": asset})
    return {}


def delete_version(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``delete_version`` (§3.5.8); refreshes ``..latest`` afterwards."""
    body, (project, asset, version) = _admin_request(cfg, req, "project", "asset", "version")
    force = optional_bool(body, "force")
    with enter_asset(cfg, project, asset, missing_ok=True) as asset_dir:
        if asset_dir is None:
            return {}
        version_dir = os.path.join(asset_dir, version)
        if not os.path.isdir(version_dir):
            return {}
        try:
            summary: Optional[Dict[str, Any]] = load_summary(version_dir)
        except ActionError:
            if not force:
                raise
            summary = None
        _remove_version(version_dir, force)
        if summary is None or summary.get("on_probation"):
            return {}
        was_latest = _latest_or_none(asset_dir) == version
        write_log(cfg.registry, {"type": "delete-version", "project": project, "asset": asset,
                                 "version": version, "latest": was_latest})
        try:
            recompute_latest(asset_dir)
        except (ActionError, OSError):
            if not force:
                raise
    return {}


def _latest_or_none(asset_dir: str) -> Optional[str]:
    try:
        return read_latest(asset_dir)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def refresh_latest(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``refresh_latest`` (§3.5.9): ``{"version": ...}`` unless none qualifies."""
    _, (project, asset) = _admin_request(cfg, req, "project", "asset")
    with enter_asset(cfg, project, asset) as asset_dir:
        latest = recompute_latest(asset_dir)
    return {} if latest is None else {"version": latest}


def refresh_usage(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``refresh_usage`` (§3.5.10): ``{"total": N}``."""
    _, (project,) = _admin_request(cfg, req, "project")
    with enter_project(cfg, project, exclusive=True) as project_dir:
        try:
            total = project_usage(project_dir)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ActionError(500, f"failed to compute the usage of project {project!r}; "
                                   f"{exc}") from exc
        with lock(os.path.join(project_dir, LOCK_USAGE_NAME), exclusive=True):
            write_usage(project_dir, total)
    return {"total": total}


# ---------------------------------------------------------------- reindex and validate


def _existing_links(version_dir: str) -> Dict[str, Dict[str, Any]]:
    """Every ``..links`` file under a version: directory rel -> its parsed content."""
    found: Dict[str, Dict[str, Any]] = {}
    for dirpath, dirnames, filenames in os.walk(version_dir):
        dirnames[:] = [d for d in dirnames if not is_reserved(d)]
        if "..links" in filenames:
            rel = os.path.relpath(dirpath, version_dir)
            path = os.path.join(dirpath, "..links")
            try:
                content = read_json(path)
            except (OSError, ValueError) as exc:
                raise ActionError(500, f"failed to read {path!r}; {exc}") from exc
            found["" if rel == "." else rel] = content if isinstance(content, dict) else {}
    return found


def _index_walk(cfg: Config, project: str, asset: str, version: str,
                version_dir: str) -> Tuple[VersionWalker, Dict[str, Dict[str, Any]]]:
    """Walk a version in the registry as reindex/validate do (§6.11)."""
    existing = _existing_links(version_dir)
    recorded = {f"{d}/{base}" if d else base: link
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
        for rel in walker.link_rels():
            place_symlink(cfg, os.path.join(version_dir, rel), walker.manifest[rel]["link"])
        write_manifest(version_dir, walker.manifest)
        _rewrite_links(version_dir, walker.manifest, existing)
        summary = load_summary(version_dir)
        if not summary.get("on_probation"):
            write_log(cfg.registry, {"type": "reindex-version", "project": project,
                                     "asset": asset, "version": version,
                                     "latest": _latest_or_none(asset_dir) == version})
    return {}


def _rewrite_links(version_dir: str, manifest: Dict[str, Dict[str, Any]],
                   existing: Dict[str, Any]) -> None:
    """Write the needed ``..links`` files and remove the ones no longer needed."""
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


def _q(text: str) -> str:
    """Quote like Go's ``%q``, so reasons read the same as the Go service's."""
    return json.dumps(text, ensure_ascii=False)


def _compare_manifests(stored: Dict[str, Any], actual: Dict[str, Dict[str, Any]],
                       where: str) -> None:
    """Go's checks and wording: stored entries first, then extra files."""
    for path in sorted(stored):
        old = stored[path]
        new = actual.get(path)
        if new is None:
            raise ActionError(500, f"failed to validate project; {_q(path)} listed in manifest "
                                   f"cannot be found in directory {_q(where)}")
        if not isinstance(old, dict) or old.get("size") != new["size"]:
            raise ActionError(500, f"failed to validate project; incorrect size in manifest for "
                                   f"{_q(path)} in directory {_q(where)}")
        if old.get("md5sum") != new["md5sum"]:
            raise ActionError(500, f"failed to validate project; incorrect MD5 checksum in "
                                   f"manifest for {_q(path)} in directory {_q(where)}")
        problem = _link_problem(old.get("link"), new.get("link"))
        if problem:
            raise ActionError(500, f"failed to validate project; mismatching link information "
                                   f"for {_q(path)} in directory {_q(where)}; {problem}")
    for path in sorted(actual):
        if path not in stored:
            raise ActionError(500, f"failed to validate project; extra file {_q(path)} is not "
                                   f"present in manifest for directory {_q(where)}")


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


def _compare_links(existing: Dict[str, Any], expected: Dict[str, Dict[str, Any]],
                   where: str) -> None:
    for directory in sorted(expected):
        lpath = directory or "."
        if directory not in existing:
            raise ActionError(500, f"failed to validate project; expected a linkfile at "
                                   f"{_q(lpath)} in directory {_q(where)}")
        have, want = existing[directory], expected[directory]
        for base in sorted(want):
            if base not in have:
                raise ActionError(500, f"failed to validate project; missing path {_q(base)} "
                                       f"from linkfile {_q(lpath)} in directory {_q(where)}")
            problem = _link_problem(have[base], want[base])
            if problem:
                raise ActionError(500, f"failed to validate project; mismatching link "
                                       f"information for {_q(base)} in linkfile {_q(lpath)} "
                                       f"in directory {_q(where)}; {problem}")
        for base in sorted(have):
            if base not in want:
                raise ActionError(500, f"failed to validate project; extra path {_q(base)} in "
                                       f"linkfile {_q(lpath)} in directory {_q(where)}")
    for directory in sorted(existing):
        if directory not in expected:
            raise ActionError(500, f"failed to validate project; extra linkfile "
                                   f"{_q(directory or '.')} in directory {_q(where)}")


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


def _check_summary(summary: Dict[str, Any], where: str) -> None:
    if not summary.get("upload_user_id"):
        raise ActionError(500, f"invalid 'upload_user_id' in the summary file at {_q(where)}")
    for key in ("upload_start", "upload_finish"):
        try:
            parse_rfc3339(summary.get(key))
        except ValueError as exc:
            raise ActionError(500, f"could not parse '{key}' from the summary file at "
                                   f"{_q(where)}; {exc}") from exc



# ---------------------------------------------------------------- reroute


class _Reroute:
    """Plans and applies ``reroute_links`` (§6.12) under the exclusive registry lock."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._manifests: Dict[str, Dict[str, Dict[str, Any]]] = {}

    def manifest(self, key: str) -> Dict[str, Dict[str, Any]]:
        if key not in self._manifests:
            self._manifests[key] = load_manifest(os.path.join(self.cfg.registry, key))
        return self._manifests[key]

    def entry(self, path: str) -> Optional[Dict[str, Any]]:
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

    def plan(self, doomed: Set[str]) -> Tuple[List[Dict[str, Any]], Dict[str, Dict[str, Dict[str, Any]]]]:
        """The changes, and per surviving version the manifest entries to replace."""
        deleted = {f"{key}/{path}" for key in doomed for path in self.manifest(key)}
        changes: List[Dict[str, Any]] = []
        updates: Dict[str, Dict[str, Dict[str, Any]]] = {}
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

    def _plan_entry(self, full: str, entry: Dict[str, Any],
                    deleted: Set[str]) -> Optional[Tuple[Dict[str, Any], Dict[str, Any]]]:
        link = entry.get("link")
        if not link:
            return None
        parent = link_path(link)
        ancestor = link_path(link["ancestor"]) if link.get("ancestor") else None
        copy = ({"copy": True, "path": full, "source": parent, "usage": entry["size"]},
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
        new_link = _link_from_path(new_parent)
        if new_ancestor is not None:
            new_link["ancestor"] = _link_from_path(new_ancestor)
        source = parent if parent in deleted else ancestor
        return ({"copy": False, "path": full, "source": source, "usage": 0},
                {"size": entry["size"], "md5sum": entry["md5sum"], "link": new_link})

    def apply(self, changes: List[Dict[str, Any]],
              updates: Dict[str, Dict[str, Dict[str, Any]]]) -> None:
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
            existing = _existing_links(version_dir)
            write_manifest(version_dir, manifest)
            _rewrite_links(version_dir, manifest, existing)
        for project, delta in sorted(added.items()):
            if delta:
                add_usage(os.path.join(registry, project), delta)


def _link_from_path(path: str) -> Dict[str, Any]:
    project, asset, version, rest = path.split("/", 3)
    return link_object(project, asset, version, rest)


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


# ---------------------------------------------------------------- daily purge


def purge_old_entries(directory: str, now: float, max_age: float = 7 * DAY) -> List[str]:
    """Remove top-level entries of ``directory`` whose own mtime is older than ``max_age``."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError as exc:
        _log(f"failed to list {directory!r} for purging; {exc}")
        return removed
    for entry in entries:
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime <= max_age:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(entry.path)
        except OSError as exc:
            _log(f"failed to purge {entry.path!r}; {exc}")
    return removed


def purge_probation(cfg: Config, now: float) -> List[str]:
    """Reject probational versions finished more than ``cfg.probation_days`` ago."""
    removed: List[str] = []
    if cfg.probation_days < 0:
        return removed
    limit = cfg.probation_days * DAY
    with dir_lock(cfg.registry, False):
        for project in subdirectories(cfg.registry):
            project_dir = os.path.join(cfg.registry, project)
            with dir_lock(project_dir, False):
                for asset in subdirectories(project_dir):
                    asset_dir = os.path.join(project_dir, asset)
                    with dir_lock(asset_dir, True):
                        for version in subdirectories(asset_dir):
                            version_dir = os.path.join(asset_dir, version)
                            try:
                                summary = read_summary(os.path.join(version_dir, "..summary"))
                                if not summary.get("on_probation"):
                                    continue
                                finished = parse_rfc3339(summary.get("upload_finish")).timestamp()
                                if now - finished > limit:
                                    _remove_version(version_dir, force=False)
                                    removed.append(version_dir)
                            except (OSError, ValueError, ActionError) as exc:
                                _log(f"failed to purge probational {version_dir!r}; {exc}")
    return removed


def daily_purge(cfg: Config, now: Optional[float] = None) -> List[str]:
    """The daily job (§8.3) as of ``now`` (seconds since the epoch); returns what it removed."""
    now = time.time() if now is None else now
    removed = purge_old_entries(cfg.staging, now)
    removed += purge_old_entries(os.path.join(cfg.registry, "..logs"), now)
    try:
        removed += purge_probation(cfg, now)
    except (OSError, ActionError) as exc:
        _log(f"probation purge failed; {exc}")
    return removed


def _log(message: str) -> None:
    sys.stderr.write(f"artifacts-gobbler: {message}\n")


# ---------------------------------------------------------------- dispatch

ACTIONS: Dict[str, Callable[[Config, Request], Dict[str, Any]]] = {
    "upload": upload,
    "create_project": create_project,
    "set_permissions": set_permissions,
    "approve_probation": approve_probation,
    "reject_probation": reject_probation,
    "delete_project": delete_project,
    "delete_asset": delete_asset,
    "delete_version": delete_version,
    "refresh_latest": refresh_latest,
    "refresh_usage": refresh_usage,
    "reindex_version": reindex_version,
    "validate_version": validate_version,
    "reroute_links": reroute_links,
    "health_check": health_check,
}
