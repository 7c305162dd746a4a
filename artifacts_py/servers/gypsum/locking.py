"""The per-project lock ``{p}/..LOCK`` and upload session tokens (§2.4.4, §3.5, §4.21).

The lock is taken with the store's atomic create, so two service replicas
(or two requests) can never both hold it (the worker's head-then-put can).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import uuid
from typing import Any, Dict, Iterator

from artifacts_py.servers.gypsum.documents import dumps, read_json
from artifacts_py.servers.gypsum.errors import GypsumError
from artifacts_py.servers.gypsum.store import Store

_UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
                    re.IGNORECASE)


def lock_key(project: str) -> str:
    """Key of the project's lock."""
    return f"{project}/..LOCK"


def session_hash(token: str) -> str:
    """``base64(SHA-256(utf8(token)))``, the only form of a token that is stored."""
    return base64.b64encode(hashlib.sha256(token.encode("utf-8")).digest()).decode("ascii")


def acquire(store: Store, project: str, asset: str, version: str) -> str:
    """Take the lock for a fresh session token (returned); 403 when already held."""
    token = str(uuid.uuid4())
    doc = {"session_hash": session_hash(token), "asset": asset, "version": version}
    if not store.create(lock_key(project), dumps(doc), content_type=None):
        raise GypsumError(403, "project asset has already been locked")
    return token


def release(store: Store, project: str) -> None:
    """Delete the lock (whoever holds it)."""
    store.delete([lock_key(project)])


@contextlib.contextmanager
def held(store: Store, project: str, asset: str, version: str) -> Iterator[None]:
    """Hold the lock for the body of a ``with`` block (approve, remove, refresh...)."""
    acquire(store, project, asset, version)
    try:
        yield
    finally:
        release(store, project)


def check_session(store: Store, project: str, asset: str, version: str,
                  token: str) -> Dict[str, Any]:
    """The lock document if ``token`` holds it for this asset/version; else the §3.5 403s."""
    lock = read_json(store, lock_key(project))
    if not isinstance(lock, dict):
        raise GypsumError(403, "project has not been previously locked for upload")
    if not _UUID4.match(token):
        raise GypsumError(403, "session token does not look like a v4 UUID")
    if lock.get("session_hash") != session_hash(token):
        raise GypsumError(403, "project was locked for a different upload session")
    if lock.get("asset") != asset:
        raise GypsumError(403, "project was locked for upload of a different asset")
    if lock.get("version") != version:
        raise GypsumError(403, "project was locked for upload of a different version")
    return lock
