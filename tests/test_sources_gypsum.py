"""gypsum versions as artifacts (issue 13), over real HTTP against artifacts-gypsum on both
back ends (a local directory store and SeaweedFS), with the GitHub stand-in for tokens.

Publishing, resolving from a fresh depot, a tampered object, probation, 8 racing
processes, a refused publish, and outdated/update across Gobbler and gypsum.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

import artifacts_py
from artifacts_py import gobbler, updates
from artifacts_py import gypsum as gypsum_client
from artifacts_py.binding import bind_artifact
from artifacts_py.errors import GypsumError, InstallError
from artifacts_py.tomlmodel import load_file
from gypsum_fixtures import (  # noqa: F401 (fixtures)
    ADMIN, BUCKET, OWNER, STRANGER, Service, github, gypsum, gypsum_local, gypsum_s3, seaweed,
    unique)

FILES: Dict[str, bytes] = {
    "matrix.csv": b"gene,cell\n" * 200,
    "sub dir/notes #1 100%.txt": "r\u00e9sum\u00e9 with spaces\n".encode(),
    "sub dir/deep/big.bin": bytes(range(256)) * 4096,
    "copy.csv": b"gene,cell\n" * 200,  # same bytes as matrix.csv: one object, two names
}


def _tree(root: Path, files: Dict[str, bytes] = FILES) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def _project(svc: Service) -> str:
    name = unique("art")
    svc.api.create(name)
    return name


def _publish(svc: Service, tmp: Path, project: str, asset: str = "data", version: str = "v1",
             files: Dict[str, bytes] = FILES, toml: Path = None, **kw) -> tuple:
    toml = toml or tmp / "Artifacts.toml"
    src = _tree(tmp / f"src-{asset}-{version}", files)
    info = artifacts_py.publish_artifact(toml, kw.pop("name", "Data"), src, project=project,
                                         asset=asset, version=version, url=svc.url, gypsum=True,
                                         token=OWNER, **kw)
    return toml, info


def _fresh_depot(monkeypatch, tmp: Path, name: str) -> Path:
    depot = tmp / name
    monkeypatch.setenv("ARTIFACTS_PY_DEPOT_PATH", str(depot))
    return depot


def _tamper(svc: Service, key: str, data: bytes, seaweed_fs=None) -> None:
    """Change one object in the store behind the service's back."""
    if svc.kind == "local":
        root = svc.process.command[svc.process.command.index("--store") + 1]
        path = Path(root, *key.split("/"))
        path.chmod(0o644)
        path.write_bytes(data)
    else:
        seaweed_fs.client().put_object(Bucket=BUCKET, Key=key, Body=data)


def test_publish_then_resolve_gives_the_published_bytes(gypsum, tmp_path, monkeypatch):
    project = _project(gypsum)
    toml, info = _publish(gypsum, tmp_path, project)
    entry = load_file(toml).entry("Data")
    assert entry.gypsum.coordinates == f"{project}/data/v1" and entry.gypsum.url == gypsum.url
    assert entry.git_tree_sha1 == info["git_tree_sha1"]
    _fresh_depot(monkeypatch, tmp_path, "fresh")
    path = artifacts_py.artifact("Data", toml)
    for rel, data in FILES.items():
        assert (path / rel).read_bytes() == data
    assert artifacts_py.verify_artifact(path.name)
    # The same tree through the tarball of the same folder hashes the same.
    assert artifacts_py.compute_git_tree_sha1(tmp_path / "src-data-v1") == path.name


def test_changed_object_names_the_file_installs_nothing_and_falls_through(
        gypsum, tmp_path, monkeypatch, request):
    project = _project(gypsum)
    toml, info = _publish(gypsum, tmp_path, project, asset="tamper")
    weed = request.getfixturevalue("seaweed") if gypsum.kind == "s3" else None
    big = FILES["sub dir/deep/big.bin"]
    _tamper(gypsum, f"{project}/tamper/v1/sub dir/deep/big.bin",
            big[:100] + bytes([big[100] ^ 1]) + big[101:], weed)
    depot = _fresh_depot(monkeypatch, tmp_path, "tampered")
    with pytest.raises(InstallError) as exc:
        artifacts_py.artifact("Data", toml)
    msg = str(exc.value)
    assert "big.bin" in msg and "md5 mismatch" in msg and f"gypsum {gypsum.url}" in msg
    assert artifacts_py.depot.installed_hashes(depot) == []
    # A tarball mirror of the same tree behind it: the install falls through to it.
    archive = tmp_path / "data.tar.gz"
    made = artifacts_py.create_artifact(tmp_path / "src-tamper-v1", archive)
    artifacts_py.add_download_source(toml, "Data", archive.as_uri(), made["sha256"])
    assert artifacts_py.artifact("Data", toml).name == info["git_tree_sha1"]


