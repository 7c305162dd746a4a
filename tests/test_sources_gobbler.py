"""Gobbler versions as artifacts (issue 4), against our Gobbler server over real
HTTP, with a real registry and staging on disk.

Resolution by mounted registry and by REST, manifest and tree-hash checks,
fall-through to tarball mirrors, the 8-process race, ``add`` / ``publish``
(API and CLI), failed publishes, offline mode and a lying server.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import artifacts_py
from artifacts_py import cli, core, depot, gobbler
from artifacts_py.binding import bind_artifact
from artifacts_py.errors import (GobblerError, GobblerNotFoundError, HashMismatchError,
                                 InstallError, OfflineError)
from artifacts_py.pin import pin_gobbler as pin_version
from artifacts_py.tomlmodel import load_file
from artifacts_py.treehash import compute_git_tree_sha1
from gobbler_helpers import RunningGobbler
from gobbler_fixtures import SAMPLE, CountingProxy, make_sample, resolve_worker

PROJECT = "issue4"


@pytest.fixture(scope="module")
def gob(gobbler_factory):
    """Our server on a fresh registry and staging, with project ``issue4``."""
    server = gobbler_factory()
    gobbler.create_project(PROJECT, staging=server.staging, url=server.url)
    return server


@pytest.fixture
def proxy(gob):
    p = CountingProxy(gob.url)
    yield p
    p.close()


def _publish(gob: RunningGobbler, tmp: Path, asset: str, version: str = "v1", name: str = "Data",
             files: Dict[str, bytes] = SAMPLE, **kw) -> Tuple[Path, dict]:
    """Publish a sample folder and bind it; returns (toml, result)."""
    src = make_sample(tmp / f"src-{asset}-{version}", files)
    toml = kw.pop("toml", tmp / "Artifacts.toml")
    return toml, artifacts_py.publish_artifact(toml, name, src, project=PROJECT, asset=asset,
                                               version=version, url=gob.url, **kw)


def _bind(toml: Path, name: str, tree: str, asset: str, version: str = "v1", **source) -> None:
    """Bind ``name`` to a Gobbler version with exactly the given url/registry/mirrors."""
    download = source.pop("download", None)
    table = {"project": PROJECT, "asset": asset, "version": version, **source}
    bind_artifact(toml, name, tree, gobbler=table, download=download, force=True)


def _use_depot(monkeypatch, path: Path) -> Path:
    monkeypatch.setenv("ARTIFACTS_PY_DEPOT_PATH", str(path))
    return path


def _snapshot(root: Path) -> Dict[str, bytes]:
    """Relative path -> content of every file; directories end in '/'."""
    out: Dict[str, bytes] = {}
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if not dirs and not files:
            out[rel + "/"] = b""
        for f in files:
            p = Path(dirpath, f)
            assert not p.is_symlink(), f"{p} should be a regular file"
            out[os.path.normpath(os.path.join(rel, f))] = p.read_bytes()
    return out


def _installed(depot: Path) -> List[str]:
    """Everything in the depot's artifacts/ folder: trees, and leftover temp dirs/downloads."""
    d = depot / "artifacts"
    return sorted(os.listdir(d)) if d.is_dir() else []


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _cli(*argv: str, capsys) -> Tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------ resolution

def test_rest_and_mounted_registry_give_the_same_verified_tree(gob, proxy, tmp_path, monkeypatch):
    toml, pub = _publish(gob, tmp_path, "same")
    tree = pub["git_tree_sha1"]
    monkeypatch.setenv("ARTIFACTS_PY_GOBBLER_URL", proxy.url)

    # Over REST (the bound registry is "not mounted here"): every file fetched once.
    monkeypatch.setenv("ARTIFACTS_PY_GOBBLER_REGISTRY", str(tmp_path / "not-mounted"))
    _use_depot(monkeypatch, tmp_path / "d-rest")
    rest = artifacts_py.artifact("Data", toml)
    manifest = json.loads(Path(gob.registry, PROJECT, "same", "v1", "..manifest").read_text())
    files = [p for p, e in manifest.items() if e["md5sum"]]
    assert all(proxy.counts[f"/fetch/{PROJECT}/same/v1/{quote(p)}"] == 1 for p in files)
    assert proxy.fetches() == len(files) + 1  # + the manifest

    # From the mounted registry: not one HTTP request.
    monkeypatch.setenv("ARTIFACTS_PY_GOBBLER_REGISTRY", gob.registry)
    _use_depot(monkeypatch, tmp_path / "d-mounted")
    before = sum(proxy.counts.values())
    mounted = artifacts_py.artifact("Data", toml)
    assert sum(proxy.counts.values()) == before
    monkeypatch.setenv("ARTIFACTS_PY_GOBBLER_URL", _dead_url())  # and with no server at all
    _use_depot(monkeypatch, tmp_path / "d-dead")
    assert artifacts_py.artifact("Data", toml).name == tree

    assert rest.name == mounted.name == tree
    assert compute_git_tree_sha1(rest) == compute_git_tree_sha1(mounted) == tree
    snap = _snapshot(rest)
    assert snap == _snapshot(mounted)
    # The Gobbler view: link resolved to its content, dot file skipped, empty dir kept.
    assert snap["sub/link.csv"] == SAMPLE["matrix.csv"]
    assert ".hidden" not in snap and "emptydir/" in snap
    assert {k: v for k, v in snap.items() if not k.endswith("/") and k != "sub/link.csv"} == SAMPLE


