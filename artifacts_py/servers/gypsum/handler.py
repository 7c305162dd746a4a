"""The HTTP layer of ``artifacts-gypsum``: routing, bodies, streaming, CORS, errors.

Standard library ``ThreadingHTTPServer`` with HTTP/1.1 keep-alive. Every
answer carries ``Access-Control-Allow-Origin: *`` (the spec's SHOULD);
errors are ``{"status":"error","reason":...}``; mutating endpoints answer
200 with an empty body and no ``Content-Type``. ``Authorization`` headers are
never logged.
"""

from __future__ import annotations

import email.utils
import logging
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs

from artifacts_py.servers.gypsum import fastfile, local_put, routes
from artifacts_py.servers.gypsum.actions import Service, projects, upload, versions
from artifacts_py.servers.gypsum.documents import dumps
from artifacts_py.servers.gypsum.errors import GypsumError, StoreError
from artifacts_py.servers.gypsum.store import ObjectInfo
from artifacts_py.servers.gypsum.store_local import LocalStore

log = logging.getLogger(__name__)
DOCS_URL = "https://artifactdb.github.io/gypsum-worker"
MAX_JSON_BODY = 256 << 20
CHUNK = 1 << 20
SMALL = 64 << 10
CORS = ("Access-Control-Allow-Origin", "*")
_QUIET = (ConnectionError, TimeoutError)

# endpoint name -> action(service, decoded params, raw body, Authorization header)
Action = Callable[[Service, List[str], bytes, Optional[str]], Any]
ACTIONS: Dict[str, Action] = {
    "create": lambda s, p, b, h: projects.create(s, p[0], b, h),
    "permissions": lambda s, p, b, h: projects.set_permissions(s, p[0], b, h),
    "quota": lambda s, p, b, h: projects.set_quota(s, p[0], b, h),
    "upload-start": lambda s, p, b, h: upload.start(s, p[0], p[1], p[2], b, h),
    "upload-complete": lambda s, p, b, h: upload.complete(s, p[0], p[1], p[2], h),
    "upload-abort": lambda s, p, b, h: upload.abort(s, p[0], p[1], p[2], h),
    "approve": lambda s, p, b, h: versions.approve(s, p[0], p[1], p[2], h),
    "reject": lambda s, p, b, h: versions.reject(s, p[0], p[1], p[2], h),
    "remove-project": lambda s, p, b, h: versions.remove_project(s, p[0], h),
    "remove-asset": lambda s, p, b, h: versions.remove_asset(s, p[0], p[1], h),
    "remove-version": lambda s, p, b, h: versions.remove_version(s, p[0], p[1], p[2], h),
    "refresh-latest": lambda s, p, b, h: versions.refresh_latest(s, p[0], p[1], h),
    "refresh-usage": lambda s, p, b, h: versions.refresh_usage(s, p[0], h),
    "unlock": lambda s, p, b, h: versions.unlock(s, p[0], h),
}


class GypsumServer(ThreadingHTTPServer):
    """The HTTP server; carries the :class:`Service`."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: Tuple[str, int], service: Service,
                 public_url: Optional[str] = None, verbose: bool = False) -> None:
        self.service = service
        # Local files: the fast path for plain GET /file requests (see fastfile).
        self.local = service.store if isinstance(service.store, LocalStore) else None
        self.heads = fastfile.HeadCache()
        self.public_url = public_url.rstrip("/") if public_url else None
        self.verbose = verbose
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, GypsumHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up are normal; anything else is reported."""
        if isinstance(sys.exc_info()[1], _QUIET):
            return
        super().handle_error(request, client_address)


