"""Who may do what (§3): bearer tokens, cached identities and permissions, the checks.

Caches as the worker's (identities 2 h keyed by SHA-256 of the token,
permissions 5 min, dropped on ``PUT /permissions``; failures never cached),
but logins are compared case-insensitively and admin names are trimmed, the
spec's SHOULD fixes. The first matching uploader entry decides, as upstream.
"""

from __future__ import annotations

import datetime
import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Generic, Iterable, Optional, Tuple, TypeVar

from artifacts_py.servers.gypsum.documents import parse_iso, read_json
from artifacts_py.servers.gypsum.errors import GypsumError
from artifacts_py.servers.gypsum.github import GitHub, Identity
from artifacts_py.servers.gypsum.store import Store

IDENTITY_TTL = 7200.0
PERMISSIONS_TTL = 300.0
T = TypeVar("T")


class TTLCache(Generic[T]):
    """A small thread-safe map whose entries expire."""

    def __init__(self, ttl: float, limit: int = 10000) -> None:
        self.ttl = ttl
        self.limit = limit
        self._items: Dict[str, Tuple[float, T]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Optional[T]:
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] < time.monotonic():
                self._items.pop(key, None)
                return None
            return item[1]

    def put(self, key: str, value: T) -> None:
        with self._lock:
            if len(self._items) >= self.limit:
                self._items.clear()
            self._items[key] = (time.monotonic() + self.ttl, value)

    def drop(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


def bearer(header: Optional[str]) -> str:
    """The token of ``Authorization: Bearer <token>``; 401 otherwise (§3.1)."""
    if not header or not header.startswith("Bearer ") or not header[7:]:
        raise GypsumError(401, "no user identity supplied")
    return header[7:]


def is_one_of(identity: Identity, names: Iterable[Any]) -> bool:
    """True when the login or one organisation is among ``names`` (case-insensitive)."""
    wanted = {n.strip().lower() for n in names if isinstance(n, str)}
    return identity.login.lower() in wanted or \
        any(o.lower() in wanted for o in identity.organizations)


@dataclass(frozen=True)
class UploadRight:
    """Outcome of the upload check: may manage the project, and trusted or not."""

    can_manage: bool
    trusted: bool


class Auth:
    """Identity lookups and the permission checks of §3.4."""

    def __init__(self, store: Store, github: GitHub, admins: Iterable[str],
                 identity_ttl: float = IDENTITY_TTL,
                 permissions_ttl: float = PERMISSIONS_TTL) -> None:
        self.store = store
        self.github = github
        self.admins = [a.strip() for a in admins if a.strip()]
        self.identities: TTLCache[Identity] = TTLCache(identity_ttl)
        self.permissions_cache: TTLCache[Dict[str, Any]] = TTLCache(permissions_ttl)

    def identity(self, header: Optional[str]) -> Identity:
        """The user of the request's bearer token (cached)."""
        token = bearer(header)
        key = hashlib.sha256(token.encode("utf-8")).hexdigest()
        known = self.identities.get(key)
        if known is None:
            known = self.github.identity(token)
            self.identities.put(key, known)
        return known

    def is_admin(self, identity: Identity) -> bool:
        """Administrator by login or organisation."""
        return is_one_of(identity, self.admins)

    def admin(self, header: Optional[str]) -> Identity:
        """The caller, who must be an administrator (401/403)."""
        identity = self.identity(header)
        if not self.is_admin(identity):
            raise GypsumError(403, "user is not an administrator")
        return identity

    def permissions(self, project: str, cached: bool = True) -> Optional[Dict[str, Any]]:
        """The project's ``..permissions`` (cached 5 min), or None when absent."""
        if cached:
            known = self.permissions_cache.get(project)
            if known is not None:
                return known
        value = read_json(self.store, f"{project}/..permissions")
        if not isinstance(value, dict):
            return None
        self.permissions_cache.put(project, value)
        return value

    def _require_permissions(self, project: str) -> Dict[str, Any]:
        perms = self.permissions(project)
        if perms is None:
            raise GypsumError(400, f"no existing permissions for project '{project}'")
        return perms

    def is_owner(self, identity: Identity, perms: Dict[str, Any]) -> bool:
        """Owner of the project or administrator."""
        owners = perms.get("owners")
        return self.is_admin(identity) or (isinstance(owners, list) and is_one_of(identity, owners))

    def manager(self, header: Optional[str], project: str) -> Identity:
        """The caller, who must own the project or be an administrator (approve)."""
        identity = self.identity(header)
        if not self.is_owner(identity, self._require_permissions(project)):
            raise GypsumError(403, f"user is not an owner of project '{project}'")
        return identity

    def uploader(self, header: Optional[str], project: str, asset: str,
                 version: str) -> Tuple[Identity, UploadRight]:
        """The caller and their right to upload ``asset``/``version`` (403 if none)."""
        identity = self.identity(header)
        perms = self._require_permissions(project)
        if self.is_owner(identity, perms):
            return identity, UploadRight(True, True)
        uploaders = perms.get("uploaders")
        for entry in uploaders if isinstance(uploaders, list) else []:
            if not isinstance(entry, dict) or not is_one_of(identity, [entry.get("id")]):
                continue
            if not _entry_allows(entry, asset, version):
                break
            return identity, UploadRight(False, entry.get("trusted") is True)
        raise GypsumError(403, "user is not authorized to upload")

    def forget_permissions(self, project: str) -> None:
        """Drop the cached permissions after a change."""
        self.permissions_cache.drop(project)


def _entry_allows(entry: Dict[str, Any], asset: str, version: str) -> bool:
    if "asset" in entry and entry["asset"] != asset:
        return False
    if "version" in entry and entry["version"] != version:
        return False
    until = entry.get("until")
    if until is not None:
        limit = parse_iso(until) if isinstance(until, str) else None
        if limit is None or limit < datetime.datetime.now(datetime.timezone.utc):
            return False
    return True