def test_rest_retries_a_failed_file_and_resumes_a_broken_one(gob, proxy, tmp_path):
    _, pub = _publish(gob, tmp_path, "flaky", toml=tmp_path / "pub.toml")
    toml = tmp_path / "Artifacts.toml"
    _bind(toml, "Flaky", pub["git_tree_sha1"], "flaky", url=proxy.url)
    base = f"/fetch/{PROJECT}/flaky/v1/"
    proxy.faults[base + "matrix.csv"] = "503"
    proxy.faults[base + "big.bin"] = "truncate"
    path = artifacts_py.artifact("Flaky", toml)
    assert core.verify_artifact(path.name) and (path / "big.bin").read_bytes() == SAMPLE["big.bin"]
    assert proxy.counts[base + "matrix.csv"] == 2
    assert proxy.ranges == [(base + "big.bin", f"bytes={len(SAMPLE['big.bin']) // 2}-")]


def test_rest_downloads_in_parallel_on_a_bounded_pool_of_kept_alive_connections(
        gob, proxy, tmp_path, monkeypatch):
    from artifacts_py.sources.gobbler_rest import WORKERS

    cap = WORKERS + 2
    monkeypatch.setenv("ARTIFACTS_PY_MAX_CONNECTIONS", str(cap))
    files = {f"part/{i:03d}.txt": f"file {i}\n".encode() for i in range(20 * WORKERS)}
    _, pub = _publish(gob, tmp_path, "many", files=files, toml=tmp_path / "pub.toml")
    toml = tmp_path / "Artifacts.toml"
    _bind(toml, "Many", pub["git_tree_sha1"], "many", url=proxy.url)
    proxy.hold(WORKERS)  # proves WORKERS files are in flight at once
    path = artifacts_py.artifact("Many", toml)
    assert path.name == pub["git_tree_sha1"] and proxy.fetches() == len(files) + 1
    assert not proxy.gate.broken and WORKERS <= proxy.in_flight_max <= cap
    assert proxy.connections <= cap + 1  # one connection per worker + the manifest's


def test_workers_connect_while_the_manifest_is_on_its_way(gob, proxy, tmp_path, monkeypatch):
    """The round trips of the workers' handshakes overlap the manifest's."""
    from artifacts_py.sources.gobbler_rest import WORKERS

    monkeypatch.setenv("ARTIFACTS_PY_MAX_CONNECTIONS", str(WORKERS))  # no growth

    files = {f"pre/{i:03d}.txt": f"pre {i}\n".encode() for i in range(4 * WORKERS)}
    _, pub = _publish(gob, tmp_path, "pre", files=files, toml=tmp_path / "pub.toml")
    toml = tmp_path / "Artifacts.toml"
    _bind(toml, "Pre", pub["git_tree_sha1"], "pre", url=proxy.url)
    proxy.manifest_after_connections = 1 + WORKERS  # the manifest's own and the workers'
    assert artifacts_py.artifact("Pre", toml).name == pub["git_tree_sha1"]
    assert proxy.manifest_saw == 1 + WORKERS
    assert proxy.connections == 1 + WORKERS  # and no worker opened another one


