"""Reading an HTTP/1.x request head the way Go's ``net/http`` server does.

The standard library's ``BaseHTTPRequestHandler`` accepts HTTP/0.9, folds
``//`` in paths, tolerates broken header lines and bad escapes, and dies on
some of them. Here the request line, headers and body framing are checked
like Go's ``readRequest``; anything wrong raises :class:`WireError`, whose
:meth:`~WireError.response` is the answer Go writes before closing
(``gobbler-protocol.md`` §4).
"""

from __future__ import annotations

import email.parser
import re
from dataclasses import dataclass
from http import HTTPStatus
from http.client import HTTPMessage
from typing import List, Optional, Protocol, Tuple

MAX_LINE = 65536  # one request or header line
MAX_HEAD = 1 << 20  # the whole head, Go's DefaultMaxHeaderBytes
MAX_HEADERS = 500

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A whole header line: a token name, a colon, a value without control characters, an end.
_HEADER = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00-\x08\x0a-\x1f\x7f]*\r?\n")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_TARGET_CTL = re.compile(rb"[\x00-\x20\x7f]")


class LineReader(Protocol):
    """What headers are read from (the handler's buffered ``rfile``)."""

    def readline(self, size: Optional[int] = -1, /) -> bytes: ...


class WireError(Exception):
    """A request Go refuses before any handler runs."""

    def __init__(self, status: int, detail: str = "", body: Optional[str] = None) -> None:
        super().__init__(detail or HTTPStatus(status).phrase)
        self.status = status
        self.detail = detail
        self.body = body

    def response(self) -> bytes:
        """Go's raw answer: plain text, ``Connection: close``, e.g. ``400 Bad Request``."""
        text = f"{self.status} {HTTPStatus(self.status).phrase}"
        if self.detail:
            text += f": {self.detail}"
        body = (self.body if self.body is not None else text).encode()
        return (f"HTTP/1.1 {text}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


@dataclass
class RequestLine:
    """The three parts of a request line; ``target`` is still percent-encoded."""

    method: str
    target: str  # latin-1 text of the raw bytes, so no byte is lost
    major: int
    minor: int

    @property
    def version(self) -> str:
        return f"HTTP/{self.major}.{self.minor}"


def parse_version(text: bytes) -> Optional[Tuple[int, int]]:
    """Go's ``ParseHTTPVersion``: ``HTTP/X.Y`` with one digit each, else None."""
    if len(text) != 8 or not text.startswith(b"HTTP/") or text[6:7] != b".":
        return None
    major, minor = text[5:6], text[7:8]
    if not (major.isdigit() and minor.isdigit()):
        return None
    return int(major), int(minor)


def parse_request_line(raw: bytes) -> RequestLine:
    """Split ``METHOD SP target SP HTTP/x.y`` exactly as Go does (single spaces).

    Checks in Go's order: three parts, the method, the version's syntax,
    the target. Whether the version is supported is checked later
    (:func:`check_framing`), after the headers, as Go does.
    """
    line = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1] if raw.endswith(b"\n") else raw
    method, sp1, rest = line.partition(b" ")
    target, sp2, proto = rest.partition(b" ")
    if not (sp1 and sp2):
        raise WireError(400)  # HTTP/0.9, a bare method, garbage
    if not _TOKEN.fullmatch(method):
        raise WireError(400)
    version = parse_version(proto)
    if version is None:
        raise WireError(400)
    check_target(target, method)
    return RequestLine(method.decode("ascii"), target.decode("latin-1"), *version)


def check_target(target: bytes, method: bytes) -> None:
    """Go's ``url.ParseRequestURI``: origin or absolute form, valid escapes, no controls."""
    if target == b"*":
        if method != b"OPTIONS":
            raise WireError(400)
        return
    if not (target.startswith(b"/") or re.match(rb"[A-Za-z][A-Za-z0-9+.\-]*://", target)):
        raise WireError(400)
    if _TARGET_CTL.search(target) or _BAD_ESCAPE.search(target):
        raise WireError(400)


def read_headers(rfile: LineReader, line_length: int) -> HTTPMessage:
    """Read header lines up to the blank line; 431 when too large, 400 when malformed."""
    lines: List[bytes] = []
    size = line_length
    while True:
        line = rfile.readline(MAX_LINE + 1)
        size += len(line)
        if len(line) > MAX_LINE or size > MAX_HEAD or len(lines) >= MAX_HEADERS:
            raise WireError(431, body="431 Request Header Fields Too Large")
        if line in (b"\r\n", b"\n"):
            break
        if not _HEADER.fullmatch(line):
            raise WireError(400)  # end of input, folding, no colon, a bad name or value
        lines.append(line.rstrip(b"\r\n") + b"\r\n")
    text = b"".join(lines).decode("latin-1")
    message: HTTPMessage = email.parser.Parser(_class=HTTPMessage).parsestr(text)
    return message


def content_length(headers: HTTPMessage, chunked: bool) -> int:
    """The body length Go would use: -1 for none/chunked; 400 when invalid or ambiguous."""
    values = {v.strip() for v in headers.get_all("Content-Length") or []}
    if len(values) > 1:
        raise WireError(400)
    if chunked or not values:
        return -1
    (value,) = values
    if not value.isdigit() or not value.isascii():
        raise WireError(400)
    return int(value)


def check_framing(line: RequestLine, headers: HTTPMessage) -> Optional[int]:
    """After the head is read, in Go's order: body framing, version support, Host.

    Returns the length of the request body, or None for a chunked one.
    """
    http11 = (line.major, line.minor) >= (1, 1)
    # Transfer-Encoding counts from HTTP/1.1 on; only plain "chunked" is supported.
    codings = (headers.get_all("Transfer-Encoding") or []) if http11 else []
    if codings and (len(codings) > 1 or codings[0].strip().lower() != "chunked"):
        raise WireError(501, body="Unsupported transfer encoding")
    length = content_length(headers, chunked=bool(codings))
    if line.major != 1:
        raise WireError(505, "unsupported protocol version")
    if http11:
        hosts = headers.get_all("Host") or []
        if not hosts:
            raise WireError(400, "missing required Host header")
        if len(hosts) > 1:
            raise WireError(400, "too many Host headers")
    return None if codings else max(length, 0)
