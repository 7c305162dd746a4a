"""A real HTTP/1.1 test server on 127.0.0.1 that can misbehave on purpose.

Serves an in-memory ``{path: bytes}`` map with HEAD, Content-Length and
single-range requests (206 + Content-Range, ``Accept-Ranges: bytes``).
Each path may carry faults (see :meth:`FaultyServer.add`). Every request is
recorded in ``server.requests`` for assertions. Usage::

    from httpserver import http_server, FaultyServer   # fixture + class

    def test_x(http_server):
        url = http_server.add("/a.bin", b"...", truncate_first=1, truncate_at=10)
        ...
        assert http_server.requests[1].headers["Range"] == "bytes=10-"

Run ``python tests/httpserver.py 256`` to serve 256 MiB of random bytes at
``/blob`` for manual benchmarks.
"""

from __future__ import annotations

import re
import sys
import threading
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple

import pytest

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
# A byte map giving "different bytes of the same length" at C speed.
_SHIFT = bytes((i + 1) % 256 for i in range(256))


@dataclass
class Faults:
    """Per-path misbehaviour; all off by default. See FaultyServer.add."""

    truncate_first: int = 0
    truncate_at: int = 0
    fail_first: Optional[int] = None
    status: Optional[int] = None
    retry_after: Optional[float] = None
    ignore_range: bool = False
    wrong_bytes: bool = False
    stall_after: Optional[int] = None
    stall_first: Optional[int] = None
    lie_range: bool = False
    drip_every: Optional[float] = None


@dataclass
class _Entry:
    data: bytes
    faults: Faults
    headers: Dict[str, str]
    hits: int = 0  # requests of any method so far
    gets: int = 0  # GET requests so far


