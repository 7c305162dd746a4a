"""Reading and writing the bookkeeping documents of §2.4, byte-compatible with the worker.

JSON is written compact, in the worker's key order and without escaping
non-ASCII (like ``JSON.stringify``); times are ``toISOString()`` style.
"""

from __future__ import annotations

import datetime
import json
import random
from typing import Any, Dict, Optional

from artifacts_py.servers.gypsum.errors import GypsumError
from artifacts_py.servers.gypsum.store import Store


def now_iso(now: Optional[datetime.datetime] = None) -> str:
    """UTC time with milliseconds and ``Z``, e.g. ``2024-05-19T18:45:13.123Z``."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def parse_iso(text: str) -> Optional[datetime.datetime]:
    """An aware datetime of an ISO time (no offset means UTC), or None."""
    try:
        value = datetime.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def dumps(value: Any) -> bytes:
    """Compact JSON like ``JSON.stringify`` (integral floats written as integers)."""
    return json.dumps(_integral(value), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def read_json(store: Store, key: str) -> Optional[Any]:
    """The parsed document at ``key`` or None when absent (500 when it is not JSON)."""
    raw = store.read(key)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise GypsumError(500, f"file at '{key}' is not valid JSON") from None


def require_json(store: Store, key: str) -> Any:
    """Like :func:`read_json`, but a missing file is the worker's 500 ``no file at``."""
    value = read_json(store, key)
    if value is None:
        raise GypsumError(500, f"no file at '{key}'")
    return value


def write_json(store: Store, key: str, value: Any) -> None:
    """Write a JSON document with ``Content-Type: application/json``."""
    store.write(key, dumps(value))


def add_log(store: Store, entry: Dict[str, Any]) -> None:
    """Write ``..logs/<time>_<6 digits>`` (§2.4.9)."""
    name = f"..logs/{now_iso()}_{random.randint(100000, 999999)}"
    write_json(store, name, entry)


def usage_key(project: str) -> str:
    """Key of the project's ``..usage``."""
    return f"{project}/..usage"


def adjust_usage(store: Store, project: str, delta: float) -> None:
    """Add ``delta`` to ``..usage`` (floored at 0); 500 if the project has none."""
    usage = require_json(store, usage_key(project))
    total = usage.get("total", 0) if isinstance(usage, dict) else 0
    write_json(store, usage_key(project), {"total": max(0, (total or 0) + delta)})
