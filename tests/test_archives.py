"""Tarball extraction, stream tree hashing and deterministic archive creation,
on real files, real tarballs (ours, stdlib-crafted and GNU tar's)."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import threading
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artifacts_py.archives import (compression_for, create_archive, detect_compression,
                                   extract_tarball, open_decompressed, tarball_tree_hash)
from artifacts_py.errors import (ArtifactError, DownloadError, UnsafeArchiveError,
                                 UnsupportedArchiveError)
from artifacts_py.files import remove_tree
from artifacts_py.treehash import EMPTY_TREE, compute_git_tree_sha1, compute_sha256
from tarfactory import TarFactory, deep_tree, deep_tree_hash, low_recursion_limit

# The copy in tests/data, so that the tests run from an unpacked sdist too.
VECTORS = json.loads(
    (Path(__file__).parent / "data" / "treehash-vectors.json").read_text(encoding="utf-8"))["cases"]
COMPRESSIONS = ["gz", "bz2", "xz", "zst", "none"]
SUFFIXES = {"gz": ".tar.gz", "bz2": ".tar.bz2", "xz": ".tar.xz", "zst": ".tar.zst", "none": ".tar"}


def materialise(root: Path, entries: List[dict]) -> Path:
    """Build a tree as treehash-vectors.json's how_to_materialise says."""
    root.mkdir(parents=True, exist_ok=True)
    for e in entries:
        path = root / e["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        if e["kind"] == "dir":
            path.mkdir(exist_ok=True)
        elif e["kind"] == "symlink":
            os.symlink(e["target"], path)
        else:
            data = (bytes.fromhex(e["content_hex"]) if "content_hex" in e
                    else e["content"].encode("utf-8"))
            path.write_bytes(data)
            os.chmod(path, 0o755 if e["kind"] == "exec" else 0o644)
    return root


def new_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def snapshot(root: Path, skip: Tuple[Path, ...]) -> Dict[str, tuple]:
    """Every path under ``root`` (but ``skip``) with its type and content."""
    out: Dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) not in skip]
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            if p in skip:
                continue
            st_ = os.lstat(p)
            if stat.S_ISLNK(st_.st_mode):
                out[str(p)] = ("link", os.readlink(p))
            elif stat.S_ISREG(st_.st_mode):
                out[str(p)] = ("file", p.read_bytes(), st_.st_mode)
            else:
                out[str(p)] = ("dir", st_.st_mode)
    return out


# ---------------------------------------------------------------------------
# Round trips against the shared vectors


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("case", VECTORS, ids=[c["name"] for c in VECTORS])
def test_vector_round_trip(tmp_path, case, compression):
    src = materialise(tmp_path / "src", case["entries"])
    expected = case["expected_git_tree_sha1"]
    archive = tmp_path / f"a.tar.{compression}"
    sha = create_archive(src, archive, compression)
    assert sha == compute_sha256(archive)
    dest = new_dir(tmp_path / "dest")
    assert extract_tarball(archive, dest) == expected
    assert compute_git_tree_sha1(dest) == expected
    assert tarball_tree_hash(archive) == expected
    assert tarball_tree_hash(str(archive)) == expected


@given(tree=st.dictionaries(
    keys=st.lists(st.sampled_from(["a", "b", "é", "a.b", "a0", "-x", "B"]), min_size=1,
                  max_size=3).map("/".join),
    values=st.one_of(st.binary(max_size=64).map(lambda b: ("file", b)),
                     st.binary(max_size=8).map(lambda b: ("exec", b)),
                     st.sampled_from(["a", "../x", "/abs", "é"]).map(lambda t: ("symlink", t)),
                     st.just(("dir", b""))),
    max_size=8))
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_trees_round_trip(tmp_path_factory, tree):
    base = tmp_path_factory.mktemp("prop")
    src = new_dir(base / "src")
    made: Dict[str, str] = {}
    for path, (kind, value) in sorted(tree.items()):  # a prefix sorts before its children
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts))]
        if any(made.get(p, "dir") != "dir" for p in prefixes):
            continue  # never create anything through a drawn symlink or file
        made.update((p, "dir") for p in prefixes)
        made[path] = kind
        p = src / path
        p.parent.mkdir(parents=True, exist_ok=True)
        if kind == "dir":
            p.mkdir()
        elif kind == "symlink":
            os.symlink(value, p)
        else:
            p.write_bytes(value)
            os.chmod(p, 0o755 if kind == "exec" else 0o644)
    expected = compute_git_tree_sha1(src)
    archive = base / "a.tar.gz"
    create_archive(src, archive)
    assert tarball_tree_hash(archive) == expected
    assert extract_tarball(archive, new_dir(base / "dest")) == expected
    assert compute_git_tree_sha1(base / "dest") == expected


# ---------------------------------------------------------------------------
# create_archive


