"""Where an artifact's content comes from.

A *source* is a plain callable ``fill(tmpdir) -> tree_hash_or_None`` plus a
label for error messages; :func:`sources_for` lists them for an entry in the
order they are tried: a mounted Gobbler registry, the Gobbler REST API, then
each ``[[download]]`` tarball mirror. :func:`artifacts_py.depot.install`
runs one inside a fresh temp dir and verifies what it produced.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional
from urllib.parse import urlsplit

from .tomlmodel import ArtifactEntry, DownloadInfo

Fill = Callable[[Path], Optional[str]]


class Source(NamedTuple):
    """One way to get an artifact: ``label`` for messages, ``fill`` to do it.

    ``network``: it needs the network (skipped offline). ``readonly``: ``fill``
    leaves every file without write bits, so the install needs no walk to
    clear them. (A NamedTuple, not a dataclass: importing dataclasses costs a
    cold install ~5 ms.)
    """

    label: str
    fill: Fill
    network: bool = True
    readonly: bool = False


# HTTP retries (urllib3) for a mirror with others behind it: a dead mirror then
# costs about a second instead of ~15 s of backoff before the next is tried.
MIRROR_RETRIES = 2
LAST_RETRIES = 5


def tarball_source(info: DownloadInfo, *, progress: Optional[bool] = None,
                   desc: Optional[str] = None, retries: int = LAST_RETRIES) -> Source:
    """Download a tarball, check its sha256, unpack it safely, hash the stream.

    ``retries`` is how often a failed connection or a 429/5xx is retried.
    """
    local = urlsplit(info.url).scheme.lower() == "file"

    def fill(tmpdir: Path) -> str:
        from . import archives, depot, download

        tarball = depot.new_download_path()
        session = None if local else download.make_session(retries=retries)
        try:
            download.download(info.url, tarball, sha256=info.sha256, session=session,
                              progress=progress, desc=desc)
            return archives.extract_tarball(tarball, tmpdir)
        finally:
            if session is not None:
                session.close()
            try:
                os.unlink(tarball)
            except FileNotFoundError:
                pass

    return Source(info.url, fill, network=not local)


def sources_for(entry: ArtifactEntry, *, progress: Optional[bool] = None) -> List[Source]:
    """Every source of ``entry``, in the order they should be tried.

    Only the last one gets the full HTTP retry budget; earlier ones give up
    sooner, since trying the next mirror is the better retry.
    """
    out: List[Source] = []
    if entry.gobbler is not None:
        from .gobbler_source import gobbler_sources

        out.extend(gobbler_sources(entry, progress=progress))
    last = len(entry.downloads) - 1
    out.extend(tarball_source(d, progress=progress, desc=entry.name,
                              retries=LAST_RETRIES if i == last else MIRROR_RETRIES)
               for i, d in enumerate(entry.downloads))
    return out
