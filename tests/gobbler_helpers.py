"""The one holder of a real ``artifacts-gobbler`` process in the tests.

Start servers with the ``gobbler_factory`` fixtures of ``conftest.py``;
each gives a :class:`RunningGobbler`.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Protocol, Sequence, Tuple, Union

_STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3}) [^\r\n]*\r\n")
_START_TIMEOUT = 30.0


class RunningGobbler:
    """A server child process with its own registry and staging directory.

    ``base`` holds ``registry/`` and ``staging/`` (created if missing, so a
    test may fill them before the start) and ``stderr.txt``, everything the
    server wrote to its standard error (see :meth:`stderr`). ``admin`` is one
    user name or several; ``flags`` go to the server (``-prefix``, ...).
    """

    def __init__(self, base: Union[str, Path], *flags: str,
                 admin: Union[str, Sequence[str]] = "root") -> None:
        self.registry = os.path.join(base, "registry")
        self.staging = os.path.join(base, "staging")
        os.makedirs(self.registry, exist_ok=True)
        os.makedirs(self.staging, exist_ok=True)
        os.chmod(self.staging, 0o1777)
        admins = admin if isinstance(admin, str) else ",".join(admin)
        self.stderr_path = os.path.join(base, "stderr.txt")
        cmd = [sys.executable, "-m", "artifacts_py.servers.gobbler.server", "-registry", self.registry,
               "-staging", self.staging, "-port", "0", "-admin", admins, *flags]
        with open(self.stderr_path, "wb") as stderr:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr,
                                         stdin=subprocess.DEVNULL, text=True)
        line = self._first_line()
        if "listening on http://" not in line:
            self.stop()
            raise RuntimeError(f"server did not start: {line!r}\n{self.stderr()}")
        self.port = int(line.rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def _first_line(self) -> str:
        """The banner line, or "" if none came within the start timeout."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], _START_TIMEOUT)
        return self.proc.stdout.readline() if ready else ""

    def stop(self) -> None:
        """Terminate the server (kill it if it hangs); a second call does nothing."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stderr(self) -> str:
        """What the server wrote to its standard error so far."""
        with open(self.stderr_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def threads(self) -> int:
        """The number of threads of the server process (Linux /proc)."""
        with open(f"/proc/{self.proc.pid}/status") as handle:
            for line in handle:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
        raise AssertionError("no Threads: line in /proc status")

    def leftovers(self) -> list[str]:
        """Entries left in staging (request files, upload copies)."""
        return sorted(os.listdir(self.staging))

    # ------------------------------------------------------------------ requests

    def write_request(self, action: str, payload: Any, uid: Optional[int] = None,
                      raw: Optional[bytes] = None) -> str:
        """Write a request file like pygobbler does; returns its name."""
        name = f"request-{action}-{uuid.uuid4().hex[:8]}"
        path = os.path.join(self.staging, name)
        with open(path, "wb") as handle:
            handle.write(raw if raw is not None else json.dumps(payload, indent=4).encode())
        if uid is not None:
            os.chown(path, uid, -1)
        return name

    def post(self, name: str) -> Tuple[int, Dict[str, Any]]:
        status, headers, body = self.http("POST", "/new/" + name)
        assert headers["Content-Type"] == "application/json"
        return status, json.loads(body)

    def submit(self, action: str, payload: Any, uid: Optional[int] = None) -> Tuple[int, Dict[str, Any]]:
        """Write a request file and trigger it; returns (status, JSON body)."""
        return self.post(self.write_request(action, payload, uid))

    def ok(self, action: str, payload: Any, uid: Optional[int] = None) -> Dict[str, Any]:
        status, body = self.submit(action, payload, uid)
        assert status == 200, body
        assert body["status"] == "SUCCESS"
        return body

    def http(self, method: str, path: str, headers: Optional[Dict[str, str]] = None
             ) -> Tuple[int, http.client.HTTPMessage, bytes]:
        """One raw HTTP exchange (no redirects followed)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, headers=headers or {})
            res = conn.getresponse()
            return res.status, res.headers, res.read()
        finally:
            conn.close()

    # ------------------------------------------------------------------ raw sockets

    def connect(self) -> socket.socket:
        """A new TCP connection to the server."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)

    def exchange(self, data: bytes, half_close: bool = True) -> bytes:
        """Send ``data`` (then half-close) and read everything until the server closes."""
        with self.connect() as sock:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
            chunks: List[bytes] = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)

    def raw_request(self, method: str, target: bytes, headers: Optional[Dict[str, str]] = None,
                    body: bytes = b"") -> Tuple[int, Dict[str, str], bytes]:
        """One HTTP/1.1 request, target sent as given, with ``Connection: close``.

        Returns (status, headers with lower-case names, body). No half-close:
        like Go, the server takes that for a client gone away.
        """
        head = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1",
                b"Connection: close"]
        head += [f"{k}: {v}".encode() for k, v in (headers or {}).items()]
        if body:
            head.append(b"Content-Length: %d" % len(body))
        return parse_response(self.exchange(b"\r\n".join(head) + b"\r\n\r\n" + body, False))

    def post_request_file(self, action: str, raw: bytes) -> Tuple[int, Dict[str, str], bytes]:
        """Write ``raw`` as a request file and trigger it with :meth:`raw_request`."""
        name = self.write_request(action, None, raw=raw)
        return self.raw_request("POST", b"/new/" + name.encode())

    def assert_serving(self) -> None:
        """The server still answers ``/info`` correctly."""
        status, _, body = self.raw_request("GET", b"/info")
        assert status == 200 and json.loads(body)["registry"] == self.registry

    # ------------------------------------------------------------------ files

    def read(self, *parts: str) -> str:
        with open(os.path.join(self.registry, *parts), encoding="utf-8") as handle:
            return handle.read()

    def read_json(self, *parts: str) -> Any:
        return json.loads(self.read(*parts))

    def make_source(self, files: Dict[str, str], uid: Optional[int] = None,
                    dirs: Iterable[str] = ()) -> str:
        """An upload directory directly in staging; returns its name."""
        name = "src" + uuid.uuid4().hex[:8]
        root = os.path.join(self.staging, name)
        os.makedirs(root)
        for directory in dirs:
            os.makedirs(os.path.join(root, directory), exist_ok=True)
        for rel, content in files.items():
            path = os.path.join(root, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if content.startswith("->"):
                os.symlink(content[2:], path)
            else:
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(content)
        if uid is not None:
            for dirpath, dirnames, filenames in os.walk(root):
                os.lchown(dirpath, uid, -1)
                for f in filenames:
                    os.lchown(os.path.join(dirpath, f), uid, -1)
        return name

    def upload(self, project: str, asset: str, version: str, files: Dict[str, str],
               uid: Optional[int] = None, dirs: Iterable[str] = (), **options: Any
               ) -> Tuple[int, Dict[str, Any]]:
        source = self.make_source(files, uid, dirs)
        payload = {"source": source, "project": project, "asset": asset, "version": version}
        payload.update(options)
        return self.submit("upload", payload, uid)



class GobblerFactory(Protocol):
    """What the ``gobbler_factory`` fixtures of ``conftest.py`` give."""

    def __call__(self, *flags: str, admin: Union[None, str, Sequence[str]] = None,
                 base: Union[None, str, Path] = None) -> RunningGobbler: ...


def parse_response(raw: bytes) -> Tuple[int, Dict[str, str], bytes]:
    """Split one complete response into (status, headers with lower-case names, body)."""
    match = _STATUS_LINE.match(raw)
    assert match, f"not an HTTP response: {raw[:200]!r}"
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"incomplete response: {raw[:200]!r}"
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    if "content-length" in headers:  # (a HEAD answer has the length but no body)
        body = body[:int(headers["content-length"])]
    return int(match.group(1)), headers, body