def _build_tree(root: Path, reverse: bool) -> Path:
    items = [("z/deep/file", b"deep"), ("a.txt", b"A" * 5000), ("bin/tool", b"#!/bin/sh\n"),
             ("m/é", b"unicode"), ("a-b", b"dash")]
    for rel, data in (reversed(items) if reverse else items):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    os.chmod(root / "bin/tool", 0o700 if reverse else 0o755)
    os.chmod(root / "a.txt", 0o600 if reverse else 0o664)
    (root / "empty").mkdir()
    os.symlink("a.txt", root / "link")
    return root


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_create_archive_is_deterministic(tmp_path, compression):
    one = _build_tree(tmp_path / "one", reverse=False)
    archive1 = tmp_path / f"one{SUFFIXES[compression]}"
    sha1 = create_archive(one, archive1, compression)

    # Same content, built in the other order, other modes, mtimes, owner, umask.
    old = os.umask(0o077)
    try:
        two = _build_tree(tmp_path / "two", reverse=True)
        for dirpath, dirnames, filenames in os.walk(two):
            for name in dirnames + filenames:
                os.utime(Path(dirpath, name), (12345, 67890), follow_symlinks=False)
                if os.geteuid() == 0:
                    os.lchown(Path(dirpath, name), 4321, 4321)
        archive2 = tmp_path / f"two{SUFFIXES[compression]}"
        sha2 = create_archive(two, archive2, compression)
        os.utime(one / "a.txt", (1, 1))
        sha3 = create_archive(one, tmp_path / f"three{SUFFIXES[compression]}", compression)
    finally:
        os.umask(old)
    assert sha1 == sha2 == sha3 == compute_sha256(archive2)
    assert archive1.read_bytes() == archive2.read_bytes()


def test_create_archive_layout(tmp_path):
    src = _build_tree(tmp_path / "src", reverse=True)
    archive = tmp_path / "out.tar.gz"
    create_archive(src, archive, "gzip")
    head = archive.read_bytes()[:10]
    assert head[:3] == b"\x1f\x8b\x08"
    assert head[3] == 0  # no FNAME (no file name) flag
    assert head[4:8] == b"\0\0\0\0"  # mtime 0
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names == ["a-b", "a.txt", "bin", "bin/tool", "empty", "link", "m", "m/é",
                     "z", "z/deep", "z/deep/file"]
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
    modes = {m.name: (m.type, m.mode) for m in members}
    assert modes["bin/tool"] == (tarfile.REGTYPE, 0o755)  # 0700 on disk
    assert modes["a.txt"] == (tarfile.REGTYPE, 0o644)  # 0600 on disk
    assert modes["empty"] == (tarfile.DIRTYPE, 0o755)
    assert modes["link"][0] == tarfile.SYMTYPE


def test_create_archive_readable_by_gnu_tar(tmp_path):
    src = _build_tree(tmp_path / "src", reverse=False)
    for compression, flag in [("gz", "-z"), ("bz2", "-j"), ("xz", "-J"), ("zst", "--zstd"),
                              ("none", None)]:
        archive = tmp_path / f"a.{compression}"
        create_archive(src, archive, compression)
        out = new_dir(tmp_path / f"gnu-{compression}")
        cmd = ["tar", "-x", "-f", str(archive), "-C", str(out)] + ([flag] if flag else [])
        subprocess.run(cmd, check=True)
        assert compute_git_tree_sha1(out) == compute_git_tree_sha1(src)
        assert os.readlink(out / "link") == "a.txt"


def test_create_archive_refuses_fifo_and_keeps_old_archive(tmp_path):
    src = new_dir(tmp_path / "src")
    (src / "f").write_bytes(b"x")
    archive = tmp_path / "a.tar.gz"
    create_archive(src, archive)
    before = archive.read_bytes()
    os.mkfifo(src / "pipe")
    with pytest.raises(UnsupportedArchiveError, match="pipe.*FIFO"):
        create_archive(src, archive)
    assert archive.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "src"]  # no temp left


def test_create_archive_replaces_atomically_and_rejects_bad_compression(tmp_path):
    src = new_dir(tmp_path / "src")
    (src / "f").write_bytes(b"new")
    archive = tmp_path / "a.tar"
    archive.write_bytes(b"old junk")
    create_archive(src, archive, "tar")
    assert tarball_tree_hash(archive) == compute_git_tree_sha1(src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "src"]
    with pytest.raises(UnsupportedArchiveError, match="lz4"):
        create_archive(src, tmp_path / "b", "lz4")
    with pytest.raises(NotADirectoryError):
        create_archive(tmp_path / "missing", tmp_path / "c")


# ---------------------------------------------------------------------------
# GNU tar's tarballs


