"""What each endpoint does, independent of HTTP: one module per group of endpoints.

Every function takes the :class:`Service` and the request's decoded names,
raw body and ``Authorization`` header, and returns the JSON to answer (or
None for the empty 200 of mutating endpoints); refusals raise GypsumError.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from artifacts_py.servers.gypsum.auth import Auth
from artifacts_py.servers.gypsum.errors import GypsumError
from artifacts_py.servers.gypsum.store import Store


@dataclass
class Service:
    """Everything the actions need: the store, the auth checks and settings."""

    store: Store
    auth: Auth
    presign_expiry: int = 3600
    github_app: Optional[Tuple[str, str]] = None
    log_retention_days: float = 7.0


def parse_body(raw: bytes) -> Any:
    """The request body as JSON; 400 with the worker's message when it is not."""
    try:
        return json.loads(raw.decode("utf-8") if raw else "")
    except (ValueError, UnicodeDecodeError) as exc:
        raise GypsumError(400, f"failed to parse JSON body; {exc}") from None


def version_prefix(project: str, asset: str, version: str) -> str:
    """``{p}/{a}/{v}/``."""
    return f"{project}/{asset}/{version}/"


def delete_prefix(store: Store, prefix: str, keep: Tuple[str, ...] = ()) -> int:
    """Delete every key under ``prefix`` except ``keep``; returns the user bytes freed."""
    from artifacts_py.servers.gypsum.names import is_internal

    objects = [o for o in store.list(prefix, recursive=True).objects if o.key not in keep]
    store.delete(o.key for o in objects)
    return sum(o.size for o in objects if not is_internal(o.key))
