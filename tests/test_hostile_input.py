"""Hostile or broken input on the client side: every case is a clear error, never a traceback.

Real servers that misbehave (a TCP server speaking SSH, one sending 200
headers, one redirecting to file://), real registries with damaged
manifests, real Artifacts.toml files with broken URLs (issue 10).
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

import artifacts_py
from artifacts_py import gobbler
from artifacts_py.binding import bind_artifact
from artifacts_py.errors import ArtifactsTomlError, InstallError
from gobbler_fixtures import make_sample

PROJECT = "hostile"
TREE = "a" * 40


class _RawServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def raw_server() -> Iterator[Callable[[bytes], str]]:
    """``start(reply)``: a TCP server that answers every connection with ``reply`` bytes."""
    servers = []

    def start(reply: bytes) -> str:
        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    self.request.recv(65536)
                    self.request.sendall(reply)
                except OSError:
                    pass

        srv = _RawServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _toml_with_mirror(tmp_path: Path, url: str) -> Path:
    toml = tmp_path / "Artifacts.toml"
    toml.write_text(f'[Data]\ngit-tree-sha1 = "{TREE}"\n\n    [[Data.download]]\n'
                    f'    url = "{url}"\n    sha256 = "{"b" * 64}"\n')
    return toml


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:notaport/x.tar.gz",
                                 "https:///x.tar.gz"])
def test_unparseable_mirror_url_is_a_malformed_file_error(tmp_path, url):
    toml = _toml_with_mirror(tmp_path, url)
    for call in (lambda: artifacts_py.artifact("Data", toml),
                 lambda: artifacts_py.load_artifacts(toml)["Data"],
                 lambda: artifacts_py.ensure_artifact_installed("Data", toml),
                 lambda: artifacts_py.ensure_all_artifacts_installed(toml)):
        with pytest.raises(ArtifactsTomlError) as exc:
            call()
        msg = str(exc.value)
        assert str(toml) in msg and "'Data'" in msg and "download[1].url" in msg, msg


@pytest.mark.parametrize("reply", [
    b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n",
    b"\x00\x01\x02 not http at all\r\n\r\n",
], ids=["ssh", "200-headers", "binary"])
def test_a_server_that_does_not_speak_http_gets_a_plain_message(tmp_path, raw_server, reply,
                                                                monkeypatch):
    monkeypatch.setenv("ARTIFACTS_PY_RETRIES", "1")
    url = raw_server(reply) + "/x.tar.gz"
    toml = _toml_with_mirror(tmp_path, url)
    with pytest.raises(InstallError) as exc:
        artifacts_py.artifact("Data", toml)
    msg = str(exc.value)
    assert url in msg
    for leak in ("BadStatusLine", "HTTPException", "object at 0x", "ConnectionPool",
                 "('Connection aborted.'", "Traceback"):
        assert leak not in msg, msg


def test_a_redirect_to_a_file_url_is_refused_plainly(tmp_path, raw_server):
    url = raw_server(b"HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\n"
                     b"Content-Length: 0\r\n\r\n") + "/x.tar.gz"
    toml = _toml_with_mirror(tmp_path, url)
    with pytest.raises(InstallError) as exc:
        artifacts_py.artifact("Data", toml)
    msg = str(exc.value)
    assert "No host specified" not in msg and "root:" not in msg
    assert "HTTP 302" in msg or "redirect" in msg, msg


@pytest.fixture(scope="module")
def gob(gobbler_factory):
    server = gobbler_factory()
    gobbler.create_project(PROJECT, staging=server.staging, url=server.url)
    return server


def _damaged_version(gob, tmp_path: Path, version: str, manifest: bytes) -> None:
    src = make_sample(tmp_path / f"src-{version}", {"a/b.txt": b"b\n", "c.txt": b"c\n"})
    gobbler.upload_directory(PROJECT, f"dmg-{version}", "v1", str(src), gob.staging, gob.url)
    path = Path(gob.registry, PROJECT, f"dmg-{version}", "v1", "..manifest")
    path.chmod(0o644)
    path.write_bytes(manifest)


DEEP = b"[" * 200_000 + b"]" * 200_000
A_AND_A_B = json.dumps({"a": {"size": 2, "md5sum": "0" * 32},
                        "a/b.txt": {"size": 2, "md5sum": "0" * 32}}).encode()


@pytest.mark.parametrize("version,manifest,expect", [
    ("deep", DEEP, "not valid JSON"),
    ("prefix", A_AND_A_B, "as a file and also"),
    ("notjson", b"\xff\xfe garbage", "not valid JSON"),
    ("list", b"[1, 2, 3]", "not a JSON object"),
], ids=["deep", "prefix", "notjson", "list"])
def test_damaged_manifest_names_the_version_and_source(gob, tmp_path, monkeypatch, version,
                                                       manifest, expect):
    _damaged_version(gob, tmp_path, version, manifest)
    toml = tmp_path / "Artifacts.toml"
    for where in ({"url": gob.url}, {"registry": gob.registry}):
        bind_artifact(toml, "D", TREE, gobbler={"project": PROJECT, "asset": f"dmg-{version}",
                                                "version": "v1", **where}, force=True)
        with pytest.raises(InstallError) as exc:
            artifacts_py.artifact("D", toml)
        msg = str(exc.value)
        assert expect in msg and f"{PROJECT}/dmg-{version}/v1" in msg, msg
        assert "RecursionError" not in msg and "Errno" not in msg
        assert artifacts_py.depot.installed_hashes() == []


# ------------------------------------------------------------- manifest fuzzing

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) |
    st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=25)
_ENTRY = st.fixed_dictionaries({"size": st.integers(-5, 2**64) | st.text(max_size=3),
                                "md5sum": st.sampled_from(["", "0" * 32, "G" * 32, "abc"]) |
                                st.text(max_size=40)},
                               optional={"link": _JSON})
_PATHS = st.text(alphabet="ab/.\\\0 %#\u00e9", min_size=0, max_size=12)
_MANIFESTS = st.dictionaries(_PATHS, _ENTRY | _JSON, max_size=6) | _JSON


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(manifest=_MANIFESTS)
def test_manifest_checks_accept_or_refuse_cleanly(manifest):
    """Any JSON value: the Gobbler and gypsum manifest checks return plain paths or raise
    the registry's own error, never anything else."""
    from artifacts_py.errors import GobblerError, GypsumError
    from artifacts_py.gobbler.protocol import check_manifest as gobbler_check
    from artifacts_py.gypsum.protocol import check_manifest as gypsum_check

    try:
        files, empty = gobbler_check(manifest, "p/a/v")
    except GobblerError:
        pass
    else:
        for rel in [f.path for f in files] + empty:
            assert not rel.startswith("/") and ".." not in rel.split("/") and "\0" not in rel
    try:
        entries = gypsum_check(manifest, "p/a/v", "p", "a", "v")
    except GypsumError:
        pass
    else:
        for e in entries:
            assert not e.path.startswith("/") and ".." not in e.path.split("/")
            assert "\\" not in e.path and e.key.count("/") >= 3


