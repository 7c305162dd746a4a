"""Resolution through ``artifact()``: install, hits, mirrors, offline, authoring.

Every download goes through a real HTTP server on 127.0.0.1 (tests/httpserver.py).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import artifacts_py
from artifacts_py import core, depot
from artifacts_py.errors import (ArtifactNotFoundError, HashMismatchError, InstallError,
                                 OfflineError)
from artifacts_py.treehash import compute_git_tree_sha1
from core_helpers import TREE, depot_leftovers, installed, make_tarball, sha256, write_toml
from httpserver import FaultyServer


@pytest.fixture
def tarball(tmp_path):
    """(bytes, git-tree-sha1, sha256) of the standard test tree."""
    return make_tarball(tmp_path)


def test_miss_installs_julia_layout_then_hits(http_server, tarball, tmp_path, isolated_depot):
    data, tree, sha = tarball
    url = http_server.add("/a.tar.gz", data)
    toml = write_toml(tmp_path / "Artifacts.toml", "Data", tree, [(url, sha)])

    path = artifacts_py.artifact("Data", toml)

    assert path == isolated_depot / "artifacts" / tree
    # The tree itself: no wrapper folder, no marker file.
    assert sorted(os.listdir(path)) == ["README.txt", "bin", "data", "link"]
    assert (path / "data" / "values.csv").read_bytes() == TREE["data/values.csv"]
    assert os.readlink(path / "link") == "README.txt"
    assert compute_git_tree_sha1(path) == tree
    # Files read-only, exec bit kept, directories readable by others like their parent.
    assert stat.S_IMODE(os.stat(path / "README.txt").st_mode) == 0o444
    assert stat.S_IMODE(os.stat(path / "bin" / "run.sh").st_mode) == 0o555
    assert stat.S_IMODE(os.stat(path).st_mode) == stat.S_IMODE(os.stat(path.parent).st_mode)
    assert depot_leftovers(isolated_depot) == []
    assert http_server.count("/a.tar.gz", "GET") == 1

    assert artifacts_py.artifact("Data", toml) == path
    assert artifacts_py.artifact_exists("Data", toml) and artifacts_py.artifact_exists(tree)
    assert artifacts_py.artifact_hash("Data", toml) == tree
    assert artifacts_py.verify_artifact(tree)
    assert http_server.count("/a.tar.gz") == 1


def test_hit_needs_no_server_and_works_offline(tarball, tmp_path, monkeypatch):
    data, tree, sha = tarball
    with FaultyServer() as server:
        url = server.add("/a.tar.gz", data)
        toml = write_toml(tmp_path / "Artifacts.toml", "Data", tree, [(url, sha)])
        path = artifacts_py.artifact("Data", toml)
    # Server gone: a hit must not notice.
    assert artifacts_py.artifact("Data", toml) == path
    monkeypatch.setenv("ARTIFACTS_PY_OFFLINE", "1")
    assert artifacts_py.artifact("Data", toml) == path
    assert artifacts_py.ensure_artifact_installed("Data", toml) == path


def test_hit_is_a_few_stats_and_imports_nothing_heavy(tarball, tmp_path, isolated_depot):
    """In a fresh interpreter: no requests/tomlkit/filelock/urllib3, no listing,
    and no file of the artifact is opened on a hit."""
    data, tree, sha = tarball
    with FaultyServer() as server:
        url = server.add("/a.tar.gz", data)
        toml = write_toml(tmp_path / "Artifacts.toml", "Data", tree, [(url, sha)])
        old = os.stat(toml).st_mtime - 60  # not just written: its parse is cached
        os.utime(toml, (old, old))
        path = artifacts_py.artifact("Data", toml)
    # Tamper with the installed tree: a hit must not notice (no hashing).
    os.chmod(path, 0o755)
    (path / "extra.txt").write_text("added after install")
    script = textwrap.dedent(f"""
        import json, sys
        events = []
        sys.addaudithook(lambda ev, args: events.append((ev, repr(args)[:300]))
                         if ev in ("open", "os.listdir", "os.scandir", "os.walk") else None)
        import artifacts_py
        p = artifacts_py.artifact("Data", {str(toml)!r})
        p2 = artifacts_py.artifact("Data/data/values.csv")  # found through ARTIFACTS_PY_TOML
        heavy = sorted(m for m in ("requests", "tomlkit", "filelock", "urllib3", "tqdm",
                                   "tomllib", "hashlib", "logging") if m in sys.modules)
        touched = [e for e in events if {str(path)!r} in e[1]]
        print(json.dumps({{"path": str(p), "p2": str(p2), "heavy": heavy, "touched": touched}}))
    """)
    env = {**os.environ, "ARTIFACTS_PY_TOML": str(toml)}  # the server is gone, too
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["path"] == str(path)
    assert got["p2"] == str(path / "data" / "values.csv")
    assert got["heavy"] == []
    assert got["touched"] == []


def test_a_toml_changed_in_the_same_second_with_the_same_size_is_seen(tmp_path,
                                                                      isolated_depot):
    """The parse cache in the depot never keeps a just-written Artifacts.toml (coarse
    mtimes could hide the next edit); an older one is kept, and an edit re-parses it."""
    from artifacts_py import _toml

    toml = write_toml(tmp_path / "Artifacts.toml", "Data", "a" * 40)
    cache = Path(_toml._cache_file(str(toml)))
    code = ("import sys, artifacts_py; print(artifacts_py.artifact_hash('Data', sys.argv[1]), "
            "'tomllib' in sys.modules)")

    def fresh() -> list:
        out = subprocess.run([sys.executable, "-c", code, str(toml)], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    assert fresh() == ["a" * 40, "True"] and not cache.exists()  # written just now
    st = os.stat(toml)
    toml.write_text(toml.read_text().replace("a" * 40, "b" * 40))  # same size
    os.utime(toml, ns=(st.st_atime_ns, st.st_mtime_ns))  # and mtime: one FAT tick
    assert fresh() == ["b" * 40, "True"]
    old = st.st_mtime - 60
    os.utime(toml, (old, old))
    assert fresh() == ["b" * 40, "True"] and cache.exists()  # settled: cached
    assert fresh() == ["b" * 40, "False"]  # read from the cache, no parser
    toml.write_text(toml.read_text().replace("b" * 40, "c" * 40))  # a later edit
    assert fresh() == ["c" * 40, "True"]


def test_slash_form_returns_path_inside(http_server, tarball, tmp_path):
    data, tree, sha = tarball
    url = http_server.add("/a.tar.gz", data)
    toml = write_toml(tmp_path / "Artifacts.toml", "Data", tree, [(url, sha)])
    p = artifacts_py.artifact("Data/data/values.csv", toml)
    assert p.read_bytes() == TREE["data/values.csv"]
    assert p.parent.parent.name == tree
    # Julia splits at the first separator of either kind.
    assert artifacts_py.artifact("Data\\data/values.csv", toml) == p
    assert artifacts_py.artifact("Data/", toml) == p.parent.parent
    with pytest.raises(ArtifactNotFoundError):
        artifacts_py.artifact("Other/data/values.csv", toml)


def test_mirrors_tried_in_toml_order(http_server, tarball, tmp_path, isolated_depot):
    data, tree, sha = tarball
    missing = http_server.url("/missing.tar.gz")  # 404
    corrupt = http_server.add("/corrupt.tar.gz", data, wrong_bytes=True)  # sha256 mismatch
    good = http_server.add("/good.tar.gz", data)
    spare = http_server.add("/spare.tar.gz", data)
    toml = write_toml(tmp_path / "Artifacts.toml", "Data", tree,
                      [(missing, sha), (corrupt, sha), (good, sha), (spare, sha)])

    path = artifacts_py.artifact("Data", toml)

    assert compute_git_tree_sha1(path) == tree
    assert [r.path for r in http_server.requests] == [
        "/missing.tar.gz", "/corrupt.tar.gz", "/good.tar.gz"]
    assert depot_leftovers(isolated_depot) == []


def test_all_mirrors_fail_one_error_lists_each(http_server, tarball, tmp_path, isolated_depot):
    data, tree, sha = tarball
    missing = http_server.url("/missing.tar.gz")
    corrupt = http_server.add("/corrupt.tar.gz", data, wrong_bytes=True)
    denied = http_server.add("/denied.tar.gz", data, status=403)
    toml = write_toml(tmp_path / "Artifacts.toml", "Data", tree,
                      [(missing, sha), (corrupt, sha), (denied, sha)])

    with pytest.raises(InstallError) as info:
        artifacts_py.artifact("Data", toml)

    err = info.value
    assert isinstance(err, OSError)
    assert [url for url, _ in err.failures] == [missing, corrupt, denied]
    msg = str(err)
    assert "Data" in msg and tree in msg and str(toml) in msg
    for url, why in ((missing, "404"), (corrupt, "sha256 mismatch"), (denied, "403")):
        line = next(line for line in msg.splitlines() if line.strip().startswith(f"- {url}"))
        assert why in line
    assert isinstance(err.failures[1][1], HashMismatchError)
    assert installed(isolated_depot) == [] and depot_leftovers(isolated_depot) == []


def test_tree_hash_mismatch_installs_nothing_then_next_mirror(http_server, tmp_path,
                                                               isolated_depot):
    data, tree, sha = make_tarball(tmp_path)
    other, other_tree, other_sha = make_tarball(tmp_path, {"README.txt": b"not it"}, "other")
    bad = http_server.add("/other.tar.gz", other)  # its sha256 is right, its tree is not
    good = http_server.add("/good.tar.gz", data)
    toml = write_toml(tmp_path / "Artifacts.toml", "Data", tree, [(bad, other_sha), (good, sha)])
    alone = write_toml(tmp_path / "Alone.toml", "Data", tree, [(bad, other_sha)])

    with pytest.raises(InstallError) as info:
        artifacts_py.artifact("Data", alone)
    (_, err), = info.value.failures
    assert isinstance(err, HashMismatchError)
    assert err.expected == tree and err.actual == other_tree
    assert installed(isolated_depot) == [] and depot_leftovers(isolated_depot) == []

    path = artifacts_py.artifact("Data", toml)
    assert path.name == tree and compute_git_tree_sha1(path) == tree
    assert installed(isolated_depot) == [tree]  # the wrong tree was not kept either
    assert depot_leftovers(isolated_depot) == []


def test_offline_miss_never_touches_network(http_server, tarball, tmp_path, monkeypatch,
                                            isolated_depot):
    data, tree, sha = tarball
    url = http_server.add("/a.tar.gz", data)
    toml = write_toml(tmp_path / "Artifacts.toml", "Data", tree, [(url, sha), (url, sha)])
    monkeypatch.setenv("ARTIFACTS_PY_OFFLINE", "1")

    with pytest.raises(OfflineError) as info:
        artifacts_py.artifact("Data", toml)

    assert "ARTIFACTS_PY_OFFLINE" in str(info.value) and "Data" in str(info.value)
    assert http_server.requests == []
    assert installed(isolated_depot) == []

    # A file:// mirror is not the network: offline may use it.
    local = tmp_path / "local.tar.gz"
    local.write_bytes(data)
    toml2 = write_toml(tmp_path / "Local.toml", "Data", tree, [(url, sha), (local.as_uri(), sha)])
    assert artifacts_py.artifact("Data", toml2).name == tree
    assert http_server.requests == []


def test_no_source_is_a_clear_error(tmp_path):
    toml = write_toml(tmp_path / "Artifacts.toml", "Data", "a" * 40)
    with pytest.raises(artifacts_py.NotInstalledError, match=r"no source.*\[\[Data.download\]\]"):
        artifacts_py.artifact("Data", toml)


def test_a_name_that_needs_quotes_is_quoted_in_the_advice(tmp_path):
    toml = write_toml(tmp_path / "Artifacts.toml", '"My data"', "a" * 40)
    with pytest.raises(artifacts_py.NotInstalledError) as exc:
        artifacts_py.artifact("My data", toml)
    assert '[["My data".download]]' in str(exc.value)  # valid TOML, unlike [[My data.download]]
    with pytest.raises(ArtifactNotFoundError) as missing:
        artifacts_py.artifact("My dat", toml)
    assert "`artifacts add 'My dat' ...`" in str(missing.value)


@pytest.mark.parametrize("call", [artifacts_py.artifact, artifacts_py.artifact_hash,
                                  artifacts_py.ensure_artifact_installed])
@pytest.mark.parametrize("name", [None, "", 123, ["Data"]])
def test_a_name_that_is_not_a_string_is_refused_by_name(tmp_path, call, name):
    toml = write_toml(tmp_path / "Artifacts.toml", "Data", "a" * 40)
    with pytest.raises(artifacts_py.InvalidArgumentError) as exc:
        call(name, toml)
    assert str(exc.value) == f"an artifact name must be a non-empty string, not {name!r}"


@pytest.mark.parametrize("bad", [None, "zz", "../../etc", "g" * 40])
def test_verify_refuses_what_is_not_a_tree_hash(bad):
    with pytest.raises(artifacts_py.InvalidArgumentError):
        artifacts_py.verify_artifact(bad)


def test_compute_sha256_of_a_folder_or_nothing_says_it_hashes_a_file(tmp_path):
    with pytest.raises(IsADirectoryError, match="not a file; compute_sha256 hashes a file"):
        artifacts_py.compute_sha256(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a file; compute_sha256 hashes a file"):
        artifacts_py.compute_sha256(tmp_path / "missing.tar.gz")


def test_ensure_all_skips_names_without_a_binding_for_this_platform(http_server, tarball,
                                                                    tmp_path):
    data, tree, sha = tarball
    url = http_server.add("/a.tar.gz", data)
    toml = tmp_path / "Artifacts.toml"
    toml.write_text(textwrap.dedent(f"""
        [Data]
        git-tree-sha1 = "{tree}"
            [[Data.download]]
            url = "{url}"
            sha256 = "{sha}"

        [Lazy]
        git-tree-sha1 = "{"b" * 40}"
        lazy = true
            [[Lazy.download]]
            url = "{http_server.url('/nope')}"
            sha256 = "{"c" * 64}"

        [[Elsewhere]]
        git-tree-sha1 = "{"d" * 40}"
        os = "windows"
        arch = "x86_64"
            [[Elsewhere.download]]
            url = "{http_server.url('/nope')}"
            sha256 = "{"e" * 64}"
    """))
    got = artifacts_py.ensure_all_artifacts_installed(toml)
    assert list(got) == ["Data"] and got["Data"].name == tree
    assert http_server.count("/nope") == 0


def test_remove_and_clear(http_server, tarball, tmp_path, isolated_depot):
    data, tree, sha = tarball
    url = http_server.add("/a.tar.gz", data)
    toml = write_toml(tmp_path / "Artifacts.toml", "Data", tree, [(url, sha)])
    artifacts_py.artifact("Data", toml)
    artifacts_py.remove_artifact(tree)
    assert not artifacts_py.artifact_exists(tree) and installed(isolated_depot) == []
    artifacts_py.artifact("Data", toml)
    artifacts_py.clear_artifact_cache("Data", toml)
    assert installed(isolated_depot) == [] and depot_leftovers(isolated_depot) == []
    assert http_server.count("/a.tar.gz") == 2


# ------------------------------------------------------------------ authoring

def test_add_artifact_downloads_once_installs_and_binds(http_server, tarball, tmp_path,
                                                       isolated_depot, monkeypatch):
    data, tree, sha = tarball
    url = http_server.add("/a.tar.gz", data)
    toml = tmp_path / "Artifacts.toml"
    toml.write_text("# my artifacts\n")

    got = artifacts_py.add_artifact(toml, "Data", url, verbose=False)

    assert got["git_tree_sha1"] == tree and got["sha256"] == sha and got["url"] == url
    assert Path(got["path"]) == isolated_depot / "artifacts" / tree
    assert http_server.count("/a.tar.gz") == 1
    text = toml.read_text()
    assert text.startswith("# my artifacts") and tree in text and sha in text and url in text
    assert depot_leftovers(isolated_depot) == []
    # A later artifact() is a hit: no network at all.
    monkeypatch.setenv("ARTIFACTS_PY_OFFLINE", "1")
    assert artifacts_py.artifact("Data", toml) == Path(got["path"])
    assert http_server.count("/a.tar.gz") == 1
    # Binding again needs force.
    with pytest.raises(Exception, match="force"):
        artifacts_py.add_artifact(toml, "Data", url, verbose=False)


def test_query_artifact_info(http_server, tarball, tmp_path, isolated_depot):
    data, tree, sha = tarball
    url = http_server.add("/a.tar.gz", data)
    info = artifacts_py.query_artifact_info(url)
    assert info == {"sha256": sha, "url": url, "git_tree_sha1": tree}
    assert installed(isolated_depot) == [tree]
    assert artifacts_py.query_artifact_info(url, compute_tree_hash=False) == {
        "sha256": sha, "url": url}


def test_create_artifact_roundtrip(http_server, tmp_path):
    from core_helpers import make_tree

    src = make_tree(tmp_path / "src")
    got = artifacts_py.create_artifact(src, tmp_path / "out.tar.gz")
    assert got["git_tree_sha1"] == compute_git_tree_sha1(src)
    assert got["sha256"] == sha256((tmp_path / "out.tar.gz").read_bytes())
    url = http_server.add("/out.tar.gz", (tmp_path / "out.tar.gz").read_bytes())
    toml = write_toml(tmp_path / "Artifacts.toml", "Made", got["git_tree_sha1"],
                      [(url, got["sha256"])])
    assert artifacts_py.verify_artifact(artifacts_py.artifact("Made", toml).name)
    assert core.artifact_path(got["git_tree_sha1"]) == depot.artifact_path(got["git_tree_sha1"])


def test_dead_mirror_is_left_quickly(http_server, tarball, tmp_path):
    """A mirror that refuses connections (or keeps answering 503) must not cost
    the full retry budget when another mirror follows."""
    import socket
    import time

    data, tree, sha = tarball
    with socket.socket() as s:  # a port that was free a moment ago: nobody listens
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/dead.tar.gz"
    busy = http_server.add("/busy.tar.gz", data, status=503)
    good = http_server.add("/good.tar.gz", data)
    toml = write_toml(tmp_path / "Artifacts.toml", "Data", tree,
                      [(dead, sha), (busy, sha), (good, sha)])
    start = time.monotonic()
    assert artifacts_py.artifact("Data", toml).name == tree
    assert time.monotonic() - start < 6
    assert http_server.count("/busy.tar.gz") == 3  # first try + 2 retries


def test_gobbler_source_is_tried_before_mirrors(http_server, tarball, tmp_path):
    data, tree, sha = tarball
    url = http_server.add("/a.tar.gz", data)
    gob = f'    [Data.gobbler]\n    project = "p"\n    asset = "a"\n    version = "v1"\n' \
          f'    registry = "{tmp_path / "not-mounted"}"\n'
    toml = write_toml(tmp_path / "Artifacts.toml", "Data", tree, [(url, sha)], extra=gob)
    assert artifacts_py.artifact("Data", toml).name == tree
    artifacts_py.remove_artifact(tree)
    http_server.add("/a.tar.gz", data, status=404)
    with pytest.raises(InstallError) as info:
        artifacts_py.artifact("Data", toml)
    labels = [label for label, _ in info.value.failures]
    assert labels[0].startswith("gobbler") and labels[1:] == [url]
    assert "not mounted" in str(info.value)


def test_add_artifact_refuses_hostile_tarball(http_server, tmp_path, isolated_depot):
    from tarfactory import TarFactory

    url = http_server.add("/evil.tar", TarFactory().file("../../evil.txt", b"x").getvalue())
    toml = tmp_path / "Artifacts.toml"
    toml.write_text("# untouched\n")
    with pytest.raises(artifacts_py.UnsafeArchiveError):
        artifacts_py.add_artifact(toml, "Evil", url, verbose=False)
    assert toml.read_text() == "# untouched\n"
    assert installed(isolated_depot) == [] and depot_leftovers(isolated_depot) == []
    assert not (isolated_depot / "evil.txt").exists()


def test_fetch_artifacts_keywords_and_unknown_names(http_server, tarball, tmp_path,
                                                    isolated_depot):
    data, tree, sha = tarball
    url = http_server.add("/a.tar.gz", data)
    toml = write_toml(tmp_path / "Artifacts.toml", "Data", tree, [(url, sha)])
    # fetch-artifacts spells it toml_path (and name= for artifact_exists).
    assert not artifacts_py.artifact_exists(name="Data", toml_path=toml)
    path = artifacts_py.artifact("Data", toml_path=toml, verbose=False)
    assert artifacts_py.artifact_exists(name="Data", toml_path=toml)
    assert artifacts_py.artifact_hash("Data", toml_path=toml) == tree
    assert artifacts_py.ensure_artifact_installed("Data", toml_path=toml) == path
    with pytest.raises(TypeError, match="only once"):
        artifacts_py.artifact("Data", toml, toml_path=tmp_path / "Other.toml")
    # Unknown names: exists is False and clear is a no-op, as in fetch-artifacts.
    assert artifacts_py.artifact_exists("Nope", toml) is False
    artifacts_py.clear_artifact_cache("Nope", toml)
    assert installed(isolated_depot) == [tree]


def test_clear_all_only_touches_this_tomls_trees(http_server, tmp_path, isolated_depot):
    mine = make_tarball(tmp_path, {"mine.txt": b"mine"}, "mine")
    other = make_tarball(tmp_path, {"other.txt": b"other"}, "other")
    urls = [http_server.add(f"/{n}.tar.gz", t[0]) for n, t in (("mine", mine), ("other", other))]
    toml = write_toml(tmp_path / "Artifacts.toml", "Mine", mine[1], [(urls[0], mine[2])])
    other_toml = write_toml(tmp_path / "Other.toml", "Other", other[1], [(urls[1], other[2])])
    artifacts_py.artifact("Mine", toml)
    artifacts_py.artifact("Other", other_toml)

    artifacts_py.clear_artifact_cache(toml_path=toml)

    assert installed(isolated_depot) == [other[1]]
    manager = artifacts_py.load_artifacts(other_toml)
    manager.clear()
    assert installed(isolated_depot) == []
