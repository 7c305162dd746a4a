"""Tarballs: safe one-pass extraction, tree hashing from the stream, and
deterministic creation.

Unpacking follows Tar.jl's rules (``julia-artifacts.md`` §3.4 step 5): no
absolute paths, no ``..``, nothing through a symlink the tarball made
earlier, hardlinks only to an earlier regular file, no devices, FIFOs or
sparse files, and nothing is ever written outside the destination. The tree
hash is computed from the tar stream itself (``Tar.tree_hash`` with
``skip_empty=true``): a later duplicate entry replaces an earlier one, and a
hardlink gets its target's blob with its own header's exec bit.

Only the standard library is imported at module load; ``zstandard`` is
imported when a zstd archive is met.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import hashlib
import io
import lzma
import os
import secrets
import shutil
import stat
import tarfile
import zlib
from typing import BinaryIO, Dict, Iterator, List, Optional, Tuple, Union

from .errors import ArtifactError, UnsafeArchiveError, UnsupportedArchiveError
from .treehash import MODE_EXEC, MODE_FILE, MODE_LINK, TreeBuilder, blob_header, blob_sha1

_CHUNK = 1 << 20
_HEAD = 512
# Longest pax/GNU long-name header accepted: real ones are a few KiB.
_MAX_HEADER = 16 << 20
_ENCODING = dict(encoding="utf-8", errors="surrogateescape")

Source = Union[str, "os.PathLike[str]", BinaryIO]

# Checked in this order; "tar" (ustar magic at 257) first so that a plain tar
# whose first member name happens to start with a magic is not misread.
_MAGICS = (
    (b"\x1f\x8b", "gz"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zst"),
    (b"\x04\x22\x4d\x18", "lz4"),
)

_COMPRESSIONS = {"gz": "gz", "gzip": "gz", "bz2": "bz2", "bzip2": "bz2", "xz": "xz",
                 "zst": "zst", "zstd": "zst", "none": "none", "tar": "none"}

# Levels for create_archive: output only has to be stable on one machine.
_GZ_LEVEL, _BZ2_LEVEL, _XZ_PRESET, _ZST_LEVEL = 6, 9, 6, 10

_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)
_TYPE_NAMES = {
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.CONTTYPE: "a contiguous file (type '7', which Julia's Tar.jl refuses too)",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
}


# --------------------------------------------------------------------------
# Compression


def detect_compression(head: bytes) -> str:
    """Compression of an archive from its first bytes (give at least 262).

    Returns ``"gz"``, ``"bz2"``, ``"xz"``, ``"zst"``, ``"lz4"`` or ``"tar"``;
    anything unrecognised is ``"tar"`` so that the tar reader reports it.
    """
    if head[257:262] == b"ustar":
        return "tar"
    for magic, kind in _MAGICS:
        if head.startswith(magic):
            return kind
    return "tar"


class _Prefixed(io.RawIOBase):
    """A non-seekable stream with the bytes already read from it put back."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        if len(self._head):
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(b))
        b[:len(data)] = data
        return len(data)


