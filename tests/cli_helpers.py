"""Running the real ``artifacts`` command: in a subprocess, or with stderr on a pseudo-terminal."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

CLI = [sys.executable, "-m", "artifacts_py.cli"]


def run(args: List[str], cwd: Path, ok: bool = True, env: Optional[Dict[str, str]] = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the CLI; check the exit code and the one-line-error rule."""
    out = subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True,
                         timeout=timeout, env=env)
    assert "Traceback" not in out.stderr, out.stderr
    if ok:
        assert out.returncode == 0, out.stderr
    else:
        assert out.returncode != 0, out.stdout
        lines = out.stderr.splitlines()
        assert len(lines) == 1 and "error" in lines[0], out.stderr
    return out


class Terminal:
    """A command (``argv``) whose stderr is a real pseudo-terminal (80x24), read as it runs."""

    def __init__(self, argv: List[str], env: Dict[str, str], cwd: Optional[Path] = None) -> None:
        import fcntl
        import pty
        import struct
        import termios

        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.proc = subprocess.Popen(argv, stderr=slave, stdout=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=env, cwd=cwd)
        os.close(slave)
        self.shown = ""
        self.started = time.monotonic()

    def _read(self, wait: float) -> bool:
        """Read what is there within ``wait`` seconds; False once the terminal is closed."""
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.shown += chunk.decode(errors="replace")
        return bool(chunk)

    def expect(self, pattern: str, timeout: float = 60) -> "re.Match[str]":
        """Read until ``pattern`` shows up (the command goes on running)."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.shown)
            if found:
                return found
            if time.monotonic() > deadline or not self._read(0.2):
                raise AssertionError(f"{pattern!r} never shown; terminal:\n{self.shown}")

    def finish(self, timeout: float = 60) -> Tuple[int, str, str]:
        """Read to the end; (exit code, what the terminal showed, stdout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(0.2):
            pass
        try:
            out, _ = self.proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            os.close(self.master)
        return self.proc.returncode, self.shown, out.decode(errors="replace")


def served_tarball(http_server: Any, tmp_path: Path, name: str,
                   files: Dict[str, Union[str, bytes]]) -> Dict[str, str]:
    """A folder of ``files`` packed and served at ``/<name>.tar.gz``: create_artifact's
    result plus its ``url``."""
    from artifacts_py import create_artifact

    src = tmp_path / "src" / name
    src.mkdir(parents=True)
    for rel, data in files.items():
        (src / rel).write_bytes(data.encode() if isinstance(data, str) else data)
    made = dict(create_artifact(src, tmp_path / f"{name}.tar.gz"))
    made["url"] = http_server.add(f"/{name}.tar.gz", Path(made["archive_path"]).read_bytes())
    return made


def tarball_entry(name: str, made: Dict[str, str], lazy: bool = False) -> str:
    """An Artifacts.toml entry binding ``name`` to a served tarball."""
    return (f'[{name}]\ngit-tree-sha1 = "{made["git_tree_sha1"]}"\n'
            + ("lazy = true\n" if lazy else "")
            + f'    [[{name}.download]]\n    url = "{made["url"]}"\n'
            f'    sha256 = "{made["sha256"]}"\n')