def _gnu_source(tmp_path: Path) -> Path:
    parent = new_dir(tmp_path / "parent")
    top = new_dir(parent / "top")
    (top / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(top / "run.sh", 0o755)
    (top / "data.txt").write_bytes(b"data\n")
    os.chmod(top / "data.txt", 0o640)
    long_dir = top / ("d" * 120) / ("e" * 120)
    long_dir.mkdir(parents=True)
    (long_dir / ("f" * 150)).write_bytes(b"long names")
    os.symlink("data.txt", top / "link")
    os.symlink("/nonexistent/abs", top / "dangling")
    os.link(top / "run.sh", top / "run-hard.sh")  # GNU tar stores this as a hardlink
    (top / "empty").mkdir()
    return parent


@pytest.mark.parametrize("fmt", ["gnu", "pax"])
@pytest.mark.parametrize("zflag", [None, "-z", "--zstd"])
def test_gnu_tar_tarball_hashes_like_the_tree(tmp_path, fmt, zflag):
    parent = _gnu_source(tmp_path)
    archive = tmp_path / "gnu.tar"
    subprocess.run(["tar", "-c", f"--format={fmt}", "-f", str(archive), "-C", str(parent), "top"]
                   + ([zflag] if zflag else []), check=True)
    with open(archive, "rb") as f, tarfile.open(fileobj=open_decompressed(f), mode="r|") as tf:
        assert any(m.islnk() for m in tf)  # the hardlink is really there
    expected = compute_git_tree_sha1(parent)  # top-level folder kept, not stripped
    dest = new_dir(tmp_path / "dest")
    assert extract_tarball(archive, dest) == expected
    assert compute_git_tree_sha1(dest) == expected
    assert tarball_tree_hash(archive) == expected
    assert os.stat(dest / "top/run-hard.sh").st_mode & 0o777 == 0o755
    assert os.stat(dest / "top/data.txt").st_mode & 0o777 == 0o644


def test_gnu_tar_dot_prefixed_names(tmp_path):
    top = _gnu_source(tmp_path) / "top"
    archive = tmp_path / "dot.tar.gz"
    subprocess.run(["tar", "-czf", str(archive), "-C", str(top), "."], check=True)
    with tarfile.open(archive) as tf:
        assert tf.getnames()[0] == "."
    assert extract_tarball(archive, new_dir(tmp_path / "dest")) == compute_git_tree_sha1(top)


def test_reads_a_non_seekable_pipe(tmp_path):
    src = _build_tree(tmp_path / "src", reverse=False)
    for compression in ["gz", "none"]:
        archive = tmp_path / f"a.{compression}"
        create_archive(src, archive, compression)
        with subprocess.Popen(["cat", str(archive)], stdout=subprocess.PIPE) as proc:
            assert not proc.stdout.seekable()
            got = extract_tarball(proc.stdout, new_dir(tmp_path / f"dest-{compression}"))
        assert got == compute_git_tree_sha1(src)


# ---------------------------------------------------------------------------
# Hostile tarballs: refused, and nothing written outside dest


@pytest.fixture
def arena(tmp_path):
    """tmp/work/dest (empty) and a sibling tmp/outside holding a sentinel."""
    outside = new_dir(tmp_path / "outside")
    (outside / "sentinel").write_bytes(b"original")
    dest = new_dir(tmp_path / "work" / "dest")
    return tmp_path, dest, outside


def _hostile_cases(outside: Path) -> List[Tuple[str, TarFactory, str, List[Path]]]:
    """(id, tarball, offending member, would-be paths outside dest)."""
    o = str(outside)
    root = outside.parent
    return [
        ("dotdot", TarFactory().file("../escape", b"x"), "../escape", [root / "work/escape"]),
        ("dotdot-deep", TarFactory().dir("a").file("a/../../../escape", b"x"),
         "a/../../../escape", [root / "escape"]),
        ("absolute", TarFactory().file(f"{o}/abs", b"x"), f"{o}/abs", [outside / "abs"]),
        ("through-abs-symlink", TarFactory().symlink("l", o).file("l/pwned", b"x"),
         "l/pwned", [outside / "pwned"]),
        ("through-rel-symlink", TarFactory().symlink("l", "../../outside").file("l/pwned", b"x"),
         "l/pwned", [outside / "pwned"]),
        ("through-in-tree-symlink",
         TarFactory().dir("d").symlink("l", "d").file("l/pwned", b"x"), "l/pwned", []),
        ("deep-through-symlink",
         TarFactory().symlink("l", o).file("l/sub/deeper/pwned", b"x"),
         "l/sub/deeper/pwned", [outside / "sub"]),
        ("dir-through-symlink", TarFactory().symlink("l", o).dir("l/newdir"), "l/newdir",
         [outside / "newdir"]),
        ("symlink-through-symlink", TarFactory().symlink("l", o).symlink("l/s", "/etc"),
         "l/s", [outside / "s"]),
        ("hardlink-through-symlink",
         TarFactory().file("f", b"x").symlink("l", o).hardlink("l/h", "f"), "l/h",
         [outside / "h"]),
        ("hardlink-outside-abs", TarFactory().hardlink("h", f"{o}/sentinel"), "h", []),
        ("hardlink-outside-rel", TarFactory().hardlink("h", "../../outside/sentinel"), "h", []),
        ("hardlink-missing", TarFactory().hardlink("h", "missing"), "h", []),
        ("hardlink-to-symlink",
         TarFactory().symlink("s", f"{o}/sentinel").hardlink("h", "s"), "h", []),
        ("hardlink-to-dir", TarFactory().dir("d").hardlink("h", "d"), "h", []),
        ("hardlink-to-file-under-replaced-dir",
         TarFactory().file("d/f", b"x").symlink("d", o).hardlink("h", "d/f"), "h", []),
        ("char-device", TarFactory().special("dev", tarfile.CHRTYPE), "dev", []),
        ("block-device", TarFactory().special("blk", tarfile.BLKTYPE), "blk", []),
        ("fifo", TarFactory().special("fifo", tarfile.FIFOTYPE), "fifo", []),
        ("gnu-sparse", TarFactory(tarfile.GNU_FORMAT).special("sp", tarfile.GNUTYPE_SPARSE),
         "sp", []),
        ("contiguous", TarFactory().special("c", tarfile.CONTTYPE), "c", []),
        ("unknown-type", TarFactory().special("u", b"Z"), "u", []),
        ("empty-name", TarFactory().file("", b"x"), "", []),
        ("nul-in-name", TarFactory().file("placeholder", b"x", pax={"path": "a\0b"}),
         "a\0b", []),
        ("file-ending-in-slash", TarFactory().file("f/", b"x"), "f/", []),
    ]


_IDS = [c[0] for c in _hostile_cases(Path("/x"))]


@pytest.mark.parametrize("mode", ["extract", "hash"])
@pytest.mark.parametrize("case_id", _IDS)
def test_hostile_tarball_is_refused(arena, case_id, mode):
    tmp_path, dest, outside = arena
    _, factory, member, would_be = next(c for c in _hostile_cases(outside) if c[0] == case_id)
    archive = Path(factory.write(tmp_path / "evil.tar"))
    before = snapshot(tmp_path, skip=(dest, archive))
    with pytest.raises(UnsafeArchiveError) as info:
        if mode == "extract":
            extract_tarball(archive, dest)
        else:
            tarball_tree_hash(archive)
    message = str(info.value)
    assert "evil.tar" in message and "refused" in message
    shown = repr(member)[1:-1]
    # Long names are shortened in the middle ("head...tail"); either way they are named.
    assert shown in message or (shown[:20] in message and shown[-10:] in message) or \
        ("..." in message and shown[-10:] in message)
    assert isinstance(info.value, ArtifactError) and isinstance(info.value, ValueError)
    assert snapshot(tmp_path, skip=(dest, archive)) == before
    for path in would_be:
        assert not os.path.lexists(path)
    if case_id == "through-in-tree-symlink":
        assert not (dest / "d" / "pwned").exists()


def test_hostile_tarball_compressed_and_streamed(arena):
    tmp_path, dest, outside = arena
    archive = TarFactory().symlink("l", str(outside)).file("l/pwned", b"x").write(
        tmp_path / "evil.tar.zst", "zst")
    with open(archive, "rb") as f, pytest.raises(UnsafeArchiveError, match="symlink"):
        extract_tarball(f, dest)
    assert not (outside / "pwned").exists()


def test_gnu_sparse_file_from_gnu_tar_is_refused(tmp_path):
    src = new_dir(tmp_path / "src")
    with open(src / "holes", "wb") as f:
        f.seek(4 << 20)
        f.write(b"end")
    archive = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--sparse", "--format=pax", "-cf", str(archive), "-C", str(src),
                    "holes"], check=True)
    with tarfile.open(archive) as tf:
        if not tf.getmembers()[0].issparse():
            pytest.skip("this filesystem reports no holes, so GNU tar wrote no sparse entry")
    with pytest.raises(UnsafeArchiveError, match="sparse"):
        extract_tarball(archive, new_dir(tmp_path / "dest"))