def test_far_server_gets_more_requests_in_flight(gob, proxy, tmp_path, monkeypatch):
    from artifacts_py.sources.gobbler_rest import WORKERS

    monkeypatch.setenv("ARTIFACTS_PY_MAX_CONNECTIONS", "24")
    files = {f"far/{i:03d}.txt": f"far {i}\n".encode() for i in range(120)}
    _, pub = _publish(gob, tmp_path, "far", files=files, toml=tmp_path / "pub.toml")
    toml = tmp_path / "Artifacts.toml"
    _bind(toml, "Far", pub["git_tree_sha1"], "far", url=proxy.url)
    proxy.delay = 0.03  # a 30 ms round trip
    path = artifacts_py.artifact("Far", toml)
    assert path.name == pub["git_tree_sha1"]
    assert WORKERS < proxy.in_flight_max <= 24  # latency-aware, and still capped


def test_a_low_open_file_limit_caps_the_connections(gob, proxy, tmp_path):
    """A far server asks for ~150 requests in flight; with ``ulimit -n 128`` (and a
    cap of 1,000 asked for) the engine stays within a quarter of the limit instead
    of failing with 'Too many open files'."""
    files = {f"fd/{i:03d}.txt": f"fd {i}\n".encode() for i in range(300)}
    _, pub = _publish(gob, tmp_path, "fdlimit", files=files, toml=tmp_path / "pub.toml")
    toml = tmp_path / "Artifacts.toml"
    _bind(toml, "Fd", pub["git_tree_sha1"], "fdlimit", url=proxy.url)
    proxy.delay = 0.03  # a 30 ms round trip: workers_for() asks for about 150
    env = {**os.environ, "ARTIFACTS_PY_DEPOT_PATH": str(tmp_path / "d"),
           "ARTIFACTS_PY_MAX_CONNECTIONS": "1000"}
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (128, "
            "resource.getrlimit(resource.RLIMIT_NOFILE)[1])); import artifacts_py; "
            "print(artifacts_py.artifact('Fd', sys.argv[1]).name)")
    out = subprocess.run([sys.executable, "-c", code, str(toml)], capture_output=True,
                         env=env, timeout=120, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == pub["git_tree_sha1"]
    assert 4 < proxy.in_flight_max <= 128 // 4


def test_a_name_too_long_for_the_filesystem_is_one_line_naming_the_source(tmp_path,
                                                                         monkeypatch):
    """A raw system error from a fill reads as one line: source, file, what to do."""
    version = tmp_path / "reg" / PROJECT / "long" / "v1"
    version.mkdir(parents=True)
    (version / "ok.txt").write_bytes(b"hello")
    entry = {"size": 5, "md5sum": hashlib.md5(b"hello").hexdigest()}
    (version / "..manifest").write_text(json.dumps({"ok.txt": entry, "x" * 300: entry}))
    (version / "..summary").write_text(json.dumps({
        "upload_user_id": "u", "upload_start": "2024-01-01T00:00:00Z",
        "upload_finish": "2024-01-01T00:00:01Z"}))
    toml = tmp_path / "Artifacts.toml"
    _bind(toml, "Long", "0" * 40, "long", registry=str(tmp_path / "reg"))
    d = _use_depot(monkeypatch, tmp_path / "depot")
    with pytest.raises(artifacts_py.InstallError) as exc:
        artifacts_py.artifact("Long", toml)
    msg = str(exc.value)
    assert "File name too long; a name in the artifact is too long for this filesystem" in msg
    assert f"gobbler registry {tmp_path / 'reg'}" in msg and "[Errno" not in msg
    assert ".tmp-" not in msg and _installed(d) == []
    assert [n for n in os.listdir(d / "artifacts")] == []


def test_system_errors_in_the_temp_dir_are_named_within_the_tree(tmp_path):
    import errno

    from artifacts_py.store import _readable

    tmp = tmp_path / "depot" / "artifacts" / ".tmp-host-1-abc"
    e = OSError(errno.EMFILE, "Too many open files", str(tmp / "tree" / "d" / "f.bin"))
    err = _readable(e, tmp, "gobbler http://x (p/a/v1)")
    assert str(err) == ("gobbler http://x (p/a/v1): writing 'd/f.bin': Too many open files; "
                        "raise the open-file limit (ulimit -n) or lower "
                        "ARTIFACTS_PY_MAX_CONNECTIONS")
    assert err.errno == errno.EMFILE and isinstance(err, artifacts_py.InstallError)
    bare = OSError(f"cannot write {tmp / 'tree' / 'd' / 'g.bin'} or {tmp}")  # no errno
    assert str(_readable(bare, tmp, "src")) == "src: cannot write d/g.bin or its temp dir"
    own = GobblerError("gobbler http://x: HTTP 500")
    assert _readable(own, tmp, "gobbler http://x (p/a/v1)") is own


def test_changed_registry_file_falls_through_to_the_tarball_mirror(gob, tmp_path, monkeypatch):
    archive = tmp_path / "tamper.tar.gz"
    toml, pub = _publish(gob, tmp_path, "tamper", archive=str(archive))
    tree = pub["git_tree_sha1"]
    target = Path(gob.registry, PROJECT, "tamper", "v1", "big.bin")
    os.chmod(target, 0o644)
    data = target.read_bytes()
    target.write_bytes(data[:1000] + bytes([data[1000] ^ 1]) + data[1001:])  # same size

    # Registry and REST both serve the changed bytes: both name the file; nothing installed.
    only_gobbler = tmp_path / "g.toml"
    _bind(only_gobbler, "T", tree, "tamper", url=gob.url, registry=gob.registry)
    with pytest.raises(InstallError) as e:
        artifacts_py.artifact("T", only_gobbler)
    msg = str(e.value)
    assert msg.count("big.bin") >= 2 and "..manifest" in msg
    assert f"gobbler registry {gob.registry}" in msg and f"gobbler {gob.url}" in msg
    assert _installed(Path(os.environ["ARTIFACTS_PY_DEPOT_PATH"])) == []  # no tree, no temp dir

    # With the mirror that publish --archive wrote, the third source succeeds.
    path = artifacts_py.artifact("Data", toml)
    assert path.name == tree and core.verify_artifact(tree)
    assert (path / "big.bin").read_bytes() == SAMPLE["big.bin"]


def test_version_replaced_under_the_same_name_fails_the_tree_hash(gob, tmp_path):
    toml, pub = _publish(gob, tmp_path, "replaced")
    gobbler.remove_version(PROJECT, "replaced", "v1", gob.staging, gob.url)
    other = make_sample(tmp_path / "other", {"matrix.csv": b"different\n"})
    gobbler.upload_directory(PROJECT, "replaced", "v1", str(other), gob.staging, gob.url)

    with pytest.raises(InstallError) as e:
        artifacts_py.artifact("Data", toml)
    msg = str(e.value)
    assert msg.count("git-tree-sha1 mismatch") == 2 and pub["git_tree_sha1"] in msg
    assert _installed(Path(os.environ["ARTIFACTS_PY_DEPOT_PATH"])) == []


def test_eight_processes_download_a_missing_artifact_once(gob, proxy, tmp_path):
    _, pub = _publish(gob, tmp_path, "race", toml=tmp_path / "pub.toml")
    toml = tmp_path / "Artifacts.toml"
    _bind(toml, "Race", pub["git_tree_sha1"], "race", url=proxy.url)  # REST only
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=resolve_worker, args=("Race", str(toml), barrier, results))
             for _ in range(8)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert {err for _, err in got} == {None}
    assert {path for path, _ in got} == {str(Path(os.environ["ARTIFACTS_PY_DEPOT_PATH"],
                                                  "artifacts", pub["git_tree_sha1"]))}
    # Every file and the manifest were fetched once, by one of the eight.
    assert proxy.fetches() == len(SAMPLE) + 2 and set(proxy.counts.values()) == {1}


