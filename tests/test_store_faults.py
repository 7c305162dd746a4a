"""Installs that go wrong: kill -9 mid-download, hostile tarballs, a full disk,
a body that breaks off. Each must leave no half artifact and no temp files
that look like artifacts; the next call must succeed."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import artifacts_py
from artifacts_py import depot
from artifacts_py.errors import InstallError, UnsafeArchiveError
from artifacts_py.treehash import compute_git_tree_sha1
from core_helpers import (GatedServer, depot_leftovers, installed, make_tarball, sha256,
                          write_toml)
from tarfactory import TarFactory

HELPER = Path(__file__).with_name("core_helpers.py")


def _interruptible() -> None:
    """Ctrl-C as at a terminal: a runner started in the background (``cmd &``) ignores
    SIGINT, and a child inheriting that would never see the signal."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _child_mid_download(server: "GatedServer", tmp_path: Path) -> tuple:
    """A child process resolving "Big", whose first GET sends part of the body and then
    hangs: returned once the server has seen it (child, tree, toml)."""
    data, tree, sha = make_tarball(tmp_path, {"big.bin": os.urandom(400_000)})
    url = server.add("/big.tar.gz", data, stall_after=100_000, stall_first=1)
    toml = write_toml(tmp_path / "Artifacts.toml", "Big", tree, [(url, sha)])
    child = subprocess.Popen([sys.executable, str(HELPER), "Big", str(toml)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=_interruptible)
    if not server.wait_for("/big.tar.gz", 1, timeout=60):
        child.kill()
        child.communicate(timeout=30)
        raise AssertionError("the child never asked for the tarball")
    return child, tree, toml


def test_kill_9_mid_download_leaves_no_half_artifact(tmp_path, isolated_depot, capsys):
    with GatedServer() as server:
        child, tree, toml = _child_mid_download(server, tmp_path)
        child.kill()  # SIGKILL: no finally blocks, no clean-up in the child
        child.communicate(timeout=30)
        assert child.returncode == -9

        dest = isolated_depot / "artifacts" / tree
        assert not dest.exists()
        assert depot_leftovers(isolated_depot)  # the crash left its temp files...
        assert depot.installed_hashes() == []   # ...which are not artifacts
        assert not artifacts_py.artifact_exists(tree)
        from artifacts_py import cli
        assert cli.main(["ls", "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == []

        # The next call succeeds at once (the dead child's lock is gone with it), and
        # removes what the dead process left (its temp dir names its host and pid).
        path = artifacts_py.artifact("Big", toml)
        assert path == dest and compute_git_tree_sha1(path) == tree
        assert depot_leftovers(isolated_depot) == []
        assert server.count("/big.tar.gz", "GET") == 2


HOSTILE = {
    "dotdot": lambda out: TarFactory().file("ok.txt", b"ok").file("../../evil.txt", b"x"),
    "absolute": lambda out: TarFactory().file(str(out / "evil.txt"), b"x"),
    "through-symlink": lambda out: TarFactory().symlink("sub", str(out)).file("sub/evil.txt",
                                                                              b"x"),
    "device": lambda out: TarFactory().special("null", b"3"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_tarball_through_artifact(kind, http_server, tmp_path, isolated_depot):
    outside = tmp_path / "outside"
    outside.mkdir()
    data = HOSTILE[kind](outside).getvalue()
    url = http_server.add("/evil.tar", data)
    tree = "1" * 40
    toml = write_toml(tmp_path / "Artifacts.toml", "Evil", tree, [(url, sha256(data))])

    with pytest.raises(InstallError) as info:
        artifacts_py.artifact("Evil", toml)

    (label, err), = info.value.failures
    assert label == url and isinstance(err, UnsafeArchiveError)
    assert "unsafe" in str(info.value) or "refuse" in str(info.value)
    assert os.listdir(outside) == []
    for root in (isolated_depot, tmp_path):
        for _, _, files in os.walk(root):
            assert "evil.txt" not in files
    assert installed(isolated_depot) == [] and depot_leftovers(isolated_depot) == []


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """A 1 MiB tmpfs as the only depot (needs root and mount)."""
    mnt = tmp_path / f"tmpfs-{uuid.uuid4().hex[:8]}"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 1 MiB tmpfs to simulate a full disk: "
                    f"{done.stderr.strip() or done.returncode}")
    monkeypatch.setenv("ARTIFACTS_PY_DEPOT_PATH", str(mnt / "depot"))
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def used_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


@pytest.mark.parametrize("size", [2_000_000, 1_100_000])
def test_full_disk_fails_cleanly(small_disk, http_server, tmp_path, size):
    # Incompressible: the tarball streams into the unpacker (it is never stored
    # whole), and its content does not fit on the 1 MiB disk, by far or just.
    data, tree, sha = make_tarball(tmp_path, {"big.bin": os.urandom(size)})
    url = http_server.add("/big.tar.gz", data)
    spare = http_server.add("/spare.tar.gz", data)
    toml = write_toml(tmp_path / "Artifacts.toml", "Big", tree, [(url, sha), (spare, sha)])

    with pytest.raises(InstallError) as info:
        artifacts_py.artifact("Big", toml)

    err = info.value
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert str(small_disk / "depot") in str(err) and "full" in str(err)
    assert http_server.count("/spare.tar.gz") == 0  # it would fail the same way
    depot_dir = small_disk / "depot"
    assert installed(depot_dir) == [] and depot_leftovers(depot_dir) == []
    assert used_bytes(small_disk) < 64 * 1024


def test_broken_body_resumes_through_artifact(http_server, tmp_path, isolated_depot):
    data, tree, sha = make_tarball(tmp_path, {"big.bin": os.urandom(300_000)})
    url = http_server.add("/big.tar.gz", data, truncate_first=1, truncate_at=100_000)
    toml = write_toml(tmp_path / "Artifacts.toml", "Big", tree, [(url, sha)])
    path = artifacts_py.artifact("Big", toml)
    assert compute_git_tree_sha1(path) == tree
    assert [r.headers.get("Range") for r in http_server.requests_for("/big.tar.gz")] == [
        None, "bytes=100000-"]
    assert depot_leftovers(isolated_depot) == []


def test_an_unpack_failure_does_not_wait_for_a_stalled_download(http_server, tmp_path,
                                                                 isolated_depot):
    """The unpacker refuses the first members while the download thread is stuck in a
    read that will not return for a minute: the refusal is raised at once."""
    import time

    data = TarFactory().file("ok.txt", b"ok").file("../../evil.txt", b"x").getvalue()
    data += os.urandom(200_000)  # more body, never sent: the server stalls first
    url = http_server.add("/stall.tar", data, stall_after=100_000, stall_first=1)
    toml = write_toml(tmp_path / "Artifacts.toml", "Evil", "1" * 40, [(url, sha256(data))])
    start = time.monotonic()
    with pytest.raises(InstallError) as info:
        artifacts_py.artifact("Evil", toml)
    assert time.monotonic() - start < 10  # not the 60 s read timeout
    (_, err), = info.value.failures
    assert isinstance(err, UnsafeArchiveError)
    assert installed(isolated_depot) == [] and depot_leftovers(isolated_depot) == []


def test_ctrl_c_mid_download_cleans_up(tmp_path, isolated_depot):
    import signal

    with GatedServer() as server:
        child, _tree, _toml = _child_mid_download(server, tmp_path)
        try:
            child.send_signal(signal.SIGINT)
            _, err = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
        assert child.returncode != 0 and b"KeyboardInterrupt" in err
        assert depot_leftovers(isolated_depot) == [] and installed(isolated_depot) == []


def test_a_restarted_transfer_falls_back_from_streaming_to_a_file(http_server, tmp_path,
                                                                  isolated_depot):
    # The body breaks off, and the server ignores Range: the transfer must start over,
    # which the stream into the unpacker cannot; the tarball is fetched again to a file.
    data, tree, sha = make_tarball(tmp_path, {"big.bin": os.urandom(300_000)})
    url = http_server.add("/r.tar.gz", data, truncate_first=1, truncate_at=100_000,
                          ignore_range=True)
    toml = write_toml(tmp_path / "Artifacts.toml", "R", tree, [(url, sha)])
    path = artifacts_py.artifact("R", toml)
    assert compute_git_tree_sha1(path) == tree and depot_leftovers(isolated_depot) == []
    assert http_server.count("/r.tar.gz", "GET") >= 2


def test_a_wrong_sha256_installs_nothing_even_though_unpacking_streamed(http_server, tmp_path,
                                                                       isolated_depot):
    data, tree, sha = make_tarball(tmp_path, {"a.txt": b"a\n" * 1000})
    url = http_server.add("/w.tar.gz", data)
    toml = write_toml(tmp_path / "Artifacts.toml", "W", tree, [(url, "0" * 64)])
    with pytest.raises(InstallError, match="sha256 mismatch"):
        artifacts_py.artifact("W", toml)
    assert installed(isolated_depot) == [] and depot_leftovers(isolated_depot) == []
