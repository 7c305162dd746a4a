"""The fast path of ``GET /file`` on the local store answers exactly as the general path.

Over real sockets to a real ``artifacts-gypsum``: the response head of a plain
GET (fast path) is compared line for line with HEAD and with GETs the fast
path leaves to the general path (a trailing slash, a query, HTTP/1.0); pipelined
requests on one connection, ``Connection: close``, a large body (sendfile)
and an object changed in the store after it was served.
"""

from __future__ import annotations

import os
import socket
from typing import BinaryIO, Dict, Iterator, List, Tuple
from urllib.parse import quote

import pytest

from gypsum_fixtures import (  # noqa: F401 (fixtures)
    Api, github, md5_hex, start_service, unique,
)

LARGE = os.urandom(200 << 10)  # over the single-write limit: headers, then sendfile


@pytest.fixture(scope="module")
def service(github, tmp_path_factory) -> Iterator[Tuple[Api, str, str]]:
    """A local-store service, its store directory and a project with one version."""
    store = tmp_path_factory.mktemp("fastfile-store")
    process = start_service(github, ["--store", str(store)])
    api, p = Api(process.url), unique("fast")
    api.create(p)
    api.upload(p, "a", "v1", {"small é #%.txt": b"hello", "big.bin": LARGE,
                              "changing.txt": b"hello"})
    yield api, str(store), p
    process.stop()


def connect(api: Api) -> Tuple[socket.socket, BinaryIO]:
    host, port = api.url.split("//", 1)[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    return sock, sock.makefile("rb")


def response(reader: BinaryIO, head_only: bool = False) -> Tuple[List[str], bytes]:
    """One response: its status and header lines (in order) and its body."""
    lines = []
    while True:
        line = reader.readline()
        assert line, "the server closed the connection before answering"
        if line == b"\r\n":
            break
        lines.append(line.decode("latin-1").rstrip("\r\n"))
    fields: Dict[str, str] = dict(x.split(": ", 1) for x in lines[1:])  # type: ignore[misc]
    body = b"" if head_only else reader.read(int(fields.get("Content-Length", "0")))
    return lines, body


def exchange(api: Api, request: bytes, head_only: bool = False) -> Tuple[List[str], bytes]:
    sock, reader = connect(api)
    try:
        sock.sendall(request)
        return response(reader, head_only)
    finally:
        reader.close()
        sock.close()


def without_date(lines: List[str]) -> List[str]:
    return [x for x in lines if not x.startswith("Date: ")]


def target(key: str) -> str:
    return "/file/" + quote(key, safe="")


@pytest.mark.parametrize("name", ["small é #%.txt", "big.bin", "..summary", "..manifest"])
def test_fast_get_has_the_general_paths_headers(service, name):
    api, _, p = service
    path = target(f"{p}/a/v1/{name}")
    fast, body = exchange(api, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head, _ = exchange(api, f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), head_only=True)
    slash, body_slash = exchange(api, f"GET {path}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    query, body_query = exchange(api, f"GET {path}?x=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    old, body_old = exchange(api, f"GET {path} HTTP/1.0\r\n\r\n".encode())
    assert fast[0] == "HTTP/1.1 200 OK"
    assert without_date(fast) == without_date(head) == without_date(slash) == \
        without_date(query) == without_date(old)
    assert [x.split(":")[0] for x in fast] == [
        "HTTP/1.1 200 OK", "Server", "Date", "Access-Control-Allow-Origin",
        *(["Content-Type"] if name.startswith("..") else []),
        "ETag", "Last-Modified", "Content-Length"]
    assert body == body_slash == body_query == body_old == api.file(f"{p}/a/v1/{name}").data
    assert f'ETag: "{md5_hex(body)}"' in fast
    if name == "big.bin":
        assert body == LARGE


def test_pipelined_requests_and_connection_close(service):
    """Requests sent in one write are answered in order, fast and general paths mixed."""
    api, _, p = service
    small, big = target(f"{p}/a/v1/small é #%.txt"), target(f"{p}/a/v1/big.bin")
    sock, reader = connect(api)
    try:
        sock.sendall((f"GET {small} HTTP/1.1\r\nHost: x\r\n\r\n"
                      f"GET {target(p + '/a/v1/missing')} HTTP/1.1\r\nHost: x\r\n\r\n"
                      f"GET {big} HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n"
                      f"HEAD {small} HTTP/1.1\r\nHost: x\r\n\r\n"
                      f"GET {small} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").encode())
        got = [response(reader), response(reader), response(reader),
               response(reader, head_only=True), response(reader)]
        assert [lines[0] for lines, _ in got] == ["HTTP/1.1 200 OK", "HTTP/1.1 404 Not Found",
                                                  "HTTP/1.1 200 OK", "HTTP/1.1 200 OK",
                                                  "HTTP/1.1 200 OK"]
        assert got[0][1] == got[4][1] == b"hello" and got[2][1] == LARGE
        assert b'"object not found"' in got[1][1]
        assert reader.read(1) == b""  # closed after the last answer, as asked
    finally:
        reader.close()
        sock.close()


def test_an_object_changed_in_the_store_is_served_as_it_is_now(service):
    """The cached headers follow the file: new bytes, new ETag and Last-Modified."""
    api, store, p = service
    key = f"{p}/a/v1/changing.txt"
    before = api.file(key)
    path = os.path.join(store, *key.split("/"))
    os.chmod(path, 0o644)
    with open(path, "r+b") as handle:  # same size, same inode: only the times tell
        handle.write(b"HELLO")
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    after = api.file(key)
    assert after.data == b"HELLO" and before.data == b"hello"
    assert after.headers["ETag"] == f'"{md5_hex(b"HELLO")}"' != before.headers["ETag"]
    assert after.headers["Last-Modified"] != before.headers["Last-Modified"]
    os.unlink(path)
    gone = api.file(key)
    assert gone.status == 404 and b"object not found" in gone.data
