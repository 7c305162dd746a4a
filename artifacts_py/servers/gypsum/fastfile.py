"""The fast path of ``GET /file/<key>`` on the local store: the request a download repeats.

A resolver fetches thousands of small objects, and the service shares the
machine's cores with it. Through the general path each costs the standard
library's header parsing (the ``email`` package), a Python file object, two
date formats and a dozen small objects: 120-240 us of CPU on this 2-core
machine. Here a plain request costs a peek at the read buffer, one regex per
line, ``open``, ``fstat``, a cached header block and one ``sendall`` (or
``sendfile``): 50-80 us.

The path is taken only when the whole request head is already in the
connection's read buffer (peeked, not consumed) and is plain: ``GET``,
HTTP/1.1, one path segment after ``/file/``, no query, no body, no
``Expect``, every header line well formed and at most 100 of them; and when
the key names a regular file. Anything else is left untouched for the
general path, which answers it as before (errors included). The answer is
the general path's, header for header.
"""

from __future__ import annotations

import email.utils
import re
import time
from typing import Dict, NamedTuple, Optional, Tuple

from artifacts_py.servers.gypsum.routes import decode

_REQUEST = re.compile(rb"GET /file/([^/?\x00-\x20\x7f]+) HTTP/1\.1\r\n")
_HEADER = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\r\n]*)\r\n")
_END = b"\r\n\r\n"
_MAX_HEADERS = 100  # the standard library's limit (it answers 431 above it)
_BODY_OR_EXPECT = frozenset((b"content-length", b"transfer-encoding", b"expect"))
_CACHE_SIZE = 8192


class Plain(NamedTuple):
    """A plain ``GET /file/<key>`` found in the read buffer."""

    key: str  # decoded, as the router would give it
    length: int  # bytes of the request head, to consume once answered
    close: bool  # the client sent ``Connection: close``
    line: str  # the request line, for the access log


def parse(buffered: bytes) -> Optional[Plain]:
    """The plain request at the start of ``buffered``, or None (then take the general path)."""
    first = _REQUEST.match(buffered)
    if first is None:
        return None
    end = buffered.find(_END, first.end() - 2)
    if end < 0:
        return None  # the head is not all here yet
    close: Optional[bool] = None
    pos, count = first.end(), 0
    while pos < end + 2:
        header = _HEADER.match(buffered, pos)
        count += 1
        if header is None or count > _MAX_HEADERS:
            return None
        name = header.group(1).lower()
        if name in _BODY_OR_EXPECT:
            return None
        if name == b"connection" and close is None:  # the first one counts, as in the stdlib
            close = header.group(2).lower() == b"close"
        pos = header.end()
    try:
        key = decode(first.group(1).decode("latin-1"))
    except Exception:  # noqa: BLE001 - a bad escape: the general path answers it
        return None
    return Plain(key, end + 4, bool(close), buffered[:first.end() - 2].decode("latin-1"))


class HeadCache:
    """Per-object header lines (``Content-Type`` to the blank line), by key and file identity.

    The identity is (device, inode, mtime in ns, size): a replaced object
    misses the cache. Bounded; cleared whole when full (a few ms to refill).
    """

    def __init__(self) -> None:
        self._heads: Dict[Tuple[str, int, int, int, int], bytes] = {}

    def get(self, key: str, ident: Tuple[int, int, int, int]) -> Optional[bytes]:
        return self._heads.get((key, *ident))

    def put(self, key: str, ident: Tuple[int, int, int, int], head: bytes) -> None:
        if len(self._heads) >= _CACHE_SIZE:
            self._heads.clear()
        self._heads[(key, *ident)] = head


def http_date() -> str:
    """The ``Date`` header's value now, formatted once per second (as the stdlib formats it)."""
    global _date
    second = int(time.time())
    if _date[0] != second:  # a race only formats the same second twice
        _date = (second, email.utils.formatdate(second, usegmt=True))
    return _date[1]


_date: Tuple[int, str] = (-1, "")
