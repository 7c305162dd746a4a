"""The Gobbler client (artifacts_py.gobbler) against our own server over real HTTP.

One server per module (``gobbler_factory`` with temporary registry and staging);
each test works in its own project so tests do not depend on each other.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import stat
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Iterator, Tuple

import pytest

import artifacts_py.gobbler as gb
from artifacts_py.errors import GobblerError, GobblerNotFoundError, HashMismatchError
from gobbler_helpers import GobblerFactory, RunningGobbler
from httpserver import FaultyServer

BIG = bytes(range(256)) * (6 * 1024 + 7)  # ~1.5 MiB: several 1 MiB chunks


@pytest.fixture(scope="module")
def svc(gobbler_factory: GobblerFactory) -> RunningGobbler:
    return gobbler_factory()


def _project(svc: RunningGobbler, **kw) -> str:
    name = "p" + uuid.uuid4().hex[:8]
    gb.create_project(name, svc.staging, svc.url, **kw)
    return name


def _tree(root: Path) -> Path:
    """A source tree with files, nested and empty directories, links and a dot file."""
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "sub" / "leaf").mkdir()
    (root / "a.txt").write_bytes(b"hello\n")
    (root / "sub" / "big.bin").write_bytes(BIG)
    (root / "sub" / "deep" / "x.csv").write_bytes(b"1,2,3\n")
    (root / "sub" / "deep" / "zero").write_bytes(b"")
    (root / ".hidden").write_bytes(b"secret")
    os.symlink("a.txt", root / "c.txt")
    os.symlink("../a.txt", root / "sub" / "up.txt")
    return root


def _upload_tree(svc: RunningGobbler, tmp_path: Path, project: str, asset: str = "data",
                 version: str = "v1", **kw) -> Path:
    src = _tree(tmp_path / f"src-{asset}-{version}")
    gb.upload_directory(project, asset, version, str(src), svc.staging, svc.url, **kw)
    return src


def _files_of(manifest: Dict[str, dict]) -> Dict[str, dict]:
    return {k: v for k, v in manifest.items() if v["md5sum"] != ""}


def _snapshot(root: Path) -> Dict[str, Tuple[str, str]]:
    """path -> ('d', '') | ('l', target) | ('f', md5) for a whole tree."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = ("l", os.readlink(p))
        elif p.is_dir():
            out[rel] = ("d", "")
        else:
            out[rel] = ("f", hashlib.md5(p.read_bytes()).hexdigest())
    return out


# ---------------------------------------------------------------------------


def test_service_info_and_unpack_path(svc: RunningGobbler) -> None:
    info = gb.service_info(svc.url)
    assert os.path.samefile(info["registry"], svc.registry)
    assert os.path.samefile(info["staging"], svc.staging)
    assert gb.unpack_path("p/a/v/sub/f.txt") == {
        "project": "p", "asset": "a", "version": "v", "path": "sub/f.txt"}
    assert gb.unpack_path("p/a/v")["path"] is None
    with pytest.raises(ValueError):
        gb.unpack_path("p/a")


def test_create_project_errors_carry_status_and_reason(svc: RunningGobbler) -> None:
    project = _project(svc, owners=["someone"], uploaders=[{"id": "bob"}])
    assert project in gb.list_projects(svc.registry)
    assert project in gb.list_projects(svc.registry, svc.url, force_remote=True)
    perms = gb.fetch_permissions(project, svc.registry)
    assert perms["owners"] == ["someone"] and perms["uploaders"] == [{"id": "bob"}]

    with pytest.raises(GobblerError) as err:
        gb.create_project(project, svc.staging, svc.url)
    assert err.value.status == 400
    assert err.value.reason and "exist" in err.value.reason
    assert f"HTTP 400" in str(err.value) and err.value.reason in str(err.value)
    assert svc.leftovers() == []  # request file removed after the failure too


