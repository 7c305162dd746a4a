"""The depot stack, Julia's layout and Overrides.toml, and the install step itself."""

from __future__ import annotations

import json
import os
import shutil
import stat
import textwrap
from pathlib import Path

import pytest

import artifacts_py
from artifacts_py import depot, overrides, store, usage
from artifacts_py.archives import extract_tarball
from artifacts_py.errors import ArtifactsTomlError, HashMismatchError
from artifacts_py.treehash import compute_git_tree_sha1
from core_helpers import (depot_leftovers, install, installed, make_tarball, make_tree, persist, snapshot,
                          write_toml)


def julia_depot(root: Path, files=None) -> tuple:
    """A depot laid out by Julia: ``<root>/artifacts/<hash>/`` plus unrelated Julia dirs,
    all read-only (0555 dirs, 0444 files). Returns (root, hash)."""
    src = make_tree(root.parent / f"{root.name}-src", files)
    tree = compute_git_tree_sha1(src)
    shutil.copytree(src, root / "artifacts" / tree, symlinks=True)
    (root / "logs").mkdir()
    (root / "logs" / "artifact_usage.toml").write_text("# julia's own\n")
    for dirpath, dirs, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                os.chmod(p, 0o444 | (os.stat(p).st_mode & 0o111))
    for dirpath, dirs, _ in os.walk(root, topdown=False):
        for d in dirs:
            os.chmod(os.path.join(dirpath, d), 0o555)
    os.chmod(root, 0o555)
    return root, tree


@pytest.fixture
def stack(tmp_path, monkeypatch):
    """A two-depot stack: an empty writable one, then a read-only Julia depot."""
    first = tmp_path / "mine"
    shared, tree = julia_depot(tmp_path / "shared")
    monkeypatch.setenv("ARTIFACTS_PY_DEPOT_PATH", os.pathsep.join([str(first), str(shared)]))
    yield first, shared, tree
    for dirpath, dirs, _ in os.walk(shared):  # let pytest clean up
        os.chmod(dirpath, 0o755)


def test_stack_parsing(tmp_path, monkeypatch):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    monkeypatch.setenv("ARTIFACTS_PY_DEPOT_PATH", os.pathsep.join([str(a), str(b), "", str(a)]))
    assert depot.depot_stack() == [a, b, depot.default_depot()]
    assert depot.get_cache_dir() == a
    try:
        artifacts_py.set_cache_dir(c)
        assert depot.depot_stack() == [c, a, b, depot.default_depot()]
        assert artifacts_py.get_cache_dir() == c
    finally:
        artifacts_py.set_cache_dir(None)
    assert depot.get_cache_dir() == a


def test_read_only_julia_depot_is_used_never_written(stack, http_server, tmp_path):
    first, shared, tree = stack
    url = http_server.add("/never.tar.gz", b"unused")
    toml = write_toml(tmp_path / "Artifacts.toml", "Shared", tree, [(url, "0" * 64)])
    before = snapshot(shared)

    path = artifacts_py.artifact("Shared", toml)
    assert path == shared / "artifacts" / tree
    assert artifacts_py.artifact_exists(tree) and artifacts_py.verify_artifact(tree)
    assert depot.installed_hashes(shared) == [tree]
    assert artifacts_py.remove_artifact(tree) is None
    artifacts_py.clear_artifact_cache(toml_path=toml)

    assert path.is_dir() and snapshot(shared) == before
    assert http_server.requests == []
    assert installed(first) == []


def test_miss_installs_into_first_depot(stack, http_server, tmp_path):
    first, shared, _ = stack
    data, tree, sha = make_tarball(tmp_path, {"new.txt": b"new"})
    url = http_server.add("/new.tar.gz", data)
    toml = write_toml(tmp_path / "Artifacts.toml", "New", tree, [(url, sha)])
    before = snapshot(shared)
    assert artifacts_py.artifact("New", toml) == first / "artifacts" / tree
    assert snapshot(shared) == before


# ---------------------------------------------------------------- overrides

def overrides(depot_root: Path, text: str) -> Path:
    p = depot_root / "artifacts" / "Overrides.toml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))
    return p