def test_file_replacing_outside_symlink_is_written_in_dest(arena):
    tmp_path, dest, outside = arena
    sentinel = outside / "sentinel"
    archive = (TarFactory()
               .symlink("l", str(sentinel)).file("l", b"pwned?")
               .symlink("d", str(outside)).dir("d").file("d/sentinel", b"inside")
               .file("f", b"linked").symlink("h", str(sentinel)).hardlink("h", "f", 0o755)
               .write(tmp_path / "replace.tar"))
    before = snapshot(tmp_path, skip=(dest, Path(archive)))
    got = extract_tarball(archive, dest)
    assert snapshot(tmp_path, skip=(dest, Path(archive))) == before
    assert sentinel.read_bytes() == b"original"
    assert not (dest / "l").is_symlink() and (dest / "l").read_bytes() == b"pwned?"
    assert not (dest / "d").is_symlink() and (dest / "d/sentinel").read_bytes() == b"inside"
    assert not (dest / "h").is_symlink() and (dest / "h").read_bytes() == b"linked"
    assert got == compute_git_tree_sha1(dest) == tarball_tree_hash(archive)


# ---------------------------------------------------------------------------
# Hardlinks and duplicates, as Tar.jl hashes them


def test_hardlink_to_earlier_file(tmp_path):
    archive = (TarFactory().file("a", b"shared", 0o644).hardlink("b", "a", 0o755)
               .hardlink("sub/c", "./a", 0o644).hardlink("a", "a", 0o644)
               .write(tmp_path / "hl.tar"))
    expected = compute_git_tree_sha1(materialise(tmp_path / "expected", [
        {"path": "a", "kind": "file", "content": "shared"},
        {"path": "b", "kind": "exec", "content": "shared"},
        {"path": "sub/c", "kind": "file", "content": "shared"},
    ]))
    dest = new_dir(tmp_path / "dest")
    assert extract_tarball(archive, dest) == expected
    assert tarball_tree_hash(archive) == expected
    assert compute_git_tree_sha1(dest) == expected
    # A copy, not a shared inode: the modes differ.
    assert os.stat(dest / "a").st_mode & 0o777 == 0o644
    assert os.stat(dest / "b").st_mode & 0o777 == 0o755
    assert (dest / "a").read_bytes() == (dest / "b").read_bytes() == b"shared"


