"""Registry layout helpers shared by the Gobbler-compatible server's actions.

Everything here follows the Go service byte for byte where it matters for
interoperability (``gobbler-protocol.md`` §2 and §7): JSON written like Go's
``MarshalIndent`` through a ``.temp<digits>.json`` file and a rename, RFC 3339
local-time stamps, and ``flock`` locks on the same ``..LOCK*`` files, so a Go
instance and this one can share a registry.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import random
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterator, List, Mapping, Optional

from artifacts_py.servers.gobbler.shapes import (
    Link, LinkFile, LinkTarget, Manifest, ManifestEntry, Permissions, Summary, Uploader,
)

LOCK_NAME = "..LOCK"
LOCK_NEWDIR_NAME = "..LOCK_NEWDIR"
LOCK_USAGE_NAME = "..LOCK_USAGE"
LOCK_TIMEOUT = 60.0
LOCK_POLL = 0.05


class ActionError(Exception):
    """An action failed; ``status`` is the HTTP status and ``reason`` the message."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# ---------------------------------------------------------------- names


def bad_name_reason(name: Any) -> Optional[str]:
    """Why ``name`` is not a valid project/asset/version name, or None if it is.

    Go's rules (empty, ``/`` or ``\\``, leading ``..``) plus ``.``, which Go
    accepts although it resolves to the parent directory.
    """
    if not isinstance(name, str) or name == "":
        return "name cannot be empty"
    if "/" in name or "\\" in name:
        return "name cannot contain '/' or '\\'"
    if name.startswith(".."):
        return "name cannot start with '..'"
    if name == ".":
        return "name cannot be '.'"
    return None


def check_name(body: Dict[str, Any], field: str) -> str:
    """Return ``body[field]`` if it is a valid name, else raise a 400."""
    value = body.get(field)
    if value is None:
        raise ActionError(400, f"expected a '{field}' property in the request details")
    if not isinstance(value, str):
        raise ActionError(400, f"expected '{field}' to be a string")
    reason = bad_name_reason(value)
    if reason is not None:
        raise ActionError(400, f"invalid {field} name {json.dumps(value)}; {reason}")
    return value


def is_reserved(name: str) -> bool:
    """Names starting with ``..`` belong to the service at every level."""
    return name.startswith("..")


# ---------------------------------------------------------------- time


