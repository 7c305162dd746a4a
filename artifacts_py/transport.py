"""The one HTTP transport of the client side: every request goes through here.

Tarball downloads, Gobbler REST fills, the Gobbler (and gypsum) clients'
reads and actions, and publishing all use :class:`Transport`: urllib3
connection pools with keep-alive; one retry policy (urllib3's ``Retry``:
connect and read errors, 429/5xx, ``Retry-After`` honoured up to
:data:`MAX_RETRY_AFTER` seconds, longer waits fail at once so the next source
is tried); one timeout policy (``ARTIFACTS_PY_TIMEOUT`` for connecting and
between bytes, plus a low-speed limit so a dripping server is abandoned);
proxies, ``NO_PROXY`` and CA bundles from the environment as requests reads
them; one offline gate (``ARTIFACTS_PY_OFFLINE`` refuses before any socket
is opened, with one message); one User-Agent; and one progress hook (a
callable given the number of bytes received).

On top, :func:`download` streams a body to a file while hashing it, resumes
a body that broke off (``Range: bytes=<have>-``) and restarts when a server
ignores or lies about ranges. :meth:`Transport.get_small` is a leaner GET
(the standard library's ``http.client``) for many small files, which returns
None on anything unusual so the caller falls back to :func:`download`.

This is the only client-side module that imports an HTTP library, and it
imports urllib3 lazily: importing it is cheap and safe on the warm path.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import sys
import threading
import time
from contextlib import contextmanager
from typing import (IO, TYPE_CHECKING, Any, BinaryIO, Callable, Dict, Iterator, List, Mapping,
                    NamedTuple, Optional, Sequence, Tuple, Union)
from urllib.parse import unquote, urlsplit

from . import settings
from ._version import __version__
from .errors import DownloadError, OfflineError, hash_mismatch

if TYPE_CHECKING:
    import urllib3

log = logging.getLogger(__name__)
# One INFO line per retry, on its own logger so that the CLI can show just these on a
# terminal ("retrying (1/2): connection refused") while the library stays silent.
retry_log = logging.getLogger(__name__ + ".retry")

Hash = Any  # a hashlib object (hashlib's types are private)
OnBytes = Callable[[int], None]  # the progress hook: called with each chunk's size

CHUNK = 1 << 20
RETRY_STATUSES = (429, 500, 502, 503, 504)
_TRUTHY = {"1", "true", "yes", "on"}
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.I)
# A server may ask us to wait this long before a retry; longer is treated as a failure
# (the next source is tried at once rather than an install hanging for an hour).
MAX_RETRY_AFTER = 60.0
# curl's --speed-limit/--speed-time: a body slower than this many bytes over this
# many seconds is abandoned (a dripping mirror restarts the read timeout forever).
SPEED_LIMIT = 1024
SPEED_TIME = 30.0
USER_AGENT = f"artifacts-py/{__version__}"
# urllib3 wraps socket errors in reprs like "HTTPConnectionPool(host=..): ..." and
# "<urllib3.connection.HTTPConnection object at 0x..>: "; users need neither.
_NOISE = re.compile(r"\w+ConnectionPool\([^)]*\):\s*|<[^>]* object at 0x[0-9a-f]+>:?\s*")

__all__ = ["Transport", "Response", "DownloadResult", "download", "check_online", "default",
           "loads_json", "reason", "CHUNK", "MAX_RETRY_AFTER"]


class Response(NamedTuple):
    """A whole HTTP answer (for API calls; bodies to files go through :func:`download`)."""

    status: int
    reason: str
    headers: Mapping[str, str]
    data: bytes
    url: str

    def json(self) -> Any:
        """The body as JSON; any failure (also absurd nesting) is a ``ValueError``."""
        return loads_json(self.data)

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


class DownloadResult(NamedTuple):
    """What :func:`download` wrote: its sha256 hex, size, and extra hash objects."""

    sha256: Optional[str]  # None when neither asked for nor checked
    size: int
    digests: List[Hash]


def loads_json(data: Union[bytes, str]) -> Any:
    """``json.loads`` whose every failure is a ``ValueError`` (never a RecursionError)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def check_online(url: str) -> None:
    """The one offline gate: raise :class:`OfflineError` if ``ARTIFACTS_PY_OFFLINE`` is set."""
    if settings.offline():
        raise OfflineError(f"{url}: not contacted because ARTIFACTS_PY_OFFLINE is set (or "
                           "--offline was given); unset it to allow network access", url=url)


