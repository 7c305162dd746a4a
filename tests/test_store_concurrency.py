"""Many processes resolving one missing artifact at once.

The children start together behind a multiprocessing Barrier. With the lock,
the server sees one download; without it (patched out in every child), the
atomic rename alone must still give every process the same complete tree.
"""

from __future__ import annotations

import multiprocessing
import os
import threading

import pytest

import artifacts_py
from core_helpers import (GatedServer, depot_leftovers, installed, make_tarball, worker,
                          write_toml)

N = 8


@pytest.fixture
def served(tmp_path):
    """(server, toml, tree) for one tarball artifact named Data."""
    data, tree, sha = make_tarball(tmp_path, {f"f{i}.bin": bytes([i]) * 50_000 for i in range(8)})
    with GatedServer() as server:
        url = server.add("/data.tar.gz", data)
        toml = write_toml(tmp_path / "Artifacts.toml", "Data", tree, [(url, sha)])
        yield server, toml, tree


def run_children(toml, no_lock: bool) -> list:
    # Forked from a clean single-threaded server with artifacts_py preloaded:
    # real separate processes, without paying 8 interpreter start-ups per test.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["artifacts_py", "core_helpers"])
    env = {k: v for k, v in os.environ.items() if k.startswith("ARTIFACTS_PY_")}
    barrier, results = ctx.Barrier(N, timeout=60), ctx.Queue()
    procs = [ctx.Process(target=worker, args=("Data", str(toml), env, barrier, results, no_lock))
             for _ in range(N)]
    for p in procs:
        p.start()
    try:
        got = [results.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs)
    return got


def test_eight_processes_one_download(served, isolated_depot):
    server, toml, tree = served
    got = run_children(toml, no_lock=False)
    assert [err for _, _, err in got] == [None] * N
    assert {path for path, _, _ in got} == {str(isolated_depot / "artifacts" / tree)}
    assert all(ok for _, ok, _ in got)
    assert server.count("/data.tar.gz", "GET") == 1
    assert installed(isolated_depot) == [tree] and depot_leftovers(isolated_depot) == []


def test_correct_without_the_lock(served, isolated_depot):
    """Lock patched out, and the server holds every GET until all 8 have asked:
    eight full installs race to the same rename, and all of them succeed."""
    server, toml, tree = served
    server.gate("/data.tar.gz", N)
    got = run_children(toml, no_lock=True)
    assert [err for _, _, err in got] == [None] * N
    assert {path for path, _, _ in got} == {str(isolated_depot / "artifacts" / tree)}
    assert all(ok for _, ok, _ in got)
    assert server.count("/data.tar.gz", "GET") == N  # the race really happened
    assert installed(isolated_depot) == [tree] and depot_leftovers(isolated_depot) == []
    assert artifacts_py.verify_artifact(tree)


def test_threads_in_one_process_one_download(served, isolated_depot):
    server, toml, tree = served
    barrier, paths, errors = threading.Barrier(N), [], []

    def run() -> None:
        barrier.wait()
        try:
            paths.append(artifacts_py.artifact("Data", toml))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert set(paths) == {isolated_depot / "artifacts" / tree}
    assert server.count("/data.tar.gz", "GET") == 1
    assert depot_leftovers(isolated_depot) == []


def test_waiters_survive_a_killed_lock_holder(tmp_path, isolated_depot):
    """The process holding the install lock is SIGKILLed mid-download; the
    processes queued behind it must go on, and exactly one of them downloads."""
    import subprocess
    import sys

    from core_helpers import __file__ as helper

    # Incompressible, so that the stall really cuts the body short.
    data, tree, sha = make_tarball(tmp_path, {"big.bin": os.urandom(400_000)})
    assert len(data) > 100_000
    with GatedServer() as server:
        url = server.add("/data.tar.gz", data, stall_after=50_000, stall_first=1)
        toml = write_toml(tmp_path / "Artifacts.toml", "Data", tree, [(url, sha)])
        cmd = [sys.executable, helper, "Data", str(toml)]
        holder = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        waiters = []
        try:
            assert server.wait_for("/data.tar.gz", 1), "the holder never asked"
            waiters = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True) for _ in range(3)]
            holder.kill()
            outs = [w.communicate(timeout=120) for w in waiters]
        finally:
            for p in [holder, *waiters]:
                if p.poll() is None:
                    p.kill()
                p.wait()
        assert [w.returncode for w in waiters] == [0, 0, 0], [err for _, err in outs]
        assert {out.strip() for out, _ in outs} == {str(isolated_depot / "artifacts" / tree)}
        assert server.count("/data.tar.gz", "GET") == 2
        assert installed(isolated_depot) == [tree]
