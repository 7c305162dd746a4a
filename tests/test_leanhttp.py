"""The lean GET of small files (artifacts_py.leanhttp) against a real scripted server.

The server is a TCP listener on 127.0.0.1 that answers each request with the
next raw answer of its script, byte for byte, so every odd answer a real
server could give is on the wire as given. It records each request and how
many connections were opened.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
from typing import List, Optional, Sequence, Union

import pytest

from artifacts_py.leanhttp import LeanConnection

Answer = Union[bytes, Sequence[bytes]]  # pieces are sent one by one


class ScriptedServer:
    """Answers request i with ``answers[i]``; closes a connection after an answer that
    says ``Connection: close`` or is HTTP/1.0 without keep-alive."""

    def __init__(self, answers: Sequence[Answer], tls: Optional[ssl.SSLContext] = None) -> None:
        self.answers, self.tls = list(answers), tls
        self.requests: List[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            try:
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)
            except OSError:  # the client refused our certificate
                conn.close()
                continue
            with conn:
                self._talk(conn)

    def _talk(self, conn: socket.socket) -> None:
        data = b""
        while self.answers:
            while b"\r\n\r\n" not in data:
                more = conn.recv(65536)
                if not more:
                    return
                data += more
            request, _, data = data.partition(b"\r\n\r\n")
            self.requests.append(request)
            answer = self.answers.pop(0)
            pieces = [answer] if isinstance(answer, bytes) else list(answer)
            for piece in pieces:
                conn.sendall(piece)
            head = b"".join(pieces).split(b"\r\n\r\n")[0].lower()
            if b"connection: close" in head or (head.startswith(b"http/1.0")
                                                and b"keep-alive" not in head):
                return

    def connection(self) -> LeanConnection:
        return LeanConnection("127.0.0.1", self.port, {"User-Agent": "test"},
                              connect_timeout=5, read_timeout=5)

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept (close does not)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(timeout=5)


def ok(body: bytes, extra: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return (version + b" 200 OK\r\nContent-Length: %d\r\n" % len(body) + extra + b"\r\n" + body)


@pytest.fixture
def scripted():
    servers: List[ScriptedServer] = []

    def make(answers: Sequence[Answer], tls: Optional[ssl.SSLContext] = None) -> ScriptedServer:
        servers.append(ScriptedServer(answers, tls))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_two_gets_share_one_connection_and_send_a_plain_request(scripted):
    server = scripted([ok(b"a" * 10), ok(b"b" * 20)])
    conn = server.connection()
    assert conn.get("/x/a.bin", 10) == b"a" * 10
    assert conn.get("/x/b.bin", 20) == b"b" * 20
    conn.close()
    assert server.connections == 1
    assert server.requests[0].split(b"\r\n") == [b"GET /x/a.bin HTTP/1.1",
                                                  b"Host: 127.0.0.1:%d" % server.port,
                                                  b"User-Agent: test"]


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\nhello",                                        # no length
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n folded\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello",
    b"HTTP/2 200\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello, and more",           # longer than said
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhel",  # cut short
    b"HTTP/1.1 200 OK\r\nX-Long: " + b"x" * 20000 + b"\r\n\r\n",
])
def test_anything_unusual_gives_none_and_the_next_get_reconnects(scripted, answer):
    server = scripted([answer, ok(b"hello")])
    conn = server.connection()
    assert conn.get("/f", 5) is None
    assert conn.sock is None  # state unknown: closed
    assert conn.get("/f", 5) == b"hello"
    conn.close()
    assert server.connections == 2


def test_a_length_other_than_the_manifest_size_is_refused(scripted):
    server = scripted([ok(b"hello"), ok(b"hello")])
    conn = server.connection()
    assert conn.get("/f", 4) is None
    assert conn.get("/f", 5) == b"hello"
    conn.close()


@pytest.mark.parametrize("version, extra, reconnects", [
    (b"HTTP/1.0", b"", True), (b"HTTP/1.0", b"Connection: keep-alive\r\n", False),
    (b"HTTP/1.1", b"Connection: close\r\n", True)])
def test_a_closing_answer_is_read_then_the_next_get_reconnects(scripted, version, extra,
                                                                reconnects):
    server = scripted([ok(b"one", extra, version), ok(b"two")])
    conn = server.connection()
    assert conn.get("/1", 3) == b"one"
    assert conn.get("/2", 3) == b"two"
    conn.close()
    assert server.connections == (2 if reconnects else 1)


def test_a_body_in_pieces_is_put_together(scripted):
    body = os.urandom(200_000)
    answer = ok(body)
    server = scripted([[answer[:50], answer[50:70_000], answer[70_000:]]])
    conn = server.connection()
    assert conn.get("/big", len(body)) == body
    conn.close()


def test_unknown_size_takes_any_length_up_to_the_limit(scripted):
    server = scripted([ok(b"x" * 100), ok(b"y" * 101)])
    conn = server.connection()
    assert conn.get("/m", None, limit=100) == b"x" * 100
    assert conn.get("/m", None, limit=100) is None
    conn.close()


def test_a_target_with_spaces_or_controls_is_refused_without_a_request(scripted):
    server = scripted([ok(b"hello")])
    conn = server.connection()
    assert conn.get("/a b", 5) is None
    assert conn.get("/a\r\nX: y", 5) is None
    assert server.requests == []
    assert conn.get("/ab", 5) == b"hello"
    conn.close()


def test_a_refused_connection_gives_none(scripted):
    server = scripted([])
    port = server.port
    server.close()
    conn = LeanConnection("127.0.0.1", port, {}, connect_timeout=5, read_timeout=5)
    assert conn.get("/f", 1) is None


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a certificate")
def test_https_verifies_the_certificate(scripted, tmp_path):
    """Over TLS with our CA trusted the GET works; with the default CAs the certificate
    is refused and the answer is None (the robust path then reports it)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    server = scripted([ok(b"secret")] * 3, tls=server_side)  # one left for the stranger
    trusted = LeanConnection("127.0.0.1", server.port, {}, connect_timeout=5, read_timeout=5,
                             tls=ssl.create_default_context(cafile=str(cert)))
    assert trusted.get("/s", 6) == b"secret"
    assert trusted.get("/s", 6) == b"secret"
    trusted.close()
    assert server.connections == 1
    stranger = LeanConnection("127.0.0.1", server.port, {}, connect_timeout=5, read_timeout=5,
                              tls=ssl.create_default_context())
    assert stranger.get("/s", 6) is None