@dataclass
class Request:
    """One recorded request; ``headers`` is case-insensitive (``.get("range")``)."""

    method: str
    path: str
    headers: Message = field(repr=False)
    peer: Tuple[str, int] = ("", 0)  # the client's address: one per connection


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients hanging up mid-response are part of the tests, not errors.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class FaultyServer:
    """Threaded HTTP/1.1 server on a random free port, run in a daemon thread.

    Use as a context manager (or the ``http_server`` fixture). Stalled
    handlers wait on an Event that :meth:`stop` sets, so shutdown never hangs.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._files: Dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self.requests: List[Request] = []
        self.released = threading.Event()
        self.stalled = threading.Event()  # set when a stalled answer starts to wait
        self._httpd = _Server((host, 0), _Handler)
        self._httpd.owner = self  # type: ignore[attr-defined]
        self._thread: Optional[threading.Thread] = None
        self.port: int = self._httpd.server_address[1]
        self.base_url = f"http://{host}:{self.port}"

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> "FaultyServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.released.set()  # free stalled handlers first
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "FaultyServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- content -----------------------------------------------------------
    def add(self, path: str, data: bytes, *, headers: Optional[Dict[str, str]] = None,
            **faults: object) -> str:
        """Serve ``data`` at ``path``; return its full URL.

        ``headers`` are extra response headers (e.g. ``{"ETag": '"x"'}``).
        Faults (keyword arguments):

        - ``truncate_first=N, truncate_at=K``: the first N GETs announce the
          full Content-Length but close the connection after K body bytes.
        - ``fail_first=N, status=S, retry_after=T``: the first N requests (any
          method) answer status S, with ``Retry-After: T`` if given; ``status``
          without ``fail_first`` fails every request.
        - ``ignore_range=True``: advertise ``Accept-Ranges: bytes`` but always
          answer 200 with the whole body.
        - ``wrong_bytes=True``: serve different bytes of the same length.
        - ``stall_after=K`` (``stall_first=N``): send headers and K body bytes,
          then block until the server stops (only for the first N GETs if set).
        - ``lie_range=True``: answer a Range request with 206 and a
          Content-Range starting at 0, and the whole body.
        - ``drip_every=T``: send the body one byte every T seconds (until the
          client gives up or the server stops).
        """
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        entry = _Entry(bytes(data), Faults(**faults), dict(headers or {}))  # type: ignore[arg-type]
        with self._lock:
            self._files[path] = entry
        return self.url(path)

    def url(self, path: str) -> str:
        """Full URL of ``path`` on this server."""
        return self.base_url + path

    def count(self, path: str, method: Optional[str] = None) -> int:
        """Number of requests recorded for ``path`` (optionally one method)."""
        with self._lock:
            return sum(1 for r in self.requests
                       if r.path.split("?", 1)[0] == path and method in (None, r.method))

    def requests_for(self, path: str) -> List[Request]:
        """The recorded requests for ``path``, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.path.split("?", 1)[0] == path]

    def _record(self, handler: BaseHTTPRequestHandler) -> Tuple[Optional[_Entry], int, int]:
        """Log a request and return (entry, request index, GET index) for it."""
        path = handler.path.split("?", 1)[0]
        if "://" in path:  # absolute form: we are being used as an HTTP proxy
            path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
        with self._lock:
            self.requests.append(Request(handler.command, handler.path, handler.headers,
                                         handler.client_address[:2]))
            entry = self._files.get(path)
            if entry is None:
                return None, 0, 0
            hit, get = entry.hits, entry.gets
            entry.hits += 1
            entry.gets += handler.command == "GET"
            return entry, hit, get


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        owner: FaultyServer = self.server.owner  # type: ignore[attr-defined]
        entry, hit, get = owner._record(self)
        if entry is None:
            return self._empty(404)
        f = entry.faults
        if f.status is not None and (f.fail_first is None or hit < f.fail_first):
            extra = {} if f.retry_after is None else {"Retry-After": f"{f.retry_after:g}"}
            return self._empty(f.status, extra)

        data = entry.data.translate(_SHIFT) if f.wrong_bytes else entry.data
        size = len(data)
        status, start, end = 200, 0, size
        wanted = _parse_range(self.headers.get("Range"), size)
        if wanted == "unsatisfiable" and not (f.ignore_range or f.lie_range):
            return self._empty(416, {"Content-Range": f"bytes */{size}"})
        if isinstance(wanted, tuple) and not f.ignore_range:
            status, (start, end) = 206, ((0, size) if f.lie_range else wanted)

        self.send_response(status)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")  # even when ignore_range lies
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        for k, v in entry.headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not body:
            return

        view = memoryview(data)[start:end]
        cut: Optional[int] = None
        stall = f.stall_after is not None and (f.stall_first is None or get < f.stall_first)
        if stall:
            cut = f.stall_after
        elif get < f.truncate_first:
            cut = f.truncate_at
        try:
            if f.drip_every is not None:
                for i in range(len(view)):
                    self.wfile.write(view[i:i + 1])
                    self.wfile.flush()
                    if owner.released.wait(f.drip_every):
                        break
                self.close_connection = True
                return
            self.wfile.write(view if cut is None else view[:cut])
            self.wfile.flush()
            if stall:
                owner.stalled.set()
                owner.released.wait()
        except ConnectionError:
            pass  # the client gave up; that is its right
        if cut is not None:
            self.close_connection = True

    def _empty(self, status: int, headers: Optional[Dict[str, str]] = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _parse_range(header: Optional[str], size: int) -> "Tuple[int, int] | str | None":
    """(start, end) for a single satisfiable range, "unsatisfiable", or None."""
    m = _RANGE.match(header or "")
    if not m or m.groups() == ("", ""):
        return None  # absent or not a single byte range: serve it all
    first, last = m.groups()
    if first == "":  # suffix range: the last N bytes
        n = int(last)
        return (max(0, size - n), size) if n else "unsatisfiable"
    start = int(first)
    end = size if last == "" else min(size, int(last) + 1)
    return (start, end) if start < size else "unsatisfiable"


@pytest.fixture
def http_server():
    """A running :class:`FaultyServer`, stopped after the test."""
    with FaultyServer() as server:
        yield server


if __name__ == "__main__":
    import os

    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    srv = FaultyServer()
    srv.add("/blob", os.urandom(mib << 20))
    print(srv.url("/blob"), flush=True)
    srv._httpd.serve_forever()
