"""artifacts_py.gypsum over real HTTP against artifacts-gypsum (local store; one S3 test).

Every function of the gypsum_client-compatible API, verification of every
download (an object changed in the store after upload is refused and
nothing is cached), offline mode, tokens kept out of messages, and the
three gypsum_client 0.2.0 bugs (inverted dedup flag, abort sent to another
URL, ``quote_plus`` in keys). Faults come from real servers: the store is
edited on disk (or in SeaweedFS), and a small forwarding proxy fails chosen
requests.
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
from github_standin import GitHubStandIn
from httpserver import FaultyServer
from seaweed import SeaweedFS

from artifacts_py import gypsum
from artifacts_py.errors import (GypsumError, GypsumNotFoundError, HashMismatchError,
                                 InvalidArgumentError, OfflineError)
from artifacts_py.gypsum import protocol
from artifacts_py.gypsum.auth import parse_expiry
from artifacts_py.gypsum.metadata import tokenize
from gypsum_fixtures import (  # noqa: F401 (fixtures)
    ADMIN, BUCKET, OWNER, USERS, Service, github, gypsum_local, s3_args, seaweed,
    start_service, unique,
)

ODD_NAMES = ["a b.txt", "h#sh.txt", "pct%25.txt", "plus+sign.txt", "ünï cødé.txt",
             "sub dir/x y.txt", "q?.txt"]


def _files(root: str, files: Dict[str, bytes]) -> str:
    for rel, data in files.items():
        path = os.path.join(root, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
    return root


def _store_root(svc: Service) -> str:
    command = svc.process.command
    return command[command.index("--store") + 1]


def _all_files(root: str) -> List[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, names in os.walk(root) for f in names)


@pytest.fixture
def svc(gypsum_local: Service) -> Service:
    return gypsum_local


@pytest.fixture
def project(svc: Service) -> str:
    name = unique("client")
    gypsum.create_project(name, owners=["owner-user"],
                          uploaders=[{"id": "uploader-org", "trusted": True}],
                          url=svc.url, token=ADMIN)
    return name


@pytest.fixture
def cache(tmp_path: Path) -> str:
    return str(tmp_path / "cache")


@pytest.fixture
def published(svc: Service, project: str, tmp_path: Path) -> Dict[str, bytes]:
    """``project/data`` v1 with odd names, and v2 all links to v1 (deduplicated)."""
    files = {name: f"content of {name}\n".encode() * 3 for name in ODD_NAMES}
    files["big.bin"] = os.urandom(3 << 20)  # over the small-file path
    src = _files(str(tmp_path / "src"), files)
    assert gypsum.upload_directory(src, project, "data", "v1", url=svc.url, token=OWNER,
                                   cache_dir=None)
    assert gypsum.upload_directory(src, project, "data", "v2", url=svc.url, token=OWNER,
                                   cache_dir=None)
    return files


# --------------------------------------------------------------------------
# A forwarding proxy that fails chosen requests (a real misbehaving server)
# --------------------------------------------------------------------------

class Proxy:
    """Forwards every request to ``backend``; ``fail(method, path)`` may answer instead."""

    def __init__(self, backend: str) -> None:
        self.backend = backend.split("//", 1)[1]
        self.seen: List[str] = []
        self.fail: Callable[[str, str], Optional[int]] = lambda m, p: None
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                proxy.seen.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                status = proxy.fail(self.command, self.path)
                if status is not None:
                    data = b'{"status":"error","reason":"injected by the test proxy"}'
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                conn = http.client.HTTPConnection(proxy.backend, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                reply = conn.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                for key, value in reply.getheaders():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(svc: Service) -> Iterator[Proxy]:
    p = Proxy(svc.url)
    yield p
    p.close()


def test_same_names_and_parameters_as_gypsum_client() -> None:
    """Every public callable of gypsum_client 0.2.0 exists here, its parameters first, in order."""
    import inspect

    import gypsum_client  # type: ignore[import-untyped]

    checked = 0
    for name in sorted(dir(gypsum_client)):
        theirs = getattr(gypsum_client, name)
        if name.startswith("_") or inspect.ismodule(theirs) or not callable(theirs):
            continue
        ours = getattr(gypsum, name)
        want = [(p.name, p.kind) for p in inspect.signature(theirs).parameters.values()]
        have = [(p.name, p.kind) for p in inspect.signature(ours).parameters.values()]
        assert have[:len(want)] == want, name
        checked += 1
    assert checked >= 40


# --------------------------------------------------------------------------
# Listing and bookkeeping files
# --------------------------------------------------------------------------

def test_listing(svc: Service, project: str, published: Dict[str, bytes]) -> None:
    assert project in gypsum.list_projects(url=svc.url)
    assert gypsum.list_assets(project, url=svc.url) == ["data"]
    assert gypsum.list_versions(project, "data", url=svc.url) == ["v1", "v2"]
    v1 = gypsum.list_files(project, "data", "v1", url=svc.url)
    assert v1 == sorted(["..manifest", "..summary", *published])
    assert gypsum.list_files(project, "data", "v1", prefix="sub dir/", url=svc.url) == \
        ["sub dir/x y.txt"]
    assert ".." not in "".join(gypsum.list_files(project, "data", "v2", include_dot=False,
                                                 url=svc.url))
    assert "sub dir/..links" in gypsum.list_files(project, "data", "v2", url=svc.url)


def test_fetch_bookkeeping(svc: Service, project: str, published: Dict[str, bytes],
                           cache: str) -> None:
    manifest = gypsum.fetch_manifest(project, "data", "v1", cache_dir=cache, url=svc.url)
    assert set(manifest) == set(published)
    assert manifest["a b.txt"]["md5sum"] == hashlib.md5(published["a b.txt"]).hexdigest()
    cached = os.path.join(cache, "bucket", project, "data", "v1", "..manifest")
    assert os.path.isfile(cached)
    v2 = gypsum.fetch_manifest(project, "data", "v2", cache_dir=None, url=svc.url)
    assert v2["a b.txt"]["link"]["version"] == "v1"

    summary = gypsum.fetch_summary(project, "data", "v1", cache_dir=cache, url=svc.url)
    assert summary["upload_user_id"] == "owner-user"
    assert summary["upload_finish"].tzinfo is not None
    assert summary["upload_start"] <= summary["upload_finish"]
    assert os.path.isfile(os.path.join(cache, "bucket", project, "data", "v1", "..summary"))

    assert gypsum.fetch_latest(project, "data", url=svc.url) == "v2"
    with pytest.raises(GypsumNotFoundError):
        gypsum.fetch_latest(project, "nothing", url=svc.url)
    assert gypsum.fetch_usage(project, url=svc.url) == sum(map(len, published.values()))
    assert gypsum.fetch_quota(project, url=svc.url)["baseline"] == 10_000_000_000
    perms = gypsum.fetch_permissions(project, url=svc.url)
    assert perms["owners"] == ["owner-user"]
    assert perms["uploaders"][0]["id"] == "uploader-org"


def test_probational_summary_is_never_cached(svc: Service, project: str, cache: str) -> None:
    init = gypsum.start_upload(project, "prob", "v1", files=[], probation=True, url=svc.url,
                               token=OWNER)
    running = gypsum.fetch_summary(project, "prob", "v1", cache_dir=cache, url=svc.url)
    assert "upload_finish" not in running  # in progress: no KeyError, nothing cached
    assert not os.path.exists(os.path.join(cache, "bucket", project, "prob", "v1", "..summary"))
    gypsum.complete_upload(init)
    summary = gypsum.fetch_summary(project, "prob", "v1", cache_dir=cache, url=svc.url)
    assert summary["on_probation"] is True
    assert not os.path.exists(os.path.join(cache, "bucket", project, "prob", "v1", "..summary"))
    gypsum.approve_probation(project, "prob", "v1", url=svc.url, token=OWNER)
    summary = gypsum.fetch_summary(project, "prob", "v1", cache_dir=cache, url=svc.url)
    assert "on_probation" not in summary
    assert gypsum.fetch_latest(project, "prob", url=svc.url) == "v1"


# --------------------------------------------------------------------------
# Saving: verified, parallel, odd names (the quote_plus bug)
# --------------------------------------------------------------------------

def test_save_version_odd_names_and_links(svc: Service, project: str,
                                          published: Dict[str, bytes], cache: str) -> None:
    out = gypsum.save_version(project, "data", "v2", cache_dir=cache, url=svc.url)
    assert out == os.path.join(cache, "bucket", project, "data", "v2")
    for name, data in published.items():
        with open(os.path.join(out, *name.split("/")), "rb") as handle:
            assert handle.read() == data, name
        # the targets were fetched into their own (v1) location
        assert os.path.isfile(os.path.join(cache, "bucket", project, "data", "v1", name))
    assert os.path.exists(os.path.join(cache, "status", project, "data", "v2", "COMPLETE"))
    assert not os.listdir(os.path.join(cache, "tmp"))


def test_save_version_uses_its_marker_and_overwrite(svc: Service, project: str,
                                                    published: Dict[str, bytes],
                                                    cache: str, monkeypatch: pytest.MonkeyPatch) -> None:
    out = gypsum.save_version(project, "data", "v1", cache_dir=cache, url=svc.url,
                              concurrent=1)
    path = os.path.join(out, "a b.txt")
    with open(path, "wb") as handle:
        handle.write(b"edited")
    monkeypatch.setenv("ARTIFACTS_PY_OFFLINE", "1")  # a complete version needs no network
    assert gypsum.save_version(project, "data", "v1", cache_dir=cache, url=svc.url) == out
    monkeypatch.delenv("ARTIFACTS_PY_OFFLINE")
    gypsum.save_version(project, "data", "v1", cache_dir=cache, url=svc.url, overwrite=True)
    with open(path, "rb") as handle:
        assert handle.read() == published["a b.txt"]


def test_concurrent_saves_of_one_version(svc: Service, project: str,
                                         published: Dict[str, bytes], cache: str) -> None:
    results: List[object] = []

    def save() -> None:
        try:
            results.append(gypsum.save_version(project, "data", "v2", cache_dir=cache,
                                               url=svc.url))
        except Exception as exc:  # collected and asserted below
            results.append(exc)

    threads = [threading.Thread(target=save) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(set(map(str, results))) == 1 and isinstance(results[0], str), results
    for name, data in published.items():
        with open(os.path.join(str(results[0]), *name.split("/")), "rb") as handle:
            assert handle.read() == data


def test_save_version_without_relink(svc: Service, project: str,
                                     published: Dict[str, bytes], cache: str) -> None:
    out = gypsum.save_version(project, "data", "v2", cache_dir=cache, url=svc.url,
                              relink=False)
    assert not os.path.exists(os.path.join(out, "a b.txt"))
    assert gypsum.resolve_links(project, "data", "v2", cache_dir=cache, url=svc.url)
    with open(os.path.join(out, "h#sh.txt"), "rb") as handle:
        assert handle.read() == published["h#sh.txt"]


def test_save_file(svc: Service, project: str, published: Dict[str, bytes],
                   cache: str) -> None:
    for name in ("pct%25.txt", "ünï cødé.txt", "plus+sign.txt"):
        out = gypsum.save_file(project, "data", "v2", name, cache_dir=cache, url=svc.url)
        with open(out, "rb") as handle:
            assert handle.read() == published[name]
    with pytest.raises(GypsumNotFoundError, match="does not exist"):
        gypsum.save_file(project, "data", "v1", "no such.txt", cache_dir=cache, url=svc.url)
    with pytest.raises(GypsumError, match="'..'-prefixed"):
        gypsum.save_file(project, "data", "v1", "../escape.txt", cache_dir=cache, url=svc.url)


def test_clone_and_prepare_directory_upload(svc: Service, project: str,
                                            published: Dict[str, bytes], cache: str,
                                            tmp_path: Path) -> None:
    dest = str(tmp_path / "clone")
    gypsum.clone_version(project, "data", "v1", dest, cache_dir=cache, url=svc.url)
    link = os.path.join(dest, "sub dir", "x y.txt")
    assert os.readlink(link).endswith(os.path.join(project, "data", "v1", "sub dir", "x y.txt"))
    with open(link, "rb") as handle:
        assert handle.read() == published["sub dir/x y.txt"]
    os.unlink(os.path.join(dest, "a b.txt"))
    _files(dest, {"a b.txt": b"new content"})
    # a relative symlink into the cache is recognised too
    os.unlink(os.path.join(dest, "q?.txt"))
    os.symlink(os.path.relpath(os.path.join(cache, "bucket", project, "data", "v1", "q?.txt"),
                               dest), os.path.join(dest, "q?.txt"))
    prepped = gypsum.prepare_directory_upload(dest, cache_dir=cache)
    assert prepped["files"] == ["a b.txt"]
    assert {r["from.path"] for r in prepped["links"]} == set(published) - {"a b.txt"}
    assert gypsum.prepare_directory_upload(dest, links="never", cache_dir=cache)["links"] == []
    assert gypsum.upload_directory(dest, project, "data", "v3", cache_dir=cache, url=svc.url,
                                   token=OWNER)
    manifest = gypsum.fetch_manifest(project, "data", "v3", cache_dir=None, url=svc.url)
    assert "link" not in manifest["a b.txt"] and "link" in manifest["q?.txt"]
    os.symlink(str(tmp_path), os.path.join(dest, "dirlink"))
    with pytest.raises(GypsumError, match="symlink to a directory"):
        gypsum.prepare_directory_upload(dest, cache_dir=cache)


# --------------------------------------------------------------------------
# Verification: the store's bytes changed after upload
# --------------------------------------------------------------------------

@pytest.mark.parametrize("change", ["same size", "other size"])
def test_changed_object_is_refused_and_nothing_cached(svc: Service, project: str,
                                                      published: Dict[str, bytes], cache: str,
                                                      change: str) -> None:
    target = os.path.join(_store_root(svc), project, "data", "v1", "a b.txt")
    data = published["a b.txt"]
    with open(target, "wb") as handle:
        handle.write(bytes(reversed(data)) if change == "same size" else data + b"!")
    with pytest.raises(HashMismatchError) as info:
        gypsum.save_version(project, "data", "v1", cache_dir=cache, url=svc.url)
    assert info.value.kind == ("md5" if change == "same size" else "size")
    assert "a b.txt" in str(info.value) and "tmp" not in str(info.value)
    assert not os.path.exists(os.path.join(cache, "bucket", project, "data", "v1", "a b.txt"))
    assert not os.path.exists(os.path.join(cache, "status", project, "data", "v1", "COMPLETE"))
    assert not os.listdir(os.path.join(cache, "tmp"))
    with pytest.raises(HashMismatchError):  # and through a link from v2
        gypsum.save_file(project, "data", "v2", "a b.txt", cache_dir=cache, url=svc.url)
    assert not os.path.exists(os.path.join(cache, "bucket", project, "data", "v2", "a b.txt"))


def test_changed_big_object_is_refused(svc: Service, project: str,
                                       published: Dict[str, bytes], cache: str) -> None:
    target = os.path.join(_store_root(svc), project, "data", "v1", "big.bin")
    with open(target, "r+b") as handle:
        handle.seek(1 << 20)
        handle.write(b"X")
    with pytest.raises(HashMismatchError, match="md5 mismatch"):
        gypsum.save_file(project, "data", "v1", "big.bin", cache_dir=cache, url=svc.url)
    assert not os.path.exists(os.path.join(cache, "bucket", project, "data", "v1", "big.bin"))


class Hostile(BaseHTTPRequestHandler):
    """Serves a manifest whose paths try to leave the version directory."""

    manifest = b""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = (self.manifest if self.path.endswith("..manifest") else
                b'{"upload_user_id":"x","upload_start":"2024-01-01T00:00:00.000Z",'
                b'"upload_finish":"2024-01-01T00:00:01.000Z"}')
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize("manifest", [
    b'{"../../evil.txt": {"size": 1, "md5sum": "0cc175b9c0f1b6a831c399e269772661"}}',
    b'{"/etc/evil": {"size": 1, "md5sum": "0cc175b9c0f1b6a831c399e269772661"}}',
    b'{"a\\\\b": {"size": 1, "md5sum": "0cc175b9c0f1b6a831c399e269772661"}}',
    b'{"a": {"size": 1, "md5sum": "0cc175b9c0f1b6a831c399e269772661"}, '
    b'"a": {"size": 2, "md5sum": "0cc175b9c0f1b6a831c399e269772661"}}',
    b'{"a": {"size": -1, "md5sum": "0cc175b9c0f1b6a831c399e269772661"}}',
    b'{"a": {"size": 1, "md5sum": "not-an-md5"}}',
    b'{"a": {"size": 1, "md5sum": "0cc175b9c0f1b6a831c399e269772661", '
    b'"link": {"project": "..", "asset": "a", "version": "v", "path": "x"}}}',
])
def test_hostile_manifest_is_refused(manifest: bytes, cache: str, tmp_path: Path) -> None:
    handler = type("H", (Hostile,), {"manifest": manifest})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(GypsumError, match="refused|malformed|duplicate"):
            gypsum.save_version("p", "a", "v", cache_dir=cache,
                                url=f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    written = [f for f in _all_files(cache) if not f.endswith(("..manifest", "..summary", ".LOCK"))]
    assert written == []
    assert not os.path.exists(tmp_path / "evil.txt")


def test_protocol_checks() -> None:
    entry = {"size": 1, "md5sum": "0" * 32}
    files = protocol.check_manifest({"b": entry, "a/c": {**entry, "link": {
        "project": "p", "asset": "a", "version": "v0", "path": "x",
        "ancestor": {"project": "q", "asset": "b", "version": "v", "path": "y z"}}}},
        "here", "p", "a", "v")
    assert [(f.path, f.key, f.linked) for f in files] == [("a/c", "q/b/v/y z", True),
                                                          ("b", "p/a/v/b", False)]
    with pytest.raises(GypsumError, match="as a file and also"):
        protocol.check_manifest({"a": entry, "a/b": entry}, "here", "p", "a", "v")
    with pytest.raises(GypsumError, match="malformed"):
        protocol.check_manifest({"a": {"size": 1 << 60, "md5sum": "0" * 32}}, "w", "p", "a", "v")
    assert protocol.file_url("http://h", "p/a/v/a b+c#%é") == \
        "http://h/file/p%2Fa%2Fv%2Fa%20b%2Bc%23%25%C3%A9"
    assert protocol.route("http://h", "upload/start", "p q", "a/b", "v") == \
        "http://h/upload/start/p%20q/a%2Fb/v"
    for bad in ("", "..x", ".", "a/b", "a\\b", "a\0b"):
        assert protocol.name_problem(bad, "project")
    assert protocol.name_problem("v 1.0 (é)", "version") is None


# --------------------------------------------------------------------------
# Uploads: dedup flag, abort at the same URL, local checks
# --------------------------------------------------------------------------

def test_dedup_flag_is_not_inverted(svc: Service, project: str, tmp_path: Path) -> None:
    src = _files(str(tmp_path / "d"), {"x.txt": b"same bytes", "y.txt": b"other"})
    gypsum.upload_directory(src, project, "dd", "v1", url=svc.url, token=OWNER, cache_dir=None)
    init = gypsum.start_upload(project, "dd", "v2", files=["x.txt", "y.txt"], directory=src,
                               deduplicate=True, url=svc.url, token=OWNER)
    assert init["file_urls"] == []  # both deduplicated against v1
    gypsum.abort_upload(init)
    init = gypsum.start_upload(project, "dd", "v2", files=["x.txt", "y.txt"], directory=src,
                               deduplicate=False, url=svc.url, token=OWNER)
    assert sorted(f["path"] for f in init["file_urls"]) == ["x.txt", "y.txt"]
    gypsum.upload_files(init, directory=src)
    gypsum.complete_upload(init)
    manifest = gypsum.fetch_manifest(project, "dd", "v2", cache_dir=None, url=svc.url)
    assert all("link" not in e for e in manifest.values())


def test_failed_upload_aborts_at_the_same_url(svc: Service, project: str, proxy: Proxy,
                                              tmp_path: Path) -> None:
    src = _files(str(tmp_path / "d"), {"f.txt": b"payload"})
    proxy.fail = lambda method, path: 500 if method == "PUT" else None
    with pytest.raises(GypsumError, match="HTTP 500"):
        gypsum.upload_directory(src, project, "ab", "v1", url=proxy.url, token=OWNER,
                                cache_dir=None)
    assert any(s.startswith("POST /upload/abort/") for s in proxy.seen)
    # the project is unlocked and the version gone: the same upload now succeeds directly
    assert gypsum.list_versions(project, "ab", url=svc.url) == []
    assert gypsum.upload_directory(src, project, "ab", "v1", url=svc.url, token=OWNER,
                                   cache_dir=None)


def test_failed_abort_says_an_admin_must_unlock(svc: Service, project: str, proxy: Proxy,
                                                tmp_path: Path) -> None:
    src = _files(str(tmp_path / "d"), {"f.txt": b"payload"})
    proxy.fail = lambda method, path: 502 if method == "PUT" or "/abort/" in path else None
    with pytest.raises(GypsumError) as info:
        gypsum.upload_directory(src, project, "ab", "v1", url=proxy.url, token=OWNER,
                                cache_dir=None)
    message = str(info.value)
    assert "stays locked" in message and "administrator" in message and project in message
    with pytest.raises(GypsumError, match="locked"):
        gypsum.start_upload(project, "other", "v1", files=[], url=svc.url, token=OWNER)
    gypsum.unlock_project(project, url=svc.url, token=ADMIN)
    gypsum.remove_version(project, "ab", "v1", url=svc.url, token=ADMIN)
    assert gypsum.upload_directory(src, project, "ab", "v1", url=svc.url, token=OWNER,
                                   cache_dir=None)


def test_start_upload_local_checks(svc: Service, project: str, published: Dict[str, bytes],
                                   tmp_path: Path) -> None:
    with pytest.raises(GypsumError, match="already exists"):
        gypsum.start_upload(project, "data", "v1", files=[], url=svc.url, token=OWNER)
    assert gypsum.fetch_manifest(project, "data", "v1", cache_dir=None, url=svc.url)
    bad = [{"path": "..sneaky", "size": 1, "md5sum": "0" * 32}]
    with pytest.raises(GypsumError, match="'..'-prefixed"):
        gypsum.start_upload(project, "x", "v1", files=bad, url=svc.url, token=OWNER)
    with pytest.raises(GypsumError, match="project name"):
        gypsum.start_upload("..p", "x", "v1", files=[], url=svc.url, token=OWNER)
    mixed: List[Any] = ["a", {"path": "b", "size": 1, "md5sum": "0" * 32}]
    with pytest.raises(GypsumError, match="not a mix"):
        gypsum.start_upload(project, "x", "v1", files=mixed, url=svc.url, token=OWNER)


def test_file_changed_after_start_is_reported(svc: Service, project: str, tmp_path: Path) -> None:
    src = _files(str(tmp_path / "d"), {"f.txt": b"original"})
    init = gypsum.start_upload(project, "chg", "v1", files=["f.txt"], directory=src,
                               url=svc.url, token=OWNER)
    _files(src, {"f.txt": b"modified"})
    with pytest.raises(GypsumError, match="changed since start_upload"):
        gypsum.upload_files(init, directory=src)
    gypsum.abort_upload(init)


# --------------------------------------------------------------------------
# Administration
# --------------------------------------------------------------------------

def test_administration(svc: Service, tmp_path: Path) -> None:
    name = unique("admin p")  # a space: route names are percent-encoded
    until = datetime.datetime(2031, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc)
    gypsum.create_project(name, owners="owner-user",
                          uploaders=[{"id": "limited-user", "until": until}],
                          baseline=1000, growth_rate=0, year=2020, url=svc.url, token=ADMIN)
    perms = gypsum.fetch_permissions(name, url=svc.url)
    assert perms["uploaders"][0]["until"] == until
    gypsum.set_permissions(name, owners=["someone", "owner-user"],
                           uploaders=[{"id": "untrusted-user"}], url=svc.url, token=OWNER)
    perms = gypsum.fetch_permissions(name, url=svc.url)
    assert perms["owners"] == ["owner-user", "someone"]
    assert [u["id"] for u in perms["uploaders"]] == ["limited-user", "untrusted-user"]
    gypsum.set_permissions(name, owners=["owner-user"], uploaders=[], append=False,
                           url=svc.url, token=OWNER)
    assert gypsum.fetch_permissions(name, url=svc.url)["uploaders"] == []
    gypsum.set_quota(name, baseline=5, url=svc.url, token=ADMIN)
    assert gypsum.fetch_quota(name, url=svc.url) == {"baseline": 5, "growth_rate": 0,
                                                     "year": 2020}
    gypsum.set_quota(name, baseline=10 ** 9, url=svc.url, token=ADMIN)

    src = _files(str(tmp_path / "d"), {"f.txt": b"12345"})
    gypsum.upload_directory(src, name, "a", "v1", url=svc.url, token=OWNER, cache_dir=None)
    gypsum.upload_directory(src, name, "a", "v2", url=svc.url, token=OWNER, probation=True,
                            deduplicate=False, cache_dir=None)
    assert gypsum.fetch_latest(name, "a", url=svc.url) == "v1"
    gypsum.reject_probation(name, "a", "v2", url=svc.url, token=OWNER)
    assert gypsum.list_versions(name, "a", url=svc.url) == ["v1"]
    assert gypsum.refresh_usage(name, url=svc.url, token=ADMIN) == 5
    assert gypsum.refresh_latest(name, "a", url=svc.url, token=ADMIN) == "v1"
    assert gypsum.remove_version(name, "a", "v1", url=svc.url, token=ADMIN) is True
    assert gypsum.refresh_latest(name, "a", url=svc.url, token=ADMIN) is None
    assert gypsum.remove_asset(name, "a", url=svc.url, token=ADMIN) is True
    assert gypsum.remove_project(name, url=svc.url, token=ADMIN) is True
    with pytest.raises(GypsumNotFoundError):
        gypsum.fetch_usage(name, url=svc.url)


def test_public_s3_config_on_the_local_store_is_an_error(svc: Service) -> None:
    with pytest.raises(GypsumError, match="public_s3_config"):
        gypsum.public_s3_config(url=svc.url)


# --------------------------------------------------------------------------
# Tokens, offline
# --------------------------------------------------------------------------

def test_tokens_never_in_messages_or_logs(svc: Service, project: str, caplog: pytest.LogCaptureFixture,
                                          tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG, logger="artifacts_py")
    secret = "ghp_SuperSecretToken1234567890"
    with pytest.raises(GypsumError) as info:
        gypsum.create_project(unique("t"), owners=["x"], url=svc.url, token=secret)
    assert info.value.status == 401 and secret not in str(info.value)
    with pytest.raises(GypsumError) as info:
        gypsum.set_access_token(secret, github_url=svc.url, cache_dir=None)
    assert secret not in str(info.value)
    init = gypsum.start_upload(project, "tok", "v1", files=[], url=svc.url, token=OWNER)
    gypsum.abort_upload(init)
    with pytest.raises(GypsumError) as info:
        gypsum.complete_upload(init)  # the session is over
    assert init["session_token"] not in str(info.value)
    for text in (caplog.text, repr(info.value.args)):
        assert secret not in text and OWNER not in text and init["session_token"] not in text


def test_token_sources(svc: Service, project: str, monkeypatch: pytest.MonkeyPatch, cache: str) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "bad-token")
    monkeypatch.setenv("GYPSUM_TOKEN", OWNER)  # wins over GITHUB_TOKEN
    gypsum.set_permissions(project, owners=["x-user"], url=svc.url)
    monkeypatch.delenv("GYPSUM_TOKEN")
    with pytest.raises(GypsumError, match="HTTP 401"):
        gypsum.set_permissions(project, owners=["y-user"], url=svc.url)
    monkeypatch.delenv("GITHUB_TOKEN")
    with pytest.raises(GypsumError, match="needs a GitHub token"):
        gypsum.set_permissions(project, owners=["y-user"], url=svc.url)


def test_set_access_token(github: GitHubStandIn, monkeypatch: pytest.MonkeyPatch, cache: str) -> None:
    info = gypsum.set_access_token(OWNER, github_url=github.url, cache_dir=cache)
    assert info is not None and info["name"] == USERS[OWNER][0] and info["expires"] == float("inf")
    path = os.path.join(cache, "credentials", "token.txt")
    assert os.stat(path).st_mode & 0o777 == 0o600
    gypsum.set_access_token(None, cache_dir=None)  # forget the in-memory copy only
    assert gypsum.access_token(cache_dir=cache, request=False) == OWNER
    full = gypsum.access_token(full=True, cache_dir=cache)
    assert isinstance(full, dict) and full["name"] == USERS[OWNER][0]
    gypsum.set_access_token(None, cache_dir=cache)
    assert not os.path.exists(path)
    assert gypsum.access_token(cache_dir=cache, request=False) is None
    assert parse_expiry("2031-01-02 03:04:05 UTC") == datetime.datetime(
        2031, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc).timestamp()


def test_no_prompt_without_a_terminal(github: GitHubStandIn, cache: str) -> None:
    code = ("from artifacts_py import gypsum\n"
            "from artifacts_py.errors import GypsumError\n"
            "try:\n"
            f"    gypsum.access_token(cache_dir={cache!r})\n"
            "except GypsumError as e:\n"
            "    print('REFUSED', e)\n")
    run = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "BROWSER": "false"})
    assert run.stdout.startswith("REFUSED") and "not a terminal" in run.stdout, run.stderr
    assert "open" not in run.stderr


class DeviceLogin(BaseHTTPRequestHandler):
    """GitHub's two device-flow endpoints, as github.com answers them (pending once)."""

    polls: List[Dict[str, Any]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/login/device/code":
            reply = {"device_code": "dev-123", "user_code": "ABCD-1234", "interval": 0,
                     "verification_uri": "https://github.com/login/device", "expires_in": 60}
        else:
            self.polls.append(body)
            reply = ({"error": "authorization_pending"} if len(self.polls) == 1
                     else {"access_token": OWNER, "token_type": "bearer", "scope": "read:org"})
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_device_login_against_a_stand_in(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from artifacts_py.gypsum import auth

    server = ThreadingHTTPServer(("127.0.0.1", 0), DeviceLogin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(auth, "_POLL_SECONDS", 0.01)
    try:
        token = auth._device_login("client-id", f"http://127.0.0.1:{server.server_address[1]}",
                                   None)
    finally:
        server.shutdown()
        server.server_close()
    assert token == OWNER
    assert DeviceLogin.polls[-1]["device_code"] == "dev-123"
    assert "ABCD-1234" in capsys.readouterr().err
    assert auth._web_base("https://api.github.com") == "https://github.com"
    assert auth._web_base("https://ghe.example.org/api/v3") == "https://ghe.example.org"


def test_offline_refuses_before_any_socket(monkeypatch: pytest.MonkeyPatch, cache: str) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    monkeypatch.setenv("ARTIFACTS_PY_OFFLINE", "1")
    try:
        calls: List[Callable[[], object]] = [lambda: gypsum.list_projects(url=url),
                 lambda: gypsum.fetch_latest("p", "a", url=url),
                 lambda: gypsum.save_version("p", "a", "v", cache_dir=cache, url=url),
                 lambda: gypsum.create_project("p", owners=["x"], url=url, token="t"),
                 lambda: gypsum.fetch_metadata_database(cache_dir=cache, url=url)]
        for call in calls:
            with pytest.raises(OfflineError, match="ARTIFACTS_PY_OFFLINE"):
                call()
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody ever connected
    finally:
        listener.close()


def test_defaults_are_read_at_call_time(svc: Service, project: str, monkeypatch: pytest.MonkeyPatch,
                                        isolated_depot: Path) -> None:
    monkeypatch.setenv("ARTIFACTS_PY_GYPSUM_URL", svc.url)
    assert gypsum.rest_url() == svc.url
    assert project in gypsum.list_projects()
    assert gypsum.cache_directory() == os.path.join(str(isolated_depot), "gypsum")


# --------------------------------------------------------------------------
# Metadata index
# --------------------------------------------------------------------------

def _index(path: str) -> None:
    docs = [("café.json", {"title": "Café au lait", "org": "Ünïversity"}, 1),
            ("tea.json", {"title": "green tea", "org": "tea-house"}, 1),
            ("old.json", {"title": "old cafe", "org": "x"}, 0)]
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE versions (vid INTEGER PRIMARY KEY, project TEXT, asset TEXT, "
        "version TEXT, user TEXT, time REAL, latest INTEGER);"
        "CREATE TABLE paths (pid INTEGER PRIMARY KEY, vid INTEGER, path TEXT, metadata BLOB);"
        "CREATE TABLE tokens (tid INTEGER PRIMARY KEY, token TEXT UNIQUE);"
        "CREATE TABLE fields (fid INTEGER PRIMARY KEY, field TEXT UNIQUE);"
        "CREATE TABLE links (pid INTEGER, fid INTEGER, tid INTEGER);")
    for i, (name, doc, latest) in enumerate(docs, 1):
        conn.execute("INSERT INTO versions VALUES (?, 'p', 'a', ?, 'u', 0, ?)",
                     (i, f"v{i}", latest))
        conn.execute("INSERT INTO paths VALUES (?, ?, ?, ?)", (i, i, name, json.dumps(doc)))
        for field, value in doc.items():
            conn.execute("INSERT OR IGNORE INTO fields (field) VALUES (?)", (field,))
            for token in tokenize(value):
                conn.execute("INSERT OR IGNORE INTO tokens (token) VALUES (?)", (token,))
                conn.execute("INSERT INTO links SELECT ?, fid, tid FROM fields, tokens "
                             "WHERE field = ? AND token = ?", (i, field, token))
    conn.commit()
    conn.close()


def test_search_metadata_text(tmp_path: Path) -> None:
    path = str(tmp_path / "index.sqlite3")
    _index(path)
    search = gypsum.search_metadata_text
    q = gypsum.define_text_query

    def paths(query: Any, **kw: Any) -> List[str]:
        return sorted(r["path"] for r in search(path, query, include_metadata=False, **kw))

    assert paths("CAFÉ") == ["café.json"]  # diacritics removed as the indexer does
    assert paths("cafe", latest=False) == ["café.json", "old.json"]
    assert paths(["green", "tea"]) == ["tea.json"]
    assert paths(q("tea", field="org") | q("universite%", field="org", partial=True)) == []
    assert paths(q("tea-house", field="org") | q("ünïversity", field="org")) == \
        ["café.json", "tea.json"]  # OR of field clauses (gypsum_client's SQL fails here)
    assert paths(~q("tea")) == ["café.json"]
    assert paths(q("caf%", partial=True), latest=False) == ["café.json", "old.json"]
    assert paths("!!!") == ["café.json", "tea.json"]  # no token: no filter
    full = search(path, "green", latest=False)
    assert full[0]["metadata"] == {"title": "green tea", "org": "tea-house"}
    assert full[0]["latest"] == 1
    with pytest.raises(InvalidArgumentError):
        search(path, [])


def test_fetch_metadata_database_and_schema(http_server: FaultyServer, cache: str, tmp_path: Path) -> None:
    index = str(tmp_path / "src.sqlite3")
    _index(index)
    with open(index, "rb") as handle:
        db = handle.read()
    base = http_server.url("/release/")
    http_server.add("/release/modified", b"1718765000123")
    http_server.add("/release/bioconductor.sqlite3", db)
    gypsum.metadata.LAST_CHECK.update(req_time=None, mod_time=None)
    path = gypsum.fetch_metadata_database(cache_dir=cache, url=base)
    assert path == os.path.join(cache, "databases", "bioconductor.sqlite3")
    assert gypsum.search_metadata_text(path, "tea", include_metadata=False)
    with open(path, "wb") as handle:
        handle.write(b"stale")
    assert gypsum.fetch_metadata_database(cache_dir=cache, url=base) == path  # same stamp
    with open(path, "rb") as handle:
        assert handle.read() == b"stale"
    gypsum.fetch_metadata_database(cache_dir=cache, url=base, overwrite=True)
    with open(path, "rb") as handle:
        assert handle.read() == db
    with pytest.raises(GypsumError, match="404"):  # an error page is never saved
        gypsum.fetch_metadata_database("missing.sqlite3", cache_dir=cache, url=base)
    assert not os.path.exists(os.path.join(cache, "databases", "missing.sqlite3"))

    schema = {"type": "object", "required": ["title"],
              "properties": {"title": {"type": "string"}}, "additionalProperties": False}
    http_server.add("/pages/test/v1.json", json.dumps(schema).encode())
    spath = gypsum.fetch_metadata_schema("test/v1.json", cache_dir=cache,
                                         url=http_server.url("/pages/"))
    assert spath == os.path.join(cache, "schemas", "test", "v1.json")
    assert gypsum.validate_metadata({"title": "x"}, spath)
    assert gypsum.validate_metadata('{"title": "x"}', spath)
    with pytest.raises(ValueError, match="Metadata validation failed: .*title"):
        gypsum.validate_metadata({"nope": 1}, spath)


# --------------------------------------------------------------------------
# The S3 back end (SeaweedFS)
# --------------------------------------------------------------------------

def test_s3_back_end(github: GitHubStandIn, seaweed: SeaweedFS, tmp_path: Path, cache: str) -> None:
    from seaweed import ACCESS_KEY, SECRET_KEY

    process = start_service(github, s3_args(seaweed), ("--s3-public-read-key", ACCESS_KEY,
                                                        "--s3-public-read-secret", SECRET_KEY))
    try:
        _s3_round_trip(process.url, seaweed, tmp_path, cache)
    finally:
        process.stop()


def _s3_round_trip(url: str, seaweed: SeaweedFS, tmp_path: Path, cache: str) -> None:
    name = unique("s3client")
    gypsum.create_project(name, owners=["owner-user"], url=url, token=ADMIN)
    files = {"a b.txt": b"one", "ünï/#2.txt": os.urandom(2 << 20)}
    src = _files(str(tmp_path / "src"), files)
    gypsum.upload_directory(src, name, "a", "v1", url=url, token=OWNER, cache_dir=None)
    gypsum.upload_directory(src, name, "a", "v2", url=url, token=OWNER, cache_dir=None)
    out = gypsum.save_version(name, "a", "v2", cache_dir=cache, url=url)
    for rel, data in files.items():
        with open(os.path.join(out, *rel.split("/")), "rb") as handle:
            assert handle.read() == data
    creds = gypsum.public_s3_config(url=url, cache_dir=cache)
    assert creds["bucket"] == BUCKET and creds["endpoint"] == seaweed.endpoint
    assert os.path.isfile(os.path.join(cache, "credentials", "s3.json"))
    seaweed.client().put_object(  # type: ignore[no-untyped-call]
        Bucket=BUCKET, Key=f"{name}/a/v1/a b.txt", Body=b"two")
    other = str(tmp_path / "cache2")
    with pytest.raises(HashMismatchError, match="md5 mismatch"):
        gypsum.save_version(name, "a", "v1", cache_dir=other, url=url)
    assert not os.path.exists(os.path.join(other, "bucket", name, "a", "v1", "a b.txt"))