def test_hardlink_to_hardlink_is_refused_like_tar_jl(tmp_path):
    archive = TarFactory().file("a", b"x").hardlink("b", "a").hardlink("c", "b").write(
        tmp_path / "hh.tar")
    with pytest.raises(UnsafeArchiveError, match="another hardlink"):
        tarball_tree_hash(archive)


def test_duplicate_entries_later_wins(tmp_path):
    archive = (TarFactory()
               .file("f", b"one").file("f", b"two", 0o755)
               .symlink("s", "nowhere").file("s", b"was a link")
               .file("d/inner", b"gone").file("d", b"now a file")
               .file("g", b"was a file").dir("g").file("g/h", b"h")
               .file("k/keep", b"kept").dir("k")
               .file("p", b"parent was a file").file("p/child", b"child")
               .dir("e").symlink("e", "f")
               .write(tmp_path / "dup.tar"))
    expected_dir = materialise(tmp_path / "expected", [
        {"path": "f", "kind": "exec", "content": "two"},
        {"path": "s", "kind": "file", "content": "was a link"},
        {"path": "d", "kind": "file", "content": "now a file"},
        {"path": "g/h", "kind": "file", "content": "h"},
        {"path": "k/keep", "kind": "file", "content": "kept"},
        {"path": "p/child", "kind": "file", "content": "child"},
        {"path": "e", "kind": "symlink", "target": "f"},
    ])
    expected = compute_git_tree_sha1(expected_dir)
    dest = new_dir(tmp_path / "dest")
    assert extract_tarball(archive, dest) == expected
    assert compute_git_tree_sha1(dest) == expected
    assert tarball_tree_hash(archive) == expected
    assert snapshot(dest, skip=()) == {
        k.replace(str(expected_dir), str(dest)): v
        for k, v in snapshot(expected_dir, skip=()).items()}


def test_modes_ignore_umask(tmp_path):
    archive = TarFactory().dir("d", 0o700).file("d/x", b"x", 0o700).file("r", b"r", 0o600).write(
        tmp_path / "m.tar")
    dest = new_dir(tmp_path / "dest")
    old = os.umask(0o077)
    try:
        extract_tarball(archive, dest)
    finally:
        os.umask(old)
    assert os.stat(dest / "d").st_mode & 0o777 == 0o755
    assert os.stat(dest / "d/x").st_mode & 0o777 == 0o755
    assert os.stat(dest / "r").st_mode & 0o777 == 0o644


def test_dest_must_exist_and_be_empty(tmp_path):
    archive = TarFactory().file("f", b"x").write(tmp_path / "a.tar")
    with pytest.raises(NotADirectoryError):
        extract_tarball(archive, tmp_path / "missing")
    busy = new_dir(tmp_path / "busy")
    (busy / "old").write_bytes(b"")
    with pytest.raises(FileExistsError):
        extract_tarball(archive, busy)


# ---------------------------------------------------------------------------
# Compression detection and damaged archives


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_detect_compression(tmp_path, compression):
    archive = TarFactory().file("f", b"x" * 100).write(tmp_path / "a", compression)
    head = Path(archive).read_bytes()[:512]
    assert detect_compression(head) == ("tar" if compression == "none" else compression)
    with open(archive, "rb") as f:
        stream = open_decompressed(f, archive)
        assert stream.read(512)[257:262] == b"ustar"
        stream.close()


def test_detect_compression_odd_inputs(tmp_path):
    assert detect_compression(b"") == "tar"
    assert detect_compression(b"PK\x03\x04 a zip") == "tar"  # tar reader will refuse it
    lz4 = tmp_path / "a.tar.lz4"
    subprocess.run(["lz4", "-q", "-z", "-", str(lz4)], input=TarFactory().file("f").getvalue(),
                   check=True)
    assert detect_compression(lz4.read_bytes()[:512]) == "lz4"
    with pytest.raises(UnsupportedArchiveError, match="lz4"):
        extract_tarball(lz4, new_dir(tmp_path / "dest"))


def _big_archive(tmp_path: Path, compression: str) -> bytes:
    src = new_dir(tmp_path / "src")
    (src / "random.bin").write_bytes(os.urandom(300_000))
    (src / "second").write_bytes(b"s" * 1000)
    archive = tmp_path / "big"
    create_archive(src, archive, compression)
    return archive.read_bytes()


