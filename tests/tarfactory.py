"""Builds odd and hostile tarballs with the stdlib ``tarfile`` module, for tests.

``tarfile`` writes whatever a :class:`tarfile.TarInfo` says (absolute names,
``..``, devices, links anywhere), which is exactly what is needed to check
that the unpacker refuses them.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import lzma
import os
import sys
import tarfile
from pathlib import Path
from typing import Dict, Iterator, Optional

import zstandard

COMPRESSORS = {
    "none": lambda data: data,
    "gz": lambda data: gzip.compress(data, mtime=0),
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zst": lambda data: zstandard.ZstdCompressor().compress(data),
}


class TarFactory:
    """Append entries one by one, then :meth:`write` the tarball."""

    def __init__(self, format: int = tarfile.PAX_FORMAT) -> None:
        self._buf = io.BytesIO()
        self._tf = tarfile.open(fileobj=self._buf, mode="w", format=format)
        self._data: Optional[bytes] = None

    def entry(self, info: tarfile.TarInfo, data: Optional[bytes] = None) -> "TarFactory":
        """Add a raw entry exactly as given."""
        if data is not None:
            info.size = len(data)
        self._tf.addfile(info, io.BytesIO(data) if data is not None else None)
        return self

    def file(self, name: str, data: bytes = b"", mode: int = 0o644,
             pax: Optional[Dict[str, str]] = None) -> "TarFactory":
        info = tarfile.TarInfo(name)
        info.mode = mode
        if pax:
            info.pax_headers = dict(pax)
        return self.entry(info, data)

    def dir(self, name: str, mode: int = 0o755) -> "TarFactory":
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, mode
        return self.entry(info)

    def symlink(self, name: str, target: str) -> "TarFactory":
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        return self.entry(info)

    def hardlink(self, name: str, target: str, mode: int = 0o644) -> "TarFactory":
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.mode = tarfile.LNKTYPE, target, mode
        return self.entry(info)

    def special(self, name: str, type: bytes) -> "TarFactory":
        """A device, FIFO, sparse or other typed entry with no data."""
        info = tarfile.TarInfo(name)
        info.type = type
        info.devmajor, info.devminor = 1, 3  # /dev/null's numbers for devices
        return self.entry(info)

    def getvalue(self) -> bytes:
        if self._data is None:
            self._tf.close()
            self._data = self._buf.getvalue()
        return self._data

    def write(self, path: "os.PathLike[str] | str", compression: str = "none") -> str:
        with open(path, "wb") as f:
            f.write(COMPRESSORS[compression](self.getvalue()))
        return os.fspath(path)


def deep_tree(root: Path, depth: int, every: int = 1) -> str:
    """``root/d/d/.../d`` ``depth`` folders deep, with a file ``f`` in every
    ``every``-th folder and an exec file at the bottom; built through
    descriptors since the path is longer than PATH_MAX. Returns the deepest rel path."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for level in range(1, depth + 1):
        os.mkdir("d", dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nxt
        if level % every == 0 or level == depth:
            mode = 0o755 if level == depth else 0o644
            f = os.open("f", os.O_WRONLY | os.O_CREAT, mode, dir_fd=fd)
            os.write(f, b"level %d\n" % level)
            os.close(f)
    os.close(fd)
    return "/".join(["d"] * depth)


def deep_tree_hash(depth: int, every: int = 1) -> str:
    """git-tree-sha1 of ``deep_tree(root, depth, every)``, computed here from git's
    object format alone, bottom-up (an oracle independent of artifacts_py)."""
    def blob(data: bytes) -> bytes:
        return hashlib.sha1(b"blob %d\0" % len(data) + data).digest()

    below = b""
    for level in range(depth, 0, -1):
        entries = []
        if below:
            entries.append(b"40000 d\0" + below)
        if level % every == 0 or level == depth:
            mode = b"100755" if level == depth else b"100644"
            entries.append(mode + b" f\0" + blob(b"level %d\n" % level))
        if entries:  # "d/" sorts before "f"
            body = b"".join(entries)
            below = hashlib.sha1(b"tree %d\0" % len(body) + body).digest()
    body = b"40000 d\0" + below
    return hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()


@contextlib.contextmanager
def low_recursion_limit(limit: int = 200) -> Iterator[None]:
    """Python's recursion limit far below the depths a test uses."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)
