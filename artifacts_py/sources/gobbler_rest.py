"""A Gobbler version downloaded through the service's REST API (``/fetch``).

The ``..manifest`` is fetched first (never cached) and checked as a whole;
then every file is fetched on the transfer engine's worker threads, each
streamed to disk while its size, md5 and git blob hash are computed, and
checked against the manifest. Small files take the transport's lean GET;
anything unusual there falls back to the robust download, which retries and
resumes with ``Range``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Tuple

from .. import fill as engine
from .. import settings, transport
from ..errors import DownloadError, GobblerError, GobblerNotFoundError, OfflineError
from ..gobbler.protocol import (GobblerSource, check_manifest, fetch_url, parse_manifest,
                                which_missing)
from ..progress import Bar
from .base import Filled

# Requests in flight at first on a near server (the engine grows the number while it
# helps, up to ARTIFACTS_PY_MAX_CONNECTIONS; a far server starts higher): more threads
# than that cost CPU in GIL hand-offs on loopback.
WORKERS = engine.NEAR_WORKERS


class RestSource:
    """Version ``g`` from the Gobbler REST API at ``url``."""

    network = True
    readonly = True

    def __init__(self, url: str, g: GobblerSource) -> None:
        self.url, self.g = url.rstrip("/"), g
        self.label = f"gobbler {url} ({g.coordinates})"

    def fill(self, dest: Path, work: Path, bar: Bar) -> Filled:
        cap = settings.max_connections()
        t = transport.Transport(pool_maxsize=cap)
        try:
            warm = engine.WarmUp(t, self.url, cap)  # connections open while the manifest comes
            files, empty = check_manifest(fetch_manifest(self.url, self.g, t), self.where)
            workers = warm.settle()
            base = f"{self.g.project}/{self.g.asset}/{self.g.version}/"
            fetch = engine.http_fetch(lambda rel: fetch_url(self.url, base + rel), bar,
                                      self.where, shared=t)
            specs = [engine.FileSpec(*f) for f in files]
            tree = engine.fill(dest, specs, empty, fetch, workers=workers, cap=cap,
                               where=self.where, bar=bar)
        finally:
            t.close()
        return Filled(tree, sum(f.size for f in files), len(files))

    @property
    def where(self) -> str:
        return f"{self.url}/fetch/{self.g.coordinates}"


def fetch_manifest(url: str, g: GobblerSource, t: Optional[transport.Transport] = None) -> object:
    """GET the version's ``..manifest``, never cached (missing project/asset/version -> which one)."""
    t = t or transport.default()
    target = fetch_url(url, f"{g.coordinates}/..manifest")
    data = t.get_small(target)  # the common case, without urllib3
    if data is not None:
        return parse_manifest(data, f"{url}/fetch/{g.coordinates}")
    try:
        r = t.request("GET", target)
    except DownloadError as e:
        if isinstance(e, OfflineError):
            raise
        raise GobblerError(f"{url}: cannot reach the Gobbler service ({e}); check that it "
                           "runs and the URL is right", url=url) from None
    if r.status == 404:
        raise which_missing(url, g.project, g.asset, g.version, remote_exists(url)) or \
            GobblerNotFoundError(f"{url}: version {g.coordinates} has no manifest "
                                 "(unfinished upload?)", status=404, url=url)
    if r.status >= 300:
        raise GobblerError(f"{target}: HTTP {r.status} {r.reason}".rstrip(), status=r.status,
                           url=url)
    return parse_manifest(r.data, f"{url}/fetch/{g.coordinates}")


def remote_exists(url: str) -> Callable[..., bool]:
    """``exists`` for :func:`~artifacts_py.gobbler.protocol.which_missing` over ``/list``."""
    from ..gobbler import client

    listers: Tuple[Callable[..., list[str]], ...] = (
        lambda: client.list_projects(url=url),
        lambda p: client.list_assets(p, url=url),
        lambda p, a: client.list_versions(p, a, url=url))
    return lambda *parts: parts[-1] in listers[len(parts) - 1](*parts[:-1])