def test_probation_is_refused_then_allowed(gypsum_local, tmp_path, monkeypatch):
    svc = gypsum_local
    project = _project(svc)
    toml, info = _publish(svc, tmp_path, project, asset="prob", probation=True)
    assert load_file(toml).entry("Data").gypsum.probation is True  # publish opted in for us
    plain = tmp_path / "plain.toml"
    bind_artifact(plain, "P", info["git_tree_sha1"],
                  gypsum={"project": project, "asset": "prob", "version": "v1", "url": svc.url})
    _fresh_depot(monkeypatch, tmp_path, "prob")
    with pytest.raises(InstallError, match="on probation"):
        artifacts_py.artifact("P", plain)
    assert artifacts_py.artifact("Data", toml).name == info["git_tree_sha1"]


def test_unfinished_upload_is_refused(gypsum_local, tmp_path):
    svc = gypsum_local
    project = _project(svc)
    svc.api.upload(project, "half", "v1", {"a.txt": b"a\n"}, complete=False)
    toml = tmp_path / "Artifacts.toml"
    bind_artifact(toml, "H", "a" * 40, gypsum={"project": project, "asset": "half",
                                               "version": "v1", "url": svc.url})
    with pytest.raises(InstallError, match="has not finished"):
        artifacts_py.artifact("H", toml)


def test_a_missing_version_or_manifest_is_named(gypsum_local, tmp_path, monkeypatch):
    """Summary and manifest are read at once; the error still says which one is missing."""
    svc = gypsum_local
    project = _project(svc)
    svc.api.upload(project, "docs", "v1", {"a.txt": b"a\n"})
    toml = tmp_path / "Artifacts.toml"
    for name, version in (("Gone", "v9"), ("NoManifest", "v1")):
        bind_artifact(toml, name, "a" * 40, gypsum={"project": project, "asset": "docs",
                                                    "version": version, "url": svc.url})
    _fresh_depot(monkeypatch, tmp_path, "depot")
    with pytest.raises(InstallError, match="version 'v9' does not exist"):
        artifacts_py.artifact("Gone", toml)
    root = svc.process.command[svc.process.command.index("--store") + 1]
    Path(root, project, "docs", "v1", "..manifest").unlink()
    with pytest.raises(InstallError, match=r"\.\.manifest does not exist") as e:
        artifacts_py.artifact("NoManifest", toml)
    assert "..summary" not in str(e.value)


def test_add_pins_the_latest_and_repinning_needs_force(gypsum_local, tmp_path):
    svc = gypsum_local
    project = _project(svc)
    _publish(svc, tmp_path, project, asset="lat", version="v1", toml=tmp_path / "pub.toml")
    _publish(svc, tmp_path, project, asset="lat", version="v2", files={"x.txt": b"two\n"},
             toml=tmp_path / "pub.toml", force=True)
    toml = tmp_path / "Artifacts.toml"
    got = artifacts_py.add_artifact(toml, "L", project=project, asset="lat", url=svc.url,
                                    gypsum=True, verbose=False)
    assert got["version"] == "v2" and (got["path"] / "x.txt").read_bytes() == b"two\n"
    with pytest.raises(artifacts_py.BindingExistsError):
        artifacts_py.add_artifact(toml, "L", project=project, asset="lat", version="v1",
                                  url=svc.url, gypsum=True, verbose=False)


def test_refused_publish_leaves_the_toml_byte_identical(gypsum_local, tmp_path):
    svc = gypsum_local
    project = _project(svc)
    toml = tmp_path / "Artifacts.toml"
    toml.write_text("# my pins\n[Other]\ngit-tree-sha1 = \"" + "b" * 40 + "\"\n")
    before = toml.read_bytes()
    src = _tree(tmp_path / "src")
    with pytest.raises(GypsumError) as exc:
        artifacts_py.publish_artifact(toml, "Data", src, project=project, asset="no",
                                      version="v1", url=svc.url, gypsum=True, token=STRANGER)
    assert "was not changed" in str(exc.value) and STRANGER not in str(exc.value)
    assert toml.read_bytes() == before
    # The project was not left locked: the owner can publish right away.
    _publish(svc, tmp_path, project, asset="no", toml=toml)


