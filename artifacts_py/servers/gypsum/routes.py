"""Routing a request target to an endpoint (§4.0.1), like the worker's itty-router.

Each parameter is exactly one raw path segment, percent-decoded once
(strictly: a bad escape is the worker's ``URI malformed``); ``{slug}`` and the
local upload token are taken verbatim. Trailing slashes are tolerated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple
from urllib.parse import unquote_to_bytes

from artifacts_py.servers.gypsum.errors import GypsumError

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")

# (method, literal segments, number of parameters, raw parameters?) -> endpoint name
ROUTES: Dict[Tuple[str, Tuple[str, ...], int], Tuple[str, bool]] = {
    ("GET", ("file",), 1): ("file", False),
    ("HEAD", ("file",), 1): ("file", False),
    ("GET", ("list",), 0): ("list", False),
    ("GET", ("credentials", "s3-api"), 0): ("s3-credentials", False),
    ("GET", ("credentials", "github-app"), 0): ("github-app", False),
    ("POST", ("create",), 1): ("create", False),
    ("DELETE", ("remove",), 1): ("remove-project", False),
    ("DELETE", ("remove",), 2): ("remove-asset", False),
    ("DELETE", ("remove",), 3): ("remove-version", False),
    ("POST", ("upload", "start"), 3): ("upload-start", False),
    ("POST", ("upload", "presigned-file"), 1): ("presign", True),
    ("POST", ("upload", "complete"), 3): ("upload-complete", False),
    ("POST", ("upload", "abort"), 3): ("upload-abort", False),
    ("PUT", ("upload", "put"), 1): ("upload-put", True),
    ("PUT", ("permissions",), 1): ("permissions", False),
    ("PUT", ("quota",), 1): ("quota", False),
    ("POST", ("probation", "approve"), 3): ("approve", False),
    ("POST", ("probation", "reject"), 3): ("reject", False),
    ("POST", ("refresh", "latest"), 2): ("refresh-latest", False),
    ("POST", ("refresh", "usage"), 1): ("refresh-usage", False),
    ("DELETE", ("unlock",), 1): ("unlock", False),
}
_PREFIX_LENGTHS = sorted({len(k[1]) for k in ROUTES}, reverse=True)


@dataclass(frozen=True)
class Match:
    """A matched endpoint and its parameters."""

    name: str
    params: List[str]


def decode(segment: str) -> str:
    """``decodeURIComponent``: once, strict UTF-8; 500 ``URI malformed`` otherwise."""
    if _BAD_ESCAPE.search(segment):
        raise GypsumError(500, "URI malformed")
    try:
        return unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError:
        raise GypsumError(500, "URI malformed") from None


def match(method: str, raw_path: str) -> Optional[Match]:
    """The endpoint for ``method`` and the raw (still encoded) path, or None."""
    segments = raw_path.split("/")[1:]
    while segments and segments[-1] == "":
        segments.pop()
    if "" in segments:
        return None
    for length in _PREFIX_LENGTHS:
        head = tuple(segments[:length])
        found = ROUTES.get((method, head, len(segments) - length))
        if found is not None:
            name, raw = found
            rest = segments[length:]
            return Match(name, rest if raw else [decode(s) for s in rest])
    return None


def collapsed(raw_path: str) -> Optional[str]:
    """The path with runs of ``/`` collapsed, when it has any (the worker's 301)."""
    fixed = re.sub(r"/{2,}", "/", raw_path)
    return fixed if fixed != raw_path else None