def test_offline_uses_the_mounted_registry_and_refuses_rest(gob, proxy, tmp_path, monkeypatch):
    toml, pub = _publish(gob, tmp_path, "offline")
    monkeypatch.setenv("ARTIFACTS_PY_OFFLINE", "1")
    assert artifacts_py.artifact("Data", toml).name == pub["git_tree_sha1"]

    _use_depot(monkeypatch, tmp_path / "d2")
    monkeypatch.setenv("ARTIFACTS_PY_GOBBLER_REGISTRY", str(tmp_path / "not-mounted"))
    with pytest.raises(InstallError) as e:
        artifacts_py.artifact("Data", toml)
    assert "ARTIFACTS_PY_OFFLINE" in str(e.value) and "not mounted" in str(e.value)
    with pytest.raises(OfflineError, match="ARTIFACTS_PY_OFFLINE"):
        pin_version(PROJECT, "offline", url=proxy.url)  # not even to ask for ..latest
    assert _installed(tmp_path / "d2") == [] and not proxy.counts


def test_a_lying_manifest_is_refused_before_anything_is_fetched(gob, proxy, tmp_path):
    md5 = hashlib.md5(b"x\n").hexdigest()
    lies = [({"ok.txt": {"size": 2, "md5sum": md5}, bad: {"size": 2, "md5sum": md5}},
             "not a plain relative path")
            for bad in ("../escape.txt", "/tmp/escape.txt", "a/../../escape.txt", "a//b")]
    lies += [({"x.txt": entry}, "malformed") for entry in
             ({"size": 2}, {"size": "2", "md5sum": md5}, {"size": -1, "md5sum": md5},
              {"size": 2, "md5sum": "not-hex"}, "x")]
    toml = tmp_path / "Artifacts.toml"
    _bind(toml, "Lie", "0" * 40, "lie", url=proxy.url)
    for manifest, why in lies:
        proxy.overrides[f"/fetch/{PROJECT}/lie/v1/..manifest"] = json.dumps(manifest).encode()
        with pytest.raises(InstallError, match=why):
            artifacts_py.artifact("Lie", toml)
    depot_dir = Path(os.environ["ARTIFACTS_PY_DEPOT_PATH"])
    assert _installed(depot_dir) == [] and not (depot_dir / "escape.txt").exists()
    assert proxy.fetches() == len(lies)  # only the manifests


