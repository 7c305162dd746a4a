"""Helpers for tests/test_sources_gobbler.py and test_hostile_input.py: a
counting reverse proxy in front of the Gobbler server (it can also lie on
purpose), a sample tree, and the body of the child processes that race to
resolve one artifact.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlsplit

# Headers worth passing on in either direction (no hop-by-hop ones).
_PASS_REQUEST = ("Range", "Accept-Encoding", "User-Agent")
_PASS_RESPONSE = ("Content-Type", "Content-Length", "Content-Range", "Accept-Ranges",
                  "Last-Modified", "ETag")

# A Gobbler upload with the awkward cases: nested dirs, an empty file, an
# executable, a symlink (uploaded as its content), an empty dir, a dot file.
SAMPLE: Dict[str, bytes] = {
    "matrix.csv": b"gene,c1,c2\nA,1,0\nB,3,7\n",
    "sub/deeper/notes.txt": b"deep\n" * 100,
    "sub/empty.dat": b"",
    "bin/run.sh": b"#!/bin/sh\necho hi\n",
    "odd names/a b#1?%20é.txt": b"quoted in URLs\n",
    "big.bin": bytes(range(256)) * 4096,  # 1 MiB: more than one read chunk
}


def make_sample(root: Path, files: Optional[Dict[str, bytes]] = None) -> Path:
    """Write ``files`` (default :data:`SAMPLE`) plus a link, an empty dir and a dot file."""
    files = SAMPLE if files is None else files
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    if files is SAMPLE:
        os.chmod(root / "bin/run.sh", 0o755)
        os.symlink("../matrix.csv", root / "sub/link.csv")
        (root / "emptydir").mkdir()
        (root / ".hidden").write_bytes(b"skipped by the upload\n")
    return root


class CountingProxy:
    """A reverse proxy on 127.0.0.1 that counts GETs per path.

    ``overrides`` maps a request path to bytes served instead of the
    upstream's answer (a lying server). ``faults`` maps a path to what goes
    wrong with its first GET: ``"503"`` (a transient error) or ``"truncate"``
    (half the body, then the connection drops). ``ranges`` records the
    ``Range`` header of every GET that had one. ``connections`` counts TCP
    connections; ``in_flight_max`` the most GETs served at once. After
    :meth:`hold` the first ``n`` GETs of files wait for each other.
    ``delay`` seconds are added before every answer (a far server).
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream).netloc
        self.counts: Counter = Counter()
        self.overrides: Dict[str, bytes] = {}
        self.faults: Dict[str, str] = {}
        self.ranges: List[Tuple[str, str]] = []
        self.connections = 0
        self.in_flight = self.in_flight_max = 0
        self.gate: Optional[threading.Barrier] = None
        self.gate_left = 0
        self.delay = 0.0
        self.lock = threading.Lock()
        self.opened = threading.Condition(self.lock)  # notified per new connection
        # With n > 0, the manifest is answered once n connections are open (or after 5 s);
        # manifest_saw is how many were open then.
        self.manifest_after_connections = 0
        self.manifest_saw: Optional[int] = None
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with proxy.lock:
                    proxy.connections += 1
                    proxy.opened.notify_all()

            def do_GET(self) -> None:
                proxy._enter(self.path)
                try:
                    self._get()
                finally:
                    with proxy.lock:
                        proxy.in_flight -= 1

            def _get(self) -> None:
                if self.path.endswith("/..manifest") and proxy.manifest_after_connections:
                    with proxy.lock:
                        proxy.opened.wait_for(
                            lambda: proxy.connections >= proxy.manifest_after_connections, 5)
                        proxy.manifest_saw = proxy.connections
                if proxy.delay:
                    time.sleep(proxy.delay)  # the far server's round trip, not synchronisation
                with proxy.lock:
                    proxy.counts[self.path] += 1
                    fault = proxy.faults.pop(self.path, None)
                    if "Range" in self.headers:
                        proxy.ranges.append((self.path, self.headers["Range"]))
                if fault == "503":
                    self._reply(503, {"Content-Length": "0"}, b"")
                    return
                fake = proxy.overrides.get(self.path)
                if fake is not None:
                    self._reply(200, {"Content-Type": "application/json",
                                      "Content-Length": str(len(fake))}, fake)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                try:
                    conn.request("GET", self.path, headers={
                        k: self.headers[k] for k in _PASS_REQUEST if k in self.headers})
                    res = conn.getresponse()
                    body = res.read()
                    headers = {k: res.headers[k] for k in _PASS_RESPONSE if k in res.headers}
                    headers["Content-Length"] = str(len(body))
                    if fault == "truncate":
                        body = body[:len(body) // 2]
                        self.close_connection = True
                    self._reply(res.status, headers, body)
                finally:
                    conn.close()

            def _reply(self, status: int, headers: Dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def hold(self, n: int) -> None:
        """Make the next ``n`` file GETs wait until all ``n`` have arrived (or 10 s)."""
        self.gate, self.gate_left = threading.Barrier(n, timeout=10), n

    def _enter(self, path: str) -> None:
        with self.lock:
            self.in_flight += 1
            self.in_flight_max = max(self.in_flight_max, self.in_flight)
            gate = self.gate if self.gate_left and not path.endswith("/..manifest") else None
            if gate is not None:
                self.gate_left -= 1
        if gate is not None:
            gate.wait()  # BrokenBarrierError (a 500) if they never arrive together

    def fetches(self, fragment: str = "") -> int:
        """How many ``/fetch/`` GETs whose path contains ``fragment`` were seen."""
        with self.lock:
            return sum(n for p, n in self.counts.items()
                       if p.startswith("/fetch/") and fragment in p)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def resolve_worker(name: str, toml: str, barrier, results) -> None:
    """Child process body: wait at the barrier, resolve ``name``, report the path."""
    from artifacts_py import core

    barrier.wait()
    try:
        results.put((str(core.artifact(name, toml)), None))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        results.put((None, f"{type(e).__name__}: {e}"))
