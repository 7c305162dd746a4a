"""One kept-alive HTTP/1.1 connection for plain GETs of small files of known size.

The transport's fast path for many small files (:meth:`Transport.get_small`).
``http.client`` parses every answer's headers with the ``email`` package,
which costs most of a small file's client CPU: 3,000 GETs of 1 KiB from our
Gobbler server on loopback took 130-140 us of client CPU per request with
``http.client``, 20 us with this. This speaks only the part of HTTP/1.1 that a
plain GET of a stored file needs (a ``200`` with a ``Content-Length``, kept
alive) and refuses everything else by answering None: the caller then uses
the robust path (urllib3: redirects, retries, resumes, chunked bodies,
proxies), so nothing here needs to handle the unusual.
"""

from __future__ import annotations

import re
import socket
from typing import Any, Mapping, Optional, Tuple

# A status line and headers longer than this are not a plain file's answer.
MAX_HEAD = 16 << 10
# The largest body taken when the caller does not know the size (a manifest).
MAX_BODY = 64 << 20
_RECV = 64 << 10
# Anything but printable ASCII without spaces in a request target is refused (http.client
# refuses such URLs too); targets here come percent-encoded.
_BAD_TARGET = re.compile(r"[^\x21-\x7e]")


class LeanConnection:
    """GETs to one ``host:port`` over one connection, opened on first use and reopened
    after the server closes it."""

    def __init__(self, host: str, port: int, headers: Mapping[str, str], *,
                 connect_timeout: float, read_timeout: float, tls: Any = None) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        shown = f"[{host}]" if ":" in host else host
        if port != (443 if tls is not None else 80):
            shown = f"{shown}:{port}"
        lines = [f"Host: {shown}"] + [f"{k}: {v}" for k, v in headers.items()]
        self._headers = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.sock: Optional[socket.socket] = None

    def get(self, target: str, size: Optional[int], limit: int = MAX_BODY) -> Optional[bytes]:
        """The body of a ``200`` answer of exactly ``size`` bytes to ``GET target``, or None.

        ``size=None`` takes a body of any announced length up to ``limit``.
        None for anything else (another status, a length that differs or is
        missing, a chunked body, a broken connection, a timeout); the
        connection is then closed, since its state is unknown.
        """
        if _BAD_TARGET.search(target):
            return None
        try:
            body = self._get(target, size, limit)
        except (OSError, ValueError):  # socket errors, timeouts, TLS errors; a bad number
            body = None
        if body is None:
            self.close()
        return body

    def connect(self) -> None:
        """Open the connection now (a GET opens it when needed)."""
        if self.sock is None:
            self.sock = self._connect()

    def _get(self, target: str, size: Optional[int], limit: int) -> Optional[bytes]:
        self.connect()
        sock = self.sock
        assert sock is not None
        sock.sendall(b"GET " + target.encode("ascii") + b" HTTP/1.1\r\n" + self._headers)
        data = b""
        while True:
            more = sock.recv(_RECV)
            if not more:
                return None
            data += more
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(data) > MAX_HEAD:
                return None
        answer = _plain_200(data[:end])
        if answer is None:
            return None
        keep, length = answer
        if length != size and (size is not None or length > limit):
            return None
        body = data[end + 4:]
        if len(body) < length:
            buf = bytearray(length)
            buf[:len(body)] = body
            view, got = memoryview(buf), len(body)
            while got < length:
                n = sock.recv_into(view[got:])
                if not n:
                    return None
                got += n
            body = bytes(buf)
        if len(body) != length:  # more than announced: not a conforming answer
            return None
        if not keep:
            self.close()  # the server closes it; the next GET reconnects
        return body

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.read_timeout)
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        """Close the connection (the next GET opens a new one)."""
        if self.sock is not None:
            sock, self.sock = self.sock, None
            sock.close()


def _plain_200(head: bytes) -> Optional[Tuple[bool, int]]:
    """(whether the connection stays open, the body's length) of a plain ``200`` answer
    with this status line and headers; None when the answer is anything else."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    if rest[:4] != b"200 " and rest != b"200":
        return None
    if version == b"HTTP/1.1":
        keep = True
    elif version == b"HTTP/1.0":
        keep = False
    else:
        return None
    length: Optional[bytes] = None
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or name != name.strip() or not name:
            return None  # malformed, or a folded continuation line
        name, value = name.lower(), value.strip()
        if name == b"content-length":
            if length is not None and value != length:
                return None
            length = value
        elif name == b"transfer-encoding":
            return None
        elif name == b"connection":
            tokens = {t.strip() for t in value.lower().split(b",")}
            if b"close" in tokens:
                keep = False
            elif b"keep-alive" in tokens:
                keep = True
    if length is None or not length.isdigit() or len(length) > 18:
        return None
    return keep, int(length)
