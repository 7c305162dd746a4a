"""The local-directory store: each object is a plain file at its key under a root.

An operator can inspect, back up or rsync the tree as is. Writes go to a
temporary file under ``<root>/..tmp`` and are renamed into place, so readers
never see half an object; conditional creation (the project lock) uses
``link``, which fails if the name exists. Keys are validated so that nothing
can reach outside the root. Content types are not stored: ``..``-files other
than ``..LOCK`` are JSON, everything else has none (what gypsum-py uploads).
The MD5 of an object (its ETag) is remembered in an extended attribute when
the file system allows, else computed once and cached in memory.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import secrets
import stat
import tempfile
import threading
import time
from collections import OrderedDict
from typing import BinaryIO, Iterable, Iterator, List, Optional, Tuple

from artifacts_py.servers.gypsum import upload_tokens
from artifacts_py.servers.gypsum.errors import StoreError
from artifacts_py.servers.gypsum.store import (
    JSON_TYPE, Listing, ObjectInfo, PresignContext, Store,
)

TMP_DIR = "..tmp"
_XATTR = "user.gypsum.md5"
_CHUNK = 1 << 20
_MD5_CACHE_SIZE = 4096
_O_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


class KeyRefused(Exception):
    """A key that cannot name a file under the root (``..``, ``//``, NUL...)."""


def check_key(key: str) -> str:
    """``key`` if it maps safely to a relative path; KeyRefused otherwise."""
    if not key or "\x00" in key or key.startswith("/") or len(key.encode("utf-8")) > 1024:
        raise KeyRefused(key)
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts) or parts[0] == TMP_DIR:
        raise KeyRefused(key)
    return key


class BadDigest(Exception):
    """The uploaded body does not match its Content-MD5."""