_retry_class: Any = None


def _retry(total: int, backoff_factor: float) -> Any:
    """urllib3's ``Retry`` with a cap on ``Retry-After`` and an INFO line per retry."""
    global _retry_class
    if _retry_class is None:
        from urllib3.exceptions import InvalidHeader, MaxRetryError, ResponseError
        from urllib3.util.retry import Retry

        class CappedRetry(Retry):
            def get_retry_after(self, response: Any) -> Optional[float]:
                try:
                    return super().get_retry_after(response)
                except InvalidHeader:  # a malformed Retry-After (e.g. "0.3"): ignored
                    return None

            def increment(self, method: Optional[str] = None, url: Optional[str] = None,
                          response: Any = None, error: Optional[Exception] = None,
                          _pool: Any = None, _stacktrace: Any = None) -> "CappedRetry":
                if response is not None:
                    wait = self.get_retry_after(response)
                    if wait is not None and wait > MAX_RETRY_AFTER:
                        log.debug("not retrying %s: Retry-After %.0f s exceeds the %.0f s cap",
                                  url, wait, MAX_RETRY_AFTER)
                        raise MaxRetryError(_pool, url or "", ResponseError(
                            f"Retry-After {wait:.0f} s"))
                new: CappedRetry = super().increment(method, url, response, error, _pool,
                                                     _stacktrace)
                why = f"HTTP {response.status}" if response is not None else reason(error) \
                    if error is not None else "unknown"
                if why[1:2].islower():  # "Connection refused" -> "connection refused"
                    why = why[0].lower() + why[1:]
                left = new.total or 0  # what this kind of failure may still be retried
                if error is not None and self._is_connection_error(error):
                    left = min(left, new.connect if new.connect is not None else left)
                elif error is not None and self._is_read_error(error):
                    left = min(left, new.read if new.read is not None else left)
                done, where = len(new.history), url or ""
                if _pool is not None and where.startswith("/"):  # urllib3 gives the path only
                    where = f"{_pool.scheme}://{_pool.host}:{_pool.port}{where}"
                retry_log.info("retrying (%d/%d): %s (%s)", done, done + left, why, where)
                return new

        _retry_class = CappedRetry
    # A refused connection rarely heals within seconds: two tries, then the next source.
    return _retry_class(total=total, connect=min(total, 2), read=total, status=total,
                        backoff_factor=backoff_factor, status_forcelist=RETRY_STATUSES,
                        allowed_methods=frozenset({"GET", "HEAD"}),
                        respect_retry_after_header=True, raise_on_status=False)


