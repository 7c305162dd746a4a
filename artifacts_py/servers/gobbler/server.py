"""``artifacts-gobbler``: the HTTP layer of the Gobbler-compatible server.

A drop-in for the Go binary (``gobbler-protocol.md`` §4 and §8): the same
flags, endpoints, status codes and headers. All the registry work lives in
:mod:`artifacts_py.servers.gobbler.actions`; this module only routes requests,
serves static files from the registry with ``sendfile`` and runs the daily
purge. Request heads are read like Go's ``net/http`` (:mod:`.wire`), and
connections are bounded, with an idle timeout (:mod:`.connections`). Run it as ``artifacts-gobbler -registry R -staging S`` or
``python -m artifacts_py.servers.gobbler.server ...``.
"""

from __future__ import annotations

import argparse
import email.utils
import errno
import functools
import html
import json
import mimetypes
import os
import posixpath
import select
import socket
import stat
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, List, Optional, Sequence, Tuple
from urllib.parse import parse_qs, quote, unquote_to_bytes

from artifacts_py.servers.gobbler.actions import (
    Config, RecentRequests, parse_spoof_rules, parse_whitelist, run_request, daily_purge,
)
from artifacts_py.servers.gobbler.connections import (
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, ConnectionLimiter,
)
from artifacts_py.servers.gobbler.registry import ActionError
from artifacts_py.servers.gobbler.wire import (
    MAX_LINE, WireError, check_framing, parse_request_line, read_headers,
)

BANNER = {"name": "gobbler API", "url": "https://github.com/ArtifactDB/gobbler"}
SNIFF_LEN = 512
MAX_DISCARD = 1 << 20
_MSG_MORE = getattr(socket, "MSG_MORE", 0)
_QUIET_ERRORS = (ConnectionError, TimeoutError)
_TEXT_BYTES = frozenset(range(0x20, 0x100)) | {0x09, 0x0A, 0x0C, 0x0D, 0x1B}
# What a Location header may carry unescaped: path characters and existing escapes.
_PATH_SAFE = "/%!$&'()*+,;=:@~-._"

mimetypes.init()


def decode_path(raw: str) -> str:
    """Percent-decode a raw request path (latin-1 text of its bytes) to a file name.

    Bytes that are not UTF-8 survive as surrogate escapes, so the name maps
    back to the same bytes on disk, as Go's byte strings do.
    """
    return unquote_to_bytes(raw.encode("latin-1")).decode("utf-8", "surrogateescape")


def quote_path(path: str) -> str:
    """Percent-encode a file path for a Location header (surrogate escapes kept as bytes)."""
    return quote(path.encode("utf-8", "surrogateescape"))


def go_clean(path: str) -> str:
    """Go's ``path.Clean`` for rooted or relative slash paths."""
    if path == "":
        return "."
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def content_type(name: str, fd: int) -> str:
    """Content type like Go's FileServer: by extension, else sniffed."""
    dot = name.rfind(".")
    if dot >= 0:
        ext = name[dot:]
        guess = mimetypes.types_map.get(ext) or mimetypes.types_map.get(ext.lower())
        if guess:
            return guess + "; charset=utf-8" if guess.startswith("text/") else guess
    head = os.pread(fd, SNIFF_LEN, 0)
    if head.lstrip(b"\t\n\x0c\r ").lower().startswith((b"<!doctype html", b"<html")):
        return "text/html; charset=utf-8"
    if all(b in _TEXT_BYTES for b in head):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


def parse_range(header: str, size: int) -> List[Tuple[int, int]]:
    """Parse a ``Range`` header like Go; returns (start, length) pairs.

    Raises ValueError when it is malformed, returns [] when nothing overlaps.
    """
    if not header.startswith("bytes="):
        raise ValueError("invalid range")
    ranges = []
    for part in header[6:].split(","):
        part = part.strip()
        if not part:
            continue
        first, dash, last = part.partition("-")
        first, last = first.strip(), last.strip()
        if not dash:
            raise ValueError("invalid range")
        if first == "":
            if last == "" or not last.isdigit():
                raise ValueError("invalid range")
            n = min(int(last), size)
            ranges.append((size - n, n))
            continue
        if not first.isdigit():
            raise ValueError("invalid range")
        start = int(first)
        if start >= size:
            continue
        if last == "":
            ranges.append((start, size - start))
            continue
        if not last.isdigit() or int(last) < start:
            raise ValueError("invalid range")
        end = min(int(last), size - 1)
        ranges.append((start, end - start + 1))
    return ranges