def test_unstorable_names_are_refused_before_any_upload(gypsum_local, tmp_path):
    svc = gypsum_local
    project = _project(svc)
    src = tmp_path / "bad"
    src.mkdir()
    (src / "ok.txt").write_bytes(b"ok\n")
    os.symlink("/nonexistent/target", src / "broken")
    before = svc.snapshot()
    with pytest.raises(artifacts_py.InvalidArgumentError, match="broken symlink"):
        artifacts_py.publish_artifact(tmp_path / "T.toml", "B", src, project=project,
                                      asset="bad", version="v1", url=svc.url, gypsum=True,
                                      token=OWNER)
    assert svc.snapshot() == before and not (tmp_path / "T.toml").exists()


def _resolve(name: str, toml: str, barrier, results) -> None:
    barrier.wait()
    try:
        results.put(str(artifacts_py.artifact(name, toml)))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        results.put(f"error: {e}")


def test_eight_processes_fetch_each_object_once(gypsum_local, tmp_path, monkeypatch):
    from gobbler_fixtures import CountingProxy

    svc = gypsum_local
    project = _project(svc)
    _publish(svc, tmp_path, project, asset="race", toml=tmp_path / "v1.toml")
    # v2 has the same files: the upload deduplicates them into links to v1's objects.
    toml, info = _publish(svc, tmp_path, project, asset="race", version="v2")
    manifest = gypsum_client.fetch_manifest(project, "race", "v2", url=svc.url, cache_dir=None)
    assert all("link" in e for e in manifest.values())
    proxy = CountingProxy(svc.url)
    try:
        bind_artifact(toml, "Data", info["git_tree_sha1"], force=True,
                      gypsum={"project": project, "asset": "race", "version": "v2",
                              "url": proxy.url})
        _fresh_depot(monkeypatch, tmp_path, "race")
        ctx = multiprocessing.get_context("spawn")
        barrier, results = ctx.Barrier(8), ctx.Queue()
        procs = [ctx.Process(target=_resolve, args=("Data", str(toml), barrier, results))
                 for _ in range(8)]
        for p in procs:
            p.start()
        paths = {results.get(timeout=120) for _ in procs}
        for p in procs:
            p.join(60)
        assert paths == {str(tmp_path / "race" / "artifacts" / info["git_tree_sha1"])}, paths
        objects = [p for p in proxy.counts if p.startswith("/file/") and "..summary" not in p
                   and "..manifest" not in p]
        # Every linked file was read from its final ancestor (v1), each object once.
        assert objects and all(f"%2Frace%2Fv1%2F" in p for p in objects), objects
        assert len(objects) <= len(FILES)
        assert all(proxy.counts[p] == 1 for p in objects), dict(proxy.counts)
    finally:
        proxy.close()


