"""Tree hashes against the golden vectors and against the real git binary."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artifacts_py.treehash import EMPTY_TREE, TreeBuilder, blob_sha1, compute_git_tree_sha1
from artifacts_py.errors import UnsupportedArchiveError
from artifacts_py.files import remove_tree
from tarfactory import deep_tree, deep_tree_hash, low_recursion_limit

# A copy of shared/spec/treehash-vectors.json (golden hashes made with real git).
VECTORS = Path(__file__).parent / "data" / "treehash-vectors.json"


def load_cases():
    return json.loads(VECTORS.read_text())["cases"]


def materialise(root: Path, entries) -> None:
    """Build a case exactly as the vectors' how_to_materialise says."""
    for e in entries:
        p = root / e["path"]
        if e["kind"] == "dir":
            p.mkdir(parents=True, exist_ok=True)
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        if e["kind"] == "symlink":
            os.symlink(e["target"], p)
            continue
        data = bytes.fromhex(e["content_hex"]) if "content_hex" in e else e["content"].encode()
        p.write_bytes(data)
        p.chmod(0o755 if e["kind"] == "exec" else 0o644)


@pytest.mark.parametrize("case", load_cases(), ids=lambda c: c["name"])
def test_golden_vectors(case, tmp_path):
    materialise(tmp_path, case["entries"])
    got = compute_git_tree_sha1(tmp_path)
    assert got == case["expected_git_tree_sha1"]
    for wrong in case.get("known_wrong_answers", {}).values():
        assert got != wrong


def test_worked_example_blob_hashes():
    assert blob_sha1(b"dot\n").hex() == "a2373c722dedbf05f6669eba1ea044484213d03d"
    assert blob_sha1(b"a.b").hex() == "f6f28df96c2b40c951164286e08be7c38ec74851"


def test_empty_tree_and_builder_replacement():
    b = TreeBuilder()
    assert b.hexdigest() == EMPTY_TREE
    b.add("x", b"100644", blob_sha1(b"1"))
    first = b.hexdigest()
    b.add("x", b"100644", blob_sha1(b"2"))  # a later tar entry replaces the earlier
    assert b.hexdigest() != first
    b.add(".git/config", b"100644", blob_sha1(b"ignored"))
    b.add("sub/.git", b"100644", blob_sha1(b"ignored"))
    b2 = TreeBuilder()
    b2.add("x", b"100644", blob_sha1(b"2"))
    assert b.hexdigest() == b2.hexdigest()