def test_upload_to_missing_project_is_404(svc: RunningGobbler, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    before = _snapshot(src)
    with pytest.raises(GobblerNotFoundError) as err:
        gb.upload_directory("nosuchproject", "a", "v1", str(src), svc.staging, svc.url)
    assert err.value.status == 404 and err.value.reason
    assert "upload nosuchproject/a/v1 failed (HTTP 404)" in str(err.value)
    assert svc.leftovers() == []  # neither the request file nor the staging copy remain
    assert _snapshot(src) == before


def test_missing_staging_and_registry_say_what_to_do(svc: RunningGobbler, tmp_path: Path) -> None:
    with pytest.raises(GobblerError) as err:
        gb.create_project("x", str(tmp_path / "nostaging"), svc.url)
    assert err.value.status is None and "staging" in str(err.value)
    with pytest.raises(GobblerError) as err:
        gb.list_projects(str(tmp_path / "noregistry"))
    assert "url" in str(err.value)
    with pytest.raises(GobblerNotFoundError) as err:
        gb.fetch_file("nosuch/a/v/f", url=svc.url, cache=str(tmp_path / "c"))
    assert err.value.status == 404


def test_upload_and_read_local_and_remote(svc: RunningGobbler, tmp_path: Path) -> None:
    project = _project(svc)
    src = _upload_tree(svc, tmp_path, project)
    assert svc.leftovers() == []
    cache = str(tmp_path / "cache")

    for remote in (False, True):
        kw = dict(registry=svc.registry, url=svc.url, force_remote=remote)
        assert gb.list_assets(project, **kw) == ["data"]
        assert gb.list_versions(project, "data", **kw) == ["v1"]
        assert gb.fetch_latest(project, "data", **kw) == "v1"
        assert gb.fetch_latest(project, "nosuchasset", **kw) is None
        assert gb.fetch_usage(project, **kw) == len(b"hello\n") + len(BIG) + 6
        assert gb.fetch_summary(project, "data", "v1", cache=cache, **kw)[
            "upload_user_id"] == getpass.getuser()

    manifest = gb.fetch_manifest(project, "data", "v1", svc.registry)
    assert manifest == gb.fetch_manifest(project, "data", "v1", url=svc.url, cache=cache)
    assert ".hidden" not in manifest  # ignore_dot=True by default
    assert manifest["empty"] == {"size": 0, "md5sum": ""}
    assert manifest["sub/leaf"]["md5sum"] == ""
    assert manifest["c.txt"]["link"]["path"] == "a.txt"
    assert manifest["sub/up.txt"]["link"]["path"] == "a.txt"

    for rel, entry in _files_of(manifest).items():
        path = f"{project}/data/v1/{rel}"
        local = gb.fetch_file(path, svc.registry)
        assert local == os.path.join(svc.registry, project, "data", "v1", *rel.split("/"))
        remote = gb.fetch_file(path, svc.registry, svc.url, cache=cache, force_remote=True)
        assert remote.startswith(cache)
        assert Path(remote).read_bytes() == Path(local).read_bytes()
        assert hashlib.md5(Path(remote).read_bytes()).hexdigest() == entry["md5sum"]
    assert os.listdir(os.path.join(cache, os.listdir(cache)[0], "TEMP")) == []
    assert gb.version_path(project, "data", "v1", registry=svc.registry) == os.path.join(
        svc.registry, project, "data", "v1")


def test_upload_by_hard_links_leaves_source_untouched(svc: RunningGobbler, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    assert os.stat(src).st_dev == os.stat(svc.staging).st_dev  # the hard-link path
    (src / "a.txt").chmod(0o444)
    before = _snapshot(src)
    stats = {p: os.lstat(src / p) for p in before}
    project = _project(svc)
    gb.upload_directory(project, "data", "v1", str(src), svc.staging, svc.url)
    assert _snapshot(src) == before
    for rel, st in stats.items():
        now = os.lstat(src / rel)
        assert (now.st_mode, now.st_ino, now.st_nlink) == (st.st_mode, st.st_ino, st.st_nlink)
    # The registry got its own copy, not the user's inode.
    reg = os.path.join(svc.registry, project, "data", "v1", "sub", "big.bin")
    assert os.stat(reg).st_ino != os.stat(src / "sub" / "big.bin").st_ino
    assert Path(reg).read_bytes() == BIG
    assert svc.leftovers() == []


def test_fetch_directory_remote_reproduces_the_version(svc: RunningGobbler, tmp_path: Path) -> None:
    project = _project(svc)
    _upload_tree(svc, tmp_path, project)
    cache = str(tmp_path / "cache")
    got = Path(gb.fetch_directory(f"{project}/data/v1", svc.registry, svc.url, cache=cache,
                                  force_remote=True, concurrent=4))
    manifest = gb.fetch_manifest(project, "data", "v1", svc.registry)
    registry_version = Path(svc.registry, project, "data", "v1")
    for rel, entry in manifest.items():
        if entry["md5sum"] == "":
            assert (got / rel).is_dir() and not any((got / rel).iterdir())
        else:
            assert (got / rel).read_bytes() == (registry_version / rel).read_bytes()
    user_files = {p.relative_to(got).as_posix() for p in got.rglob("*")
                  if p.is_file() and not p.name.startswith("..")}
    assert user_files == set(_files_of(manifest))

    # Complete: a second call returns at once, even with the service's copy gone.
    (got / "a.txt").unlink()
    again = gb.fetch_directory(f"{project}/data/v1", svc.registry, svc.url, cache=cache,
                               force_remote=True)
    assert again == str(got) and not (got / "a.txt").exists()
    gb.fetch_directory(f"{project}/data/v1", svc.registry, svc.url, cache=cache,
                       force_remote=True, overwrite=True)
    assert (got / "a.txt").read_bytes() == b"hello\n"

    # A subdirectory on its own, through version_path's sibling.
    sub = gb.fetch_directory(f"{project}/data/v1/sub", url=svc.url, cache=str(tmp_path / "c2"))
    assert Path(sub, "deep", "x.csv").read_bytes() == b"1,2,3\n"
    assert not Path(sub).parent.joinpath("a.txt").exists()
    vp = gb.version_path(project, "data", "v1", url=svc.url, cache=str(tmp_path / "c3"))
    assert Path(vp, "sub", "up.txt").read_bytes() == b"hello\n"


def test_tampered_registry_file_is_refused(svc: RunningGobbler, tmp_path: Path) -> None:
    project = _project(svc)
    _upload_tree(svc, tmp_path, project)
    victim = Path(svc.registry, project, "data", "v1", "sub", "big.bin")
    victim.chmod(0o644 | stat.S_IWUSR)
    victim.write_bytes(bytes(reversed(BIG)))  # same size, other bytes

    cache = tmp_path / "cache"
    with pytest.raises(HashMismatchError) as err:
        gb.fetch_file(f"{project}/data/v1/sub/big.bin", svc.registry, svc.url,
                      cache=str(cache), force_remote=True)
    message = str(err.value)
    assert f"{project}/data/v1" in message and "sub/big.bin" in message
    expected = hashlib.md5(BIG).hexdigest()
    assert expected in message and err.value.expected.endswith(expected)
    assert err.value.actual.endswith(hashlib.md5(bytes(reversed(BIG))).hexdigest())
    cached = [p for p in cache.rglob("*") if p.is_file() and not p.name.startswith("..")]
    assert cached == []  # neither the file nor a temporary part

    with pytest.raises(HashMismatchError):
        gb.fetch_directory(f"{project}/data/v1", svc.registry, svc.url, cache=str(cache),
                           force_remote=True, concurrent=3)
    assert not list(cache.rglob("big.bin")) and not list(cache.rglob("..complete"))
    # Other files are fine; unverified reads remain possible on request.
    assert Path(gb.fetch_file(f"{project}/data/v1/a.txt", url=svc.url,
                              cache=str(cache))).read_bytes() == b"hello\n"
    raw = gb.fetch_file(f"{project}/data/v1/sub/big.bin", url=svc.url, cache=str(cache),
                        verify=False)
    assert Path(raw).read_bytes() == bytes(reversed(BIG))

    with pytest.raises(GobblerError) as bad:
        gb.validate_version(project, "data", "v1", svc.staging, svc.url)
    assert bad.value.status == 500 and bad.value.reason
    assert svc.leftovers() == []


def test_list_files_prefix_and_dotdot(svc: RunningGobbler, tmp_path: Path) -> None:
    project = _project(svc)
    _upload_tree(svc, tmp_path, project)
    for remote in (False, True):
        kw = dict(registry=svc.registry, url=svc.url, force_remote=remote)
        everything = gb.list_files(project, "data", "v1", **kw)
        assert isinstance(everything, list)
        assert {"a.txt", "c.txt", "sub/big.bin", "sub/deep/x.csv", "empty/", "sub/leaf/",
                "..manifest", "..summary"} <= set(everything)
        clean = gb.list_files(project, "data", "v1", include_dotdot=False, **kw)
        assert not [p for p in clean if "/.." in "/" + p]
        assert gb.list_files(project, "data", "v1", prefix="sub/", **kw) == [
            "sub/..links", "sub/big.bin", "sub/deep/x.csv", "sub/deep/zero", "sub/leaf/", "sub/up.txt"]
        assert gb.list_files(project, "data", "v1", prefix="sub/", include_dotdot=False,
                             **kw)[0] == "sub/big.bin"
        assert gb.list_files(project, "data", "v1", prefix="sub/deep/x", **kw) == [
            "sub/deep/x.csv"]
        assert gb.list_files(project, "data", "v1", prefix="e", **kw) == ["empty/"]
        assert gb.list_files(project, "data", "v1", prefix="..m", include_dotdot=False,
                             **kw) == []
        assert gb.list_files(project, "data", "v1", prefix="nosuchdir/x", **kw) == []


def test_probation_latest_usage_reindex_validate(svc: RunningGobbler, tmp_path: Path) -> None:
    project = _project(svc)
    _upload_tree(svc, tmp_path, project, version="v1")
    cache = str(tmp_path / "cache")
    _upload_tree(svc, tmp_path, project, version="v2", probation=True)
    _upload_tree(svc, tmp_path, project, version="v3", probation=True)
    assert gb.fetch_latest(project, "data", svc.registry) == "v1"
    remote = dict(url=svc.url, cache=cache)
    assert gb.fetch_summary(project, "data", "v2", **remote)["on_probation"] is True

    gb.approve_probation(project, "data", "v2", svc.staging, svc.url)
    assert "on_probation" not in gb.fetch_summary(project, "data", "v2", **remote)
    gb.reject_probation(project, "data", "v3", svc.staging, svc.url)
    assert gb.list_versions(project, "data", svc.registry) == ["v1", "v2"]

    assert gb.refresh_latest(project, "data", svc.staging, svc.url) in {"v1", "v2"}
    total = gb.refresh_usage(project, svc.staging, svc.url)
    assert total == gb.fetch_usage(project, url=svc.url) > 0

    # reindex rebuilds a lost manifest; validate then agrees with the disk.
    mpath = Path(svc.registry, project, "data", "v1", "..manifest")
    original = json.loads(mpath.read_text())
    mpath.chmod(0o644)
    mpath.unlink()
    gb.reindex_version(project, "data", "v1", svc.staging, svc.url)
    assert set(json.loads(mpath.read_text())) == set(original)
    gb.validate_version(project, "data", "v1", svc.staging, svc.url)
    assert svc.leftovers() == []


def test_set_permissions_appends_to_null_uploaders(svc: RunningGobbler, tmp_path: Path) -> None:
    project = _project(svc)
    gb.set_permissions(project, svc.registry, svc.staging, svc.url, global_write=True)
    assert gb.fetch_permissions(project, svc.registry)["global_write"] is True
    _upload_tree(svc, tmp_path, project, asset="gw")  # creates the asset under global write
    raw = json.loads(Path(svc.registry, project, "gw", "..permissions").read_text())
    assert raw["uploaders"] is None  # the case pygobbler cannot append to
    assert gb.fetch_permissions(project, svc.registry, asset="gw")["uploaders"] == []
    assert gb.fetch_permissions(project, url=svc.url, asset="gw")["uploaders"] == []

    dry = gb.set_permissions(project, svc.registry, svc.staging, svc.url, asset="gw",
                             uploaders=[{"id": "bob"}], dry_run=True)
    assert dry == {"uploaders": [{"id": "bob"}]}
    gb.set_permissions(project, None, svc.staging, svc.url, asset="gw",
                       owners=["carol", getpass.getuser()], uploaders=[{"id": "bob"}])
    perms = gb.fetch_permissions(project, svc.registry, asset="gw")
    assert perms["owners"] == [getpass.getuser(), "carol"]
    assert perms["uploaders"] == [{"id": "bob"}]
    gb.set_permissions(project, svc.registry, svc.staging, svc.url, asset="gw",
                       uploaders=[{"id": "dave"}])
    assert [u["id"] for u in gb.fetch_permissions(project, svc.registry, asset="gw")[
        "uploaders"]] == ["bob", "dave"]
    gb.set_permissions(project, svc.registry, svc.staging, svc.url, asset="gw",
                       uploaders=[{"id": "erin"}], append=False)
    assert gb.fetch_permissions(project, url=svc.url, asset="gw",
                                force_remote=True)["uploaders"] == [{"id": "erin"}]
    assert svc.leftovers() == []


def test_clone_then_upload_makes_links(svc: RunningGobbler, tmp_path: Path) -> None:
    project = _project(svc)
    _upload_tree(svc, tmp_path, project)
    clone = tmp_path / "clone"
    gb.clone_version(project, "data", "v1", str(clone), svc.registry)
    assert (clone / "empty").is_dir() and not (clone / "empty").is_symlink()
    assert os.path.islink(clone / "sub" / "big.bin")
    (clone / "a.txt").unlink()
    (clone / "a.txt").write_bytes(b"changed\n")
    gb.upload_directory(project, "data", "v2", str(clone), svc.staging, svc.url)

    manifest = gb.fetch_manifest(project, "data", "v2", svc.registry)
    assert "link" not in manifest["a.txt"]
    big = manifest["sub/big.bin"]["link"]
    assert (big["version"], big["path"]) == ("v1", "sub/big.bin")
    assert manifest["empty"] == {"size": 0, "md5sum": ""}
    assert Path(gb.fetch_file(f"{project}/data/v2/a.txt", svc.registry)).read_bytes() == \
        b"changed\n"


def test_relative_link_out_of_tree_into_registry_becomes_gobbler_link(
        svc: RunningGobbler, tmp_path: Path) -> None:
    project = _project(svc)
    _upload_tree(svc, tmp_path, project)
    src = tmp_path / "linker"
    src.mkdir()
    target = os.path.join(svc.registry, project, "data", "v1", "sub", "deep", "x.csv")
    os.symlink(os.path.relpath(target, src), src / "x.csv")
    (src / "own.txt").write_bytes(b"own\n")
    os.symlink(str(src / "own.txt"), src / "abs-inside.txt")  # absolute, inside the tree
    gb.upload_directory(project, "other", "v1", str(src), svc.staging, svc.url)
    manifest = gb.fetch_manifest(project, "other", "v1", svc.registry)
    entry = manifest["x.csv"]
    assert entry["link"]["asset"] == "data" and entry["link"]["path"] == "sub/deep/x.csv"
    inside = manifest["abs-inside.txt"]["link"]
    assert (inside["asset"], inside["version"], inside["path"]) == ("other", "v1", "own.txt")

    # A link leaving both the tree and the registry is refused by the service.
    (tmp_path / "elsewhere.txt").write_bytes(b"x")
    os.symlink("../elsewhere.txt", src / "out.txt")
    with pytest.raises(GobblerError) as err:
        gb.upload_directory(project, "other", "v2", str(src), svc.staging, svc.url)
    assert err.value.status == 500 and "elsewhere.txt" in err.value.reason
    assert svc.leftovers() == []


def test_in_place_upload_from_allocated_directory(svc: RunningGobbler, tmp_path: Path) -> None:
    name = gb.allocate_upload_directory(svc.staging, create=False)
    assert os.path.dirname(name) == svc.staging and not os.path.exists(name)
    updir = Path(gb.allocate_upload_directory(svc.staging))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(updir.stat().st_mode) == 0o777 & ~umask
    (updir / "f.txt").write_bytes(b"in place\n")
    project = _project(svc)
    try:
        gb.upload_directory(project, "a", "v1", str(updir), svc.staging, svc.url)
        assert (updir / "f.txt").read_bytes() == b"in place\n"  # consume=False in place
        assert svc.leftovers() == [updir.name]
    finally:
        import shutil
        shutil.rmtree(updir)
    assert gb.list_files(project, "a", "v1", svc.registry, include_dotdot=False) == ["f.txt"]


def test_reroute_and_removals(svc: RunningGobbler, tmp_path: Path) -> None:
    project = _project(svc)
    _upload_tree(svc, tmp_path, project, version="v1")
    _upload_tree(svc, tmp_path, project, version="v2")  # deduplicated against v1
    assert "link" in gb.fetch_manifest(project, "data", "v2", svc.registry)["sub/big.bin"]
    changes = gb.reroute_links([{"project": project, "asset": "data", "version": "v1"}],
                               svc.staging, svc.url, dry_run=True)
    assert isinstance(changes, list)
    assert any(c["path"] == f"{project}/data/v2/sub/big.bin" and c["copy"] for c in changes)
    assert "link" in gb.fetch_manifest(project, "data", "v2", svc.registry)["sub/big.bin"]

    gb.reroute_links([{"project": project, "asset": "data", "version": "v1"}],
                     svc.staging, svc.url)
    gb.remove_version(project, "data", "v1", svc.staging, svc.url)
    assert gb.list_versions(project, "data", svc.registry) == ["v2"]
    v2big = Path(gb.fetch_file(f"{project}/data/v2/sub/big.bin", svc.registry))
    assert v2big.read_bytes() == BIG
    gb.remove_asset(project, "data", svc.staging, svc.url)
    assert gb.list_assets(project, svc.registry) == []
    gb.remove_project(project, svc.staging, svc.url)
    assert project not in gb.list_projects(url=svc.url)
    assert svc.leftovers() == []


class _Busy(BaseHTTPRequestHandler):
    """Answers every POST with 503 + Retry-After: 0 and a JSON reason."""

    posts = 0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        type(self).posts += 1
        body = b'{"status": "ERROR", "reason": "busy, come back later"}'
        self.send_response(503)
        self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "text/plain")  # the reason is parsed anyway
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_get_is_retried_but_post_new_never(tmp_path: Path) -> None:
    with FaultyServer() as server:
        server.add("/info", b'{"staging": "/s", "registry": "/r"}', fail_first=2,
                   status=503, retry_after=0)
        assert gb.service_info(server.base_url) == {"staging": "/s", "registry": "/r"}
        assert server.count("/info") == 3

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        with pytest.raises(GobblerError) as err:
            gb.create_project("p", str(tmp_path), url)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert _Busy.posts == 1  # a non-idempotent action is sent once
    assert err.value.status == 503 and err.value.reason == "busy, come back later"
    assert os.listdir(tmp_path) == []  # request file removed


class _Paired(BaseHTTPRequestHandler):
    """Serves ``files``; each data file is answered only once two requests are in flight."""

    protocol_version = "HTTP/1.1"  # keep-alive
    files: Dict[str, bytes] = {}
    barrier = threading.Barrier(2, timeout=10)
    ports: set = set()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = self.files.get(urllib.parse.unquote(self.path))
        status = 200 if body is not None else 404
        if body is not None and not self.path.endswith("..manifest"):
            type(self).ports.add(self.client_address[1])
            try:
                self.barrier.wait()
            except threading.BrokenBarrierError:
                status, body = 500, b"not parallel"
        body = body or b""
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_fetch_directory_downloads_in_parallel_over_kept_alive_sessions(
        tmp_path: Path) -> None:
    data = {f"f{i}.bin": bytes([i]) * (1000 + i) for i in range(6)}
    manifest = {k: {"size": len(v), "md5sum": hashlib.md5(v).hexdigest()}
                for k, v in data.items()}
    _Paired.files = {f"/fetch/p/a/v/{k}": v for k, v in data.items()}
    _Paired.files["/fetch/p/a/v/..manifest"] = json.dumps(manifest).encode()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Paired)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        got = gb.fetch_directory("p/a/v", url=f"http://127.0.0.1:{httpd.server_address[1]}",
                                 cache=str(tmp_path), concurrent=2)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert {p.name: p.read_bytes() for p in Path(got).glob("f*")} == data
    assert len(_Paired.ports) == 2  # six files over two kept-alive connections