def test_outdated_and_update_across_gobbler_and_gypsum(gypsum_local, gobbler_factory, tmp_path):
    svc = gypsum_local
    project = _project(svc)
    gob = gobbler_factory()
    gobbler.create_project("up", staging=gob.staging, url=gob.url)
    toml = tmp_path / "Artifacts.toml"
    _publish(svc, tmp_path, project, asset="g", toml=toml, name="GypsumData")
    src = _tree(tmp_path / "gsrc", {"a.txt": b"gobbler one\n"})
    artifacts_py.publish_artifact(toml, "GobblerData", src, project="up", asset="g",
                                  version="v1", url=gob.url)
    made = artifacts_py.create_artifact(src, tmp_path / "t.tar.gz")
    bind_artifact(toml, "Tarball", made["git_tree_sha1"], (tmp_path / "t.tar.gz").as_uri(),
                  made["sha256"])
    with open(toml, "a") as f:
        f.write("# a comment that must survive\n")
    assert updates.outdated(toml) == []
    # New versions of both assets.
    _publish(svc, tmp_path, project, asset="g", version="v2", files={"n.txt": b"new\n"},
             toml=tmp_path / "other.toml")
    src2 = _tree(tmp_path / "gsrc2", {"a.txt": b"gobbler two\n"})
    gobbler.upload_directory("up", "g", "v2", str(src2), gob.staging, gob.url)
    behind = {p.name: p for p in updates.outdated(toml)}
    assert {n: (p.backend, p.pinned, p.latest) for n, p in behind.items()} == {
        "GypsumData": ("gypsum", "v1", "v2"), "GobblerData": ("gobbler", "v1", "v2")}
    assert [p.backend for p in updates.pins(toml) if p.name == "Tarball"] == ["tarball"]
    before = toml.read_text()
    planned = updates.update(toml, dry_run=True)
    assert {u.name for u in planned} == {"GypsumData", "GobblerData"}
    assert toml.read_text() == before
    done = {u.name: u for u in updates.update(toml)}
    after = toml.read_text()
    assert "# a comment that must survive" in after and updates.outdated(toml) == []
    f = load_file(toml)
    assert f.entry("GypsumData").gypsum.version == "v2"
    assert f.entry("GypsumData").git_tree_sha1 == done["GypsumData"].new_tree
    assert f.entry("GobblerData").git_tree_sha1 == artifacts_py.compute_git_tree_sha1(src2)
    assert (artifacts_py.artifact("GypsumData", toml) / "n.txt").read_bytes() == b"new\n"
    # A tarball entry asked for by name cannot be updated, and says why.
    with pytest.raises(artifacts_py.InvalidArgumentError, match="no latest version"):
        updates.update(toml, ["Tarball"])


def test_gypsum_quickstart_runs_and_leaves_nothing(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-m", "artifacts_py.examples.gypsum_quickstart"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "7. artifacts outdated:" in done.stdout and "gypsum v1 -> v2" in done.stdout
    assert "verified: " in done.stdout and "Traceback" not in done.stderr
    assert list(scratch.iterdir()) == []


def _cli(*args: str, env: Dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "artifacts_py.cli", *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=120)
    assert "Traceback" not in out.stderr, out.stderr
    return out


def test_cli_publish_add_outdated_update_with_gypsum(gypsum_local, tmp_path):
    import json

    svc = gypsum_local
    project = _project(svc)
    env = {**os.environ, "GYPSUM_TOKEN": OWNER, "ARTIFACTS_PY_GYPSUM_URL": svc.url,
           "ARTIFACTS_PY_DEPOT_PATH": str(tmp_path / "depot")}
    src = _tree(tmp_path / "src")
    toml = tmp_path / "Artifacts.toml"
    done = _cli("publish", "Data", str(src), "--gypsum", "--project", project, "--asset", "cli",
                "--version", "v1", "--toml", str(toml), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert OWNER not in done.stdout + done.stderr
    done = _cli("add", "Again", f"gypsum:{project}/cli", "--toml", str(toml), "--json",
                env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["gypsum"]["version"] == "v1"
    again = _cli("add", "Again", f"gypsum:{project}/cli@v1", "--toml", str(toml), env=env,
                 cwd=tmp_path)
    assert again.returncode == 0 and "already pinned" in again.stdout
    # A second version: both entries are behind.
    _publish(svc, tmp_path, project, asset="cli", version="v2", files={"z.txt": b"z\n"},
             toml=tmp_path / "other.toml")
    out = _cli("outdated", "--json", "--toml", str(toml), env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert sorted((r["name"], r["backend"], r["pinned"], r["latest"])
                  for r in json.loads(out.stdout)) == [("Again", "gypsum", "v1", "v2"),
                                                       ("Data", "gypsum", "v1", "v2")]
    before = toml.read_bytes()
    dry = _cli("update", "--dry-run", "--toml", str(toml), env=env, cwd=tmp_path)
    assert dry.returncode == 0 and "would update Data: gypsum v1 -> v2" in dry.stdout
    assert toml.read_bytes() == before
    done = _cli("update", "Data", "--toml", str(toml), env=env, cwd=tmp_path)
    assert done.returncode == 0 and "updated Data: gypsum v1 -> v2" in done.stdout
    rest = _cli("outdated", "--toml", str(toml), env=env, cwd=tmp_path)
    assert "Again" in rest.stdout and "Data " not in rest.stdout