def _stderr_on_a_terminal(argv: List[str], env: Dict[str, str]) -> Tuple[int, str]:
    """Run ``argv`` with stderr on a pseudo-terminal (80x24); returns (rc, what it showed)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    chunks = []
    try:
        proc = subprocess.Popen(argv, stderr=slave, stdout=subprocess.DEVNULL, env=env)
        os.close(slave)
        while True:  # read while it runs, so a full pty buffer cannot block it
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        rc = proc.wait(60)
    finally:
        os.close(master)
    return rc, b"".join(chunks).decode(errors="replace")


def test_one_progress_bar_for_the_artifact_on_a_terminal(gob, tmp_path):
    toml, _ = _publish(gob, tmp_path, "bar")
    env = {**os.environ, "ARTIFACTS_PY_DEPOT_PATH": str(tmp_path / "d"),
           "ARTIFACTS_PY_GOBBLER_REGISTRY": str(tmp_path / "not-mounted")}
    argv = [sys.executable, "-m", "artifacts_py.cli", "fetch", "--toml", str(toml)]
    rc, shown = _stderr_on_a_terminal(argv, env)
    assert rc == 0, shown
    # Every drawing is of one bar, named after the artifact, counting the whole artifact.
    bars = set(re.findall(r"(\S+): +\d+%\|[^|]*\| *\S+/(\S+) \[", shown))
    assert bars == {("Data", "1.00M")}, shown
    # Not a terminal: no bar at all.
    env["ARTIFACTS_PY_DEPOT_PATH"] = str(tmp_path / "d2")
    quiet = subprocess.run(argv, capture_output=True, env=env, timeout=60)
    assert quiet.returncode == 0 and quiet.stderr == b""


def test_a_version_of_small_files_installs_over_rest_without_urllib3(gob, tmp_path):
    """The manifest and the small files take the lean GET: urllib3 is never imported,
    and without proxy variables neither is urllib.request (with http.client, ~20 ms)."""
    toml, _ = _publish(gob, tmp_path, "lean", files={"matrix.csv": b"1,2\n", "sub/b é.txt": b"b"})
    env = {k: v for k, v in os.environ.items() if k[-6:].lower() != "_proxy"}
    env.update(no_proxy="127.0.0.1,localhost",  # alone, it asks for no proxy
               ARTIFACTS_PY_DEPOT_PATH=str(tmp_path / "d"),
               ARTIFACTS_PY_GOBBLER_REGISTRY=str(tmp_path / "not-mounted"))
    code = ("import sys, artifacts_py; p = artifacts_py.artifact('Data', sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'urllib3' "
            "or m in ('urllib.request', 'http.client')), "
            "sorted(f.name for f in p.iterdir()))")
    out = subprocess.run([sys.executable, "-c", code, str(toml)], capture_output=True,
                         env=env, timeout=60, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("] ")[0] == "[", out.stdout  # no urllib3 module at all
    assert "'matrix.csv'" in out.stdout.split("] ")[1]


# ------------------------------------------------------------------------- add

def test_cli_add_pins_latest_then_needs_force(gob, tmp_path, capsys):
    for version, text in (("v1", b"one\n"), ("v2", b"two\n")):
        d = make_sample(tmp_path / version, {"x.txt": text})
        gobbler.upload_directory(PROJECT, "adds", version, str(d), gob.staging, gob.url)
    toml = tmp_path / "Artifacts.toml"

    rc, out, err = _cli("add", "X", f"{PROJECT}/adds", "--url", gob.url, "--toml", str(toml),
                        "-q", capsys=capsys)
    assert rc == 0, err
    entry = load_file(toml).entry("X")
    assert entry.gobbler.version == "v2" and "v2" in out
    installed = depot.find_installed(entry.git_tree_sha1)  # add installed it
    assert installed is not None and (installed / "x.txt").read_bytes() == b"two\n"

    rc, out, err = _cli("add", "X", f"{PROJECT}/adds@v2", "--url", gob.url, "--toml", str(toml),
                        "-q", capsys=capsys)
    assert rc == 0 and "nothing to change" in out, err

    before = toml.read_bytes()
    rc, out, err = _cli("add", "X", f"{PROJECT}/adds@v1", "--registry", gob.registry,
                        "--toml", str(toml), "-q", capsys=capsys)
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert "--force" in err and "v1" in err and entry.git_tree_sha1 in err
    assert toml.read_bytes() == before

    rc, out, err = _cli("add", "X", f"{PROJECT}/adds@v1", "--registry", gob.registry,
                        "--toml", str(toml), "-q", "--force", capsys=capsys)
    assert rc == 0, err
    assert load_file(toml).entry("X").gobbler.version == "v1"


@pytest.mark.parametrize("via", ["url", "registry"])
def test_cli_add_names_what_is_missing(gob, tmp_path, capsys, via):
    d = make_sample(tmp_path / "m", {"x.txt": b"m\n"})
    present = f"present-{via}"
    gobbler.upload_directory(PROJECT, present, "v1", str(d), gob.staging, gob.url)
    where = ["--url", gob.url] if via == "url" else ["--registry", gob.registry]
    toml = tmp_path / "Artifacts.toml"
    for coords, expected in ((f"nosuch/{present}", "project 'nosuch'"),
                             (f"{PROJECT}/nosuch", "asset 'nosuch'"),
                             (f"{PROJECT}/nosuch@v1", "asset 'nosuch'"),
                             (f"{PROJECT}/{present}@v9", "version 'v9'")):
        rc, _out, err = _cli("add", "M", coords, *where, "--toml", str(toml), "-q", capsys=capsys)
        assert rc == 1 and len(err.strip().splitlines()) == 1, err
        assert expected in err and "does not exist" in err, err
    assert not toml.exists()


# --------------------------------------------------------------------- publish

def test_cli_publish_with_archive_binds_and_the_mirror_alone_installs(gob, tmp_path, capsys):
    src = make_sample(tmp_path / "src")
    toml, archive = tmp_path / "Artifacts.toml", tmp_path / "out" / "pub.tar.gz"
    archive.parent.mkdir()
    toml.write_text("# my artifacts\n")
    rc, out, err = _cli("publish", "Pub", str(src), "--project", PROJECT, "--asset", "pub",
                        "--version", "v1", "--url", gob.url, "--probation", "--archive",
                        str(archive), "--toml", str(toml), "--json", capsys=capsys)
    assert rc == 0, err
    result = json.loads(out)
    entry = load_file(toml).entry("Pub")
    assert toml.read_text().startswith("# my artifacts\n")
    assert entry.git_tree_sha1 == result["git_tree_sha1"]
    assert (entry.gobbler.registry, entry.gobbler.url) == (gob.registry, gob.url)  # from /info
    assert gobbler.fetch_summary(PROJECT, "pub", "v1", registry=gob.registry)["on_probation"]
    [mirror] = entry.downloads
    assert mirror.url == archive.as_uri()
    assert mirror.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()

    # The tarball alone installs the same tree hash.
    mirror_only = tmp_path / "mirror.toml"
    bind_artifact(mirror_only, "Pub", entry.git_tree_sha1, mirror.url, mirror.sha256)
    path = artifacts_py.artifact("Pub", mirror_only)
    assert path.name == entry.git_tree_sha1 and core.verify_artifact(path.name)
    assert (path / "sub/link.csv").read_bytes() == SAMPLE["matrix.csv"]
    # Deterministic: publishing the same view again gives the same bytes.
    again = tmp_path / "again.tar.gz"
    artifacts_py.publish_artifact(tmp_path / "t2.toml", "Pub", src, project=PROJECT, asset="pub",
                                  version="v2", url=gob.url, archive=str(again))
    assert again.read_bytes() == archive.read_bytes()


def test_publishing_a_clone_uploads_only_the_changed_file(gob, tmp_path):
    toml, v1 = _publish(gob, tmp_path, "clone")
    clone = tmp_path / "clone"
    gobbler.clone_version(PROJECT, "clone", "v1", str(clone), registry=gob.registry)
    (clone / "matrix.csv").unlink()
    (clone / "matrix.csv").write_bytes(b"gene,c1,c2\nA,9,9\nB,3,7\n")
    v2 = artifacts_py.publish_artifact(toml, "Data2", clone, project=PROJECT, asset="clone",
                                       version="v2", url=gob.url)

    manifest = gobbler.fetch_manifest(PROJECT, "clone", "v2", registry=gob.registry)
    files = {p: e for p, e in manifest.items() if e["md5sum"]}
    assert "link" not in files.pop("matrix.csv")
    assert files and all(e["link"]["version"] == "v1" for e in files.values())
    vdir = Path(gob.registry, PROJECT, "clone", "v2")
    assert not (vdir / "matrix.csv").is_symlink()
    assert all((vdir / p).is_symlink() for p in files)
    assert v2["git_tree_sha1"] != v1["git_tree_sha1"]
    path = artifacts_py.artifact("Data2", toml)
    assert path.name == v2["git_tree_sha1"] and core.verify_artifact(path.name)
    assert (path / "big.bin").read_bytes() == SAMPLE["big.bin"]


def test_failed_publish_leaves_the_toml_untouched_and_says_if_the_version_exists(gob, tmp_path,
                                                                                   capsys):
    toml, _ = _publish(gob, tmp_path, "fail")
    toml.write_text("# keep me\n" + toml.read_text())
    before = toml.read_bytes()
    src = make_sample(tmp_path / "new", {"a.txt": b"a\n"})

    with pytest.raises(GobblerError) as e:
        artifacts_py.publish_artifact(toml, "New", src, project="nosuch", asset="a",
                                      version="v1", url=gob.url)
    assert "does not exist in the registry" in str(e.value) and str(toml) in str(e.value)
    assert toml.read_bytes() == before

    # The version exists already (from the first publish): refused, and said so.
    rc, _out, err = _cli("publish", "New", str(src), "--project", PROJECT, "--asset", "fail",
                         "--version", "v1", "--url", gob.url, "--toml", str(toml), capsys=capsys)
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert f"The version {PROJECT}/fail/v1 exists in the registry" in err and "not changed" in err
    assert toml.read_bytes() == before
    assert "New" not in load_file(toml)


def test_pin_latest_of_an_asset_with_no_latest_version_says_so(gob, tmp_path):
    src = make_sample(tmp_path / "p", {"a.txt": b"a\n"})
    gobbler.upload_directory(PROJECT, "probation-only", "v1", str(src), gob.staging, gob.url,
                             probation=True)
    for where in ({"url": gob.url}, {"registry": gob.registry}):
        with pytest.raises(GobblerNotFoundError, match="has no latest version"):
            pin_version(PROJECT, "probation-only", **where)


def test_publish_check_names_files_the_manifest_disagrees_with(gob, tmp_path):
    from artifacts_py.publish import _check_uploaded, gobbler_view, hash_view
    from artifacts_py.gobbler.protocol import GobblerSource

    _, pub = _publish(gob, tmp_path, "check")
    src = tmp_path / "src-check-v1"
    _, sums = hash_view(gobbler_view(src))
    for g in (GobblerSource(PROJECT, "check", "v1", gob.url, gob.registry),  # mounted
              GobblerSource(PROJECT, "check", "v1", gob.url, None)):  # over REST
        _check_uploaded(g, sums, src)  # what was uploaded agrees
        with pytest.raises(HashMismatchError, match="matrix.csv"):
            _check_uploaded(g, {**sums, "matrix.csv": (sums["matrix.csv"][0], "0" * 32)}, src)
        with pytest.raises(HashMismatchError, match="1 unexpected"):
            _check_uploaded(g, {k: v for k, v in sums.items() if k != "big.bin"}, src)


@pytest.mark.parametrize("kernel", ["works", "refuses", "stops-early"])
def test_registry_copy_falls_back_to_a_buffered_copy(tmp_path, monkeypatch, kernel):
    import errno

    from artifacts_py.fill import copy_and_hash as _copy_and_hash

    data = SAMPLE["big.bin"] * 3
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    if kernel == "refuses":
        def refuse(*_a):
            raise OSError(errno.EXDEV, "cross-device")
        monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
        monkeypatch.setattr(os, "sendfile", refuse)
    elif kernel == "stops-early":  # as some FUSE/network filesystems do
        monkeypatch.setattr(os, "copy_file_range", lambda *_a: 0, raising=False)
    (tmp_path / "out").mkdir()  # _fill creates parent folders up front
    n, md5, sha = _copy_and_hash(src, tmp_path / "out" / "dst.bin", len(data))
    assert (tmp_path / "out" / "dst.bin").read_bytes() == data and n == len(data)
    assert md5 == hashlib.md5(data).hexdigest()
    assert sha == hashlib.sha1(b"blob %d\0" % len(data) + data).digest()


def test_archive_of_a_plain_folder_matches_the_view(gob, tmp_path):
    # No links, exec bits or dot files: the folder is packed as is, same hash as published.
    archive = tmp_path / "plain.tar.gz"
    toml, pub = _publish(gob, tmp_path, "plain", files={"a.txt": b"a\n", "d/b.txt": b"b\n"},
                         archive=str(archive))
    mirror = load_file(toml).entry("Data").downloads[0]
    only = tmp_path / "mirror.toml"
    bind_artifact(only, "P", pub["git_tree_sha1"], mirror.url, mirror.sha256)
    assert artifacts_py.artifact("P", only).name == pub["git_tree_sha1"]


def test_small_registry_file_that_grew_or_shrank_shows_its_real_size(tmp_path):
    """copy_and_hash reads a small file once (size + 1 bytes): a file that grew reports
    more than the manifest's size, one that shrank less, so the size check refuses both."""
    from artifacts_py.fill import FileSpec, check_file, copy_and_hash

    listed = b"x" * 1000
    spec = FileSpec("f.bin", len(listed), hashlib.md5(listed).hexdigest())
    for i, (actual, reported) in enumerate([(listed + b"more", 1001), (listed[:990], 990),
                                            (listed, 1000)]):
        src = tmp_path / f"src{i}"
        src.write_bytes(actual)
        n, md5, _ = copy_and_hash(str(src), str(tmp_path / f"dst{i}"), len(listed))
        assert n == reported
        if actual == listed:
            check_file(spec, n, md5, "reg/p/a/v")
        else:
            with pytest.raises(HashMismatchError, match=r"reg/p/a/v/f\.bin: size mismatch"):
                check_file(spec, n, md5, "reg/p/a/v")