class Transport:
    """Keep-alive connection pools with one retry, timeout, proxy and offline policy.

    ``retries`` (default ``ARTIFACTS_PY_RETRIES``, 5) bounds the retries of a
    GET/HEAD on connect or read errors and on 429/500/502/503/504, with
    exponential backoff and ``Retry-After`` (up to :data:`MAX_RETRY_AFTER`);
    other methods are never retried. ``timeout`` (default
    ``ARTIFACTS_PY_TIMEOUT``, 60 s) is the wait for the next bytes; connecting
    waits at most 10 s of it. ``pool_maxsize`` connections are kept per host.
    Thread-safe.
    """

    def __init__(self, retries: Optional[int] = None, timeout: Optional[float] = None,
                 pool_maxsize: int = 16, backoff_factor: float = 0.25,
                 speed_limit: int = SPEED_LIMIT, speed_time: float = SPEED_TIME) -> None:
        self.retries = settings.retries() if retries is None else retries
        # A body slower than speed_limit bytes/s over speed_time seconds is abandoned.
        self.speed_limit, self.speed_time = speed_limit, speed_time
        self.read_timeout = settings.timeout() if timeout is None else timeout
        self.connect_timeout = min(10.0, self.read_timeout)
        self.backoff_factor = backoff_factor
        # identity: we hash the bytes as stored at the URL; ranges address those bytes too.
        self.headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        self._pool_maxsize = pool_maxsize
        self._managers: Dict[str, Any] = {}  # proxy URL ("" = direct) -> urllib3 manager
        self._proxy_of: Dict[Tuple[str, str], str] = {}  # (scheme, host) -> proxy URL
        self._lock = threading.Lock()
        self._plain = threading.local()  # get_small's connections, per thread
        self._spares: Dict[Tuple[str, str], List[Any]] = {}  # preconnect's, for any thread
        self._generation = 0  # bumped by close(): late spares are closed, not kept
        self._tls: Any = None

    @functools.cached_property
    def retry(self) -> Any:
        """urllib3's Retry for this policy, made on first use (get_small never needs it)."""
        return _retry(self.retries, self.backoff_factor)

    def _timeout(self, read: Optional[float]) -> Any:
        from urllib3 import Timeout

        return Timeout(connect=self.connect_timeout, read=read)

    def get(self, url: str, headers: Optional[Dict[str, str]] = None) -> "urllib3.BaseHTTPResponse":
        """Start a GET (redirects followed); the body is left unread for streaming.

        Raises :class:`OfflineError` when offline, urllib3/socket errors otherwise.
        """
        check_online(url)
        return self._manager(url).urlopen(  # type: ignore[no-any-return]
            "GET", url, headers={**self.headers, **headers} if headers else self.headers,
            retries=self.retry, timeout=self._timeout(self.read_timeout),
            preload_content=False, decode_content=False)

    def request(self, method: str, url: str, *, body: Union[bytes, IO[bytes], None] = None,
                headers: Optional[Mapping[str, str]] = None,
                fields: Optional[Mapping[str, str]] = None, retry: bool = True,
                read_timeout: Union[float, None, str] = "default") -> Response:
        """One whole request (an API call): the answer, whatever its status.

        ``fields`` become the query string. ``body`` may be a binary file
        object, streamed (give its ``Content-Length`` in ``headers``, or it
        goes chunked). ``retry=False`` (and any method but GET/HEAD) sends once. ``read_timeout=None`` waits as long as the server
        works (synchronous actions). Raises :class:`OfflineError` offline and
        :class:`DownloadError` when the server cannot be reached or the answer
        breaks off.
        """
        check_online(url)
        if fields:
            from urllib.parse import urlencode

            url = url + ("&" if "?" in url else "?") + urlencode(dict(fields))
        from urllib3.exceptions import HTTPError

        merged = {**self.headers, **headers} if headers else self.headers
        timeout = self.read_timeout if read_timeout == "default" else read_timeout
        try:
            resp = self._manager(url).urlopen(
                method, url, body=body, headers=merged,
                retries=self.retry if retry else False,
                timeout=self._timeout(timeout if not isinstance(timeout, str) else None),
                preload_content=True, decode_content=True)
        except (HTTPError, OSError) as exc:
            raise DownloadError(f"{url}: {reason(exc)}", url=url) from None
        return Response(resp.status, resp.reason or "", resp.headers, resp.data or b"", url)

    def get_small(self, url: str, size: Optional[int] = None) -> Optional[bytes]:
        """The body of a plain ``200`` answer of exactly ``size`` bytes, or None.

        ``size=None`` takes any length up to ``leanhttp.MAX_BODY`` (a manifest): a
        small install then never imports urllib3.

        The fast path for many small files: one kept-alive connection per host
        and thread (:class:`~artifacts_py.leanhttp.LeanConnection`), and
        nothing else: no retries, no redirects, no proxies, no chunked bodies.
        It costs a fraction of the CPU of an ``http.client`` request (~20 vs
        ~130 us here), which is most of a small file's cost. Anything unusual
        (an error, another status or length, a proxy) gives None, and the
        caller uses :func:`download`, which retries and resumes through urllib3.
        """
        check_online(url)
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or self._proxy(parts):
            return None
        conns = self._plain.__dict__.setdefault("conns", {})
        conn = conns.get((scheme, parts.netloc))
        if conn is None:
            try:
                conn = conns[(scheme, parts.netloc)] = self._spare_or_new(scheme, parts)
            except Exception:  # noqa: BLE001 - any failure: the robust path takes over
                return None
        body: Optional[bytes] = conn.get(parts.path + (f"?{parts.query}" if parts.query else ""),
                                         size)
        return body

    def open(self, url: str) -> float:
        """Open this thread's lean connection to ``url``'s host; the seconds that took.

        About one round trip for a new connection (0 when one is open, or
        when :meth:`get_small` would not be used: a proxy, another scheme).
        """
        check_online(url)
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        conns = self._plain.__dict__.setdefault("conns", {})
        if scheme not in ("http", "https") or self._proxy(parts) or (scheme, parts.netloc) in conns:
            return 0.0
        start = time.monotonic()
        try:
            conns[(scheme, parts.netloc)] = self._connect(scheme, parts)
        except Exception:  # noqa: BLE001 - get_small and its fallback report it
            return 0.0
        return time.monotonic() - start

    def preconnect(self, url: str, n: int) -> None:
        """Start opening ``n`` lean connections to ``url``'s host in the background.

        Threads that call :meth:`get_small` later take them instead of
        connecting: the handshakes overlap with whatever this thread waits for
        (a manifest), which saves a round trip before the files flow.
        """
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or self._proxy(parts) or n <= 0:
            return

        generation = self._generation

        def one() -> None:
            try:
                conn = self._connect(scheme, parts)
            except Exception:  # noqa: BLE001 - the taker connects itself
                return
            with self._lock:
                if generation == self._generation:
                    self._spares.setdefault((scheme, parts.netloc), []).append(conn)
                    return
            conn.close()  # close() was called meanwhile

        def spawn() -> None:  # Thread.start waits for each thread: not on the caller's time
            for i in range(n):
                threading.Thread(target=one, name=f"artifacts-py-connect-{i}", daemon=True).start()

        threading.Thread(target=spawn, name="artifacts-py-connect", daemon=True).start()

    def _spare_or_new(self, scheme: str, parts: Any) -> Any:
        with self._lock:
            spares = self._spares.get((scheme, parts.netloc))
            if spares:
                return spares.pop()
        return self._connect(scheme, parts)

    def _connect(self, scheme: str, parts: Any) -> Any:
        from .leanhttp import LeanConnection

        tls = None
        if scheme == "https":
            if self._tls is None:
                import ssl

                self._tls = ssl.create_default_context(cafile=_ca_bundle())
            tls = self._tls
        conn = LeanConnection(parts.hostname or "", parts.port or (443 if tls else 80),
                              self.headers, connect_timeout=self.connect_timeout,
                              read_timeout=self.read_timeout, tls=tls)
        conn.connect()
        return conn

    def _proxy(self, parts: Any) -> str:
        key = (parts.scheme.lower(), parts.hostname or "")
        proxy = self._proxy_of.get(key)
        if proxy is None:  # the environment is read once per host, not per request
            proxy = self._proxy_of[key] = _proxy_for(*key)
        return proxy

    def _manager(self, url: str) -> Any:
        proxy = self._proxy(urlsplit(url))
        manager = self._managers.get(proxy)
        if manager is None:
            with self._lock:
                manager = self._managers.get(proxy)
                if manager is None:
                    manager = self._managers[proxy] = self._new_manager(proxy)
        return manager

    def _new_manager(self, proxy: str) -> Any:
        import urllib3

        kw: Dict[str, Any] = {"maxsize": self._pool_maxsize, "retries": self.retry,
                              "ca_certs": _ca_bundle()}
        return urllib3.proxy_from_url(proxy, **kw) if proxy else urllib3.PoolManager(**kw)

    def close(self) -> None:
        """Close every pooled connection (and this thread's :meth:`get_small` ones)."""
        for conn in self._plain.__dict__.pop("conns", {}).values():
            conn.close()
        with self._lock:
            self._generation += 1
            for spares in self._spares.values():
                for conn in spares:
                    conn.close()
            self._spares.clear()
            for manager in self._managers.values():
                manager.clear()
            self._managers.clear()