@functools.lru_cache(maxsize=4096)
def http_date(seconds: int) -> str:
    """RFC 7231 date of whole ``seconds`` (cached: Last-Modified repeats a lot)."""
    return email.utils.formatdate(seconds, usegmt=True)


def http_time(header: Optional[str]) -> Optional[float]:
    """Seconds since the epoch of an HTTP date header, or None."""
    if not header:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.timestamp() if parsed is not None else None


class GobblerServer(ThreadingHTTPServer):
    """The HTTP server: carries the configuration and the request memory."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: Tuple[str, int], cfg: Config, *, prefix: str = "",
                 shown_registry: Optional[str] = None, shown_staging: Optional[str] = None,
                 verbose: bool = False, idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        self.cfg = cfg
        self.idle_timeout = idle_timeout if idle_timeout > 0 else None
        self.limiter = ConnectionLimiter(max_connections)
        self.recent = RecentRequests()
        self.root = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.info = json.dumps({"staging": shown_staging or cfg.staging,
                                "registry": shown_registry or cfg.registry}).encode()
        self.verbose = verbose
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, GobblerHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start a handler thread once the connection has a slot (see ``connections``)."""
        self.limiter.admit()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.limiter.release(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.limiter.release(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up are normal; anything else is reported on stderr."""
        if isinstance(sys.exc_info()[1], _QUIET_ERRORS):
            return
        super().handle_error(request, client_address)

    def mark_staging(self) -> None:
        """Mark every entry already in staging as seen, so it cannot be replayed (§3.3)."""
        for name in os.listdir(self.cfg.staging):
            self.recent.add(name)


class GobblerHandler(BaseHTTPRequestHandler):
    """Routes requests as Go's ServeMux does for the gobbler (§4)."""

    server: GobblerServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "artifacts-gobbler"
    sys_version = ""

    # ------------------------------------------------------------ plumbing

    cors = False  # set while serving /fetch: Go adds the header to every such response
    answered = False  # whether the current request's response has begun
    body_length: Optional[int] = 0  # of the current request; None when chunked

    _headers_buffer: List[bytes]

    def setup(self) -> None:
        super().setup()
        # Bounds every read and write, the wait for a next request included.
        self.connection.settimeout(self.server.idle_timeout)

    def handle_one_request(self) -> None:
        """Read one request and answer it; never leave a request unanswered."""
        limiter, sock = self.server.limiter, self.connection
        self.close_connection = True
        limiter.idle(sock)
        try:
            self.raw_requestline = self.rfile.readline(MAX_LINE + 1)
        except OSError:  # the idle timeout, or a reset
            return
        finally:
            evicted = not limiter.busy(sock)
        if evicted or not self.raw_requestline:
            return
        self.answered = False
        if not self.parse_request():
            return
        try:
            getattr(self, "do_" + self.command)()
            self.wfile.flush()
        except _QUIET_ERRORS:
            self.close_connection = True
        except Exception:
            # A bug of ours: say so on stderr, and still answer like Go's http.Error.
            sys.stderr.write(f"artifacts-gobbler: error serving {self.requestline!r}:\n"
                             f"{traceback.format_exc()}")
            self.close_connection = True
            if not self.answered:
                self.send_text(500, "500 Internal Server Error")

    def parse_request(self) -> bool:
        """Read the request line and headers like Go; answer and return False if invalid."""
        self.command, self.request_version = "", "HTTP/1.1"
        self.requestline = self.raw_requestline.decode("latin-1").rstrip("\r\n")
        try:
            if len(self.raw_requestline) > MAX_LINE:
                raise WireError(414)
            line = parse_request_line(self.raw_requestline)
            self.command, self.path, self.request_version = line.method, line.target, line.version
            self.headers = read_headers(self.rfile, len(self.raw_requestline))
            self.body_length = check_framing(line, self.headers)
        except WireError as exc:
            self.log_message('"%s" %s', self.requestline, exc.status)
            self.connection.sendall(exc.response())
            return False
        connection = (self.headers.get("Connection") or "").lower()
        self.close_connection = connection == "close" or (
            (line.major, line.minor) < (1, 1) and connection != "keep-alive")
        expect = self.headers.get("Expect")
        if expect is not None and (line.major, line.minor) >= (1, 1):
            if expect.lower() != "100-continue":
                self.connection.sendall(b"HTTP/1.1 417 Expectation Failed\r\n"
                                        b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                self.close_connection = True
                return False
            # Go sends 100 Continue only when a handler reads the body; none does.
            self.close_connection = True
            self.body_length = None
        return True

    def send_error(self, code: int, message: Optional[str] = None,
                   explain: Optional[str] = None) -> None:
        """The stdlib's error path (e.g. an over-long request line): Go's plain answer."""
        self.connection.sendall(WireError(code).response())
        self.close_connection = True

    def version_string(self) -> str:
        return self.server_version

    def send_response(self, code: int, message: Optional[str] = None) -> None:
        self.answered = True
        super().send_response(code, message)
        if self.cors:
            self.send_header("Access-Control-Allow-Origin", "*")

    def date_time_string(self, timestamp: Optional[float] = None) -> str:
        return http_date(int(time.time() if timestamp is None else timestamp))

    def send_header(self, keyword: str, value: str) -> None:
        # The stdlib version also inspects Connection headers, which we never send.
        self._headers_buffer.append(f"{keyword}: {value}\r\n".encode("latin-1", "strict"))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        if self.server.verbose:
            # Request lines are the client's bytes: no control characters reach the terminal.
            text = (format % args).encode("unicode_escape").decode("ascii")
            sys.stderr.write(f"{self.client_address[0]} - [{self.log_date_time_string()}] "
                             f"{text}\n")

    def __getattr__(self, name: str) -> Any:
        # Unknown methods (DELETE, PUT, ...) get Go's 405 rather than the stdlib's 501.
        if name.startswith("do_"):
            return self.method_not_allowed
        raise AttributeError(name)

    def send_body(self, status: int, body: bytes, ctype: str,
                  extra: Sequence[Tuple[str, str]] = ()) -> None:
        """A complete small response, headers and body in one write."""
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for key, value in extra:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def send_headers_more(self) -> None:
        """End the headers with MSG_MORE so the kernel packs them with the sendfile body."""
        self._headers_buffer.append(b"\r\n")
        self.connection.sendall(b"".join(self._headers_buffer), _MSG_MORE)
        self._headers_buffer = []

    def send_json(self, status: int, obj: Any) -> None:
        body = json.dumps(obj, separators=(",", ":")).encode()
        self.send_body(status, body, "application/json",
                       (("Access-Control-Allow-Origin", "*"),))

    def send_text(self, status: int, message: str,
                  extra: Sequence[Tuple[str, str]] = ()) -> None:
        """A Go ``http.Error``: plain text, nosniff, trailing newline."""
        self.send_body(status, (message + "\n").encode(), "text/plain; charset=utf-8",
                       (("X-Content-Type-Options", "nosniff"),) + tuple(extra))

    def redirect(self, location: str, query: str = "") -> None:
        if query:
            location += "?" + query
        self.send_response(301)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def discard_body(self) -> None:
        """Read and drop any request body so the connection can be kept alive."""
        remaining = self.body_length
        if remaining is None or remaining > MAX_DISCARD:
            self.close_connection = True  # bodies are never used: do not read big ones
            return
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)

    def split_path(self) -> Tuple[str, str, str]:
        """(raw path, decoded path, raw query) of the request target.

        Like Go's ``ParseRequestURI``, a ``#`` is part of the path.
        """
        raw, _, query = self.path.partition("?")
        if not raw.startswith("/"):  # absolute-form targets
            raw = "/" + raw.split("://", 1)[-1].partition("/")[2]
        return raw, decode_path(raw), query

    # ------------------------------------------------------------ methods

    def do_GET(self) -> None:
        raw, path, query = self.split_path()
        if self.clean_redirect(raw, query):
            return
        root = self.server.root
        if path == root and root:
            self.redirect(root + "/", query)
        elif path == root + "/fetch":
            self.redirect(root + "/fetch/", query)
        elif path.startswith(root + "/fetch/"):
            self.fetch(path[len(root) + len("/fetch"):], query)
        elif path == root + "/list":
            self.list_registry(query)
        elif path == root + "/info":
            self.send_body(200, self.server.info, "application/json",
                           (("Access-Control-Allow-Origin", "*"),))
        elif path.startswith(root + "/"):
            self.send_json(200, BANNER)
        else:  # outside the prefix only OPTIONS is routed, as in Go's mux
            self.method_not_allowed()

    do_HEAD = do_GET

    def do_POST(self) -> None:
        self.discard_body()
        raw, path, query = self.split_path()
        prefix = self.server.root + "/new/"
        name = raw[len(prefix):] if raw.startswith(prefix) else ""
        if not name or "/" in name:
            # Not one raw segment under /new/: Go's mux cleans or refuses it.
            if not self.clean_redirect(raw, query):
                self.method_not_allowed()
            return
        # One raw segment: an encoded '/' or '..' inside is refused as not a bare
        # name (400) instead of being redirected like Go's mux would.
        try:
            extra = run_request(self.server.cfg, self.server.recent, decode_path(name),
                                self.client_gone)
        except ActionError as exc:
            self.send_json(exc.status, {"status": "ERROR", "reason": exc.reason})
        else:
            self.send_json(200, {"status": "SUCCESS", **extra})

    def client_gone(self) -> bool:
        """Whether the client has closed the connection (its end reads as end-of-file).

        Long actions poll this, as Go's handlers watch the request context.
        """
        poller = select.poll()
        poller.register(self.connection, select.POLLIN)
        if not poller.poll(0):
            return False
        try:
            peeked: bytes = self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:  # reset
            return True
        return peeked == b""

    def do_OPTIONS(self) -> None:
        self.discard_body()
        if self.path == "*":  # Go's server answers ``OPTIONS *`` itself
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        raw, _, query = self.split_path()
        if self.clean_redirect(raw, query):
            return
        self.send_response(204)
        self.send_header("Access-Control-Allow-Methods", "GET, OPTIONS")
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Headers", "*")
        self.end_headers()

    def method_not_allowed(self) -> None:
        if self.command != "POST":
            self.discard_body()
        raw, path, _ = self.split_path()
        root = self.server.root
        allow = "GET, HEAD, OPTIONS" if path.startswith(root + "/") else "OPTIONS"
        if raw.startswith(root + "/new/") and "/" not in raw[len(root) + 5:] \
                and raw != root + "/new/":
            allow += ", POST"
        self.send_text(405, "Method Not Allowed", (("Allow", allow),))

    def clean_redirect(self, raw: str, query: str) -> bool:
        """Redirect like Go's mux when the raw path has ``.``, ``..`` or ``//`` segments.

        Go 1.22 cleans the path as sent, so encoded dots (``%2e%2e``) and
        slashes (``%2F``) are no segments: they reach the file server, which
        cleans the decoded path inside the registry.
        """
        cleaned = go_clean(raw)
        if raw.endswith("/") and cleaned != "/":
            cleaned += "/"
        if cleaned == raw:
            return False
        self.redirect(quote(cleaned.encode("latin-1"), safe=_PATH_SAFE), query)
        return True

    # ------------------------------------------------------------ /list

    def list_registry(self, query: str) -> None:
        params = parse_qs(query, keep_blank_values=True)
        rel = (params.get("path") or [""])[0]
        recursive = (params.get("recursive") or [""])[0] == "true"
        registry = self.server.cfg.registry
        if rel:
            cleaned = posixpath.normpath(rel)
            if rel.startswith("/") or cleaned == ".." or cleaned.startswith("../") \
                    or "\x00" in rel:
                self.send_json(400, {"status": "ERROR",
                                     "reason": "'path' is not local to the registry"})
                return
            target = os.path.join(registry, cleaned)
        else:
            target = registry
        try:
            listing = list_directory(target, recursive)
        except OSError as exc:
            reason = (f"failed to obtain a directory listing; lstat {target}: "
                      f"{os.strerror(exc.errno or errno.EIO).lower()}")
            self.send_json(500, {"status": "ERROR", "reason": reason})
            return
        self.send_json(200, listing)

    # ------------------------------------------------------------ /fetch

    def fetch(self, upath: str, query: str) -> None:
        """Serve ``upath`` (rooted, decoded) from the registry like Go's FileServer."""
        self.cors = True
        try:
            self.serve_path(upath, query)
        finally:
            self.cors = False

    def serve_path(self, upath: str, query: str) -> None:
        if upath.endswith("/index.html"):
            self.redirect("./", query)
            return
        name = go_clean(upath)
        fs_path = self.server.cfg.registry + ("" if name == "/" else name)
        if "\x00" in fs_path:
            self.send_text(404, "404 page not found")
            return
        try:
            # O_NONBLOCK: a FIFO must not hang this thread; it is refused below.
            fd = os.open(fs_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            self.fetch_error(exc)
            return
        try:
            info = os.fstat(fd)
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                self.send_text(404, "404 page not found")
                return
            if stat.S_ISDIR(info.st_mode):
                if not upath.endswith("/"):
                    self.redirect(quote_path(posixpath.basename(upath)) + "/", query)
                    return
                index = os.path.join(fs_path, "index.html")
                if os.path.isfile(index):
                    os.close(fd)
                    fd = os.open(index, os.O_RDONLY | os.O_CLOEXEC)
                    self.send_file(fd, os.fstat(fd), "index.html")
                else:
                    self.send_listing(fs_path, info)
                return
            if upath.endswith("/"):
                self.redirect("../" + quote_path(posixpath.basename(upath.rstrip("/"))), query)
                return
            self.send_file(fd, info, posixpath.basename(name))
        except OSError as exc:
            self.fetch_error(exc)
        finally:
            os.close(fd)

    def fetch_error(self, exc: OSError) -> None:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG):
            self.send_text(404, "404 page not found")
        elif exc.errno in (errno.EACCES, errno.EPERM):
            self.send_text(403, "403 Forbidden")
        else:
            self.send_text(500, "500 Internal Server Error")

    def not_modified(self, mtime: int) -> bool:
        """Answer 304 when If-Modified-Since allows it (GET/HEAD, no If-None-Match)."""
        if self.headers.get("If-None-Match") is not None:
            return False
        since = http_time(self.headers.get("If-Modified-Since"))
        if since is None or mtime > since:
            return False
        self.send_response(304)
        self.send_header("Last-Modified", http_date(mtime))
        self.end_headers()
        return True

    def send_listing(self, fs_path: str, info: os.stat_result) -> None:
        mtime = int(info.st_mtime)
        if self.not_modified(mtime):
            return
        lines = ['<!doctype html>\n<meta name="viewport" content="width=device-width">\n<pre>\n']
        with os.scandir(fs_path) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                shown = entry.name + ("/" if entry.is_dir(follow_symlinks=False) else "")
                lines.append(f'<a href="{html.escape(quote_path(shown))}">{html.escape(shown)}</a>\n')
        lines.append("</pre>\n")
        self.send_body(200, "".join(lines).encode("utf-8", "surrogateescape"),
                       "text/html; charset=utf-8",
                       (("Last-Modified", http_date(mtime)),))

    def send_file(self, fd: int, info: os.stat_result, name: str) -> None:
        """Headers, conditional requests, one byte range, then ``sendfile``."""
        size, mtime = info.st_size, int(info.st_mtime)
        present = {key.lower() for key in self.headers.keys()}
        if "if-unmodified-since" in present:
            unmodified = http_time(self.headers.get("If-Unmodified-Since"))
            if unmodified is not None and mtime > unmodified:
                self.send_text(412, "Precondition Failed")
                return
        if "if-modified-since" in present and self.not_modified(mtime):
            return
        last_modified = http_date(mtime)
        status, offset, length = 200, 0, size
        extra = [("Accept-Ranges", "bytes"),
                 ("Last-Modified", last_modified)]
        header = self.headers.get("Range") if "range" in present else None
        if header and "if-range" in present and http_time(self.headers.get("If-Range")) != mtime:
            header = None
        if header:
            try:
                ranges = parse_range(header, size)
            except ValueError:
                self.send_text(416, "invalid range")
                return
            if not ranges and size > 0:
                self.send_text(416, "invalid range: failed to overlap",
                               (("Content-Range", f"bytes */{size}"),))
                return
            # An empty file ignores the range (200), as Go does for ``curl -C -``.
            if len(ranges) == 1:
                offset, length = ranges[0]
                status = 206
                extra.append(("Content-Range", f"bytes {offset}-{offset + length - 1}/{size}"))
        self.send_response(status)
        self.send_header("Content-Type", content_type(name, fd))
        for key, value in extra:
            self.send_header(key, value)
        self.send_header("Content-Length", str(length))
        if self.command == "HEAD" or length == 0:
            self.end_headers()
            return
        self.send_headers_more()
        if not sendfile_all(self.connection, fd, offset, length):
            self.close_connection = True  # the file shrank: do not trust this connection


def sendfile_all(sock: socket.socket, fd: int, offset: int, length: int) -> bool:
    """``sendfile`` ``length`` bytes at ``offset``; False if the file ended first.

    The socket has a timeout, so it is non-blocking underneath: a full send
    buffer is waited for up to that timeout (then TimeoutError).
    """
    out, sent = sock.fileno(), 0
    while sent < length:
        try:
            n = os.sendfile(out, fd, offset + sent, length - sent)
        except BlockingIOError:
            poller = select.poll()
            poller.register(out, select.POLLOUT)
            timeout = sock.gettimeout()
            if not poller.poll(None if timeout is None else int(timeout * 1000)):
                raise TimeoutError("the client did not read for the idle timeout") from None
            continue
        if n == 0:
            return False
        sent += n
    return True


def list_directory(target: str, recursive: bool) -> List[str]:
    """The ``/list`` listing of ``target`` (§4.3); OSError if it cannot be read.

    Symlinks are never followed; a target that is not a real directory lists
    as ``[]``.
    """
    info = os.lstat(target)
    if not stat.S_ISDIR(info.st_mode):
        return []
    if not recursive:
        with os.scandir(target) as entries:
            return [e.name + "/" if e.is_dir(follow_symlinks=False) else e.name
                    for e in sorted(entries, key=lambda e: e.name)]
    files: List[str] = []
    empty: List[str] = []

    def walk(path: str, rel: str) -> None:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            child = rel + entry.name
            if entry.is_dir(follow_symlinks=False):
                before = len(files) + len(empty)
                walk(entry.path, child + "/")
                if len(files) + len(empty) == before:  # nothing at all beneath it
                    empty.append(child + "/")
            else:
                files.append(child)

    walk(target, "")
    return files + empty


# ---------------------------------------------------------------- main


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="artifacts-gobbler", allow_abbrev=False,
        description="Gobbler-compatible registry service (drop-in for the Go binary).")

    def add(name: str, **kwargs: Any) -> None:
        parser.add_argument(f"-{name}", f"--{name}", dest=name.replace("-", "_"), **kwargs)

    from ..._version import __version__

    parser.add_argument("-V", "--version", action="version",
                        version=f"artifacts-gobbler (artifacts-py {__version__})")
    add("registry", help="path to the registry directory (required)")
    add("staging", help="path to the staging directory (required)")
    add("admin", default="", help="comma-separated administrator user names")
    add("port", type=int, default=8080, help="port to listen on (0: pick a free one)")
    add("host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    add("prefix", default="", help="endpoint prefix without leading/trailing slashes")
    add("whitelist", default="", help="file of absolute directories that links may point into")
    add("spoof", default="", help="file of spoofing rules 'spoofer:user1,user2'")
    add("probation", type=int, default=-1, help="days before probational versions are purged")
    add("concurrency", type=int, default=100, help="maximum number of file workers")
    add("verbose", action="store_true", help="log every request to stderr")
    # Not in the Go service, which has no server-side limits at all.
    add("idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT,
        help="seconds a connection may wait for its next request, or for a read or "
             f"write to progress (0: forever; default {DEFAULT_IDLE_TIMEOUT:g})")
    add("max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
        help="connections served at once; beyond it the longest-idle one is closed "
             f"(default {DEFAULT_MAX_CONNECTIONS})")
    args = parser.parse_args(argv)
    if not args.registry or not args.staging:
        parser.print_usage(sys.stderr)
        sys.stderr.write("artifacts-gobbler: -registry and -staging are required\n")
        sys.exit(1)
    return args


def _read_rules(path: str, parse: Any, what: str) -> Any:
    if not path:
        return parse("")
    try:
        with open(path, encoding="utf-8") as handle:
            return parse(handle.read(), path)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"artifacts-gobbler: cannot use the {what} {path!r}: {exc}\n")
        sys.exit(1)


def build_config(args: argparse.Namespace) -> Config:
    """The action configuration from parsed flags (exits on bad whitelist/spoof files)."""
    return Config(
        registry=go_clean(args.registry), staging=go_clean(args.staging),
        admins=args.admin.split(",") if args.admin else [],
        spoof=_read_rules(args.spoof, parse_spoof_rules, "spoof file"),
        whitelist=_read_rules(args.whitelist, parse_whitelist, "whitelist file"),
        probation_days=args.probation, concurrency=max(1, args.concurrency))


def make_server(cfg: Config, host: str = "127.0.0.1", port: int = 0, prefix: str = "",
                shown_registry: Optional[str] = None, shown_staging: Optional[str] = None,
                verbose: bool = False, idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                max_connections: int = DEFAULT_MAX_CONNECTIONS) -> GobblerServer:
    """Check both folders, bind the server, then prepare the registry (``..logs``) and
    mark the staging entries: a bad flag or a taken port leaves nothing behind."""
    for what, path in (("registry", cfg.registry), ("staging", cfg.staging)):
        if not os.path.isdir(path):
            raise OSError(errno.ENOENT, f"the {what} directory {path} does not exist; create "
                          "it first")
    try:
        server = GobblerServer((host, port), cfg, prefix=prefix, shown_registry=shown_registry,
                               shown_staging=shown_staging, verbose=verbose,
                               idle_timeout=idle_timeout, max_connections=max_connections)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise OSError(exc.errno, f"port {port} on {host} is already in use; pick another "
                          "with -port (0: any free port)") from None
        raise
    os.makedirs(os.path.join(cfg.registry, "..logs"), 0o755, exist_ok=True)
    server.mark_staging()
    return server


def start_purge_thread(cfg: Config, stop: threading.Event) -> threading.Thread:
    """Run :func:`daily_purge` 24 h after start-up and then every 24 h (§8.3)."""
    def loop() -> None:
        while not stop.wait(86400.0):
            try:
                daily_purge(cfg, time.time())
            except Exception as exc:  # errors are only logged, like Go
                sys.stderr.write(f"artifacts-gobbler: daily purge failed: {exc}\n")
    thread = threading.Thread(target=loop, name="gobbler-purge", daemon=True)
    thread.start()
    return thread


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console entry point ``artifacts-gobbler``."""
    args = parse_args(argv)
    cfg = build_config(args)
    try:
        server = make_server(cfg, args.host, args.port, args.prefix,
                             shown_registry=go_clean(args.registry),
                             shown_staging=go_clean(args.staging), verbose=args.verbose,
                             idle_timeout=args.idle_timeout,
                             max_connections=args.max_connections)
    except OSError as exc:
        sys.stderr.write(f"artifacts-gobbler: cannot start: {exc.strerror or exc}\n")
        return 1
    stop = threading.Event()
    start_purge_thread(cfg, stop)
    host, port = server.server_address[:2]
    # Printed once everything runs: launchers take this line as readiness.
    print(f"artifacts-gobbler listening on http://{host!s}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
