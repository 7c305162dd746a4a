"""artifacts-gobbler under hostile or unusual input (issue 10, server side).

Every test talks to a real server process over real sockets: malformed
request lines, bad request bodies, idle and excess connections, and the
requests where the Go Gobbler's ``net/http`` answers differently from a
naive Python server. A hypothesis fuzz test throws random requests at it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artifacts_py.servers.gobbler.registry import go_json
from gobbler_helpers import GobblerFactory, RunningGobbler, parse_response


@pytest.fixture(scope="module")
def server(gobbler_factory: GobblerFactory) -> Iterator[RunningGobbler]:
    srv = gobbler_factory()
    (Path(srv.registry) / "hello.txt").write_bytes(b"hello")
    (Path(srv.registry) / "empty.txt").write_bytes(b"")
    (Path(srv.registry) / "caf\u00e9.txt").write_bytes(b"utf-8 name")
    yield srv
    srv.stop()  # (the factory's stop at the module's end then does nothing)
    # No handler may have died with a traceback on any request of this module.
    assert "Traceback" not in srv.stderr() and "_headers_buffer" not in srv.stderr()


# ---------------------------------------------------------------- point 4: request lines


@pytest.mark.parametrize("raw, status", [
    (b"garbage\r\n\r\n", 400),
    (b"GET /info\r\n\r\n", 400),  # HTTP/0.9
    (b"GET /info HTTP/9.9\r\nHost: x\r\n\r\n", 505),
    (b"GET /info HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET\r\n\r\n", 400),
    (b"GET /info HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400),
    (b"GET /info HTTP/1.x\r\nHost: x\r\n\r\n", 400),
    (b"GET  /info HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"G(T /info HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # a TLS hello
    (b"GET /info HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    (b"GET /info HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"POST /new/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"GET /info HTTP/1.1\r\n\r\n", 400),
    (b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /%zz HTTP/9.9\r\nHost: x\r\n\r\n", 400),  # Go checks the URL before the version
    (b"GET /info HTTP/9.9\r\n\r\n", 505),  # ... and the version before Host
    (b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /info HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n", 400),
    (b"GET /info HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
    (b"GET /info HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
    (b"GET /info HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 600 + b"\r\n", 431),
    (b"GET /info HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 70000 + b"\r\n\r\n", 431),
    (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /info HTTP/1.1\r\nHost: x\r\nExpect: tea\r\n\r\n", 417),
], ids=["garbage", "http09", "http99", "http20", "bare-method", "four-words", "bad-version",
        "double-space", "bad-method", "tls-hello", "bad-length", "two-lengths", "gzip-te",
        "no-host", "bad-escape", "bad-escape-http99", "http99-no-host", "control-char",
        "bad-header-name", "folded-header", "nul-in-header", "many-headers", "long-header",
        "star-get", "expect-tea"])
def test_malformed_request_line_gets_an_answer(server: RunningGobbler, raw: bytes,
                                               status: int) -> None:
    got, headers, body = parse_response(server.exchange(raw))
    assert got == status
    assert headers["connection"] == "close"
    if status != 417:  # Go's 417 is bare
        assert headers["content-type"] == "text/plain; charset=utf-8"
        # Go's bodies: "400 Bad Request", "505 HTTP Version Not Supported: ...", one odd one.
        assert body.startswith(str(status).encode()) or body == b"Unsupported transfer encoding"
    server.assert_serving()


# ---------------------------------------------------------------- point 5: bad names and bodies


def assert_plain_400(status: int, headers: Dict[str, str], body: bytes) -> str:
    assert status == 400, body
    assert headers["content-type"] == "application/json"
    reply = json.loads(body)
    assert reply["status"] == "ERROR"
    reason = reply["reason"]
    for leak in ("Error:", "Exception", "sys.set_int_max_str_digits", "Traceback"):
        assert leak not in reason
    return str(reason)


def test_nul_in_request_name_is_a_400(server: RunningGobbler) -> None:
    assert_plain_400(*server.raw_request("POST", b"/new/request-health_check-a%00b"))
    server.assert_serving()


@pytest.mark.parametrize("raw, says", [
    (b'{"project": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "failed to parse JSON"),
    (b'{"project": "x", "deep": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001,
     "failed to parse JSON"),
    (b'{"project": "' + b"9" * 5000 + b'x", "n": ' + b"1" * 5000 + b"}", "failed to parse JSON"),
    (b'{"project": "\\ud800x"}', "project"),
    (b'{"project": "a\\u0000b"}', "project"),
    (b'{"project": "p", "permissions": {"owners": ["\\udfff"]}}', "surrogate"),
], ids=["nested-array", "nested-object", "huge-int", "lone-surrogate", "nul-in-name",
        "surrogate-in-owner"])
def test_bad_request_bodies_are_plain_400s(server: RunningGobbler, raw: bytes, says: str) -> None:
    reason = assert_plain_400(*server.post_request_file("create_project", raw))
    assert says in reason
    server.assert_serving()


@pytest.mark.parametrize("body", [
    {"source": "a\u0000b", "project": "p", "asset": "a", "version": "v"},
    {"source": "\udc80", "project": "p", "asset": "a", "version": "v"},
], ids=["nul-source", "surrogate-source"])
def test_bad_strings_anywhere_in_an_upload_are_400s(server: RunningGobbler,
                                                    body: Dict[str, str]) -> None:
    raw = json.dumps(body).encode()
    assert_plain_400(*server.post_request_file("upload", raw))
    server.assert_serving()


# ---------------------------------------------------------------- point 9: connections


def _read_one_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "server closed before answering"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536)
    return data


def _timed_info(srv: RunningGobbler) -> float:
    start = time.perf_counter()
    srv.assert_serving()
    return time.perf_counter() - start


def test_idle_keep_alive_connection_is_closed(gobbler_factory_fn: GobblerFactory) -> None:
    srv = gobbler_factory_fn("-idle-timeout", "1")
    with srv.connect() as sock:
        sock.settimeout(20)
        sock.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in _read_one_response(sock)
        start = time.perf_counter()
        assert sock.recv(1) == b""  # the server hangs up on its own
        waited = time.perf_counter() - start
    print(f"idle connection closed after {waited:.2f} s (idle timeout 1 s)")
    assert 0.5 < waited < 15
    srv.assert_serving()


@pytest.mark.parametrize("extra, opened, limit", [((), 1000, 256),
                                                  (("-max-connections", "16"), 100, 16)],
                         ids=["default", "flag"])
def test_idle_connections_are_bounded(gobbler_factory_fn: GobblerFactory, extra: Tuple[str, ...],
                                      opened: int, limit: int) -> None:
    srv = gobbler_factory_fn(*extra)
    socks: List[socket.socket] = []
    try:
        for _ in range(opened):
            socks.append(srv.connect())
        # Answered after every connection above was accepted (the accept queue is FIFO).
        latency = _timed_info(srv)
        threads = srv.threads()
        print(f"{opened} idle connections, limit {limit}: {threads} server threads, "
              f"new request answered in {latency * 1000:.1f} ms")
        assert threads <= limit + 8
        assert latency < 10
    finally:
        for sock in socks:
            sock.close()


def test_large_download_is_complete(server: RunningGobbler) -> None:
    big = Path(server.registry) / "big.bin"
    with open(big, "wb") as handle:
        handle.truncate(64 << 20)  # sparse: the kernel sends zeros without disk I/O
    status, headers, body = server.raw_request("GET", b"/fetch/big.bin")
    assert status == 200 and len(body) == 64 << 20 and headers["content-length"] == str(64 << 20)


def test_stalled_download_is_dropped(gobbler_factory_fn: GobblerFactory) -> None:
    srv = gobbler_factory_fn("-idle-timeout", "1")
    with open(Path(srv.registry) / "big.bin", "wb") as handle:
        handle.truncate(256 << 20)
    idle_threads = srv.threads()
    with srv.connect() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /fetch/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 30
        while srv.threads() <= idle_threads:  # the download has begun
            assert time.monotonic() < deadline, "the download never started"
            time.sleep(0.01)
        start = time.monotonic()
        while srv.threads() > idle_threads:  # ... and is given up while we do not read
            assert time.monotonic() < deadline, "the stalled download kept its thread"
            time.sleep(0.01)
        print(f"stalled download dropped {time.monotonic() - start:.2f} s after it began")
    srv.assert_serving()


def test_new_request_is_prompt_with_200_idle_connections(server: RunningGobbler) -> None:
    socks: List[socket.socket] = []
    try:
        for _ in range(200):
            sock = server.connect()
            sock.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")  # then keep it idle
            _read_one_response(sock)
            socks.append(sock)
        latencies = [_timed_info(server) for _ in range(20)]
        print(f"200 idle keep-alive connections: new request median "
              f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
        assert max(latencies) < 5
    finally:
        for sock in socks:
            sock.close()


# ---------------------------------------------------------------- point 10: like Go


@pytest.mark.parametrize("byte_range", ["bytes=0-0", "bytes=0-", "bytes=5-9"])
def test_range_on_an_empty_file_is_a_200(server: RunningGobbler, byte_range: str) -> None:
    status, headers, body = server.raw_request("GET", b"/fetch/empty.txt", {"Range": byte_range})
    assert (status, body, headers["content-length"]) == (200, b"", "0")
    # A range that does not overlap a non-empty file stays a 416, as in Go.
    status, headers, _ = server.raw_request("GET", b"/fetch/hello.txt", {"Range": "bytes=9-"})
    assert status == 416 and headers["content-range"] == "bytes */5"


def test_raw_utf8_path_is_served(server: RunningGobbler) -> None:
    for target in (b"/fetch/caf\xc3\xa9.txt", b"/fetch/caf%C3%A9.txt"):
        status, _, body = server.raw_request("GET", target)
        assert (status, body) == (200, b"utf-8 name")


@pytest.mark.parametrize("target", [b"/fetch/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                                    b"/fetch/%2Fetc%2Fpasswd", b"/fetch/%2e%2e%2f%2e%2e%2fetc/passwd"])
def test_encoded_dot_segments_are_404_not_redirects(server: RunningGobbler, target: bytes) -> None:
    status, headers, body = server.raw_request("GET", target)
    assert status == 404 and "location" not in headers
    assert body == b"404 page not found\n"


@pytest.mark.parametrize("target", [b"/fetch/%2e%2e/hello.txt", b"/fetch/.%2e/hello.txt",
                                    b"/fetch/sub%2f..%2fhello.txt"])
def test_encoded_dot_segments_stay_inside_the_registry(server: RunningGobbler,
                                                       target: bytes) -> None:
    # Like Go's FileServer: the decoded path is cleaned inside the registry.
    status, _, body = server.raw_request("GET", target)
    assert (status, body) == (200, b"hello")


@pytest.mark.parametrize("target, location", [(b"//fetch/hello.txt", "/fetch/hello.txt"),
                                              (b"//info", "/info"),
                                              (b"/fetch//hello.txt", "/fetch/hello.txt"),
                                              (b"/fetch/./hello.txt?x=1", "/fetch/hello.txt?x=1")])
def test_unclean_paths_redirect(server: RunningGobbler, target: bytes, location: str) -> None:
    status, headers, _ = server.raw_request("GET", target)
    assert status == 301 and headers["location"] == location


def test_prefix_unprefixed_paths_are_405(gobbler_factory_fn: GobblerFactory) -> None:
    srv = gobbler_factory_fn("-prefix", "api/v1")
    for method, target in (("GET", b"/info"), ("HEAD", b"/fetch/x"), ("GET", b"/"),
                           ("POST", b"/new/request-x-1"), ("DELETE", b"/list")):
        status, headers, _ = srv.raw_request(method, target)
        assert (status, headers["allow"]) == (405, "OPTIONS"), target
    status, headers, _ = srv.raw_request("GET", b"/api/v1")
    assert status == 301 and headers["location"] == "/api/v1/"
    status, _, body = srv.raw_request("GET", b"/api/v1/info")
    assert status == 200 and json.loads(body)["registry"] == srv.registry
    status, _, _ = srv.raw_request("OPTIONS", b"/anything")
    assert status == 204


def test_log_files_use_go_key_order(server: RunningGobbler, tmp_path: Path) -> None:
    status, _, body = server.post_request_file("create_project", b'{"project": "logs"}')
    assert status == 200, body
    source = Path(server.staging) / "src-logs"
    source.mkdir()
    (source / "f.txt").write_text("x")
    before = set(os.listdir(Path(server.registry) / "..logs"))
    status, _, body = server.post_request_file("upload", json.dumps(
        {"source": "src-logs", "project": "logs", "asset": "a", "version": "v1"}).encode())
    assert status == 200, body
    (new,) = set(os.listdir(Path(server.registry) / "..logs")) - before
    text = (Path(server.registry) / "..logs" / new).read_text()
    # Go marshals a map[string]interface{}: keys sorted.
    assert text == go_json({"asset": "a", "latest": True, "project": "logs",
                            "type": "add-version", "version": "v1"})


def test_upload_stops_when_the_client_disconnects(server: RunningGobbler) -> None:
    status, _, body = server.post_request_file("create_project", b'{"project": "gone"}')
    assert status == 200, body
    source = Path(server.staging) / "src-gone"
    for d in range(50):
        (source / f"d{d}").mkdir(parents=True)
        for f in range(100):
            (source / f"d{d}" / f"f{f}").write_bytes(b"%d/%d" % (d, f) * 100)
    name = f"request-upload-{time.monotonic_ns()}"
    (Path(server.staging) / name).write_text(json.dumps(
        {"source": "src-gone", "project": "gone", "asset": "a", "version": "v1"}))
    version_dir = Path(server.registry) / "gone" / "a" / "v1"
    with server.connect() as sock:
        sock.sendall(f"POST /new/{name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        deadline = time.monotonic() + 60
        while not version_dir.exists():  # the upload has begun
            assert time.monotonic() < deadline, "the upload never started"
            time.sleep(0.005)
    # A second upload to the asset waits for its lock, so it ends after the first.
    small = Path(server.staging) / "src-small"
    small.mkdir()
    (small / "x").write_text("x")
    status, _, body = server.post_request_file("upload", json.dumps(
        {"source": "src-small", "project": "gone", "asset": "a", "version": "v2"}).encode())
    assert status == 200, body
    assert not version_dir.exists()  # abandoned and cleaned up, not published
    assert len(list(source.rglob("f*"))) == 5000  # the source is untouched
    assert json.loads((Path(server.registry) / "gone" / "..usage").read_text())["total"] == 1


# ---------------------------------------------------------------- fuzz


_METHODS = st.sampled_from(["GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE", "get", "G\x00T",
                            "", "BREW"])
_TARGETS = st.one_of(
    st.sampled_from(["/", "/info", "/list", "/list?path=..", "/list?recursive=true",
                     "/fetch/", "/fetch/hello.txt", "/fetch", "/new/", "/new/request-x-1",
                     "/new/request-health_check-zz", "*", "http://h/info", "//x", "/%zz"]),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=40),
)
_VERSIONS = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/0.9", "HTTP/2.0", "HTTP/1.", "http/1.1",
                             "HTTP/1.1 ", "", "HTTP/11.1"])
_HEADER = st.tuples(
    st.sampled_from(["Host", "Range", "Content-Length", "Transfer-Encoding", "Connection",
                     "If-Modified-Since", "If-Range", "Expect", "X-\x01", " Host", "Host "]),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0xFF), max_size=30),
)


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(method=_METHODS, target=_TARGETS, version=_VERSIONS,
       headers=st.lists(_HEADER, max_size=5), body=st.binary(max_size=64),
       sep=st.sampled_from([" ", "\t", "  "]), eol=st.sampled_from(["\r\n", "\n"]))
def test_fuzz_request_parser(server: RunningGobbler, method: str, target: str, version: str,
                             headers: List[Tuple[str, str]], body: bytes, sep: str,
                             eol: str) -> None:
    line = sep.join(part for part in (method, target, version) if part)
    if not line.strip("\r\n"):
        line = "X"  # an empty request line is a silent close, for Go too
    raw = (line + eol).encode("utf-8", "surrogateescape")
    for key, value in headers:
        raw += (key + ": " + value).replace("\r", "").replace("\n", "").encode("latin-1") \
            + eol.encode()
    raw += eol.encode() + body
    status, _, reply = parse_response(server.exchange(raw))
    assert 100 <= status <= 599
    if status == 500:  # only /list of a missing path, as in Go (§4.3)
        assert json.loads(reply)["reason"].startswith("failed to obtain a directory listing")


def test_server_survives_the_fuzzing(server: RunningGobbler) -> None:
    server.assert_serving()


# ---------------------------------------------------------------- in-process server


def test_serve_in_thread_runs_the_daily_purge(tmp_path: Path) -> None:
    import threading

    from artifacts_py.servers.gobbler.launch import serve_in_thread, stop_gobbler

    def purge_threads() -> List[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "gobbler-purge"]

    (tmp_path / "staging").mkdir()
    (tmp_path / "registry").mkdir()
    before = purge_threads()
    new, _, _, _ = serve_in_thread(str(tmp_path / "staging"), str(tmp_path / "registry"))
    try:
        assert new
        (purger,) = set(purge_threads()) - set(before)
        assert purger.is_alive()
    finally:
        stop_gobbler()
    purger.join(10)
    assert not purger.is_alive()