def _peek(fileobj: BinaryIO) -> Tuple[bytes, BinaryIO]:
    """First bytes of ``fileobj`` and a stream that still starts with them."""
    seekable = getattr(fileobj, "seekable", None)
    if seekable is not None and seekable():
        pos = fileobj.tell()
        head = fileobj.read(_HEAD)
        fileobj.seek(pos)
        return head, fileobj
    parts: List[bytes] = []
    got = 0
    while got < _HEAD:
        data = fileobj.read(_HEAD - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    head = b"".join(parts)
    return head, _Prefixed(head, fileobj)  # type: ignore[return-value]


def _zstandard(name: str):
    try:
        import zstandard  # optional dependency
    except ImportError:
        raise UnsupportedArchiveError(
            f"{name or 'archive'}: zstd compression needs the optional 'zstandard' package; "
            "run: pip install zstandard") from None
    return zstandard


def open_decompressed(fileobj: BinaryIO, name: str = "") -> BinaryIO:
    """A readable stream of the decompressed bytes of ``fileobj``.

    The compression is detected from magic bytes (gzip, bzip2, xz, zstd; plain
    tar is returned as is). ``fileobj`` is read forward only; closing the
    returned stream does not close ``fileobj`` unless it *is* ``fileobj``
    (plain tar on a seekable file). ``name`` is used in error messages.
    """
    head, stream = _peek(fileobj)
    kind = detect_compression(head)
    if kind == "tar":
        return stream
    if kind == "gz":
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    if kind == "bz2":
        return bz2.BZ2File(stream, "rb")  # type: ignore[return-value]
    if kind == "xz":
        return lzma.LZMAFile(stream, "rb")  # type: ignore[return-value]
    if kind == "zst":
        return _zstandard(name).ZstdDecompressor().stream_reader(
            stream, read_size=_CHUNK, read_across_frames=True, closefd=False)
    raise UnsupportedArchiveError(
        f"{name or 'archive'}: {kind}-compressed tarballs are not supported; "
        "recompress it with gzip, bzip2, xz or zstd")


# --------------------------------------------------------------------------
# Reading


class _BadHeader(Exception):
    """A tar header block that is missing, short or garbled (not end of archive)."""


class _StrictTarInfo(tarfile.TarInfo):
    """TarInfo whose parser reports truncation and garbage instead of
    silently ending the archive there, as ``tarfile`` does past the first
    member. (GNU tar reports these too.)"""

    @classmethod
    def frombuf(cls, buf, encoding, errors):  # type: ignore[override]
        try:
            return super().frombuf(buf, encoding, errors)
        except (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError):
            raise _BadHeader("unexpected end of data: no end-of-archive marker") from None
        except tarfile.InvalidHeaderError as e:
            raise _BadHeader(f"invalid tar header: {e}") from None


def _is_read_error(e: BaseException) -> bool:
    if isinstance(e, ArtifactError):
        return False
    return (isinstance(e, (tarfile.TarError, _BadHeader, EOFError, OSError,
                           zlib.error, lzma.LZMAError))
            or type(e).__name__ == "ZstdError")


class _Forward:
    """A forward-only stream with the ``tell``/``seek`` that tarfile's header
    parser needs. Member data is read from it directly (no extra copies);
    tarfile itself only reads headers, whose size is capped here."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._readinto = getattr(raw, "readinto", None)
        self._pos = 0
        self._scratch: Optional[memoryview] = None

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > _MAX_HEADER:
            raise _BadHeader(f"a tar header of {n} bytes is implausibly large")
        parts: List[bytes] = []
        got = 0
        while got < n:
            data = self._raw.read(n - got)
            if not data:
                break
            parts.append(data)
            got += len(data)
        self._pos += got
        return b"".join(parts)

    def readinto(self, b: memoryview) -> int:
        if self._readinto is not None:
            n = self._readinto(b) or 0
        else:
            data = self._raw.read(len(b))
            n = len(data)
            b[:n] = data
        self._pos += n
        return n

    def skip(self, n: int) -> int:
        """Read and discard up to ``n`` bytes; returns how many there were."""
        if self._scratch is None:
            self._scratch = memoryview(bytearray(min(n, _CHUNK)))
        done = 0
        while done < n:
            got = self.readinto(self._scratch[:min(n - done, len(self._scratch))])
            if not got:
                break
            done += got
        return done

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET or pos < self._pos:
            raise tarfile.StreamError("seeking backwards is not allowed")
        self.skip(pos - self._pos)
        return self._pos


@contextlib.contextmanager
def _opened(source: Source) -> Iterator[Tuple[BinaryIO, str]]:
    """The source as a binary stream plus a name for messages."""
    if isinstance(source, (str, bytes, os.PathLike)):
        path = os.fsdecode(os.fspath(source))
        with open(path, "rb") as f:
            yield f, path
    else:
        name = getattr(source, "name", None)
        yield source, name if isinstance(name, str) and name else "<stream>"


class _Unpacker:
    """One pass over a tar stream: checks each member, keeps Tar.jl's view of
    what each path currently is, hashes, and (with ``dest``) writes."""

    def __init__(self, archive: str, dest: Optional[str]) -> None:
        self.archive = archive
        self.dest = dest
        self.tree = TreeBuilder()
        # path -> ("file" | "hardlink" | "link" | "dir", blob sha or None).
        # Invariant: every ancestor of a recorded path is recorded as "dir".
        self.nodes: Dict[str, Tuple[str, Optional[bytes]]] = {}
        self._buf = memoryview(bytearray(_CHUNK))

    # -- errors ------------------------------------------------------------

    def _refuse(self, member: tarfile.TarInfo, reason: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(
            f"{self.archive}: member {member.name!r}: {reason}; the tarball is refused as "
            "unsafe (possible attack); get a clean archive from its publisher")

    def _corrupt(self, e: BaseException) -> UnsafeArchiveError:
        return UnsafeArchiveError(
            f"{self.archive}: corrupt or truncated tarball ({type(e).__name__}: {e}); "
            "the tarball is refused; download it again or check its source")

    def _read(self, fn, *args, **kwargs):
        """Call a function that reads the archive, reporting damage clearly."""
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if _is_read_error(e):
                raise self._corrupt(e) from e
            raise

    # -- main loop ---------------------------------------------------------

    def run(self, stream: BinaryIO) -> str:
        src = _Forward(stream)
        tf = self._read(tarfile.TarFile, fileobj=src, mode="r", tarinfo=_StrictTarInfo,
                        **_ENCODING)
        with tf:
            while True:
                member = self._read(tf.next)
                if member is None:
                    break
                tf.members.clear()  # read once, front to back: no index needed
                self._member(src, member)
        # Drain what follows the end marker so gzip/xz/zstd check their trailers.
        while self._read(src.skip, _CHUNK):
            pass
        return self.tree.hexdigest()

    def _member(self, src: _Forward, m: tarfile.TarInfo) -> None:
        self._check_header(m)
        parts = [p for p in m.name.split("/") if p and p != "."]
        if not parts:  # "./": the root itself
            return
        path = "/".join(parts)
        if m.islnk():
            self._hardlink(m, path, parts)
            return
        self._make_parents(m, parts)
        if m.isdir():
            if self._kind(path) != "dir":
                self._clear(path)
                self._mkdir(m, path)
        elif m.issym():
            self._clear(path)
            if self.dest is not None:
                try:
                    os.symlink(m.linkname, self._full(path))
                except FileExistsError:
                    raise self._collision(m) from None
            self.nodes[path] = ("link", None)
            self.tree.add(path, MODE_LINK, blob_sha1(os.fsencode(m.linkname)))
        else:
            self._clear(path)
            sha = self._write_file(src, m, path)
            self.nodes[path] = ("file", sha)
            self.tree.add(path, _git_mode(m), sha)

    def _check_header(self, m: tarfile.TarInfo) -> None:
        """Tar.jl's check_header, plus the types tarfile would otherwise accept."""
        name, reason = m.name, None
        if m.issparse():
            reason = "it is a sparse file, which is not supported"
        elif m.type not in _FILE_TYPES + (tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE):
            what = _TYPE_NAMES.get(m.type, f"an entry of type {m.type!r}")
            reason = f"it is {what}; only files, directories and links are allowed"
        elif not name:
            reason = "its path is empty"
        elif "\0" in name or "\0" in m.linkname:
            reason = "its path or link target contains a NUL byte"
        elif name.startswith("/"):
            reason = "its path is absolute"
        elif ".." in name.split("/"):
            reason = "its path contains a '..' component"
        elif not m.isdir() and (name.endswith("/") or name == "." or name.endswith("/.")):
            reason = "a non-directory path ends with '/' or '.'"
        elif m.size < 0:
            reason = "its size is negative"
        elif m.size and not m.isfile():
            reason = "a link or directory entry carries data"
        elif m.linkname and not (m.issym() or m.islnk()):
            reason = "a file or directory entry has a link target"
        elif m.issym() and not m.linkname:
            reason = "a symlink has an empty target"
        if reason:
            raise self._refuse(m, reason)

    # -- state and disk ----------------------------------------------------

    def _kind(self, path: str) -> Optional[str]:
        node = self.nodes.get(path)
        return node[0] if node else None

    def _full(self, path: str) -> str:
        return os.path.join(self.dest, path)  # type: ignore[arg-type]

    def _collision(self, m: tarfile.TarInfo) -> UnsafeArchiveError:
        return self._refuse(m, "it collides with a different path already unpacked "
                               "(case-insensitive or normalising filesystem?)")

    def _make_parents(self, m: tarfile.TarInfo, parts: List[str]) -> None:
        """Make every parent a real directory; refuse to pass through a symlink."""
        parent = "/".join(parts[:-1])
        if not parent or self._kind(parent) == "dir":
            return  # by the invariant, all its ancestors are directories too
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            kind = self._kind(prefix)
            if kind == "dir":
                continue
            if kind == "link":
                raise self._refuse(m, f"its path goes through {prefix!r}, a symlink "
                                      "created earlier in the same tarball")
            self._clear(prefix)  # a file there is replaced by a directory (as Tar.jl)
            self._mkdir(m, prefix)

    def _mkdir(self, m: tarfile.TarInfo, path: str) -> None:
        if self.dest is not None:
            full = self._full(path)
            try:
                os.mkdir(full, 0o755)
            except FileExistsError:
                raise self._collision(m) from None
            os.chmod(full, 0o755)  # whatever the umask
        self.nodes[path] = ("dir", None)

    def _clear(self, path: str) -> None:
        """Forget and delete whatever an earlier entry put at ``path``."""
        node = self.nodes.pop(path, None)
        if node is None:
            return
        self.tree.remove(path)
        if node[0] == "dir":
            below = path + "/"
            for key in [k for k in self.nodes if k.startswith(below)]:
                del self.nodes[key]
        if self.dest is not None:
            full = self._full(path)
            with contextlib.suppress(FileNotFoundError):
                if node[0] == "dir":
                    shutil.rmtree(full)  # never follows symlinks inside
                else:
                    os.unlink(full)

    def _create(self, m: tarfile.TarInfo, path: str) -> BinaryIO:
        """A new regular file at ``path``; never opens through a symlink."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self._full(path), flags, 0o600)
        except FileExistsError:
            raise self._collision(m) from None
        f = open(fd, "wb")
        os.fchmod(fd, 0o755 if m.mode & stat.S_IXUSR else 0o644)  # whatever the umask
        return f

    def _write_file(self, src: _Forward, m: tarfile.TarInfo, path: str) -> bytes:
        """Read the member's data once: hash it and (with ``dest``) write it."""
        if src.tell() != m.offset_data:
            raise self._corrupt(tarfile.StreamError(f"member {m.name!r} is out of place"))
        h = hashlib.sha1(blob_header(m.size))
        out = self._create(m, path) if self.dest is not None else None
        try:
            remaining = m.size
            while remaining:
                piece = self._buf[:min(_CHUNK, remaining)]
                n = self._read(src.readinto, piece)
                if not n:
                    raise self._corrupt(EOFError(f"data of member {m.name!r} ends early"))
                h.update(piece[:n])
                if out is not None:
                    out.write(piece[:n])
                remaining -= n
        finally:
            if out is not None:
                out.close()
        return h.digest()

    def _hardlink(self, m: tarfile.TarInfo, path: str, parts: List[str]) -> None:
        """A copy of an earlier regular file, with the link header's exec bit."""
        self._make_parents(m, parts)  # first: it may replace the target itself
        target = "/".join(p for p in m.linkname.split("/") if p and p != ".")
        node = self.nodes.get(target)
        if node is None or node[0] != "file":
            what = {"hardlink": "another hardlink", "link": "a symlink",
                    "dir": "a directory"}.get(node[0] if node else "", "no earlier member")
            raise self._refuse(m, f"it is a hardlink to {m.linkname!r}, which is {what}; "
                                  "hardlinks may only point to an earlier regular file")
        sha = node[1]
        if self.dest is not None:
            # Open the source before clearing the path: a link to itself stays readable.
            src = os.open(self._full(target), os.O_RDONLY | os.O_NOFOLLOW)
            with open(src, "rb") as fsrc:
                self._clear(path)
                with self._create(m, path) as fdst:
                    shutil.copyfileobj(fsrc, fdst, _CHUNK)
        else:
            self._clear(path)
        self.nodes[path] = ("hardlink", sha)
        self.tree.add(path, _git_mode(m), sha)  # type: ignore[arg-type]


def _git_mode(m: tarfile.TarInfo) -> bytes:
    return MODE_EXEC if m.mode & stat.S_IXUSR else MODE_FILE


def _unpack(source: Source, dest: Optional[str]) -> str:
    with _opened(source) as (raw, name):
        stream = open_decompressed(raw, name)
        try:
            return _Unpacker(name, dest).run(stream)
        finally:
            if stream is not raw:
                stream.close()


def extract_tarball(source: Source, dest: Union[str, "os.PathLike[str]"]) -> str:
    """Unpack a (possibly compressed) tarball into the empty directory ``dest``.

    ``source`` is a path or a readable binary stream; it is read once, front
    to back. Returns the git-tree-sha1 of the content, computed from the
    stream (``Tar.tree_hash`` with ``skip_empty=true``). Files get mode 0644
    or 0755 (owner exec bit of the header), directories 0755.

    Raises :class:`UnsafeArchiveError` for a hostile, corrupt or truncated
    tarball; ``dest`` may then hold partial content, which the caller removes.
    """
    target = os.fspath(dest)
    if not os.path.isdir(target):
        raise NotADirectoryError(errno.ENOTDIR, "extract_tarball needs an existing, "
                                 "empty directory to unpack into", target)
    with os.scandir(target) as it:
        if next(it, None) is not None:
            raise FileExistsError(errno.ENOTEMPTY, "extract_tarball unpacks only into an "
                                  "empty directory; use a fresh temporary one", target)
    return _unpack(source, target)


def tarball_tree_hash(source: Source) -> str:
    """The git-tree-sha1 :func:`extract_tarball` would return, writing nothing.

    The same safety checks apply, so a hash is only given for a tarball that
    would unpack.
    """
    return _unpack(source, None)


# --------------------------------------------------------------------------
# Writing


class _HashingWriter:
    """Writes through to a file, counting bytes and computing their sha256."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._sha = hashlib.sha256()
        self._pos = 0

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        self._sha.update(data)
        self._raw.write(data)
        self._pos += n
        return n

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        self._raw.flush()

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def _compressor(kind: str, sink: _HashingWriter, name: str):
    """A writable context manager compressing into ``sink`` (left open)."""
    if kind == "none":
        return contextlib.nullcontext(sink)
    if kind == "gz":  # no file name, mtime 0: the same bytes every time
        return gzip.GzipFile(filename="", mode="wb", fileobj=sink,  # type: ignore[arg-type]
                             compresslevel=_GZ_LEVEL, mtime=0)
    if kind == "bz2":
        return bz2.BZ2File(sink, "wb", compresslevel=_BZ2_LEVEL)  # type: ignore[arg-type]
    if kind == "xz":
        return lzma.LZMAFile(sink, "wb", preset=_XZ_PRESET)  # type: ignore[arg-type]
    return _zstandard(name).ZstdCompressor(level=_ZST_LEVEL, write_checksum=True).stream_writer(
        sink, closefd=False)


def _children(rel: str, dirpath: str) -> List[Tuple[str, str]]:
    with os.scandir(dirpath) as it:
        entries = sorted(it, key=lambda e: os.fsencode(e.name))
    return [(rel + e.name, e.path) for e in entries]


def _walk_sorted(root: str) -> List[Tuple[str, str, os.stat_result]]:
    """(relative path, full path, lstat) for everything under ``root``,
    depth first, siblings by name bytes; refuses special files."""
    out: List[Tuple[str, str, os.stat_result]] = []
    stack = _children("", root)[::-1]
    while stack:
        rel, full = stack.pop()
        st = os.lstat(full)
        if stat.S_ISDIR(st.st_mode):
            stack.extend(_children(rel + "/", full)[::-1])
        elif not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            raise UnsupportedArchiveError(
                f"{full}: cannot archive a device, FIFO or socket; an artifact may hold only "
                "files, directories and symlinks; remove it from the directory")
        out.append((rel, full, st))
    return out


def _add_entry(tf: tarfile.TarFile, rel: str, full: str, st: os.stat_result) -> None:
    info = tarfile.TarInfo(rel)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if stat.S_ISDIR(st.st_mode):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(info)
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o755, os.readlink(full)
        tf.addfile(info)
    else:
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW)
        with open(fd, "rb") as f:
            fst = os.fstat(fd)
            info.size = fst.st_size
            info.mode = 0o755 if fst.st_mode & stat.S_IXUSR else 0o644
            tf.addfile(info, f)


@contextlib.contextmanager
def _atomic_output(path: str) -> Iterator[BinaryIO]:
    """A new file beside ``path`` that replaces it only once fully written."""
    folder, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{base}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with open(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def create_archive(directory: Union[str, "os.PathLike[str]"],
                   archive_path: Union[str, "os.PathLike[str]"],
                   compression: str = "gz") -> str:
    """Write a deterministic tarball of the *content* of ``directory``.

    Entries are sorted (depth first, by name bytes), with no wrapper folder;
    directories are 0755, files 0644 or 0755 by their owner exec bit,
    symlinks stay symlinks; mtime, uid and gid are 0 and names empty; PAX
    format. ``compression`` is ``"gz"`` (default), ``"bz2"``, ``"xz"``,
    ``"zst"`` or ``"none"`` (aliases ``gzip``, ``bzip2``, ``zstd``, ``tar``).
    The archive is written atomically. Returns its sha256 (hex).

    The same directory content gives byte-identical archives, whatever the
    files' mtimes, owners, other permission bits or the umask.
    """
    kind = _COMPRESSIONS.get(str(compression).lower())
    if kind is None:
        raise UnsupportedArchiveError(
            f"unknown compression {compression!r}; use one of gz, bz2, xz, zst or none")
    root, out_path = os.fspath(directory), os.fspath(archive_path)
    if not os.path.isdir(root):
        raise NotADirectoryError(errno.ENOTDIR, "create_archive needs a directory", root)
    entries = _walk_sorted(root)
    with _atomic_output(out_path) as raw:
        sink = _HashingWriter(raw)
        with _compressor(kind, sink, out_path) as packed:
            with tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT,
                              copybufsize=_CHUNK, **_ENCODING) as tf:
                for rel, full, st in entries:
                    _add_entry(tf, rel, full, st)
    return sink.hexdigest()


__all__ = ["detect_compression", "open_decompressed", "extract_tarball",
           "tarball_tree_hash", "create_archive"]
