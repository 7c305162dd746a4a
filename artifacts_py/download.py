"""Robust HTTP(S) and file:// downloads with streaming hashes and resume.

The transport is urllib3 itself (the engine under requests): keep-alive
connection pools, and retries of whole requests (connect errors, read
errors before the body, 429/5xx with ``Retry-After``) by its ``Retry``,
configured in :class:`Session`. Going below requests costs nothing we use and
halves the per-request CPU, which is what thousands of small Gobbler files
pay (≈200 µs instead of ≈500 µs per GET, ``benchmarks/bench_gobbler_resolve.py``).
Proxies and CA bundles are taken from the environment as requests does.
:meth:`Session.get_small` is a leaner GET still (the standard library's
``http.client``) for many small files, which falls back to :func:`download`
on anything unusual.

This module adds what urllib3 cannot do: resuming a body that broke off half
way (``Range: bytes=<have>-``), falling back to a fresh start when the server
ignores or lies about ranges, and hashing the bytes as they stream past so
the file is never read twice.

``urllib3`` and ``tqdm`` are imported lazily: importing this module is cheap
and safe on the warm path.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union
from urllib.parse import unquote, urlsplit

from . import __version__
from .errors import DownloadError, HashMismatchError, OfflineError

if TYPE_CHECKING:
    import urllib3

CHUNK = 1 << 20
RETRY_STATUSES = (429, 500, 502, 503, 504)
_TRUTHY = {"1", "true", "yes", "on"}
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.I)
# urllib3 wraps socket errors in reprs like "HTTPConnectionPool(host=..): ..." and
# "<urllib3.connection.HTTPConnection object at 0x..>: "; users need neither.
_NOISE = re.compile(r"\w+ConnectionPool\([^)]*\):\s*|<[^>]* object at 0x[0-9a-f]+>:?\s*")

__all__ = ["DownloadResult", "Session", "offline", "make_session", "download", "CHUNK"]


@dataclass
class DownloadResult:
    """What :func:`download` wrote: its sha256 hex, size, and extra hash objects."""

    sha256: Optional[str]  # None when neither asked for nor checked
    size: int
    digests: List[Any] = field(default_factory=list)


def offline() -> bool:
    """True when ``ARTIFACTS_PY_OFFLINE`` is 1/true/yes/on (read on every call)."""
    return os.environ.get("ARTIFACTS_PY_OFFLINE", "").strip().lower() in _TRUTHY


class Session:
    """Keep-alive HTTP(S) connection pools with retries, for many downloads.

    Connect errors, read errors before the body and statuses
    429/500/502/503/504 are retried by urllib3's ``Retry`` up to ``retries``
    times with exponential backoff (``backoff_factor``), honouring
    ``Retry-After``; the last bad status is returned rather than raised, so
    :func:`download` can turn it into a clear error. Proxies come from the
    environment (``HTTPS_PROXY``, ``NO_PROXY``, ...) and certificates from
    ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` or certifi, as with requests.
    Thread-safe; one per thread avoids contention on a pool.
    """

    def __init__(self, retries: int = 5, backoff_factor: float = 0.5,
                 pool_maxsize: int = 16) -> None:
        from urllib3.util.retry import Retry

        self.retry = Retry(total=retries, connect=retries, read=retries, status=retries,
                           backoff_factor=backoff_factor, status_forcelist=RETRY_STATUSES,
                           allowed_methods=frozenset({"GET", "HEAD"}),
                           respect_retry_after_header=True, raise_on_status=False)
        # identity: we hash the bytes as stored at the URL; ranges address those bytes too.
        self.headers = {"User-Agent": f"artifacts-py/{__version__}",
                        "Accept-Encoding": "identity"}
        self._pool_maxsize = pool_maxsize
        self._managers: Dict[str, Any] = {}  # proxy URL ("" = direct) -> urllib3 manager
        self._proxy_of: Dict[Tuple[str, str], str] = {}  # (scheme, host) -> proxy URL
        self._lock = threading.Lock()
        self._plain = threading.local()  # get_small's connections, per thread
        self._tls: Any = None

    def get(self, url: str, headers: Optional[Dict[str, str]] = None,
            timeout: Tuple[float, float] = (10.0, 60.0)) -> "urllib3.BaseHTTPResponse":
        """Start a GET (redirects followed); the body is left unread for streaming."""
        from urllib3 import Timeout

        return self._manager(url).urlopen(
            "GET", url, headers={**self.headers, **headers} if headers else self.headers,
            retries=self.retry, timeout=Timeout(connect=timeout[0], read=timeout[1]),
            preload_content=False, decode_content=False)

    def get_small(self, url: str, size: int,
                  timeout: Tuple[float, float] = (10.0, 60.0)) -> Optional[bytes]:
        """The body of a plain ``200`` answer of exactly ``size`` bytes, or None.

        The fast path for many small files: one kept-alive ``http.client``
        connection per host and thread, and nothing else: no retries, no
        redirects, no proxies, no chunked bodies. It costs half the CPU of a
        urllib3 request (~110 vs ~230 us here), which is most of a small
        file's cost. Anything unusual (an error, another status or length,
        a proxy) gives None, and the caller uses :func:`download`, which
        retries and resumes through urllib3.
        """
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or self._proxy(parts):
            return None
        conns = self._plain.__dict__.setdefault("conns", {})
        conn = conns.get((scheme, parts.netloc))
        try:
            if conn is None:
                conn = conns[(scheme, parts.netloc)] = self._connect(scheme, parts, timeout)
            conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""),
                         headers=self.headers)
            resp = conn.getresponse()
            if resp.status != 200 or resp.getheader("Content-Length") != str(size):
                conn.close()  # an unread body: this connection is done
                return None
            body = resp.read()
        except Exception:  # noqa: BLE001 - any failure: the robust path takes over
            if conn is not None:
                conn.close()
            return None
        return body if len(body) == size else None

    def _connect(self, scheme: str, parts: Any, timeout: Tuple[float, float]) -> Any:
        import http.client

        if scheme == "https":
            if self._tls is None:
                import ssl

                self._tls = ssl.create_default_context(cafile=_ca_bundle())
            conn: Any = http.client.HTTPSConnection(parts.hostname, parts.port,
                                                    timeout=timeout[0], context=self._tls)
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout[0])
        conn.connect()
        conn.sock.settimeout(timeout[1])
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
            for manager in self._managers.values():
                manager.clear()
            self._managers.clear()


def make_session(retries: int = 5, backoff_factor: float = 0.5,
                 pool_maxsize: int = 16) -> Session:
    """A :class:`Session` that retries GET/HEAD on flaky networks and servers."""
    return Session(retries, backoff_factor, pool_maxsize)


def _proxy_for(scheme: str, host: str) -> str:
    """The proxy URL the environment gives for ``scheme://host``, or "" for none."""
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
    return certifi.where()


def download(url: str, dest: Union[str, "os.PathLike[str]"], *, sha256: Optional[str] = None,
             session: Optional[Session] = None,
             timeout: Tuple[float, float] = (10.0, 60.0), attempts: int = 5,
             progress: Optional[bool] = None, desc: Optional[str] = None,
             hashers: Optional[Sequence[Callable[[], Any]]] = None,
             compute_sha256: bool = True, mode: Optional[int] = None) -> DownloadResult:
    """Stream ``url`` (http, https or file) to ``dest`` and hash it on the way.

    ``hashers`` are zero-argument factories of extra hash objects (e.g.
    ``hashlib.md5``); they are re-created if the transfer has to restart, and
    the final objects are returned in ``DownloadResult.digests``. A body that
    breaks off is resumed (or restarted) up to ``attempts`` requests in all.
    ``compute_sha256=False`` skips the sha256 when no ``sha256`` is to be checked
    (callers that verify with their own ``hashers``). ``mode`` sets ``dest``'s
    permission bits whatever the umask. ``timeout`` is (connect, read) seconds.
    A progress bar goes to stderr when ``progress`` is true, or when it is None
    and stderr is a terminal.

    Raises :class:`OfflineError` for network URLs when ``ARTIFACTS_PY_OFFLINE``
    is set, :class:`DownloadError` when the transfer fails, and
    :class:`HashMismatchError` when ``sha256`` is given and differs. ``dest``
    is removed on any failure.
    """
    dest = os.fspath(dest)
    is_file = urlsplit(url).scheme.lower() == "file"
    if not is_file and offline():
        raise OfflineError(f"{url}: not downloaded because ARTIFACTS_PY_OFFLINE is set; "
                           "unset it to allow network access", url=url)
    try:
        with open(dest, "wb") as fh:
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            want = compute_sha256 or sha256 is not None
            sink = _Sink(fh, hashers or (), _progress_bar(progress, desc or _basename(url)), want)
            try:
                if is_file:
                    _copy_file(url, sink)
                else:
                    _fetch(url, sink, session, timeout, max(1, attempts))
            finally:
                sink.bar.close()
        actual = sink.sha256.hexdigest() if sink.sha256 is not None else None
        if sha256 is not None and actual != sha256.strip().lower():
            raise HashMismatchError(
                f"{url}: sha256 mismatch: expected {sha256}, got {actual} ({sink.size} bytes); "
                "the download was deleted. The file at that URL changed or is corrupt",
                expected=sha256, actual=actual)
    except BaseException:
        _unlink(dest)
        raise
    return DownloadResult(actual, sink.size, sink.extra)


class _Sink:
    """The destination file plus its running hashes and progress bar."""

    def __init__(self, fh: Any, factories: Sequence[Callable[[], Any]], bar: Any,
                 with_sha256: bool = True) -> None:
        self.fh, self.factories, self.bar = fh, list(factories), bar
        self.with_sha256 = with_sha256
        self.reset()

    def reset(self, total: Optional[int] = None) -> None:
        """Forget everything written so far (the transfer starts over)."""
        if self.fh.tell():  # a fresh "wb" file is already empty
            self.fh.seek(0)
            self.fh.truncate()
        self.sha256 = hashlib.sha256() if self.with_sha256 else None
        self.extra = [make() for make in self.factories]
        self.hashes = ([self.sha256] if self.sha256 is not None else []) + self.extra
        self.size = 0
        self.bar.reset(total=total)

    def write(self, chunk: bytes) -> None:
        self.fh.write(chunk)
        for h in self.hashes:
            h.update(chunk)
        self.size += len(chunk)
        self.bar.update(len(chunk))


@dataclass
class _Remote:
    """What we learnt about the remote file from earlier responses."""

    total: Optional[int] = None
    ranges: bool = False  # the server honours Range requests
    distrust: bool = False  # it sent a wrong Content-Range once: never ask again
    etag: Optional[str] = None  # strong validator for If-Range


def _fetch(url: str, sink: _Sink, session: Optional[Session],
           timeout: Tuple[float, float], attempts: int) -> None:
    """Fill ``sink`` from ``url``, resuming or restarting broken bodies."""
    own = session is None
    sess = make_session() if session is None else session
    remote, why = _Remote(), ""
    try:
        for attempt in range(attempts):
            outcome = _attempt(url, sink, sess, timeout, remote)
            if outcome is None:
                return
            why, backoff = outcome
            if backoff and attempt + 1 < attempts:
                time.sleep(min(0.2 * 2 ** attempt, 5.0))
    finally:
        if own:
            sess.close()
    total = "?" if remote.total is None else remote.total
    raise DownloadError(f"{url}: incomplete after {attempts} attempts ({sink.size} of {total} "
                        f"bytes; last problem: {why}); try again later", url=url)


def _attempt(url: str, sink: _Sink, sess: Session, timeout: Tuple[float, float],
             remote: _Remote) -> Optional[Tuple[str, bool]]:
    """One request. None when complete, else (reason, whether to back off)."""
    from urllib3.exceptions import HTTPError

    headers: Dict[str, str] = {}
    if sink.size and remote.ranges:
        headers["Range"] = f"bytes={sink.size}-"
        if remote.etag:
            headers["If-Range"] = remote.etag
    try:
        resp = sess.get(url, headers, timeout)
    except (HTTPError, OSError) as exc:
        raise DownloadError(f"{url}: {_reason(exc)}; check the URL and your network",
                            url=url) from None
    failure: Optional[BaseException] = None
    done = False
    try:
        restart = _accept(url, resp, sink, remote, asked_range="Range" in headers)
        if restart:
            return restart, False
        failure = _stream(resp, sink)
        done = failure is None
    finally:
        if not done:  # unread or broken body: this connection cannot be reused
            resp.close()
        resp.release_conn()
    if failure is None and (remote.total is None or sink.size >= remote.total):
        return None
    return (_reason(failure) if failure else "body ended early"), True


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
        raise DownloadError(_status_message(url, resp), url=url)
    sink.bar.total = remote.total
    return None


def _stream(resp: "urllib3.BaseHTTPResponse", sink: _Sink) -> Optional[BaseException]:
    """Copy the body into ``sink``; return the read error that stopped it, if any."""
    from urllib3.exceptions import HTTPError

    # read1 keeps every byte that arrived before a stall or reset, so a resume
    # starts exactly there (urllib3 < 2.3 lacks it: fall back to read).
    read = getattr(resp, "read1", None) or resp.read
    while True:
        try:
            chunk = read(CHUNK)  # raw bytes (decode_content=False): what the URL serves
        except (HTTPError, OSError) as exc:  # read errors only; write errors propagate
            return exc
        if not chunk:
            return None
        sink.write(chunk)


def _copy_file(url: str, sink: _Sink) -> None:
    """Fill ``sink`` from a file:// URL."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise DownloadError(f"{url}: file URLs must be local (file:///path)", url=url)
    path = unquote(parts.path)
    try:
        with open(path, "rb") as src:
            sink.bar.reset(total=os.fstat(src.fileno()).st_size)
            while True:
                chunk = src.read(CHUNK)
                if not chunk:
                    return
                sink.write(chunk)
    except OSError as exc:
        raise DownloadError(f"{url}: cannot read {path}: {exc.strerror or exc}", url=url) from exc


def _status_message(url: str, resp: "urllib3.BaseHTTPResponse") -> str:
    code = resp.status
    if code in (404, 410):
        hint = "no file at this URL; check it"
    elif code in (401, 403):
        hint = "access denied; check permissions or credentials"
    elif code in RETRY_STATUSES:
        hint = "server still failing after retries; try again later"
    else:
        hint = "the server refused the request"
    return f"{url}: HTTP {code} {resp.reason or ''}".rstrip() + f" ({hint})"


def _reason(exc: BaseException) -> str:
    """A short one-line reason from a urllib3/socket exception chain."""
    from urllib3.exceptions import (ConnectTimeoutError, LocationValueError, NewConnectionError,
                                    ReadTimeoutError)

    if isinstance(exc, LocationValueError):  # its own text names the URL; its causes do not
        return f"not a valid URL ({exc})"
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
    text = " ".join(_NOISE.sub("", str(chain[-1])).split())
    return (text[:200] or type(chain[-1]).__name__)


def _progress_bar(progress: Optional[bool], desc: str) -> Any:
    """A tqdm bar on stderr, or a do-nothing stand-in."""
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=None, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stderr, mininterval=0.5, leave=False)


class _NoBar:
    total: Optional[int] = None

    def update(self, n: int) -> None:
        pass

    def reset(self, total: Optional[int] = None) -> None:
        pass

    def close(self) -> None:
        pass


def _basename(url: str) -> str:
    return unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]) or url


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