_default: Dict[Tuple[int, float], Transport] = {}
_default_lock = threading.Lock()


def default() -> Transport:
    """The process-wide :class:`Transport` for the current settings (API calls share it)."""
    key = (settings.retries(), settings.timeout())
    t = _default.get(key)
    if t is None:
        with _default_lock:
            t = _default.setdefault(key, Transport())
    return t


def _proxy_for(scheme: str, host: str) -> str:
    """The proxy URL the environment gives for ``scheme://host``, or "" for none."""
    if sys.platform not in ("darwin", "win32") and \
            not any(k[-6:].lower() == "_proxy" and k.lower() != "no_proxy" for k in os.environ):
        return ""  # here urllib.request (~20 ms of imports) would read only these variables
    import urllib.request

    proxies = urllib.request.getproxies()
    if not host or urllib.request.proxy_bypass(host):
        return ""
    proxy = proxies.get(scheme) or proxies.get("all") or ""
    if proxy and "://" not in proxy:
        proxy = "http://" + proxy
    return proxy


def _ca_bundle() -> Optional[str]:
    """requests' choice of CA file: REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, else certifi's."""
    found = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if found:
        return found
    try:
        import certifi
    except ImportError:  # urllib3 then uses the system's store
        return None
    return str(certifi.where())