_PATHS = st.text(alphabet="ab/.\\\0é", max_size=8)
_ENTRIES = st.fixed_dictionaries(
    {"size": st.integers(-2, 2**63) | st.booleans() | st.text(max_size=2),
     "md5sum": st.sampled_from(["", "0" * 32, "a" * 32, "A" * 32, "é" * 32, "0" * 31, "x"])},
    optional={"link": st.just({"project": "p"})}) | st.lists(st.integers(), max_size=2)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(manifest=st.dictionaries(_PATHS, _ENTRIES, max_size=5))
def test_whole_manifest_check_agrees_with_the_entry_by_entry_check(manifest):
    """The fast check of a whole manifest accepts only what the entry-by-entry check
    accepts, with the same result; anything else goes to the check that names it."""
    from artifacts_py.gobbler import protocol

    items = sorted(manifest.items())
    fast = protocol._check_all_at_once(items)
    try:
        slow = protocol._check_each(items, "w")
    except GobblerError:
        assert fast is None
    else:
        assert fast is None or fast == slow


def test_whole_manifest_check_takes_a_plain_manifest_in_one_go():
    from artifacts_py.gobbler import protocol

    md5 = "0" * 32
    manifest = {"d/a.bin": {"size": 3, "md5sum": md5}, "d/e": {"size": 0, "md5sum": ""},
                "l": {"size": 3, "md5sum": md5, "link": {"project": "p"}}, ".x/..y": {
                    "size": 1, "md5sum": md5}}
    files, empty = protocol._check_all_at_once(sorted(manifest.items()))
    assert [f.path for f in files] == [".x/..y", "d/a.bin", "l"] and empty == ["d/e"]
    assert protocol.check_manifest(manifest, "w") == (files, empty)


def test_small_registry_files_are_copied_on_one_thread_and_the_first_error_stops_it():
    """One worker runs the tasks in the calling thread: the first error is raised and
    nothing after it runs; versions of big files keep every local worker."""
    from artifacts_py import fill
    from artifacts_py.sources.gobbler_registry import local_workers

    assert local_workers(1000 * 1024, 1000) == 1
    assert local_workers(4 * (64 << 20), 4) == fill.LOCAL_WORKERS
    ran = []

    def task(i: int):
        def run():
            ran.append(i)
            if i == 1:
                raise GobblerError("file 1 is missing")
            return f"f{i}", b""
        return run

    with pytest.raises(GobblerError, match="file 1"):
        fill.run_pool([task(i) for i in range(3)], 1)
    assert ran == [0, 1]
