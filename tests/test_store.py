"""The store: the depot lock between installs and gc, owned temp dirs, the install log line."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import artifacts_py
from artifacts_py import files, store
from artifacts_py.binding import bind_artifact
from artifacts_py.gc import collect_garbage
from core_helpers import depot_leftovers, make_tarball


class _Seen(logging.Handler):
    """Sets an event when a log record containing ``needle`` is emitted."""

    def __init__(self, needle: str) -> None:
        super().__init__(logging.DEBUG)
        self.needle, self.event = needle, threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.event.set()


def _mirror_toml(tmp_path: Path, http_server, **faults) -> tuple:
    data, tree, sha = make_tarball(tmp_path)
    url = http_server.add("/data.tar.gz", data, **faults)
    toml = tmp_path / "Artifacts.toml"
    bind_artifact(toml, "Data", tree, url, sha)
    return toml, tree


def test_gc_waits_for_a_running_install_and_keeps_its_tree(isolated_depot, tmp_path, http_server):
    toml, tree = _mirror_toml(tmp_path, http_server, stall_after=100, stall_first=1)
    results: dict = {}

    def install() -> None:
        results["path"] = artifacts_py.artifact("Data", toml)

    def gc() -> None:
        results["gc"] = collect_garbage()

    waiting = _Seen("waiting for other artifacts-py processes")
    log = logging.getLogger("artifacts_py")
    log.addHandler(waiting)
    old_level = log.level
    log.setLevel(logging.INFO)
    try:
        installer = threading.Thread(target=install)
        installer.start()
        assert http_server.stalled.wait(30)  # the install is half way through its download
        collector = threading.Thread(target=gc)
        collector.start()
        assert waiting.event.wait(30)  # gc is blocked on the depot lock...
        assert collector.is_alive() and "gc" not in results
        http_server.released.set()  # ...until the install finishes
        installer.join(60)
        collector.join(60)
    finally:
        log.removeHandler(waiting)
        log.setLevel(old_level)
    assert results["path"].name == tree and results["path"].is_dir()
    assert results["gc"].removed == []  # the fresh tree was recorded as used before gc looked
    assert [r["hash"] for r in results["gc"].kept] == [tree]


def test_install_logs_source_bytes_files_and_seconds(tmp_path, http_server, caplog):
    toml, tree = _mirror_toml(tmp_path, http_server)
    with caplog.at_level(logging.INFO, logger="artifacts_py"):
        artifacts_py.artifact("Data", toml)
    lines = [r.getMessage() for r in caplog.records if r.name == "artifacts_py.store"]
    assert len(lines) == 1, lines
    line = lines[0]
    assert "'Data'" in line and http_server.url("/data.tar.gz") in line
    assert " in " in line and " files, " in line and line.endswith(" s")


def test_library_is_silent_by_default(tmp_path, http_server):
    toml, _ = _mirror_toml(tmp_path, http_server)
    code = ("import sys, artifacts_py; artifacts_py.artifact('Data', sys.argv[1])")
    out = subprocess.run([sys.executable, "-c", code, str(toml)], capture_output=True, text=True,
                         env={**os.environ}, timeout=60)
    assert out.returncode == 0 and out.stderr == "" and out.stdout == ""


def test_cli_verbose_shows_the_install_line(tmp_path, http_server):
    toml, _ = _mirror_toml(tmp_path, http_server)
    out = subprocess.run([sys.executable, "-m", "artifacts_py.cli", "-v", "fetch", "--toml",
                          str(toml)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "artifacts: installed artifact 'Data'" in out.stderr


def test_temp_dirs_name_their_owner_and_dead_ones_are_reaped(isolated_depot, tmp_path,
                                                             http_server):
    adir = store.prepare_depot(isolated_depot, "test")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)  # that process has exited: its pid names nobody now
    mine = store.new_temp_dir(adir)
    assert mine.name.startswith(f"{store.TEMP_PREFIX}{store._host()}-{os.getpid()}-")
    crashed = adir / f"{store.TEMP_PREFIX}{store._host()}-{dead_pid}-abc"
    crashed.mkdir()
    (crashed / "half.bin").write_bytes(b"x" * 1000)
    other_host = adir / f"{store.TEMP_PREFIX}elsewhere-{dead_pid}-abc"
    other_host.mkdir()
    stale = store.stale_temp_entries(isolated_depot)
    assert crashed in stale and mine not in stale and other_host not in stale
    # The next install removes the dead process's leftovers at once (not the live one's).
    toml, _ = _mirror_toml(tmp_path, http_server)
    artifacts_py.artifact("Data", toml)
    assert not crashed.exists() and mine.is_dir() and other_host.is_dir()
    files.remove_tree(mine)


def test_gc_removes_stale_lock_files_and_reports_them(isolated_depot, tmp_path, http_server):
    toml, tree = _mirror_toml(tmp_path, http_server)
    artifacts_py.artifact("Data", toml)
    lock = isolated_depot / "locks" / f"{tree}.lock"
    assert lock.exists()
    dry = collect_garbage(dry_run=True)
    assert str(lock) in dry.locks_removed and lock.exists()
    report = collect_garbage()
    assert str(lock) in report.locks_removed and not lock.exists()
    assert (isolated_depot / "locks" / "depot.lock").exists()  # the depot lock stays


def test_new_depot_gets_a_cachedir_tag(isolated_depot, tmp_path, http_server):
    toml, _ = _mirror_toml(tmp_path, http_server)
    artifacts_py.artifact("Data", toml)
    tag = (isolated_depot / "CACHEDIR.TAG").read_text()
    assert tag.startswith("Signature: 8a477f597d28d172789f06886806bc55")
    assert depot_leftovers(isolated_depot) == []


def test_unlockable_depot_still_installs(isolated_depot, tmp_path, http_server):
    # Locks only save duplicate work: a lock dir that cannot be written must not block installs.
    locks = isolated_depot / "locks"
    locks.write_text("not a directory")
    toml, tree = _mirror_toml(tmp_path, http_server)
    assert artifacts_py.artifact("Data", toml).name == tree


def test_held_install_lock_is_announced_then_given_up(tmp_path, monkeypatch, caplog):
    """A per-hash lock held elsewhere (here another descriptor, as another process would
    hold it) is waited for, announced after the notice delay, and given up at the limit:
    the install then carries on unlocked instead of hanging."""
    import time

    monkeypatch.setattr(store, "WAIT_NOTICE_SECONDS", 0.1)
    monkeypatch.setattr(store, "LOCK_WAIT_SECONDS", 0.2)
    with store.named_lock(tmp_path, "abc", "installing X"):
        start = time.monotonic()
        with caplog.at_level(logging.INFO, logger="artifacts_py.store"), \
                store.named_lock(tmp_path, "abc", "installing X"):
            waited = time.monotonic() - start
    assert waited >= 0.3
    assert "waiting for another process installing X" in caplog.text
    with store.named_lock(tmp_path, "abc", "installing X"):  # released: taken at once
        pass