def test_override_to_absolute_path(isolated_depot, http_server, tmp_path):
    target = make_tree(tmp_path / "mine", {"x.txt": b"local build"})
    tree = "1" * 40
    overrides(isolated_depot, f'{tree.upper()} = "{target}"\n')
    url = http_server.add("/x.tar.gz", b"never fetched")
    toml = write_toml(tmp_path / "Artifacts.toml", "X", tree, [(url, "0" * 64)])

    assert artifacts_py.artifact("X", toml) == target
    assert artifacts_py.artifact_exists("X", toml) and artifacts_py.artifact_path(tree) == target
    assert artifacts_py.verify_artifact(tree)  # trusted unless honour_overrides
    assert not artifacts_py.verify_artifact(tree, honor_overrides=True)
    artifacts_py.remove_artifact(tree)  # never removes an override target
    assert (target / "x.txt").read_bytes() == b"local build"
    assert http_server.requests == []


def test_override_redirects_and_removal_by_earlier_depot(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    monkeypatch.setenv("ARTIFACTS_PY_DEPOT_PATH", os.pathsep.join([str(first), str(second)]))
    real_root, real = julia_depot(tmp_path / "real")
    a, b, c, d = "a" * 40, "b" * 40, "c" * 40, "d" * 40
    # The later (system) depot redirects a->b->(path) and c->real; d -> elsewhere.
    overrides(second, f"""
        {a} = "{b}"
        {b} = "{real_root / 'artifacts' / real}"
        {c} = "{real}"
        {d} = "/nowhere"
    """)
    # The earlier (user) depot removes d's override; real is installed in `second`.
    overrides(first, f'{d} = ""\n')
    shutil.copytree(real_root / "artifacts" / real, second / "artifacts" / real, symlinks=True)

    got = artifacts_py.load_overrides(force=True)
    assert got[a] == real_root / "artifacts" / real  # a chain follows b's override
    assert got[c] == second / "artifacts" / real     # a hash resolves in the stack
    assert d not in got
    assert artifacts_py.artifact_path(d) == first / "artifacts" / d
    for dirpath, dirs, _ in os.walk(real_root):
        os.chmod(dirpath, 0o755)


@pytest.mark.parametrize("text, why", [
    ('{h} = "relative/dir"', "absolute path"),
    ('nothex = "/abs"', "40-hex"),
    ("{h} = 3", "absolute path"),
    ('[not-a-uuid]\nName = "/abs"', "UUID"),
    ('[{u}]\nName = "rel"', "absolute path"),
    ('{h} = "{g}"\n{g} = "{h}"', "loop"),
    ("{h} = ", "invalid TOML"),
])
def test_bad_overrides_name_the_file(isolated_depot, tmp_path, text, why):
    h, g = "1" * 40, "2" * 40
    u = "12345678-1234-1234-1234-123456789abc"
    path = overrides(isolated_depot, text.format(h=h, g=g, u=u) + "\n")
    toml = write_toml(tmp_path / "Artifacts.toml", "X", h, [("http://127.0.0.1:9/x", "0" * 64)])
    with pytest.raises(ArtifactsTomlError) as info:
        artifacts_py.artifact("X", toml)
    assert str(path) in str(info.value) and why in str(info.value)


def test_uuid_overrides_are_accepted_and_inert(isolated_depot, tmp_path):
    u = "12345678-1234-1234-1234-123456789abc"
    overrides(isolated_depot, f'[{u}]\nName = "{tmp_path}"\nOther = ""\n')
    assert artifacts_py.load_overrides(force=True) == {}


# -------------------------------------------------------------- install step

def test_existing_destination_counts_as_success(isolated_depot, tmp_path):
    """Another process finishes the same tree while we fill ours: we return theirs."""
    data, tree, _ = make_tarball(tmp_path)
    archive = tmp_path / "t.tar.gz"
    archive.write_bytes(data)
    dest = isolated_depot / "artifacts" / tree

    def fill(tmp: Path) -> str:
        other = tmp.parent / ".other-process"
        other.mkdir()
        extract_tarball(archive, other)
        os.rename(other, dest)  # the rival's rename lands first
        return extract_tarball(archive, tmp)

    assert install(tree, fill) == dest
    assert compute_git_tree_sha1(dest) == tree
    assert depot_leftovers(isolated_depot) == []
    assert install(tree, lambda tmp: pytest.fail("a hit must not fill")) == dest


def test_failed_fill_and_mismatch_leave_nothing(isolated_depot, tmp_path):
    data, tree, _ = make_tarball(tmp_path)
    archive = tmp_path / "t.tar.gz"
    archive.write_bytes(data)

    def broken(tmp: Path) -> str:
        extract_tarball(archive, tmp)
        raise OSError("connection lost half way")

    with pytest.raises(OSError, match="half way"):
        install(tree, broken)
    with pytest.raises(HashMismatchError, match=tree):
        install("f" * 40, lambda tmp: extract_tarball(archive, tmp))
    # fill may return None: then the directory is hashed on disk.
    with pytest.raises(HashMismatchError):
        install("f" * 40, lambda tmp: (extract_tarball(archive, tmp), None)[1])
    assert installed(isolated_depot) == [] and depot_leftovers(isolated_depot) == []
    assert install(tree, lambda tmp: (extract_tarball(archive, tmp), None)[1]).name == tree


def test_temp_entries_are_not_artifacts(isolated_depot, tmp_path, capsys):
    from artifacts_py import cli

    data, tree, _ = make_tarball(tmp_path)
    archive = tmp_path / "t.tar.gz"
    archive.write_bytes(data)
    install(tree, lambda tmp: extract_tarball(archive, tmp))
    adir = isolated_depot / "artifacts"
    (adir / f"{store.TEMP_PREFIX}crashed").mkdir()
    (adir / f"{store.DOWNLOAD_PREFIX}crashed").write_bytes(b"partial")
    (adir / ("e" * 40 + ".pid")).write_text("1")  # Julia's pidlock file

    assert depot.installed_hashes() == [tree]
    assert cli.main(["ls", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["hash"] for r in rows] == [tree]
    # Only leftovers older than the grace period are stale (gc may reap them).
    os.utime(adir / f"{store.TEMP_PREFIX}crashed", (0, 0))
    assert store.stale_temp_entries() == [adir / f"{store.TEMP_PREFIX}crashed"]


def test_persist_files_readonly_dir_mode(isolated_depot, tmp_path):
    src = make_tree(tmp_path / "src")
    path = persist(lambda tmp: (shutil.copytree(src, tmp, symlinks=True,
                                                      dirs_exist_ok=True), None)[1])
    assert path.name == compute_git_tree_sha1(src)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(path.parent.stat().st_mode)
    for dirpath, _, files in os.walk(path):
        for n in files:
            p = Path(dirpath) / n
            if not p.is_symlink():
                assert not p.stat().st_mode & 0o222, p
    # Persisting the same tree again returns the existing one and leaves nothing.
    again = persist(lambda tmp: (shutil.copytree(src, tmp, symlinks=True,
                                                       dirs_exist_ok=True), None)[1])
    assert again == path and depot_leftovers(isolated_depot) == []


@pytest.mark.parametrize("bad", ["../logs", "/etc", "..", "g" * 40, "a" * 39])
def test_non_hashes_never_become_paths(isolated_depot, tmp_path, bad):
    (isolated_depot / "logs").mkdir()
    before = snapshot(isolated_depot)
    for call in (store.remove_artifact, artifacts_py.remove_artifact, artifacts_py.artifact_path,
                 artifacts_py.verify_artifact, depot.find_installed,
                 lambda h: install(h, lambda tmp: None)):
        with pytest.raises(ValueError, match="40-digit hex"):
            call(bad)
    assert snapshot(isolated_depot) == before


def test_unwritable_depot_is_one_clear_error(http_server, tmp_path, monkeypatch):
    data, tree, sha = make_tarball(tmp_path)
    url = http_server.add("/a.tar.gz", data)
    toml = write_toml(tmp_path / "Artifacts.toml", "Data", tree, [(url, sha), (url, sha)])
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the depot should be")
    monkeypatch.setenv("ARTIFACTS_PY_DEPOT_PATH", str(blocker))
    with pytest.raises(OSError, match=r"cannot create .*not-a-dir/artifacts.*writable") as info:
        artifacts_py.artifact("Data", toml)
    assert isinstance(info.value, artifacts_py.InstallError)
    assert http_server.requests == []


def test_hit_in_shared_depot_when_first_is_unusable(tmp_path, monkeypatch):
    shared, tree = julia_depot(tmp_path / "shared")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("ARTIFACTS_PY_DEPOT_PATH", os.pathsep.join([str(blocker), str(shared)]))
    toml = write_toml(tmp_path / "Artifacts.toml", "Shared", tree,
                      [("http://127.0.0.1:9/never.tar.gz", "0" * 64)])
    try:
        assert artifacts_py.artifact("Shared", toml) == shared / "artifacts" / tree
    finally:
        for dirpath, _, _ in os.walk(shared):
            os.chmod(dirpath, 0o755)
