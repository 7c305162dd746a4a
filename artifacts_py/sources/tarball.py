"""A ``[[name.download]]`` mirror: download a tarball, check its sha256, unpack it safely.

The download streams straight into the unpacker (a pipe between two
threads), so downloading, decompressing and writing files overlap. That is
safe because the unpacker writes only into the install's private temp dir
and nothing is renamed into place before both the tarball's sha256 (checked
when the stream ends) and the tree hash (by the store) agree with the entry:
a tarball whose sha256 is wrong installs nothing, as Julia requires. Should
the server restart the transfer from the beginning (a stream cannot be
rewound), the tarball is downloaded again to a file and unpacked from there.
``sha256=None`` (pinning a new URL) accepts the tarball and records its
sha256 for binding.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import BinaryIO, Dict, Optional, cast
from urllib.parse import urlsplit

from .. import archives, transport
from ..errors import hash_mismatch
from ..files import remove_tree
from ..progress import Bar
from .base import Filled

# HTTP retries for a mirror with others behind it: a dead mirror then costs about
# a second instead of ~15 s of backoff before the next is tried.
MIRROR_RETRIES = 2
# Seconds an unpacking failure waits for the download thread to say why (its own error
# names the real cause, e.g. a broken transfer).
PUMP_WAIT = 1.0
PIPE_SIZE = 1 << 20


class TarballSource:
    """One tarball URL (http, https or file) with the sha256 it must have."""

    readonly = True  # files are created read-only as they are unpacked

    def __init__(self, url: str, sha256: Optional[str], *, retries: Optional[int] = None) -> None:
        self.url, self.sha256, self.retries = url, sha256, retries
        self.label = url
        self.network = urlsplit(url).scheme.lower() != "file"
        self.downloaded_sha256: Optional[str] = None  # what the last fill downloaded
        self.downloaded_size = 0

    def fill(self, dest: Path, work: Path, bar: Bar) -> Filled:
        """Download into the unpacker (or a file), verify the sha256; the tree hash."""
        t = transport.Transport(retries=self.retries) if self.retries is not None and \
            self.network else None
        try:
            try:
                tree = self._streamed(dest, bar, t)
            except transport.Unrewindable:
                remove_tree(dest)
                os.mkdir(dest)
                bar.stage(_name(self.url))
                tree = self._from_file(dest, work, bar, t)
        finally:
            if t is not None:
                t.close()
        return Filled(tree, self.downloaded_size, 0)

    def _streamed(self, dest: Path, bar: Bar, t: Optional[transport.Transport]) -> str:
        """Unpack while the download runs; the sha256 is checked when both have ended."""
        read_fd, write_fd = os.pipe()
        _widen(write_fd)
        # Unbuffered: each read hands over what has arrived (a buffered reader waits to
        # fill its buffer, and holds a lock that close() would wait on).
        reader = cast(BinaryIO, os.fdopen(read_fd, "rb", buffering=0))
        writer: BinaryIO = os.fdopen(write_fd, "wb")
        outcome: Dict[str, object] = {}

        def pump() -> None:
            try:
                outcome["result"] = transport.download(
                    self.url, writer, transport=t, on_bytes=bar.update, on_total=bar.set_total,
                    label=self.url)
            except BaseException as e:  # handed to the unpacking thread below
                outcome["error"] = e
            finally:
                writer.close()

        bar.describe(f"downloading and unpacking {_name(self.url)}")
        thread = threading.Thread(target=pump, name="artifacts-py-download", daemon=True)
        thread.start()
        unpack_error: Optional[BaseException] = None
        tree = ""
        try:
            tree = archives.extract_tarball(reader, dest, label=self.url, readonly=True)
            while reader.read(1 << 20):  # anything after the tar's end: the pump must finish
                pass
        except BaseException as e:
            unpack_error = e
        finally:
            reader.close()  # a pump still writing gets a broken pipe and stops
            # One stuck in a stalled read cannot notice: after a failure (Ctrl-C included)
            # it is not waited for long. It writes only into the pipe, which is closed.
            thread.join(None if unpack_error is None else PUMP_WAIT)
        if thread.is_alive() and unpack_error is not None:
            raise unpack_error
        error = outcome.get("error")
        if isinstance(error, BaseException) and not isinstance(error, BrokenPipeError):
            raise error  # the transfer failed: that is why the unpacker saw garbage
        result = outcome.get("result")
        if isinstance(result, transport.DownloadResult):
            self._check(result)  # a wrong sha256 is the cause, whatever the unpacker saw
        if unpack_error is not None:
            raise unpack_error
        return tree

    def _from_file(self, dest: Path, work: Path, bar: Bar,
                   t: Optional[transport.Transport]) -> str:
        """Download to a file in ``work``, check its sha256, then unpack it."""
        tarball = work / "download"
        got = transport.download(self.url, tarball, sha256=self.sha256, transport=t,
                                 on_bytes=bar.update, on_total=bar.set_total, label=self.url)
        self._check(got)
        bar.stage(f"unpacking {_name(self.url)}", got.size)
        tree = archives.extract_tarball(tarball, dest, label=self.url, readonly=True,
                                        sha256_checked=self.sha256 is not None)
        tarball.unlink()
        return tree

    def _check(self, got: transport.DownloadResult) -> None:
        self.downloaded_sha256, self.downloaded_size = got.sha256, got.size
        if self.sha256 is not None and got.sha256 != self.sha256.strip().lower():
            raise hash_mismatch("sha256", self.sha256, got.sha256, what=self.url,
                                advice="the tarball at that URL changed or is corrupt; "
                                "nothing was installed")


def _widen(fd: int) -> None:
    """A 1 MiB pipe where Linux allows it (64 KiB by default): fewer, larger reads."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ"), PIPE_SIZE)
    except (ImportError, AttributeError, OSError):
        pass


def _name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1] or url
