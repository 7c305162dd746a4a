"""A ``[[name.download]]`` mirror: download a tarball, check its sha256, unpack it safely.

The tarball is downloaded into the install's private work dir, checked
against the entry's sha256 before anything is unpacked (Julia's rule), then
unpacked with the tree hash computed from the tar stream. ``sha256=None``
(pinning a new URL) accepts the tarball and records its sha256 for binding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from .. import archives, transport
from ..progress import Bar
from .base import Filled

# HTTP retries for a mirror with others behind it: a dead mirror then costs about
# a second instead of ~15 s of backoff before the next is tried.
MIRROR_RETRIES = 2


class TarballSource:
    """One tarball URL (http, https or file) with the sha256 it must have."""

    readonly = False

    def __init__(self, url: str, sha256: Optional[str], *, retries: Optional[int] = None) -> None:
        self.url, self.sha256, self.retries = url, sha256, retries
        self.label = url
        self.network = urlsplit(url).scheme.lower() != "file"
        self.downloaded_sha256: Optional[str] = None  # what the last fill downloaded
        self.downloaded_size = 0

    def fill(self, dest: Path, work: Path, bar: Bar) -> Filled:
        """Download into ``work``, verify, unpack into ``dest``; the tree hash from the stream."""
        tarball = work / "download"
        t = transport.Transport(retries=self.retries) if self.retries is not None and \
            self.network else None
        try:
            got = transport.download(self.url, tarball, sha256=self.sha256, transport=t,
                                     on_bytes=bar.update, on_total=bar.set_total)
        finally:
            if t is not None:
                t.close()
        self.downloaded_sha256, self.downloaded_size = got.sha256, got.size
        bar.stage(f"unpacking {_name(self.url)}", got.size)
        tree_hash = archives.extract_tarball(tarball, dest)
        tarball.unlink()
        return Filled(tree_hash, got.size, 0)


def _name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1] or url