def _cut_point(data: bytes, compression: str, where: str) -> int:
    if where == "middle":
        return len(data) // 2
    if compression != "none":
        return len(data) - 4  # inside the compressor's trailer / checksum
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        last = tf.getmembers()[-1]
    return last.offset_data + last.size - 10  # inside the last member's data


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("where", ["middle", "end"])
def test_truncated_archive_raises_clear_error(tmp_path, compression, where):
    data = _big_archive(tmp_path, compression)
    cut = tmp_path / "cut.tar.x"
    cut.write_bytes(data[:_cut_point(data, compression, where)])
    if compression == "zst" and where == "end":
        # Only zstd's optional frame checksum is gone: the zstandard stream reader
        # does not notice, but every tar byte is there and the tree hash proves it.
        assert tarball_tree_hash(cut) == tarball_tree_hash(io.BytesIO(data))
        return
    with pytest.raises(ArtifactError, match=r"cut\.tar\.x.*(corrupt|truncated)") as info:
        extract_tarball(cut, new_dir(tmp_path / "dest"))
    assert isinstance(info.value, ValueError)
    with pytest.raises(ArtifactError, match="corrupt or truncated"):
        tarball_tree_hash(cut)


def test_damaged_plain_tars(tmp_path):
    good = TarFactory().file("a", b"a" * 600).file("b", b"b").getvalue()
    cases = {
        "cut-at-header": (good[:512 + 1024], "ends early, after member 'a'"),
        "cut-mid-header": (good[:512 + 1024 + 100], "ends early, after member 'a'"),
        "cut-in-data": (good[:512 + 300], "ends in the middle of member 'a'"),
        "bad-checksum": (good[:1536] + b"X" + good[1537:],
                         "header after member 'a' is damaged"),
    }
    for name, (data, how) in cases.items():
        path = tmp_path / f"{name}.tar"
        path.write_bytes(data)
        with pytest.raises(UnsafeArchiveError) as info:
            tarball_tree_hash(path)
        message = str(info.value)
        assert message.startswith(f"{path}: corrupt or truncated tarball: ")
        assert how in message and "download it again" in message
        with pytest.raises(UnsafeArchiveError) as info:
            tarball_tree_hash(path, label="https://example.org/x.tar", sha256_checked=True)
        message = str(info.value)
        assert message.startswith("https://example.org/x.tar: corrupt or truncated tarball")
        assert "cannot help" in message and "publisher must fix it" in message
        assert "download it again" not in message and str(path) not in message


@pytest.mark.parametrize("name, data, what", [
    ("empty", b"", "the file is empty"),
    ("zip", b"PK\x03\x04" + b"\0" * 2000, "it is a zip file"),
    ("html", b"\n<!DOCTYPE html><html><body>Not Found</body></html>\n" * 20,
     "looks like a web page"),
    ("short-html", b"<html>login</html>", "looks like a web page"),
    ("garbage", bytes(range(256)) * 16, "not a tar header"),
    ("empty-gzip", gzip.compress(b"", mtime=0), "its gzip data is empty"),
])
def test_not_a_tar_archive(tmp_path, name, data, what):
    path = tmp_path / ".download-abc123"  # what a caller's temp file looks like
    path.write_bytes(data)
    url = f"https://example.org/{name}.tar.gz"
    for call in (lambda: tarball_tree_hash(path, label=url),
                 lambda: extract_tarball(path, new_dir(tmp_path / f"dest-{name}"), label=url)):
        with pytest.raises(UnsupportedArchiveError) as info:
            call()
        message = str(info.value)
        assert message.startswith(f"{url}: not a tar archive (") and what in message
        assert ".download-" not in message and "Error" not in message
        assert "_" not in message.split(":", 2)[-1]  # no internal class or temp name
        assert "points at the archive itself" in message
    assert os.listdir(tmp_path / f"dest-{name}") == []
    with pytest.raises(UnsupportedArchiveError, match="publisher must replace it"):
        tarball_tree_hash(path, label=url, sha256_checked=True)


def test_gzip_with_bad_crc_is_detected(tmp_path):
    data = bytearray(gzip.compress(TarFactory().file("f", b"hello").getvalue(), mtime=0))
    data[-8] ^= 0xFF  # the CRC32 in the gzip trailer, after the tar's end marker
    bad = tmp_path / "crc.tar.gz"
    bad.write_bytes(bytes(data))
    with pytest.raises(UnsafeArchiveError, match="corrupt"):
        tarball_tree_hash(bad)


def test_oversized_pax_header_is_refused_without_reading_it_all(tmp_path):
    archive = TarFactory().file("f", b"x", pax={"comment": "c" * (17 << 20)}).write(
        tmp_path / "huge.tar")
    with pytest.raises(UnsafeArchiveError, match="implausibly large"):
        tarball_tree_hash(archive)


def test_zstd_without_zstandard_package(tmp_path, monkeypatch):
    archive = TarFactory().file("f", b"x").write(tmp_path / "a.tar.zst", "zst")
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import now fails, as if absent
    with pytest.raises(UnsupportedArchiveError, match="pip install zstandard"):
        extract_tarball(archive, new_dir(tmp_path / "dest"))
    src = new_dir(tmp_path / "src")
    with pytest.raises(UnsupportedArchiveError, match="pip install zstandard"):
        create_archive(src, tmp_path / "b.tar.zst", "zst")
    assert not (tmp_path / "b.tar.zst").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.zst", "dest", "src"]


# ---------------------------------------------------------------------------
# Deep trees, long names, empty archives, read-only unpacking, streams