def download(url: str, dest: Union[str, "os.PathLike[str]", BinaryIO], *,
             sha256: Optional[str] = None,
             transport: Optional[Transport] = None, attempts: int = 5,
             on_bytes: Optional[OnBytes] = None, on_total: Optional[OnBytes] = None,
             hashers: Optional[Sequence[Callable[[], Hash]]] = None,
             compute_sha256: bool = True, mode: Optional[int] = None,
             label: Optional[str] = None) -> DownloadResult:
    """Stream ``url`` (http, https or file) to ``dest`` and hash it on the way.

    ``hashers`` are zero-argument factories of extra hash objects (e.g.
    ``hashlib.md5``); they are re-created if the transfer has to restart, and
    the final objects are returned in ``DownloadResult.digests``. A body that
    breaks off is resumed (or restarted) up to ``attempts`` requests in all.
    ``compute_sha256=False`` skips the sha256 when no ``sha256`` is to be checked
    (callers that verify with their own ``hashers``). ``mode`` sets ``dest``'s
    permission bits whatever the umask. ``on_bytes(n)`` is called per chunk
    (negative when a restart discards bytes) and ``on_total(n)`` when the size
    becomes known. ``label`` names the download in errors (default: the URL).

    Raises :class:`OfflineError` for network URLs when offline,
    :class:`DownloadError` when the transfer fails, and
    :class:`HashMismatchError` when ``sha256`` is given and differs. ``dest``
    is removed on any failure. ``dest`` may also be a binary stream (a pipe
    to an unpacker): a break is then resumed where the bytes stopped, and a
    server that cannot resume raises :class:`Unrewindable`.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise DownloadError(f"{url}: not an http://, https:// or file:// URL (the only kinds "
                            "artifacts-py downloads); check the URL", url=url)
    is_file = scheme == "file"
    if not is_file:
        check_online(url)
    stream = None if isinstance(dest, (str, os.PathLike)) else dest
    path = os.fspath(dest) if isinstance(dest, (str, os.PathLike)) else None
    try:
        with (_borrowed(stream) if stream is not None else open(str(path), "wb")) as fh:
            if mode is not None and path is not None:
                os.fchmod(fh.fileno(), mode)
            want = compute_sha256 or sha256 is not None
            sink = _Sink(fh, hashers or (), on_bytes, on_total, want)
            if is_file:
                _copy_file(url, sink)
            else:
                _fetch(url, sink, transport or default(), max(1, attempts))
        actual = sink.sha256.hexdigest() if sink.sha256 is not None else None
        if sha256 is not None and actual != sha256.strip().lower():
            raise hash_mismatch("sha256", sha256, actual, what=label or url,
                                advice=f"the download ({sink.size} bytes) was deleted; the "
                                "file at that URL changed or is corrupt")
    except BaseException:
        if path is not None:
            _unlink(path)
        raise
    return DownloadResult(actual, sink.size, sink.extra)


class Unrewindable(DownloadError):
    """A transfer into a stream had to start over, which a stream cannot do."""


@contextmanager
def _borrowed(stream: BinaryIO) -> Iterator[BinaryIO]:
    """A caller's stream used as the download target, left open for the caller to close."""
    yield stream