def test_not_a_directory(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(NotADirectoryError, match=str(f)):
        compute_git_tree_sha1(f)


def git_write_tree(root: Path) -> str:
    """What real git says, isolated from any user or system configuration."""
    git_dir = root.parent / (root.name + ".git")
    env = {"PATH": os.environ["PATH"], "GIT_DIR": str(git_dir), "GIT_WORK_TREE": str(root),
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(root.parent), "GIT_CONFIG_GLOBAL": os.devnull}
    subprocess.run(["git", "init", "-q"], env=env, check=True)
    subprocess.run(["git", "add", "-A", "-f"], env=env, check=True, cwd=root)
    out = subprocess.run(["git", "write-tree"], env=env, check=True, capture_output=True, text=True)
    shutil.rmtree(git_dir)
    return out.stdout.strip()


NAMES = st.text(alphabet="abAB_-.0~é", min_size=1, max_size=5).filter(
    lambda s: s not in (".", "..", ".git"))
LEAF = st.one_of(
    st.tuples(st.just("file"), st.binary(max_size=64)),
    st.tuples(st.just("exec"), st.binary(max_size=64)),
    st.tuples(st.just("link"), st.text(alphabet="ab/.é", min_size=1, max_size=8)),
    st.just(("emptydir", b"")),
)
TREES = st.recursive(
    st.dictionaries(NAMES, LEAF, max_size=5),
    lambda children: st.dictionaries(NAMES, st.one_of(LEAF, children), max_size=4),
    max_leaves=20,
)


def build(root: Path, tree) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, node in tree.items():
        p = root / name
        if isinstance(node, dict):
            build(p, node)
        elif node[0] == "link":
            os.symlink(node[1], p)
        elif node[0] == "emptydir":
            p.mkdir()
        else:
            p.write_bytes(node[1])
            p.chmod(0o755 if node[0] == "exec" else 0o644)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git binary")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=TREES)
def test_matches_git_on_random_trees(tree, tmp_path_factory):
    root = tmp_path_factory.mktemp("rand") / "t"
    build(root, tree)
    assert compute_git_tree_sha1(root) == git_write_tree(root)


# ---------------------------------------------------------------------------
# Deep trees: no recursion, any depth


def _git_write_tree(root: Path, tmp: Path) -> str:
    env = {**os.environ, "GIT_DIR": str(tmp / "git"), "GIT_WORK_TREE": str(root),
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp)}
    subprocess.run(["git", "init", "-q"], env=env, check=True, timeout=60)
    subprocess.run(["git", "add", "-A", "-f"], env=env, check=True, timeout=120)
    return subprocess.run(["git", "write-tree"], env=env, check=True, timeout=60,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def deep_root(tmp_path):
    """A folder for a deep tree, removed afterwards (pytest's own cleanup recurses)."""
    yield tmp_path / "deep"
    remove_tree(tmp_path / "deep")


def test_tree_1000_deep_matches_real_git(tmp_path, deep_root):
    root = deep_root
    deep_tree(root, 1000, every=7)
    expected = _git_write_tree(root, tmp_path)
    assert expected == deep_tree_hash(1000, every=7)
    with low_recursion_limit():
        assert compute_git_tree_sha1(root) == expected


def test_tree_5000_deep_hashes_without_recursion(deep_root):
    root = deep_root
    deep_tree(root, 5000, every=1000)  # paths longer than PATH_MAX: git add cannot
    with low_recursion_limit():
        assert compute_git_tree_sha1(root) == deep_tree_hash(5000, every=1000)
        builder = TreeBuilder()
        builder.add("/".join(["d"] * 5000) + "/f", b"100755", blob_sha1(b"level 5000\n"))
        assert builder.hexdigest() == deep_tree_hash(5000, every=5000)


@given(ops=st.lists(st.tuples(
    st.sampled_from(["add", "add", "add", "remove"]),
    st.lists(st.sampled_from(["a", "b", ".", "", ".git", "c"]), min_size=1, max_size=4)
    .map("/".join),
    st.sampled_from([b"100644", b"100755", b"120000"]),
    st.binary(min_size=20, max_size=20)), max_size=30))
@settings(max_examples=300, deadline=None)
def test_tree_builder_matches_a_plain_model(ops):
    """TreeBuilder (with its same-folder shortcut) against a dict of normalised paths."""
    builder = TreeBuilder()
    model = {}
    for op, path, mode, sha in ops:
        parts = [p for p in path.split("/") if p and p != "."]
        key = "/".join(parts)
        if op == "remove":
            builder.remove(path)
            model = {k: v for k, v in model.items()
                     if not (k == key or k.startswith(key + "/"))} if parts else model
            continue
        builder.add(path, mode, sha)
        if parts and ".git" not in parts:
            # A leaf replaces whatever was below it; a file on the way becomes a folder.
            model = {k: v for k, v in model.items() if not k.startswith(key + "/")}
            for i in range(1, len(parts)):
                model.pop("/".join(parts[:i]), None)
            model[key] = (mode, sha)
    reference = TreeBuilder()
    for key, (mode, sha) in model.items():
        reference._last = None  # the slow path only
        reference.add(key, mode, sha)
    assert builder.hexdigest() == reference.hexdigest()


def test_git_folder_is_skipped_and_fifo_refused(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    expected = compute_git_tree_sha1(tmp_path)
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    (tmp_path / ".git" / "objects" / "o").write_bytes(b"object")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".git").write_bytes(b"gitdir: elsewhere")  # a submodule's file
    assert compute_git_tree_sha1(tmp_path) == expected
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(UnsupportedArchiveError, match="pipe: cannot hash a device, FIFO"):
        compute_git_tree_sha1(tmp_path)