@pytest.mark.parametrize("depth", [1000, 5000])
def test_deep_tree_archives_unpacks_and_hashes_without_recursion(tmp_path, depth):
    src, dest = tmp_path / "src", new_dir(tmp_path / "dest")
    deep_tree(src, depth, every=250)
    expected = deep_tree_hash(depth, every=250)
    archive = tmp_path / "deep.tar.gz"
    try:
        with low_recursion_limit():
            create_archive(src, archive)
            assert tarball_tree_hash(archive) == expected
            assert extract_tarball(archive, dest, readonly=True) == expected
            assert compute_git_tree_sha1(dest) == expected
    finally:
        remove_tree(src)
        remove_tree(dest)
    if depth == 1000:  # GNU tar reads our archive the same way (paths < PATH_MAX)
        gnu = new_dir(tmp_path / "gnu")
        subprocess.run(["tar", "-xzf", str(archive), "-C", str(gnu)], check=True, timeout=120)
        assert compute_git_tree_sha1(gnu) == expected
        remove_tree(gnu)


def test_deep_tarball_from_gnu_tar_unpacks(tmp_path):
    src = tmp_path / "src"
    deep_tree(src, 1000, every=100)
    archive = tmp_path / "gnu-deep.tar"
    subprocess.run(["tar", "-cf", str(archive), "--format=gnu", "-C", str(src), "."],
                   check=True, timeout=120)
    dest = new_dir(tmp_path / "dest")
    try:
        with low_recursion_limit():
            assert extract_tarball(archive, dest) == deep_tree_hash(1000, every=100)
    finally:
        remove_tree(src)
        remove_tree(dest)


def test_name_too_long_for_the_filesystem(tmp_path):
    long = "n" * 5000
    archive = TarFactory().file("ok", b"fine").file(f"dir/{long}", b"x").write(
        tmp_path / ".download-f00ba4")
    url = "https://example.org/data/long.tar"
    dest = new_dir(tmp_path / "dest")
    with pytest.raises(UnsupportedArchiveError) as info:
        extract_tarball(archive, dest, label=url)
    message = str(info.value)
    assert message.startswith(f"{url}: member 'dir/nnnn")
    assert "..." in message and "too long for this filesystem" in message
    assert "5004 bytes" in message and "publisher" in message
    assert len(message) < 400 and ".download-" not in message and "Errno" not in message
    # The hash alone needs no filesystem: the name is fine there.
    assert len(tarball_tree_hash(archive)) == 40


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_empty_archive_made_by_create_archive_installs(tmp_path, compression):
    empty = new_dir(tmp_path / "empty")
    archive = tmp_path / f"empty{SUFFIXES[compression]}"
    create_archive(empty, archive)
    assert extract_tarball(archive, new_dir(tmp_path / "d1")) == EMPTY_TREE
    with subprocess.Popen(["cat", str(archive)], stdout=subprocess.PIPE) as proc:
        assert extract_tarball(proc.stdout, new_dir(tmp_path / "d2"),
                               label="https://x.org/e") == EMPTY_TREE
    with open(archive, "rb") as f:
        assert tarball_tree_hash(f) == EMPTY_TREE


def test_readonly_files_are_created_read_only(tmp_path):
    archive = (TarFactory().dir("d", 0o700).file("d/x", b"x", 0o700).file("r", b"r", 0o666)
               .hardlink("h", "d/x", 0o644).write(tmp_path / "m.tar"))
    dest = new_dir(tmp_path / "dest")
    old = os.umask(0o077)
    try:
        extract_tarball(archive, dest, readonly=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(dest / "d").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(dest / "d/x").st_mode) == 0o555
    assert stat.S_IMODE(os.stat(dest / "r").st_mode) == 0o444
    assert stat.S_IMODE(os.stat(dest / "h").st_mode) == 0o444
    assert (dest / "h").read_bytes() == b"x"


def test_big_member_from_a_pipe_is_hashed_beside_the_writes(tmp_path):
    src = new_dir(tmp_path / "src")
    (src / "big.bin").write_bytes(os.urandom(20 << 20))  # above the threaded threshold
    (src / "mid.bin").write_bytes(os.urandom(3 << 20))
    (src / "small").write_bytes(b"s")
    archive = tmp_path / "big.tar"
    create_archive(src, archive)
    expected = compute_git_tree_sha1(src)
    with subprocess.Popen(["cat", str(archive)], stdout=subprocess.PIPE) as proc:
        assert extract_tarball(proc.stdout, new_dir(tmp_path / "dest")) == expected
    assert (tmp_path / "dest/big.bin").read_bytes() == (src / "big.bin").read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(archive.read_bytes()[:15 << 20])
    with pytest.raises(UnsafeArchiveError, match="ends in the middle of member 'big.bin'"):
        extract_tarball(cut, new_dir(tmp_path / "dest2"))