class GypsumHandler(BaseHTTPRequestHandler):
    """One connection; dispatches each request through :mod:`.routes`."""

    server: GypsumServer
    _headers_buffer: List[bytes]  # the stdlib's pending header lines (not in typeshed)
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "artifacts-gypsum"
    sys_version = ""

    # ------------------------------------------------------------ plumbing

    def version_string(self) -> str:
        return self.server_version

    def date_time_string(self, timestamp: Optional[float] = None) -> str:
        if timestamp is None:
            return fastfile.http_date()
        return super().date_time_string(timestamp)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        if self.server.verbose:
            text = format % args
            if "/upload/put/" in text:  # the URL is a capability: do not log it whole
                text = text.split("/upload/put/")[0] + "/upload/put/..."
            sys.stderr.write(f"{self.client_address[0]} - [{self.log_date_time_string()}] "
                             f"{text}\n")

    def send_response(self, code: int, message: Optional[str] = None) -> None:
        super().send_response(code, message)
        self.send_header(*CORS)

    def reply(self, status: int, body: bytes = b"", ctype: Optional[str] = None,
              extra: Tuple[Tuple[str, str], ...] = ()) -> None:
        """A complete response in one write (no body for HEAD)."""
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for key, value in extra:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")  # so clients do not reuse the socket
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def reply_json(self, status: int, value: Any) -> None:
        self.reply(status, dumps(value), "application/json")

    def reply_error(self, status: int, reason: str) -> None:
        if not self.consumed and (self.headers.get("Transfer-Encoding")
                                  or self.headers.get("Content-Length", "0") != "0"):
            self.close_connection = True
        self.reply_json(status, {"status": "error", "reason": reason})

    def read_body(self) -> bytes:
        """The request body (bounded); 400 when too large or chunked."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise GypsumError(400, "chunked request bodies are not supported; "
                                   "send a Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise GypsumError(400, "invalid Content-Length") from None
        if not 0 <= length <= MAX_JSON_BODY:
            self.close_connection = True
            raise GypsumError(400, f"request body is larger than {MAX_JSON_BODY} bytes")
        self.consumed = True
        return self.rfile.read(length) if length else b""

    def base_url(self) -> str:
        """This service's URL as the client reached it (for local upload URLs)."""
        if self.server.public_url:
            return self.server.public_url
        host = self.headers.get("Host")
        if not host:
            addr, port = str(self.server.server_address[0]), self.server.server_address[1]
            host = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
        return f"http://{host}"

    # ------------------------------------------------------------ dispatch

    consumed = False  # whether the request body was read (else keep-alive is unsafe)

    def handle_any(self) -> None:
        raw, _, query = self.path.partition("?")
        self.consumed = False
        try:
            found = routes.match(self.command, raw)
            if found is None:
                self.read_body()
                fixed = routes.collapsed(raw)
                if fixed is not None:
                    self.reply(301, extra=(("Location", fixed + ("?" + query if query else "")),))
                elif self.command == "GET" and raw.strip("/") == "":
                    self.reply(301, extra=(("Location", DOCS_URL),))
                else:
                    raise GypsumError(404, "no such endpoint")
                return
            self.dispatch(found, query)
        except GypsumError as exc:
            self.reply_error(exc.status, exc.reason)
        except StoreError as exc:
            log.error("store failure: %s", exc)
            self.reply_error(500, str(exc))
        except _QUIET:
            self.close_connection = True
        except Exception as exc:  # a bug: answer 500 rather than drop the connection
            log.exception("internal error on %s", self.command)
            self.reply_error(500, f"internal error: {type(exc).__name__}")

    def dispatch(self, found: routes.Match, query: str) -> None:
        svc = self.server.service
        name, params = found.name, found.params
        if name == "file":
            self.send_file(params[0])
        elif name == "list":
            self.send_list(query)
        elif name == "s3-credentials":
            creds = svc.store.public_credentials()
            if creds is None:
                raise GypsumError(404, "this service has no public S3 credentials to give")
            self.reply_json(200, creds)
        elif name == "github-app":
            if svc.github_app is None:
                raise GypsumError(404, "this service has no GitHub app configured")
            self.reply_json(200, {"id": svc.github_app[0], "secret": svc.github_app[1]})
        elif name == "upload-put":
            self.accept_put(params[0])
        else:
            body = self.read_body()
            auth = self.headers.get("Authorization")
            if name == "presign":
                result = upload.presign(svc, params[0], auth, self.base_url())
            else:
                result = ACTIONS[name](svc, params, body, auth)
            if result is None:
                self.reply(200)
            else:
                self.reply_json(200, result)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = handle_any

    def do_OPTIONS(self) -> None:
        self.read_body()
        wanted = self.headers.get("Access-Control-Request-Headers")
        if self.headers.get("Origin") and self.headers.get("Access-Control-Request-Method") \
                and wanted is not None:
            self.reply(200, extra=(
                ("Access-Control-Allow-Methods", "GET,HEAD,POST,PUT,DELETE,OPTIONS"),
                ("Access-Control-Max-Age", "86400"),
                ("Access-Control-Allow-Headers", wanted)))
        else:
            self.reply(200, extra=(("Allow", "GET, HEAD, POST, PUT, DELETE, OPTIONS"),))

    # ------------------------------------------------------------ reads

    def file_headers(self, head: bytes, body: bytes = b"") -> None:
        """``/file``'s status line, common headers, ``head`` (:func:`object_headers`) and a
        small ``body``, in one write."""
        self.send_response(200)
        self._headers_buffer.append(head)
        self._headers_buffer.append(body)
        self.flush_headers()

    def send_file(self, key: str) -> None:
        store = self.server.service.store
        if self.command == "HEAD":
            info = store.head(key)
            if info is None:
                raise GypsumError(404, "object not found")
            self.file_headers(object_headers(info))
            return
        opened = store.open(key)
        if opened is None:
            raise GypsumError(404, "object not found")
        info, stream = opened
        with stream:
            if info.size <= SMALL:  # one write for headers and body: half the syscalls
                body = stream.read(info.size)
                if len(body) == info.size:
                    self.file_headers(object_headers(info), body)
                    return
                raise StoreError(f"the store cut '{key}' short")
            self.file_headers(object_headers(info))
            self.stream(stream, info.size)

    def stream(self, stream: BinaryIO, size: int) -> None:
        """Copy ``size`` bytes of ``stream`` to the client (``sendfile`` for real files)."""
        try:
            fileno = stream.fileno()
        except (AttributeError, OSError, ValueError):
            fileno = -1
        if fileno >= 0:
            if self.connection.sendfile(stream, 0, size) < size:
                self.close_connection = True  # the file shrank: the client saw a short body
            return
        sent = 0
        while sent < size:
            chunk = stream.read(min(CHUNK, size - sent))
            if not chunk:
                self.close_connection = True  # the store cut the body short
                return
            self.wfile.write(chunk)
            sent += len(chunk)

    # ------------------------------------------------------------ the fast path

    def handle_one_request(self) -> None:
        if not self.serve_plain_file():
            super().handle_one_request()

    def serve_plain_file(self) -> bool:
        """Answer a plain ``GET /file`` of a local object (:mod:`.fastfile`), if it is one.

        False, with nothing read, when the request is anything else: then the
        general path answers it.
        """
        store, peek = self.server.local, getattr(self.rfile, "peek", None)
        if store is None or peek is None:
            return False
        plain = fastfile.parse(peek(1))
        if plain is None:
            return False
        try:
            opened = store.open_fd(plain.key)
        except OSError:
            return False
        if opened is None:
            return False
        fd, info = opened
        try:
            ident = (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)
            head = self.server.heads.get(plain.key, ident)
            if head is None:
                head = object_headers(store.info_of(plain.key, info, fd))
                self.server.heads.put(plain.key, ident, head)
            body = os.pread(fd, info.st_size, 0) if info.st_size <= SMALL else b""
            if info.st_size <= SMALL and len(body) != info.st_size:
                return False  # changing under us: the general path reports it
            self.rfile.read(plain.length)
            self.command, self.request_version, self.requestline = "GET", "HTTP/1.1", plain.line
            self.path = plain.line[4:-9]
            self.close_connection = plain.close
            try:
                self.file_headers(head, body)
                if info.st_size > SMALL:
                    with open(fd, "rb", closefd=False) as stream:
                        self.stream(stream, info.st_size)
            except _QUIET:
                self.close_connection = True
            return True
        finally:
            os.close(fd)

    def send_list(self, query: str) -> None:
        params = parse_qs(query, keep_blank_values=True)
        prefix = (params.get("prefix") or [""])[0]
        recursive = (params.get("recursive") or [""])[0] == "true"
        listing = self.server.service.store.list(prefix, recursive)
        self.reply_json(200, listing.prefixes + [o.key for o in listing.objects])

    # ------------------------------------------------------------ local uploads

    def accept_put(self, token: str) -> None:
        store = self.server.service.store
        if not isinstance(store, LocalStore):
            raise GypsumError(404, "no such endpoint")
        try:
            etag = local_put.accept(store, token, self.headers.get("Content-MD5"),
                                    self.headers.get("Content-Length"),
                                    self.rfile)  # type: ignore[arg-type]
        except local_put.PutRefused as exc:
            self.close_connection = True  # the body may be unread
            self.reply(exc.status, exc.xml(), "application/xml")
            return
        self.reply(200, extra=(("ETag", etag),))


def object_headers(info: ObjectInfo) -> bytes:
    """``/file``'s headers after the common ones, and the blank line that ends them."""
    lines = [f"Content-Type: {info.content_type}\r\n" if info.content_type else "",
             f"ETag: {info.etag}\r\n" if info.etag else "",
             f"Last-Modified: {email.utils.formatdate(info.last_modified, usegmt=True)}\r\n",
             f"Content-Length: {info.size}\r\n\r\n"]
    return "".join(lines).encode("latin-1", "strict")
