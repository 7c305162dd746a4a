"""Start and stop ``artifacts-gypsum`` in a child process, for tests and demos.

Like :mod:`artifacts_py.servers.gobbler.launch`: the server is
``python -m artifacts_py.servers.gypsum.server`` and it is ready when it
prints its ``listening on`` line (no sleep). :class:`GypsumProcess` runs any
number of instances; :func:`start_gypsum`/:func:`stop_gypsum` manage one.
"""

from __future__ import annotations

import atexit
import getpass
import re
import subprocess
import sys
import tempfile
import threading
from typing import IO, List, Optional, Sequence, Union

from artifacts_py.errors import ArtifactError

_LISTENING = re.compile(r"listening on http://(\S+):(\d+)\s*$")


class GypsumStartError(ArtifactError):
    """The service exited before it was listening."""


class GypsumProcess:
    """One running ``artifacts-gypsum``; ``url`` is where it listens."""

    def __init__(self, args: Sequence[str], env: Optional[dict[str, str]] = None,
                 stderr: Union[None, int, IO[bytes]] = None) -> None:
        self.command: List[str] = [sys.executable, "-m", "artifacts_py.servers.gypsum.server",
                                   *args]
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, env=env,
                                        stdin=subprocess.DEVNULL, stderr=stderr, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        found = _LISTENING.search(line)
        if not found:
            self.stop()
            raise GypsumStartError(
                f"artifacts-gypsum did not start (exit code {self.process.returncode}); "
                "see its error output above")
        host = found.group(1)
        self.url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{found.group(2)}"
        self.port = int(found.group(2))

    def alive(self) -> bool:
        """True while the child runs."""
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


_current: Optional[GypsumProcess] = None
_lock = threading.Lock()
_registered = False


def start_gypsum(store: Optional[str] = None, port: int = 0,
                 admin: Union[None, str, Sequence[str]] = None,
                 github_api: Optional[str] = None, host: str = "127.0.0.1",
                 extra_args: Sequence[str] = ()) -> str:
    """Start one local-store service (child process) and return its URL.

    ``store`` defaults to a fresh temporary directory, ``port`` to a free
    one, ``admin`` (a login or list of logins) to the current user,
    ``github_api`` to GitHub's. ``extra_args`` are further flags, e.g. the
    S3 ones instead of a store. While one is running, a second call returns
    its URL. Raises GypsumStartError if the service exits before listening.
    """
    global _current, _registered
    with _lock:
        if _current is not None and _current.alive():
            return _current.url
        args: List[str] = ["--host", host, "--port", str(port)]
        if not any(a.startswith("--s3-endpoint") for a in extra_args):
            args += ["--store", store or tempfile.mkdtemp(prefix="gypsum-store-")]
        admins = admin if isinstance(admin, str) else ",".join(admin or [getpass.getuser()])
        args += ["--admin", admins]
        if github_api:
            args += ["--github-api", github_api]
        _current = GypsumProcess([*args, *extra_args])
        if not _registered:
            atexit.register(stop_gypsum)
            _registered = True
        return _current.url


def stop_gypsum() -> None:
    """Stop the service started by :func:`start_gypsum`, if any."""
    global _current
    with _lock:
        instance, _current = _current, None
    if instance is not None:
        instance.stop()