class _Dribble(io.RawIOBase):
    """A download in progress: a non-seekable stream that hands out a few bytes per read."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), 1000, len(self._data) - self._pos)
        b[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


@pytest.mark.parametrize("compression", ["gz", "none"])
def test_reads_a_dribbling_stream(tmp_path, compression):
    src = _build_tree(tmp_path / "src", reverse=False)
    (src / "mid").write_bytes(os.urandom(2 << 20))
    archive = tmp_path / f"a{SUFFIXES[compression]}"
    create_archive(src, archive)
    stream = _Dribble(archive.read_bytes())
    assert not stream.seekable()
    assert extract_tarball(stream, new_dir(tmp_path / "dest")) == compute_git_tree_sha1(src)


# ---------------------------------------------------------------------------
# The archive's name decides its compression


@pytest.mark.parametrize("name, kind", [
    ("a.tar.gz", "gz"), ("a.tgz", "gz"), ("a.tar.bz2", "bz2"), ("a.tbz2", "bz2"),
    ("a.tar.xz", "xz"), ("a.txz", "xz"), ("a.tar.zst", "zst"), ("a.tzst", "zst"),
    ("a.tar", "none"), ("A.TAR.XZ", "xz"), ("noext", "gz"),
])
def test_create_archive_compression_follows_the_name(tmp_path, name, kind):
    src = _build_tree(tmp_path / "src", reverse=False)
    archive = tmp_path / name
    create_archive(src, archive)
    head = archive.read_bytes()[:512]
    assert detect_compression(head) == ("tar" if kind == "none" else kind)
    assert compression_for(name) == kind
    assert tarball_tree_hash(archive) == compute_git_tree_sha1(src)


def test_create_archive_compression_argument(tmp_path):
    src = _build_tree(tmp_path / "src", reverse=False)
    create_archive(src, tmp_path / "plain", "xz")  # a name that says nothing: the argument
    assert detect_compression((tmp_path / "plain").read_bytes()[:512]) == "xz"
    create_archive(src, tmp_path / "b.tar.bz2", "bzip2")  # agreeing aliases are fine
    assert detect_compression((tmp_path / "b.tar.bz2").read_bytes()[:512]) == "bz2"
    for name, compression, says in [("x.tar.xz", "gz", "xz"), ("x.tar", "zst", "no compression"),
                                    ("x.tgz", "none", "gzip")]:
        with pytest.raises(UnsupportedArchiveError) as info:
            create_archive(src, tmp_path / name, compression)
        message = str(info.value)
        assert f"{name}: the name says {says}" in message and repr(compression) in message
        assert not (tmp_path / name).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar.bz2", "plain", "src"]


class _Broken(_Dribble):
    """A download that fails half-way with the transport's own error."""

    def readinto(self, b) -> int:
        if self._pos > len(self._data) // 2:
            raise DownloadError("https://example.org/a.tar.gz: connection reset; retrying "
                                "will be tried by the caller", url="https://example.org/a.tar.gz")
        return super().readinto(b)


def test_a_failing_stream_keeps_its_own_error_and_no_thread_is_left(tmp_path):
    src = new_dir(tmp_path / "src")
    (src / "data").write_bytes(os.urandom(1 << 20))
    archive = tmp_path / "a.tar.gz"
    create_archive(src, archive)
    with pytest.raises(DownloadError, match="connection reset"):
        extract_tarball(_Broken(archive.read_bytes()), new_dir(tmp_path / "dest"),
                        label="https://example.org/a.tar.gz")
    evil = TarFactory().file("../x", b"x").write(tmp_path / "evil.tar")
    with pytest.raises(UnsafeArchiveError):
        extract_tarball(evil, new_dir(tmp_path / "dest2"))
    assert not [t for t in threading.enumerate() if t.name.startswith("artifacts-py")]


def _with_field(data: bytes, block: int, offset: int, value: bytes) -> bytes:
    """``data`` with one header field replaced and that header's checksum redone."""
    start = block * 512
    header = bytearray(data[start:start + 512])
    header[offset:offset + len(value)] = value
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return data[:start] + bytes(header) + data[start + 512:]


def test_crafted_header_fields(tmp_path):
    gnu = TarFactory(tarfile.GNU_FORMAT).file("x" * 150, b"long").getvalue()
    assert gnu[156:157] == b"L"  # a GNU long-name header comes first
    cases = {
        "negative-longname-size": (_with_field(gnu, 0, 124, b"\xff" * 12), "negative size"),
        "huge-longname-size": (_with_field(gnu, 0, 124, b"\x80" + b"\0" * 7 + b"\x7f" * 4),
                               "implausibly large"),
        "bad-octal-size": (_with_field(gnu, 2, 124, b"12x4567\0"), "malformed size"),
    }
    for name, (data, how) in cases.items():
        path = tmp_path / f"{name}.tar"
        path.write_bytes(data)
        with pytest.raises(UnsafeArchiveError, match=how):
            extract_tarball(path, new_dir(tmp_path / f"dest-{name}"))
    # Base-256 sizes are read as GNU tar writes them for big files.
    plain = TarFactory(tarfile.GNU_FORMAT).file("f", b"abc").getvalue()
    b256 = _with_field(plain, 0, 124, b"\x80" + b"\0" * 10 + b"\x03")
    (tmp_path / "b256.tar").write_bytes(b256)
    assert tarball_tree_hash(tmp_path / "b256.tar") == tarball_tree_hash(io.BytesIO(plain))
