"""Recursion-free tree helpers on real folders: deep, read-only, racing, hostile."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import List

import pytest

from artifacts_py.files import make_readonly, open_dir_at, remove_tree, umask, walk
from tarfactory import deep_tree, low_recursion_limit


@pytest.fixture
def low_recursion():
    with low_recursion_limit():
        yield


@pytest.mark.parametrize("depth", [1000, 5000])
def test_walk_and_remove_deep_tree(tmp_path, depth, low_recursion):
    root = tmp_path / "deep"
    bottom = deep_tree(root, depth, every=500)
    seen = [(e.rel, stat.S_ISDIR(e.st.st_mode)) for e in walk(root)]
    dirs = [rel for rel, is_dir in seen if is_dir]
    files = [rel for rel, is_dir in seen if not is_dir]
    assert len(dirs) == depth and dirs[-1] == bottom
    assert len(files) == depth // 500 + (depth % 500 != 0)
    assert bottom + "/f" in files
    make_readonly(root)
    for e in walk(root):
        if stat.S_ISREG(e.st.st_mode):
            assert e.st.st_mode & 0o222 == 0
    remove_tree(root)
    assert not os.path.lexists(root)
    assert sorted(os.listdir(tmp_path)) == []


def test_walk_sorted_by_name_bytes_and_yields_dir_before_content(tmp_path):
    for rel in ["b/x", "a-b", "a/z", "a/b/c", "é", "B"]:
        p = tmp_path / "t" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    got = [e.rel for e in walk(tmp_path / "t", sort=True)]
    assert got == ["B", "a", "a/b", "a/b/c", "a/z", "a-b", "b", "b/x", "é"]


def test_walk_never_follows_symlinks(tmp_path):
    outside = tmp_path / "outside"
    (outside / "secret").mkdir(parents=True)
    (outside / "secret" / "key").write_bytes(b"k")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "link")
    os.symlink("../outside/secret", root / "rel")
    entries = {e.rel: e.st for e in walk(root)}
    assert sorted(entries) == ["link", "rel"]
    assert all(stat.S_ISLNK(st.st_mode) for st in entries.values())


def test_make_readonly_keeps_exec_bits_and_folders_writable(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_bytes(b"x")
    os.chmod(tmp_path / "d" / "x", 0o775)
    (tmp_path / "r").write_bytes(b"r")
    os.chmod(tmp_path / "r", 0o664)
    os.symlink("r", tmp_path / "l")
    make_readonly(tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path / "d" / "x").st_mode) == 0o555
    assert stat.S_IMODE(os.stat(tmp_path / "r").st_mode) == 0o444
    assert stat.S_IMODE(os.stat(tmp_path / "d").st_mode) & 0o200


def test_remove_tree_read_only_files_and_folders(tmp_path):
    root = tmp_path / "ro"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f").write_bytes(b"f")
    (root / "a" / "g").write_bytes(b"g")
    os.chmod(root / "a" / "b" / "f", 0o444)
    os.chmod(root / "a" / "b", 0o555)
    os.chmod(root / "a", 0o000)
    os.chmod(root, 0o555)
    remove_tree(root)
    assert not os.path.lexists(root)


def test_remove_tree_as_unprivileged_user(tmp_path):
    """Read-only folders really stop unlink for a non-root owner: remove anyway."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    base = Path(tempfile.mkdtemp(prefix="files-nobody-"))  # pytest's own folder is 0700
    os.chmod(base, 0o755)
    os.chown(base, 65534, 65534)
    script = (
        "import os, sys\n"
        "from artifacts_py.files import remove_tree\n"  # before: nobody cannot read /root
        "os.setgid(65534); os.setuid(65534)\n"
        "root = sys.argv[1] + '/t'\n"
        "os.makedirs(root + '/a/b')\n"
        "open(root + '/a/b/f', 'w').close()\n"
        "os.chmod(root + '/a/b/f', 0o444); os.chmod(root + '/a/b', 0o500)\n"
        "os.chmod(root + '/a', 0o000); os.chmod(root, 0o555)\n"
        "remove_tree(root)\n"
        "print(os.path.lexists(root))\n")
    try:
        out = subprocess.run([sys.executable, "-c", script, str(base)], capture_output=True,
                             text=True, timeout=60)
    finally:
        remove_tree(base)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_remove_tree_never_follows_symlinks_out(tmp_path):
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "keep").write_bytes(b"keep")
    os.chmod(outside / "sub" / "keep", 0o444)
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    os.symlink(outside, root / "d" / "abs")
    os.symlink("../../outside/sub", root / "d" / "rel")
    os.symlink(outside / "sub" / "keep", root / "file-link")
    remove_tree(root)
    assert not os.path.lexists(root)
    assert (outside / "sub" / "keep").read_bytes() == b"keep"
    assert stat.S_IMODE(os.stat(outside / "sub" / "keep").st_mode) == 0o444
    # A symlink given as the root is removed itself, never its target.
    os.symlink(outside, tmp_path / "top-link")
    remove_tree(tmp_path / "top-link")
    assert not os.path.lexists(tmp_path / "top-link") and (outside / "sub" / "keep").exists()


def test_remove_tree_missing_and_plain_file(tmp_path):
    remove_tree(tmp_path / "missing")
    (tmp_path / "f").write_bytes(b"x")
    os.chmod(tmp_path / "f", 0o444)
    remove_tree(tmp_path / "f")
    assert not (tmp_path / "f").exists()


def test_concurrent_removers_of_one_tree(tmp_path):
    root = tmp_path / "shared"
    for i in range(30):
        for j in range(30):
            p = root / f"a{i}" / f"b{j}"
            p.mkdir(parents=True)
            (p / "f").write_bytes(b"x")
            os.chmod(p / "f", 0o444)
    deep_tree(root / "deep", 300, every=50)
    errors: List[BaseException] = []

    def remover() -> None:
        try:
            remove_tree(root)
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=remover) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert not os.path.lexists(root)


def test_open_dir_at_opens_paths_longer_than_path_max(tmp_path):
    rel = "/".join(["x" * 100] * 60)  # 6 KB: longer than PATH_MAX
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(1, 61):
            parent = open_dir_at(fd, "/".join(["x" * 100] * (i - 1)))
            os.mkdir("x" * 100, dir_fd=parent)
            os.close(parent)
        leaf = open_dir_at(fd, rel + "/")
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=leaf))
        os.close(leaf)
        os.symlink(tmp_path, tmp_path / "loop")
        with pytest.raises(OSError):
            open_dir_at(fd, "loop")
        remove_tree("x" * 100, dir_fd=fd)
    finally:
        os.close(fd)
    assert os.listdir(tmp_path) == ["loop"]


def test_umask_is_read_without_changing_it():
    old = os.umask(0o027)
    try:
        assert umask() == 0o027
        assert os.umask(0o027) == 0o027  # unchanged by the read
    finally:
        os.umask(old)