class _Sink:
    """The destination file plus its running hashes and progress hooks."""

    def __init__(self, fh: Any, factories: Sequence[Callable[[], Hash]],
                 on_bytes: Optional[OnBytes], on_total: Optional[OnBytes],
                 with_sha256: bool = True) -> None:
        self.fh, self.factories = fh, list(factories)
        self.on_bytes, self.on_total = on_bytes, on_total
        self.with_sha256 = with_sha256
        self.size = 0
        self.reset()

    def reset(self) -> None:
        """Forget everything written so far (the transfer starts over)."""
        if self.size:
            if not self.fh.seekable():
                raise Unrewindable("the server sent the file from the start again, and the "
                                   "bytes already passed on cannot be taken back")
            self.fh.seek(0)
            self.fh.truncate()
        if self.size and self.on_bytes is not None:
            self.on_bytes(-self.size)
        self.sha256 = hashlib.sha256() if self.with_sha256 else None
        self.extra = [make() for make in self.factories]
        self.hashes = ([self.sha256] if self.sha256 is not None else []) + self.extra
        self.size = 0

    def total(self, n: Optional[int]) -> None:
        if n is not None and self.on_total is not None:
            self.on_total(n)

    def write(self, chunk: bytes) -> None:
        self.fh.write(chunk)
        for h in self.hashes:
            h.update(chunk)
        self.size += len(chunk)
        if self.on_bytes is not None:
            self.on_bytes(len(chunk))


class _Remote:
    """What we learnt about the remote file from earlier responses."""

    def __init__(self) -> None:
        self.total: Optional[int] = None
        self.ranges = False  # the server honours Range requests
        self.distrust = False  # it sent a wrong Content-Range once: never ask again
        self.etag: Optional[str] = None  # strong validator for If-Range


class _TooSlow(Exception):
    """The body arrived slower than the low-speed limit."""


def _fetch(url: str, sink: _Sink, transport: Transport, attempts: int) -> None:
    """Fill ``sink`` from ``url``, resuming or restarting broken bodies."""
    remote, why = _Remote(), ""
    for attempt in range(attempts):
        outcome = _attempt(url, sink, transport, remote)
        if outcome is None:
            return
        why, backoff = outcome
        if backoff and attempt + 1 < attempts:
            log.debug("resuming %s (%d/%d): %s", url, attempt + 1, attempts - 1, why)
            time.sleep(min(0.2 * 2 ** attempt, 5.0))
    total = "?" if remote.total is None else remote.total
    raise DownloadError(f"{url}: incomplete after {attempts} attempts ({sink.size} of {total} "
                        f"bytes; last problem: {why}); try again later", url=url)


def _attempt(url: str, sink: _Sink, transport: Transport,
             remote: _Remote) -> Optional[Tuple[str, bool]]:
    """One request. None when complete, else (reason, whether to back off)."""
    from urllib3.exceptions import HTTPError

    headers: Dict[str, str] = {}
    if sink.size and remote.ranges:
        headers["Range"] = f"bytes={sink.size}-"
        if remote.etag:
            headers["If-Range"] = remote.etag
    try:
        resp = transport.get(url, headers)
    except (HTTPError, OSError) as exc:
        if isinstance(exc, OfflineError):
            raise
        raise DownloadError(f"{url}: {reason(exc)}; check the URL and your network",
                            url=url) from None
    failure: Optional[BaseException] = None
    done = False
    try:
        restart = _accept(url, resp, sink, remote, asked_range="Range" in headers)
        if restart:
            return restart, False
        failure = _stream(resp, sink, transport.speed_limit, transport.speed_time)
        done = failure is None
    finally:
        if not done:  # unread or broken body: this connection cannot be reused
            resp.close()
        resp.release_conn()
    if isinstance(failure, _TooSlow):
        raise DownloadError(f"{url}: {failure}; the server is too slow, giving up on it",
                            url=url)
    if failure is None and (remote.total is None or sink.size >= remote.total):
        return None
    return (reason(failure) if failure else "body ended early"), True


