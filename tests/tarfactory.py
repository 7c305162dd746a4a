"""Builds odd and hostile tarballs with the stdlib ``tarfile`` module, for tests.

``tarfile`` writes whatever a :class:`tarfile.TarInfo` says (absolute names,
``..``, devices, links anywhere), which is exactly what is needed to check
that the unpacker refuses them.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
from typing import Dict, Optional

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