# --- cross-checks with pygobbler, the reference client -----------------------


def test_pygobbler_uploads_we_fetch(svc: RunningGobbler, tmp_path: Path) -> None:
    pygobbler = pytest.importorskip("pygobbler")
    project = _project(svc)
    src = tmp_path / "py"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f.bin").write_bytes(BIG[:100000])
    pygobbler.upload_directory(project, "a", "v1", str(src), svc.staging, svc.url)
    got = gb.version_path(project, "a", "v1", url=svc.url, cache=str(tmp_path / "c"))
    assert Path(got, "d", "f.bin").read_bytes() == BIG[:100000]


def test_we_upload_pygobbler_fetches(svc: RunningGobbler, tmp_path: Path) -> None:
    pygobbler = pytest.importorskip("pygobbler")
    project = _project(svc)
    _upload_tree(svc, tmp_path, project)
    assert pygobbler.fetch_manifest(project, "data", "v1", registry=svc.registry,
                                    url=svc.url) == gb.fetch_manifest(project, "data", "v1",
                                                                      svc.registry)
    path = pygobbler.fetch_file(f"{project}/data/v1/sub/big.bin", registry=svc.registry,
                                url=svc.url, cache=str(tmp_path / "pc"), force_remote=True)
    assert Path(path).read_bytes() == BIG
    assert pygobbler.fetch_latest(project, "data", registry=svc.registry, url=svc.url,
                                  force_remote=True) == "v1"
    assert sorted(pygobbler.list_versions(project, "data", registry=svc.registry,
                                          url=svc.url, force_remote=True)) == ["v1"]


def test_remote_cache_lives_in_the_depot_and_gc_clears_it(svc: RunningGobbler, tmp_path: Path,
                                                         isolated_depot: Path) -> None:
    from artifacts_py.gc import collect_garbage

    project = _project(svc)
    _upload_tree(svc, tmp_path, project)
    got = Path(gb.fetch_file(f"{project}/data/v1/a.txt", url=svc.url))
    assert got.read_bytes() == b"hello\n"
    assert isolated_depot / "gobbler" in got.parents  # under the depot stack, not beside it
    report = collect_garbage(dry_run=True)
    assert report.client_cache_bytes >= len(b"hello\n") and got.exists()
    collect_garbage()
    assert not (isolated_depot / "gobbler").exists()