class LocalStore(Store):
    """Objects as files under ``root`` (which must exist)."""

    name = "local"

    def __init__(self, root: str) -> None:
        if not os.path.isdir(root):
            raise FileNotFoundError(errno.ENOENT, "store directory does not exist", root)
        self.root = os.path.abspath(root)
        self.tmp = os.path.join(self.root, TMP_DIR)
        os.makedirs(self.tmp, exist_ok=True)
        self.secret = secrets.token_bytes(32)
        self._md5: "OrderedDict[Tuple[int, int, int, int], str]" = OrderedDict()
        self._md5_lock = threading.Lock()

    # ------------------------------------------------------------ paths

    def path(self, key: str) -> str:
        """The file of ``key`` (KeyRefused for unsafe keys)."""
        return os.path.join(self.root, check_key(key))

    def _stat(self, key: str) -> Optional[os.stat_result]:
        try:
            info = os.stat(self.path(key))
        except KeyRefused:
            return None
        except (FileNotFoundError, NotADirectoryError):
            return None
        return info if stat.S_ISREG(info.st_mode) else None

    def info_of(self, key: str, info: os.stat_result, fd: Optional[int] = None) -> ObjectInfo:
        """The metadata of ``key`` given its stat (and an open ``fd`` to hash, if any)."""
        base = key.rpartition("/")[2]
        ctype = JSON_TYPE if base.startswith("..") and base != "..LOCK" else None
        md5 = self._md5_of(self.path(key), info, fd)
        return ObjectInfo(key, info.st_size, f'"{md5}"', info.st_mtime, ctype)

    def _md5_of(self, path: str, info: os.stat_result, fd: Optional[int]) -> str:
        ident = (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)
        with self._md5_lock:
            known = self._md5.get(ident)
        if known:
            return known
        stamp = f"{info.st_mtime_ns}:{info.st_size}:"
        try:
            saved = os.getxattr(path, _XATTR).decode("ascii")
            if saved.startswith(stamp):
                return self._remember(ident, saved[len(stamp):])
        except OSError:
            pass
        digest = hashlib.md5()
        own = fd is None
        if fd is None:
            fd = os.open(path, os.O_RDONLY)
        try:
            offset = 0
            while True:  # pread: the caller's file position must not move
                chunk = os.pread(fd, _CHUNK, offset)
                if not chunk:
                    break
                digest.update(chunk)
                offset += len(chunk)
        finally:
            if own:
                os.close(fd)
        return self._remember(ident, digest.hexdigest())

    def _remember(self, ident: Tuple[int, int, int, int], md5: str) -> str:
        with self._md5_lock:
            self._md5[ident] = md5
            while len(self._md5) > _MD5_CACHE_SIZE:
                self._md5.popitem(last=False)
        return md5

    # ------------------------------------------------------------ reads

    def head(self, key: str) -> Optional[ObjectInfo]:
        info = self._stat(key)
        return None if info is None else self.info_of(key, info)

    def open(self, key: str) -> Optional[Tuple[ObjectInfo, BinaryIO]]:
        opened = self.open_fd(key)
        if opened is None:
            return None
        fd, info = opened
        try:
            return self.info_of(key, info, fd), os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def open_fd(self, key: str) -> Optional[Tuple[int, os.stat_result]]:
        """An open descriptor of a regular file ``key`` and its stat (close it), or None."""
        try:
            fd = os.open(self.path(key), _O_READ)
        except (KeyRefused, FileNotFoundError, NotADirectoryError):
            return None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            return None
        return fd, info

    def read(self, key: str) -> Optional[bytes]:
        opened = self.open(key)
        if opened is None:
            return None
        with opened[1] as handle:
            return handle.read()

    # ------------------------------------------------------------ writes

    def _temp(self) -> Tuple[int, str]:
        return tempfile.mkstemp(dir=self.tmp, prefix="put-")

    def _place(self, tmp: str, key: str, md5: str, exclusive: bool) -> bool:
        target = self.path(key)
        try:
            info = os.stat(tmp)
            try:
                os.setxattr(tmp, _XATTR, f"{info.st_mtime_ns}:{info.st_size}:{md5}".encode())
            except OSError:
                pass  # no user xattrs here: the MD5 is recomputed when needed
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if exclusive:
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    return False
            else:
                os.replace(tmp, target)
            return True
        except OSError as exc:
            raise StoreError(f"cannot write '{key}' in the local store: "
                             f"{os.strerror(exc.errno or errno.EIO)}") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _put(self, key: str, data: bytes, exclusive: bool) -> bool:
        check_key(key)
        fd, tmp = self._temp()
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return self._place(tmp, key, hashlib.md5(data).hexdigest(), exclusive)

    def write(self, key: str, data: bytes, content_type: Optional[str] = JSON_TYPE) -> None:
        self._put(key, data, exclusive=False)

    def create(self, key: str, data: bytes, content_type: Optional[str] = None) -> bool:
        return self._put(key, data, exclusive=True)

    def write_verified(self, key: str, chunks: Iterator[bytes], md5_hex: str) -> None:
        """Store the streamed body of an upload if its MD5 is ``md5_hex`` (else BadDigest)."""
        check_key(key)
        fd, tmp = self._temp()
        digest = hashlib.md5()
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    digest.update(chunk)
                    handle.write(chunk)
        except BaseException:
            os.unlink(tmp)
            raise
        if digest.hexdigest() != md5_hex:
            os.unlink(tmp)
            raise BadDigest(base64.b64encode(digest.digest()).decode("ascii"))
        self._place(tmp, key, md5_hex, exclusive=False)

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                path = self.path(key)
                os.unlink(path)
            except (KeyRefused, FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                raise StoreError(f"cannot delete '{key}' from the local store: "
                                 f"{os.strerror(exc.errno or errno.EIO)}") from None
            self._prune(os.path.dirname(path))

    def _prune(self, directory: str) -> None:
        """Remove now-empty parent directories, as S3 has no empty 'folders'."""
        while directory != self.root and directory.startswith(self.root + os.sep):
            try:
                os.rmdir(directory)
            except OSError:
                return
            directory = os.path.dirname(directory)

    # ------------------------------------------------------------ listing

    def list(self, prefix: str, recursive: bool) -> Listing:
        head, _, start = prefix.rpartition("/")
        if head:
            try:
                check_key(head)
            except KeyRefused:
                return Listing([], [])
        directory = os.path.join(self.root, head) if head else self.root
        base = head + "/" if head else ""
        prefixes: List[str] = []
        objects: List[ObjectInfo] = []
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name.encode("utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            return Listing([], [])
        for entry in entries:
            if not entry.name.startswith(start) or (not head and entry.name == TMP_DIR):
                continue
            key = base + entry.name
            if entry.is_dir(follow_symlinks=False):
                if recursive:
                    objects.extend(self._walk(entry.path, key + "/"))
                elif any(True for _ in self._walk(entry.path, key + "/")):
                    prefixes.append(key + "/")
            elif entry.is_file(follow_symlinks=False):
                objects.append(self._listed(entry, key))
        return Listing(prefixes, objects)

    def _walk(self, directory: str, base: str) -> Iterator[ObjectInfo]:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name.encode("utf-8"))
        except OSError:
            return
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(entry.path, base + entry.name + "/")
            elif entry.is_file(follow_symlinks=False):
                yield self._listed(entry, base + entry.name)

    @staticmethod
    def _listed(entry: "os.DirEntry[str]", key: str) -> ObjectInfo:
        info = entry.stat(follow_symlinks=False)
        return ObjectInfo(key, info.st_size, "", info.st_mtime)  # ETag not needed in lists

    # ------------------------------------------------------------ uploads

    def presign_put(self, key: str, md5_base64: str, ctx: PresignContext) -> str:
        md5_hex = base64.b64decode(md5_base64).hex()
        token = upload_tokens.sign(self.secret, upload_tokens.UploadGrant(
            check_key(key), md5_hex, ctx.session_hash, time.time() + ctx.expires))
        return f"{ctx.base_url}/upload/put/{token}"
