"""A version in a gypsum service, downloaded through its REST API (``/file/<key>``).

The version's ``..summary`` must say the upload finished, and a version on
probation is refused unless the entry opts in (``probation = true``). The
``..manifest`` is untrusted and checked as a whole before anything is
written (:func:`artifacts_py.gypsum.protocol.check_manifest`). Linked files
are fetched from their final ``ancestor``, each distinct object once (more
names for the same object become hard links); every file is streamed to disk
on the transfer engine while its size, md5 and git blob hash are computed,
and checked against the manifest. The tree hash comes from the blob hashes.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Dict, Generic, List, Optional, TypeVar

from .. import fill as engine
from .. import settings, transport
from ..errors import DownloadError, GypsumError, GypsumNotFoundError, OfflineError
from ..gypsum.protocol import (DEFAULT_URL, FileEntry, GypsumSource, check_manifest, file_url,
                               loads_unique, version_key)
from ..progress import Bar
from .base import Filled


def service_url(g: GypsumSource) -> str:
    """The REST API to use for ``g`` on this machine (``ARTIFACTS_PY_GYPSUM_URL`` wins)."""
    return (settings.gypsum_url() or g.url or DEFAULT_URL).rstrip("/")


class GypsumVersionSource:
    """Version ``g`` of a gypsum service."""

    network = True
    readonly = True

    def __init__(self, g: GypsumSource, *, probation: bool = False) -> None:
        self.g, self.url = g, service_url(g)
        self.allow_probation = probation or g.probation
        self.label = f"gypsum {self.url} ({g.coordinates})"

    @property
    def where(self) -> str:
        return f"{self.url} {self.g.coordinates}"

    def fill(self, dest: Path, work: Path, bar: Bar) -> Filled:
        cap = settings.max_connections()
        t = transport.Transport(pool_maxsize=cap)
        try:
            # The workers' connections open while the summary and the manifest (both at
            # once) are on their way; the summary is judged first.
            warm = engine.WarmUp(t, self.url, cap)
            manifest = Background(lambda: self._document("..manifest", t, missing_ok=True))
            try:
                self._check_summary(t)
            except BaseException:
                manifest.thread.join()  # its own outcome no longer matters
                raise
            workers = warm.settle()  # from the summary's latency, while the manifest comes
            document = manifest.result()
            if document is None:  # gone since the summary was read: say what is missing
                document = self._document("..manifest", t)
            files = check_manifest(document, f"{self.where}/..manifest",
                                   self.g.project, self.g.asset, self.g.version)
            first: Dict[str, FileEntry] = {}  # object key -> the file that fetches it
            copies: Dict[str, str] = {}
            for f in files:
                if f.key in first:
                    copies[f.path] = first[f.key].path
                    if (f.size, f.md5) != (first[f.key].size, first[f.key].md5):
                        raise GypsumError(f"{self.where}: ..manifest gives {f.path!r} and "
                                          f"{first[f.key].path!r} different sizes or md5s for "
                                          "one object; the version is damaged")
                else:
                    first[f.key] = f
            keys = {f.path: f.key for f in first.values()}
            fetch = engine.http_fetch(lambda rel: file_url(self.url, keys[rel]), bar,
                                      self.where, shared=t)
            specs = [engine.FileSpec(f.path, f.size, f.md5) for f in first.values()]
            tree = engine.fill(dest, specs, [], fetch, workers=workers, cap=cap,
                               where=self.where, bar=bar, copies=copies)
        finally:
            t.close()
        return Filled(tree, sum(f.size for f in files), len(files))

    def _check_summary(self, t: transport.Transport) -> None:
        summary = self._document("..summary", t)
        if not isinstance(summary, dict):
            raise GypsumError(f"{self.where}: ..summary is not a JSON object; the version is "
                              "damaged")
        if not summary.get("upload_finish"):
            raise GypsumError(f"{self.where}: the upload of this version has not finished (or "
                              "was abandoned); its files may be missing. Try again later, or "
                              "pin another version")
        if summary.get("on_probation") is True and not self.allow_probation:
            raise GypsumError(f"{self.where}: this version is on probation (not yet approved); "
                              "set probation = true in the entry's [gypsum] table to use it "
                              "anyway, or ask a project owner to approve it")

    def _document(self, name: str, t: transport.Transport, missing_ok: bool = False) -> Any:
        """A version's ``..`` JSON document, never cached (a missing one says what is missing,
        or is None with ``missing_ok``)."""
        return fetch_document(self.url, version_key(*self.g[:3], name), self.where, missing_ok,
                              t)


T = TypeVar("T")


class Background(Generic[T]):
    """``call()`` running on a thread of its own (cheaper to start than an executor)."""

    def __init__(self, call: Callable[[], T]) -> None:
        self.out: List[T] = []
        self.error: List[BaseException] = []

        def run() -> None:
            try:
                self.out.append(call())
            except BaseException as e:  # handed to the caller's thread
                self.error.append(e)

        self.thread = threading.Thread(target=run, name="artifacts-py-gypsum", daemon=True)
        self.thread.start()

    def result(self) -> T:
        """What ``call()`` returned, once it has (or the error it raised)."""
        self.thread.join()
        if self.error:
            raise self.error[0]
        return self.out[0]


def fetch_document(url: str, key: str, where: str, missing_ok: bool = False,
                   t: Optional[transport.Transport] = None) -> Any:
    """GET ``/file/<key>`` as untrusted JSON; 404 -> which project/asset/version is missing."""
    t = t or transport.default()
    data = t.get_small(file_url(url, key))  # the common case, without urllib3
    if data is not None:
        return loads_unique(data, f"{where}: {key}")
    try:
        r = t.request("GET", file_url(url, key))
    except OfflineError:
        raise
    except DownloadError as e:
        raise GypsumError(f"{where}: cannot reach the gypsum service ({e}); check the URL and "
                          "your network", url=url) from None
    if r.status == 404:
        if missing_ok:
            return None
        raise which_missing(url, key) or GypsumNotFoundError(
            f"{where}: {key.rsplit('/', 1)[-1]} does not exist", status=404, url=url)
    if r.status >= 300:
        raise GypsumError(f"{where}: HTTP {r.status} {r.reason} for {key}".rstrip(),
                          status=r.status, url=url)
    return loads_unique(r.data, f"{where}: {key}")


def which_missing(url: str, key: str) -> Optional[GypsumNotFoundError]:
    """The error naming the first of project, asset, version of ``key`` that does not exist."""
    parts = key.split("/")[:-1]  # p, a[, v]
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth - 1])
        try:
            r = transport.default().request("GET", f"{url}/list",
                                            fields={"prefix": prefix + "/" if prefix else ""})
            listing: List[str] = r.json() if r.status == 200 else []
        except (DownloadError, ValueError):
            return None
        if not isinstance(listing, list) or f"{'/'.join(parts[:depth])}/" not in listing:
            what = ("project", "asset", "version")[depth - 1]
            return GypsumNotFoundError(f"{url}: {what} {parts[depth - 1]!r} does not exist "
                                       f"(looking for {'/'.join(parts)})", status=404, url=url)
    return None
