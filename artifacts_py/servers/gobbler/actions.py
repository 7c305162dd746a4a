"""The Gobbler actions (``gobbler-protocol.md`` §3.5, §5, §6), independent of HTTP.

Each action is a function ``action(cfg, req) -> dict``: it raises
:class:`ActionError` with the HTTP status and reason on failure, and returns
the extra JSON fields of the success response (``{}`` for most actions).
``req`` is a :class:`Request`, which reads the request file's JSON and its
owner lazily so each action can keep Go's order of checks.

This module admits request files (§3.3) and dispatches them through
:data:`ACTIONS`; the rest lives in one module per concept, and every public
name is re-exported here:

- ``config``: :class:`Config`, spoof rules and whitelist parsing.
- ``request``: :class:`Request` and the request body's field checks.
- ``auth``: identity, spoofing, roles and ``permissions`` checks.
- ``access``: locked entry into projects/assets/versions, metadata readers.
- ``walker``: link entries and :class:`VersionWalker` (tree -> manifest).
- ``upload``: the ``upload`` action.
- ``projects``: ``create_project`` and ``set_permissions``.
- ``maintenance``: probation, deletions, refreshes and the daily purge.
- ``reindex``: ``reindex_version`` and ``validate_version``.
- ``reroute``: ``reroute_links``.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from typing import Any, Callable, Dict

from artifacts_py.servers.gobbler.access import (
    enter_asset, enter_project, find_asset, find_project, finish_time, load_manifest,
    load_permissions, load_summary, recompute_latest, require_version,
)
from artifacts_py.servers.gobbler.auth import (
    is_admin, is_owner, merge_asset_permissions, require_admin, spoofed_identity,
    upload_trust, user_name, validate_permissions, validate_uploader,
)
from artifacts_py.servers.gobbler.config import Config, SpoofRule, parse_spoof_rules, parse_whitelist
from artifacts_py.servers.gobbler.maintenance import (
    DAY, approve_probation, daily_purge, delete_asset, delete_project, delete_version,
    purge_old_entries, purge_probation, refresh_latest, refresh_usage, reject_probation,
)
from artifacts_py.servers.gobbler.projects import create_project, set_permissions
from artifacts_py.servers.gobbler.registry import ActionError
from artifacts_py.servers.gobbler.reindex import reindex_version, validate_version
from artifacts_py.servers.gobbler.request import (
    MAX_REQUEST_BYTES, Request, names, never, optional_bool,
)
from artifacts_py.servers.gobbler.reroute import reroute_links
from artifacts_py.servers.gobbler.upload import upload
from artifacts_py.servers.gobbler.walker import (
    DedupIndex, VersionWalker, final_target, link_object, link_path, link_to, place_symlink,
)

__all__ = [
    # request files and dispatch (this module)
    "ACTIONS", "REQUEST_MAX_AGE", "REQUEST_PREFIX", "RecentRequests", "check_request_file",
    "health_check", "run_request", "ActionError",
    # config
    "Config", "SpoofRule", "parse_spoof_rules", "parse_whitelist",
    # request
    "MAX_REQUEST_BYTES", "Request", "names", "optional_bool",
    # auth
    "is_admin", "is_owner", "merge_asset_permissions", "require_admin", "spoofed_identity",
    "upload_trust", "user_name", "validate_permissions", "validate_uploader",
    # access
    "enter_asset", "enter_project", "find_asset", "find_project", "finish_time",
    "load_manifest", "load_permissions",
    "load_summary", "recompute_latest", "require_version",
    # walker
    "DedupIndex", "VersionWalker", "final_target", "link_object", "link_path", "link_to",
    "place_symlink",
    # actions and jobs
    "upload", "create_project", "set_permissions", "approve_probation", "reject_probation",
    "delete_project", "delete_asset", "delete_version", "refresh_latest", "refresh_usage",
    "reindex_version", "validate_version", "reroute_links",
    "DAY", "daily_purge", "purge_old_entries", "purge_probation",
]


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
    if os.path.basename(name) != name or "\x00" in name:
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


def run_request(cfg: Config, recent: RecentRequests, name: str,
                cancelled: Callable[[], bool] = never) -> Dict[str, Any]:
    """Check the request file ``name`` in staging and run its action.

    Returns the extra fields of the success response; raises ActionError.
    Unexpected exceptions become 500s whose reason names the request.
    ``cancelled()`` tells long actions that the client has gone away.
    """
    path = check_request_file(cfg, recent, name)
    kind = name[len(REQUEST_PREFIX):]
    for prefix, action in ACTIONS.items():
        if kind.startswith(prefix + "-"):
            break
    else:
        raise ActionError(400, "invalid request type")
    try:
        return action(cfg, Request(path, cancelled))
    except ActionError:
        raise
    except Exception as exc:  # I/O errors and the like: 500 with the cause
        raise ActionError(500, f"failed to process {name!r}; {type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------- dispatch


def health_check(cfg: Config, req: Request) -> Dict[str, Any]:
    """Deprecated action ``health_check``: always succeeds, reads nothing."""
    return {}


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
