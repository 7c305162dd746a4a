"""Helpers for tests that talk to a real ``artifacts-gobbler`` process."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import uuid
from typing import Any, Dict, Iterable, Optional, Tuple


class RunningGobbler:
    """A server child process with its own registry and staging directory."""

    def __init__(self, base: str, *extra: str, admin: str = "root") -> None:
        self.registry = os.path.join(base, "registry")
        self.staging = os.path.join(base, "staging")
        os.makedirs(self.registry, exist_ok=True)
        os.makedirs(self.staging, exist_ok=True)
        os.chmod(self.staging, 0o1777)
        cmd = [sys.executable, "-m", "artifacts_py.servers.gobbler.server", "-registry", self.registry,
               "-staging", self.staging, "-port", "0", "-admin", admin, *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if "listening on http://" not in line:
            self.proc.wait(10)
            raise RuntimeError(f"server did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def leftovers(self) -> list[str]:
        """Entries left in staging (request files, upload copies)."""
        return sorted(os.listdir(self.staging))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

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