def _accept(url: str, resp: "urllib3.BaseHTTPResponse", sink: _Sink, remote: _Remote,
            asked_range: bool) -> Optional[str]:
    """Check the response status/headers and position ``sink`` for its body.

    Returns a reason when the response is unusable and the transfer must
    start over with a plain request; raises DownloadError on HTTP errors.
    """
    code = resp.status
    if code == 206:
        got = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        start = int(got.group(1)) if got else -1
        total = int(got.group(3)) if got and got.group(3) != "*" else None
        if start != sink.size or (remote.total is not None and total != remote.total):
            # A lying (or changed) server: never trust its ranges again.
            asked = sink.size
            remote.ranges, remote.distrust = False, True
            sink.reset()
            return f"server sent a range starting at {start} when asked for {asked}"
        remote.ranges, remote.total = True, total
    elif code == 416 and asked_range:
        remote.ranges = False
        sink.reset()
        return "server refused the resume range (416)"
    elif 200 <= code < 300:
        length = resp.headers.get("Content-Length", "")
        remote.total = int(length) if length.isdigit() else None
        remote.ranges = (not remote.distrust
                         and "bytes" in resp.headers.get("Accept-Ranges", "").lower())
        etag = resp.headers.get("ETag")
        remote.etag = etag if etag and not etag.startswith("W/") else None
        if sink.size:  # the server ignored our Range (or we could not ask): start over
            sink.reset()
    else:
        raise DownloadError(status_message(url, resp.status, resp.reason,
                                           resp.headers.get("Retry-After")),
                            url=url, status=code)
    sink.total(remote.total)
    return None


def _stream(resp: "urllib3.BaseHTTPResponse", sink: _Sink, speed_limit: int,
            speed_time: float) -> Optional[BaseException]:
    """Copy the body into ``sink``; return the read error that stopped it, if any."""
    from urllib3.exceptions import HTTPError

    # read1 keeps every byte that arrived before a stall or reset, so a resume
    # starts exactly there (urllib3 < 2.3 lacks it: fall back to read).
    read: Callable[[int], Any] = _PlainBody.of(resp) or getattr(resp, "read1", None) or resp.read
    window_start, window_bytes = time.monotonic(), 0
    while True:
        try:
            chunk = read(CHUNK)  # raw bytes (decode_content=False): what the URL serves
        except (HTTPError, OSError) as exc:  # read errors only; write errors propagate
            return exc
        if not chunk:
            return None
        sink.write(chunk)
        window_bytes += len(chunk)
        if window_bytes >= speed_limit * speed_time:
            window_start, window_bytes = time.monotonic(), 0
        elif time.monotonic() - window_start > speed_time:
            return _TooSlow(f"only {window_bytes} bytes arrived in {speed_time:g} s "
                            f"(the low-speed limit is {speed_limit} bytes/s)")