@settings(max_examples=200, deadline=None, derandomize=True)
@given(data=st.binary(max_size=200) | st.builds(lambda n: b"[" * n, st.integers(0, 300_000)))
def test_manifest_bytes_parse_or_give_the_registry_error(data):
    from artifacts_py.errors import GobblerError, GypsumError
    from artifacts_py.gobbler.protocol import parse_manifest
    from artifacts_py.gypsum.protocol import loads_unique

    for parse, error in ((lambda b: parse_manifest(b, "p/a/v"), GobblerError),
                         (lambda b: loads_unique(b, "p/a/v"), GypsumError)):
        try:
            parse(data)
        except error as e:
            assert "p/a/v" in str(e)


def test_a_tree_1000_folders_deep_is_viewed_hashed_and_sized_without_recursion(tmp_path):
    import sys

    from artifacts_py import depot
    from artifacts_py.publish import gobbler_view, hash_view
    from artifacts_py.publish_gypsum import gypsum_view

    from artifacts_py.files import remove_tree

    root = tmp_path / "deep"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1000):  # one level at a time: pathlib's mkdir(parents=True) recurses
        os.mkdir("d", dir_fd=fd)
        deeper = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    out = os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(out, b"at the bottom\n")
    os.close(out)
    os.close(fd)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(150)
    try:
        for view in (gobbler_view(root), gypsum_view(root)):
            assert list(view) == ["d/" * 1000 + "bottom.txt"]
            tree, sums = hash_view(view)
        assert tree == artifacts_py.compute_git_tree_sha1(root)
        assert depot.tree_size(root) == len(b"at the bottom\n")
        remove_tree(root)  # and pytest's own clean-up would recurse
        assert not root.exists()
    finally:
        sys.setrecursionlimit(old)