def now_rfc3339(when: Optional[datetime] = None) -> str:
    """RFC 3339 at whole seconds in the local zone, ``Z`` when the offset is 0 (like Go)."""
    stamp = (when or datetime.now()).astimezone().replace(microsecond=0)
    text = stamp.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def parse_rfc3339(text: Any) -> datetime:
    """Parse an RFC 3339 time (fractional seconds allowed) to an aware datetime.

    Raises ValueError for anything else, as Go's ``time.Parse(time.RFC3339)`` does.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected an RFC 3339 string, got {text!r}")
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"{text!r} is not an RFC 3339 time")
    year, month, day, hour, minute, sec = (int(g) for g in m.groups()[:6])
    frac = m.group(7)
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    zone = m.group(8)
    if zone in ("Z", "z"):
        tz = timezone.utc
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    return datetime(year, month, day, hour, minute, sec, micro, tzinfo=tz)


# ---------------------------------------------------------------- JSON


def go_json(obj: Any) -> str:
    """Serialise like Go's ``json.MarshalIndent(obj, "", "    ")``.

    Dicts keep their insertion order (callers build struct fields in Go's
    order and sort map keys themselves); ``<``, ``>``, ``&``, U+2028 and
    U+2029 are escaped as Go does. No trailing newline.
    """
    text = json.dumps(obj, indent=4, ensure_ascii=False, separators=(",", ": "))
    for char, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                      ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, esc)
    return text


def write_json(path: str, obj: Any) -> None:
    """Atomically write ``obj`` as Go-formatted JSON: temp file, chmod 0644, rename."""
    directory = os.path.dirname(path) or "."
    while True:
        temp = os.path.join(directory, f".temp{random.randint(0, 2**32 - 1)}.json")
        try:
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            break
        except FileExistsError:
            continue
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(go_json(obj))
        os.rename(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def read_json(path: str) -> Any:
    """Parse a JSON file (the service's own metadata files)."""
    with open(path, "rb") as handle:
        return json.loads(handle.read())


# ---------------------------------------------------------------- metadata


def read_permissions(path: str) -> Permissions:
    """Read a ``..permissions`` file; ``uploaders: null`` reads as an empty list."""
    perms: Permissions = read_json(path)
    if not isinstance(perms, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    if perms.get("owners") is None:
        perms["owners"] = []
    if perms.get("uploaders") is None:
        perms["uploaders"] = []
    return perms


def ordered_uploader(entry: Uploader) -> Uploader:
    """An uploader entry with Go's field order and unset fields left out."""
    out: Uploader = {"id": entry["id"]}
    if entry.get("asset") is not None:
        out["asset"] = entry["asset"]
    if entry.get("version") is not None:
        out["version"] = entry["version"]
    if entry.get("until") is not None:
        out["until"] = entry["until"]
    if entry.get("trusted") is not None:
        out["trusted"] = entry["trusted"]
    return out


def ordered_permissions(perms: Permissions) -> Permissions:
    """Permissions in Go's field order; ``uploaders`` None stays null."""
    uploaders = perms.get("uploaders")
    out: Permissions = {
        "owners": list(perms.get("owners") or []),
        "uploaders": None if uploaders is None else [ordered_uploader(u) for u in uploaders],
    }
    if perms.get("global_write") is not None:
        out["global_write"] = perms["global_write"]
    return out


def read_summary(path: str) -> Summary:
    """Read a ``..summary`` file."""
    summary: Summary = read_json(path)
    if not isinstance(summary, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return summary


def make_summary(user: str, start: str, finish: str, probation: bool) -> Summary:
    """A summary in Go's field order; ``on_probation`` only when true."""
    out: Summary = {"upload_user_id": user, "upload_start": start,
                           "upload_finish": finish}
    if probation:
        out["on_probation"] = True
    return out


def read_manifest(path: str) -> Manifest:
    """Read a ``..manifest`` file."""
    manifest: Manifest = read_json(path)
    if not isinstance(manifest, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return manifest


def link_target(where: LinkTarget) -> LinkTarget:
    """The four fields naming a file, in Go's order (a parent or ancestor of a link)."""
    return {"project": where["project"], "asset": where["asset"], "version": where["version"],
            "path": where["path"]}


def ordered_link(link: Link) -> Link:
    """A link object in Go's field order, ``ancestor`` only when present."""
    out: Link = {"project": link["project"], "asset": link["asset"], "version": link["version"],
                 "path": link["path"]}
    ancestor = link.get("ancestor")
    if ancestor:
        out["ancestor"] = link_target(ancestor)
    return out


def ordered_entry(entry: ManifestEntry) -> ManifestEntry:
    """A manifest entry in Go's field order."""
    out: ManifestEntry = {"size": entry["size"], "md5sum": entry["md5sum"]}
    link = entry.get("link")
    if link:
        out["link"] = ordered_link(link)
    return out


def write_manifest(version_dir: str, manifest: Manifest) -> None:
    """Write ``..manifest`` with sorted keys and ordered entries."""
    write_json(os.path.join(version_dir, "..manifest"),
               {k: ordered_entry(manifest[k]) for k in sorted(manifest)})


def links_by_directory(manifest: Manifest) -> Dict[str, LinkFile]:
    """Group the link entries of a manifest by directory (``""`` is the top)."""
    groups: Dict[str, LinkFile] = {}
    for path, entry in manifest.items():
        link = entry.get("link")
        if link:
            directory, _, base = path.rpartition("/")
            groups.setdefault(directory, {})[base] = ordered_link(link)
    return groups


def write_links(version_dir: str, manifest: Manifest) -> List[str]:
    """Write one ``..links`` per directory that directly holds links; return their dirs."""
    groups = links_by_directory(manifest)
    for directory, links in groups.items():
        write_json(os.path.join(version_dir, directory, "..links"),
                   {k: links[k] for k in sorted(links)})
    return sorted(groups)


def manifest_usage(manifest: Manifest) -> int:
    """Bytes a version adds to its project: sizes of entries without ``link``."""
    return sum(int(e.get("size", 0)) for e in manifest.values() if not e.get("link"))


def version_usage(version_dir: str) -> int:
    """Usage of one version, from its manifest."""
    return manifest_usage(read_manifest(os.path.join(version_dir, "..manifest")))


def subdirectories(path: str) -> List[str]:
    """Sorted non-reserved subdirectory names of ``path`` (symlinks excluded)."""
    with os.scandir(path) as entries:
        return sorted(e.name for e in entries
                      if not is_reserved(e.name) and e.is_dir(follow_symlinks=False))


def asset_usage(asset_dir: str) -> int:
    """Usage of every version of an asset."""
    return sum(version_usage(os.path.join(asset_dir, v)) for v in subdirectories(asset_dir))


def project_usage(project_dir: str) -> int:
    """Usage of every version of every asset of a project (refresh_usage)."""
    return sum(asset_usage(os.path.join(project_dir, a)) for a in subdirectories(project_dir))


def read_usage(project_dir: str) -> int:
    """The ``total`` of a project's ``..usage``."""
    return int(read_json(os.path.join(project_dir, "..usage"))["total"])


def write_usage(project_dir: str, total: int) -> None:
    """Write a project's ``..usage`` (indented, like Go's later writes)."""
    write_json(os.path.join(project_dir, "..usage"), {"total": int(total)})


def add_usage(project_dir: str, delta: int) -> None:
    """Read-modify-write the project usage under its usage lock."""
    with lock(os.path.join(project_dir, LOCK_USAGE_NAME), exclusive=True):
        write_usage(project_dir, read_usage(project_dir) + delta)


def write_latest(asset_dir: str, version: str) -> None:
    """Write ``..latest`` naming ``version``."""
    write_json(os.path.join(asset_dir, "..latest"), {"version": version})


def read_latest(asset_dir: str) -> Optional[str]:
    """The version named by ``..latest``, or None when there is none."""
    try:
        return str(read_json(os.path.join(asset_dir, "..latest"))["version"])
    except FileNotFoundError:
        return None


def write_log(registry: str, event: Mapping[str, object]) -> None:
    """Record an event in ``..logs`` under ``<RFC3339>_<random 6 digits>``.

    Go logs a ``map[string]interface{}``, which it marshals with sorted keys.
    """
    name = f"{now_rfc3339()}_{random.randint(100000, 999999)}"
    write_json(os.path.join(registry, "..logs", name), dict(sorted(event.items())))


def md5_fd(fd: int) -> str:
    """Lower-case hex MD5 of an open file's whole content."""
    digest = hashlib.md5()
    offset = 0
    while True:
        block = os.pread(fd, 1 << 20, offset)
        if not block:
            return digest.hexdigest()
        digest.update(block)
        offset += len(block)


def md5_file(path: str) -> str:
    """Lower-case hex MD5 of a file's content (following symlinks)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return md5_fd(fd)
    finally:
        os.close(fd)


NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
NOFOLLOW_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)


def open_beneath(root_fd: int, rel: str, directory: bool = False) -> int:
    """Open ``rel`` under the directory ``root_fd`` without following any symlink.

    Users own upload directories and may swap a component for a symlink at
    any time; resolving component by component with ``O_NOFOLLOW`` keeps the
    service (often root) from reading outside them.
    """
    parts = [p for p in rel.split("/") if p]
    fd = os.dup(root_fd)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = NOFOLLOW_FILE if last and not directory else NOFOLLOW_DIR
            child = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def is_local_path(child: str, parent: str) -> bool:
    """Whether cleaned absolute ``child`` is lexically inside (or equal to) ``parent``."""
    parent = parent.rstrip("/") or "/"
    return child == parent or child.startswith(parent if parent == "/" else parent + "/")


# ---------------------------------------------------------------- locks


class _Held:
    __slots__ = ("fd", "exclusive", "count")

    def __init__(self, fd: int, exclusive: bool) -> None:
        self.fd, self.exclusive, self.count = fd, exclusive, 1


_held: Dict[str, _Held] = {}
_held_cond = threading.Condition()


def acquire_lock(path: str, exclusive: bool, timeout: float = LOCK_TIMEOUT) -> None:
    """Take an ``flock`` on the lock file ``path`` (created on demand).

    Threads of this process share shared locks through a table (a second
    shared lock only counts up); anything else waits. Other processes are
    polled every 50 ms with ``LOCK_NB``, like Go, for up to ``timeout`` s.
    """
    deadline = time.monotonic() + timeout
    op = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    with _held_cond:
        while True:
            held = _held.get(path)
            if held is None:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
                try:
                    fcntl.flock(fd, op)
                except OSError as exc:
                    os.close(fd)
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise ActionError(500, f"failed to lock {path!r}; {exc}") from exc
                else:
                    _held[path] = _Held(fd, exclusive)
                    return
            elif not held.exclusive and not exclusive:
                held.count += 1
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ActionError(500, f"timed out waiting for the lock on {path!r}")
            # Another process holds it: poll; another thread: woken on release.
            _held_cond.wait(min(LOCK_POLL, remaining))


def release_lock(path: str) -> None:
    """Release one hold on ``path`` taken by :func:`acquire_lock`."""
    with _held_cond:
        held = _held[path]
        held.count -= 1
        if held.count == 0:
            del _held[path]
            os.close(held.fd)  # closing drops the flock
            _held_cond.notify_all()


@contextlib.contextmanager
def lock(path: str, exclusive: bool) -> Iterator[None]:
    """Context manager around :func:`acquire_lock`/:func:`release_lock`."""
    acquire_lock(path, exclusive)
    try:
        yield
    finally:
        release_lock(path)


def dir_lock(directory: str, exclusive: bool) -> "contextlib.AbstractContextManager[None]":
    """The directory lock ``DIR/..LOCK``."""
    return lock(os.path.join(directory, LOCK_NAME), exclusive)


def newdir_lock(directory: str, exclusive: bool) -> "contextlib.AbstractContextManager[None]":
    """The new-child lock ``DIR/..LOCK_NEWDIR``."""
    return lock(os.path.join(directory, LOCK_NEWDIR_NAME), exclusive)
