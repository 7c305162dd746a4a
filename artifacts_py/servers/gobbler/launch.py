"""Start and stop a test instance of our Gobbler-compatible server.

Same semantics and return tuple as pygobbler's ``start_gobbler``/``stop_gobbler``
but nothing is downloaded: the server is ``python -m artifacts_py.servers.gobbler.server``
in a child process, and readiness is its ``listening on`` line, not a sleep.
"""

from __future__ import annotations

import atexit
import getpass
import os
import re
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, List, Optional, Sequence, Tuple, Union

from artifacts_py.errors import GobblerError

if TYPE_CHECKING:
    from artifacts_py.servers.gobbler.server import GobblerServer

_LISTENING = re.compile(r"listening on http://(\S+):(\d+)\s*$")


@dataclass
class _Instance:
    process: "Optional[subprocess.Popen[str]]"  # None for an in-process server
    staging: str
    registry: str
    url: str
    server: "Optional[GobblerServer]" = None
    thread: Optional[threading.Thread] = None
    stop_purge: Optional[threading.Event] = None

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return self.thread is not None and self.thread.is_alive()


_current: Optional[_Instance] = None
_lock = threading.Lock()
_atexit_registered = False


def _dirs(staging: Optional[str], registry: Optional[str]) -> Tuple[str, str]:
    if staging is None:
        staging = tempfile.mkdtemp(prefix="gobbler-staging-")
        os.chmod(staging, 0o1777)  # everyone writes, nobody deletes others' entries
    if registry is None:
        registry = tempfile.mkdtemp(prefix="gobbler-registry-")
        os.chmod(registry, 0o755)
    return staging, registry


def _admins(admin: Union[None, str, Iterable[str]]) -> str:
    if admin is None:
        return getpass.getuser()
    if isinstance(admin, str):
        return admin
    return ",".join(admin)


def start_gobbler(staging: Optional[str] = None, registry: Optional[str] = None,
                  port: Optional[int] = None, wait: Optional[float] = None,
                  admin: Union[None, str, Sequence[str]] = None,
                  extra_args: Sequence[str] = (), host: str = "127.0.0.1"
                  ) -> Tuple[bool, str, str, str]:
    """Start one test server (child process); returns ``(new, staging, registry, url)``.

    A second call while it runs returns ``(False, ...)`` for the running one.
    ``staging``/``registry`` default to fresh temporary directories (staging
    mode 1777), ``port`` to a free one, ``admin`` (a name or list of names) to
    the current user. ``wait`` is accepted for pygobbler compatibility and
    ignored: the call returns once the server has said it is listening.
    Raises GobblerError if the server exits before listening.
    """
    global _current, _atexit_registered
    with _lock:
        if _current is not None and _current.alive():
            return False, _current.staging, _current.registry, _current.url
        staging, registry = _dirs(staging, registry)
        cmd: List[str] = [sys.executable, "-m", "artifacts_py.servers.gobbler.server",
                          "-registry", registry, "-staging", staging,
                          "-port", str(port or 0), "-host", host,
                          "-admin", _admins(admin), *extra_args]
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                   text=True)
        assert process.stdout is not None
        line = process.stdout.readline()
        match = _LISTENING.search(line)
        if not match:
            process.kill()
            process.wait()
            raise GobblerError(f"artifacts-gobbler did not start (command: {' '.join(cmd)}); "
                               "see its error output above")
        url = f"http://127.0.0.1:{match.group(2)}"
        _current = _Instance(process, staging, registry, url)
        if not _atexit_registered:
            atexit.register(stop_gobbler)
            _atexit_registered = True
        return True, staging, registry, url


def serve_in_thread(staging: Optional[str] = None, registry: Optional[str] = None,
                    port: int = 0, admin: Union[None, str, Sequence[str]] = None,
                    host: str = "127.0.0.1", **config: object) -> Tuple[bool, str, str, str]:
    """Like :func:`start_gobbler` but the server runs in a thread of this process.

    ``config`` holds further :class:`~artifacts_py.servers.gobbler.actions.Config`
    fields (``whitelist``, ``spoof``, ``probation_days``, ``concurrency``).
    """
    from artifacts_py.servers.gobbler.actions import Config
    from artifacts_py.servers.gobbler.server import make_server, start_purge_thread

    global _current, _atexit_registered
    with _lock:
        if _current is not None and _current.alive():
            return False, _current.staging, _current.registry, _current.url
        staging, registry = _dirs(staging, registry)
        admins = _admins(admin)
        cfg = Config(registry=registry, staging=staging,
                     admins=admins.split(",") if admins else [], **config)  # type: ignore[arg-type]
        server = make_server(cfg, host, port, shown_registry=registry, shown_staging=staging)
        thread = threading.Thread(target=server.serve_forever, name="gobbler-server", daemon=True)
        thread.start()
        stop_purge = threading.Event()
        start_purge_thread(cfg, stop_purge)  # the daily purge, as the process runs it
        url = f"http://127.0.0.1:{server.server_address[1]}"
        _current = _Instance(None, staging, registry, url, server=server, thread=thread,
                             stop_purge=stop_purge)
        if not _atexit_registered:
            atexit.register(stop_gobbler)
            _atexit_registered = True
        return True, staging, registry, url


def stop_gobbler() -> None:
    """Stop the server started by :func:`start_gobbler` or :func:`serve_in_thread`, if any."""
    global _current
    with _lock:
        instance, _current = _current, None
    if instance is None:
        return
    if instance.process is not None:
        instance.process.terminate()
        try:
            instance.process.wait(10)
        except subprocess.TimeoutExpired:
            instance.process.kill()
            instance.process.wait()
        if instance.process.stdout is not None:
            instance.process.stdout.close()
    if instance.stop_purge is not None:
        instance.stop_purge.set()
    if instance.server is not None:
        instance.server.shutdown()
        instance.server.server_close()
