"""Where an artifact's content comes from.

A *source* is a plain callable ``fill(tmpdir) -> tree_hash_or_None`` plus a
label for error messages; :func:`sources_for` lists them for an entry in the
order they are tried: a mounted Gobbler registry, the Gobbler REST API, then
each ``[[download]]`` tarball mirror. :func:`artifacts_py.depot.install`
runs one inside a fresh temp dir and verifies what it produced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from .tomlmodel import ArtifactEntry, DownloadInfo

Fill = Callable[[Path], Optional[str]]


@dataclass
class Source:
    """One way to get an artifact: ``label`` for messages, ``fill`` to do it."""

    label: str
    fill: Fill
    network: bool = True


def tarball_source(info: DownloadInfo, *, progress: Optional[bool] = None,
                   desc: Optional[str] = None) -> Source:
    """Download a tarball, check its sha256, unpack it safely, hash the stream."""
    def fill(tmpdir: Path) -> str:
        from . import archives, depot, download

        tarball = depot.new_download_path()
        try:
            download.download(info.url, tarball, sha256=info.sha256, progress=progress,
                              desc=desc)
            return archives.extract_tarball(tarball, tmpdir)
        finally:
            try:
                os.unlink(tarball)
            except FileNotFoundError:
                pass

    return Source(info.url, fill, network=not info.url.startswith("file:"))


def sources_for(entry: ArtifactEntry, *, progress: Optional[bool] = None) -> List[Source]:
    """Every source of ``entry``, in the order they should be tried."""
    out: List[Source] = []
    if entry.gobbler is not None:
        from .gobbler_source import gobbler_sources

        out.extend(gobbler_sources(entry, progress=progress))
    out.extend(tarball_source(d, progress=progress, desc=entry.name) for d in entry.downloads)
    return out