class _PlainBody:
    """read1 for a body of known length (not chunked) into one reused buffer.

    urllib3's read1 returns a new bytes object per chunk; allocating and
    faulting in a fresh megabyte each time costs about a fifth of a large
    download's CPU beside the two hashes. This reads the same socket stream
    (the standard library response under urllib3's) with ``readinto1``, and
    closes that response once the body is complete so that the connection is
    reused as after any finished read. Anything else uses urllib3's read1.
    The chunk handed out is overwritten by the next read: sinks copy it.
    """

    def __init__(self, response: Any, raw: Any) -> None:
        self.response, self.raw = response, raw
        self.view = memoryview(bytearray(CHUNK))

    @classmethod
    def of(cls, resp: "urllib3.BaseHTTPResponse") -> "Optional[_PlainBody]":
        inner = getattr(resp, "_fp", None)  # http.client.HTTPResponse
        raw = getattr(inner, "fp", None)
        if (getattr(inner, "chunked", True) or not isinstance(getattr(inner, "length", None), int)
                or not hasattr(raw, "readinto1") or resp.headers.get("Content-Encoding",
                                                                    "identity") != "identity"):
            return None
        return cls(inner, raw)

    def __call__(self, n: int) -> memoryview:
        left = self.response.length
        if not left:  # complete: closing it lets the connection serve the next request
            self.response.close()
            return self.view[:0]
        got = self.raw.readinto1(self.view[:min(n, left)])
        if not got:
            raise OSError(0, f"the connection closed {left} bytes before the end of the body")
        self.response.length = left - got
        return self.view[:got]


def _copy_file(url: str, sink: _Sink) -> None:
    """Fill ``sink`` from a file:// URL."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise DownloadError(f"{url}: file URLs must be local (file:///path)", url=url)
    path = unquote(parts.path)
    try:
        with open(path, "rb") as src:
            sink.total(os.fstat(src.fileno()).st_size)
            while True:
                chunk = src.read(CHUNK)
                if not chunk:
                    return
                sink.write(chunk)
    except OSError as exc:
        raise DownloadError(f"{url}: cannot read {path}: {exc.strerror or exc}", url=url) from exc


def status_message(url: str, code: int, why: Optional[str], retry_after: Optional[str] = None) -> str:
    """One line for an HTTP error status: the URL, the code and what to do."""
    if code in (404, 410):
        hint = "no file at this URL; check it"
    elif code in (401, 403):
        hint = "access denied; check permissions or credentials"
    elif retry_after and _seconds(retry_after) > MAX_RETRY_AFTER:
        hint = (f"the server asks to retry after {retry_after.strip()} s, longer than the "
                f"{MAX_RETRY_AFTER:.0f} s artifacts-py waits; try again later")
    elif code in RETRY_STATUSES:
        hint = "server still failing after retries; try again later"
    else:
        hint = "the server refused the request"
    return f"{url}: HTTP {code} {why or ''}".rstrip() + f" ({hint})"


def _seconds(retry_after: str) -> float:
    try:
        return float(retry_after)
    except ValueError:  # an HTTP date: treat as long
        return float("inf")


def reason(exc: BaseException) -> str:
    """A short one-line reason from a urllib3/socket exception chain (no reprs)."""
    from urllib3.exceptions import (ConnectTimeoutError, LocationParseError, LocationValueError,
                                    NewConnectionError, ProtocolError, ReadTimeoutError)

    if isinstance(exc, LocationParseError):  # its own text names the URL; its causes do not
        return f"not a valid URL ({exc})"
    if isinstance(exc, LocationValueError):  # a redirect to file://, ftp://, ...
        return "the server redirected to a URL that is not http(s) (refused)"
    chain: List[BaseException] = []
    cur: Optional[BaseException] = exc
    while cur is not None and cur not in chain:
        chain.append(cur)
        nested = [getattr(cur, "reason", None), *cur.args[:1], cur.__cause__, cur.__context__]
        cur = next((e for e in nested if isinstance(e, BaseException)), None)
    for e in reversed(chain):  # innermost socket error says it best
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
    for e in chain:
        if isinstance(e, ReadTimeoutError):
            return "read timed out"
        if isinstance(e, ConnectTimeoutError) and not isinstance(e, NewConnectionError):
            return "connect timed out"
    if any(isinstance(e, TimeoutError) for e in chain):  # a socket read of our own (_PlainBody)
        return "read timed out"
    for e in chain:
        if isinstance(e, ProtocolError) or type(e).__name__ in ("BadStatusLine", "HTTPException",
                                                                "RemoteDisconnected"):
            return "the server did not answer with valid HTTP (is this the right port?)"
    text = " ".join(_NOISE.sub("", str(chain[-1])).split())
    return (text[:200] or type(chain[-1]).__name__)


def _basename(url: str) -> str:
    return unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]) or url


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
