"""Tarballs: safe one-pass extraction, tree hashing from the stream, and
deterministic creation.

Unpacking follows Tar.jl's rules (``julia-artifacts.md`` §3.4 step 5): no
absolute paths, no ``..``, nothing through a symlink the tarball made
earlier, hardlinks only to an earlier regular file, no devices, FIFOs or
sparse files, and nothing is ever written outside the destination. The tree
hash is computed from the tar stream itself (``Tar.tree_hash`` with
``skip_empty=true``): a later duplicate entry replaces an earlier one, and a
hardlink gets its target's blob with its own header's exec bit.

The reader is our own (ustar, GNU and pax headers, parsed with ``struct``):
``tarfile`` costs tens of microseconds per member and wants to seek. It reads
the stream once, front to back, so it unpacks from a pipe or a download in
progress; a helper thread reads and decompresses ahead, and a big member's
sha1 runs in another, beside the writes. Files are created with their final
mode in one step (read-only on request) and written through their descriptor;
every path is opened relative to its folder's descriptor, so depth and
``PATH_MAX`` do not matter. Errors name the archive as the caller calls it
(``label``) and say what to do, in plain words.

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
import queue
import secrets
import stat
import struct
import tarfile
import threading
import zlib
from typing import TYPE_CHECKING, Any, BinaryIO, Dict, Iterator, List, Optional, Tuple, Union

from .errors import ArtifactError, UnsafeArchiveError, UnsupportedArchiveError
from .files import open_dir_at, remove_tree, umask, walk
from .treehash import MODE_EXEC, MODE_FILE, MODE_LINK, TreeBuilder, blob_header, blob_sha1

if TYPE_CHECKING:  # imported when a big member needs it (it costs a few ms)
    from concurrent.futures import Future, ThreadPoolExecutor

_CHUNK = 1 << 20
_BLOCK = 512
_HEAD = 512
# Longest pax/GNU long-name header accepted: real ones are a few KiB.
_MAX_HEADER = 16 << 20
# Members above this size are hashed in a helper thread while being written.
_BIG = 8 << 20
_ZERO_BLOCK = bytes(_BLOCK)

Source = Union[str, "os.PathLike[str]", BinaryIO]
PathLike = Union[str, "os.PathLike[str]"]

# Checked in this order; "tar" (ustar magic at 257) first so that a plain tar
# whose first member name happens to start with a magic is not misread.
_MAGICS = (
    (b"\x1f\x8b", "gz"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zst"),
    (b"\x04\x22\x4d\x18", "lz4"),
)
_KIND_NAMES = {"gz": "gzip", "bz2": "bzip2", "xz": "xz", "zst": "zstd", "tar": "tar"}

_COMPRESSIONS = {"gz": "gz", "gzip": "gz", "bz2": "bz2", "bzip2": "bz2", "xz": "xz",
                 "zst": "zst", "zstd": "zst", "none": "none", "tar": "none"}
# An archive's name decides its compression (longest suffix first).
_SUFFIXES = ((".tar.gz", "gz"), (".tgz", "gz"), (".gz", "gz"),
             (".tar.bz2", "bz2"), (".tbz2", "bz2"), (".tbz", "bz2"), (".bz2", "bz2"),
             (".tar.xz", "xz"), (".txz", "xz"), (".xz", "xz"),
             (".tar.zst", "zst"), (".tzst", "zst"), (".zst", "zst"), (".tar", "none"))
_PLAIN_SUFFIX = {"gz": ".tar.gz", "bz2": ".tar.bz2", "xz": ".tar.xz", "zst": ".tar.zst",
                 "none": ".tar"}

# Levels for create_archive: output only has to be stable on one machine.
_GZ_LEVEL, _BZ2_LEVEL, _XZ_PRESET, _ZST_LEVEL = 6, 9, 6, 10

# Tar type flags.
_REG, _AREG, _LNK, _SYM, _DIR = b"0", b"\0", b"1", b"2", b"5"
_PAX, _PAX_GLOBAL, _GNU_LONGNAME, _GNU_LONGLINK = b"x", b"g", b"L", b"K"
_TYPE_NAMES = {
    b"3": "a character device",
    b"4": "a block device",
    b"6": "a FIFO",
    b"7": "a contiguous file (type '7', which Julia's Tar.jl refuses too)",
    b"S": "a sparse file",
}
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# name, mode, uid, gid, size, mtime, chksum, type, linkname, magic+version, uname, gname,
# devmajor, devminor, prefix (POSIX ustar layout).
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s12x")


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
        self._readinto = getattr(rest, "readinto", None)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if len(self._head):
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        if self._readinto is not None:
            return int(self._readinto(b) or 0)
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


def _zstandard(name: str) -> Any:
    try:
        import zstandard  # optional dependency
    except ImportError:
        raise UnsupportedArchiveError(
            f"{name or 'archive'}: zstd compression needs the optional 'zstandard' package; "
            "run: pip install zstandard") from None
    return zstandard


def _decompressed(fileobj: BinaryIO, name: str) -> Tuple[BinaryIO, str, bytes]:
    """(decompressed stream, compression kind, first raw bytes) of ``fileobj``."""
    head, stream = _peek(fileobj)
    kind = detect_compression(head)
    out: Any
    if kind == "tar":
        out = stream
    elif kind == "gz":
        out = gzip.GzipFile(fileobj=stream, mode="rb")
    elif kind == "bz2":
        out = bz2.BZ2File(stream, "rb")
    elif kind == "xz":
        out = lzma.LZMAFile(stream, "rb")
    elif kind == "zst":
        out = _zstandard(name).ZstdDecompressor().stream_reader(
            stream, read_size=_CHUNK, read_across_frames=True, closefd=False)
    else:
        raise UnsupportedArchiveError(
            f"{name or 'archive'}: {kind}-compressed tarballs are not supported; "
            "recompress it with gzip, bzip2, xz or zstd")
    return out, kind, head


def open_decompressed(fileobj: BinaryIO, name: str = "") -> BinaryIO:
    """A readable stream of the decompressed bytes of ``fileobj``.

    The compression is detected from magic bytes (gzip, bzip2, xz, zstd; plain
    tar is returned as is). ``fileobj`` is read forward only; closing the
    returned stream does not close ``fileobj`` unless it *is* ``fileobj``
    (plain tar on a seekable file). ``name`` is used in error messages.
    """
    return _decompressed(fileobj, name)[0]


# --------------------------------------------------------------------------
# Reading: the tar stream


class _Damaged(Exception):
    """Internal: the archive is corrupt; ``args[0]`` says how, in plain words.
    Always turned into an :class:`UnsafeArchiveError` before it leaves."""


class _NotTar(Exception):
    """Internal: the very first header is not a tar header; ``args[0]`` is
    how many bytes the (decompressed) stream held for it."""


def _is_decompress_error(e: BaseException) -> bool:
    if isinstance(e, ArtifactError):  # e.g. a DownloadError from the source stream
        return False
    return (isinstance(e, (EOFError, OSError, zlib.error, lzma.LZMAError))
            or type(e).__name__ == "ZstdError")


class _Input:
    """Forward-only reader over the decompressed stream.

    A helper thread reads (and so decompresses: zlib, lzma, bz2 and zstd
    release the GIL) 1 MiB chunks ahead, while this thread parses and writes.
    Chunks are never reused, so views handed out stay valid.
    """

    _AHEAD = 8  # chunks read ahead at most

    def __init__(self, raw: BinaryIO, kind: str) -> None:
        self._kind = _KIND_NAMES.get(kind, kind)
        self._queue: "queue.Queue[Union[memoryview, BaseException, None]]" = queue.Queue(
            self._AHEAD)
        self._stop = threading.Event()
        self._cur = memoryview(b"")
        self._pos = 0
        self._eof = False
        self.total = 0  # bytes consumed
        self._thread = threading.Thread(target=self._produce, args=(raw,), daemon=True,
                                        name="artifacts-py-untar")
        self._thread.start()

    # -- the helper thread ---------------------------------------------------

    def _put(self, item: "Union[memoryview, BaseException, None]") -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue  # the reader is busy writing files; wait unless it gave up
        return False

    def _produce(self, raw: BinaryIO) -> None:
        readinto = getattr(raw, "readinto", None)
        try:
            buf = bytearray(_CHUNK)
            while True:
                if readinto is not None:
                    n = int(readinto(buf) or 0)
                else:
                    data = raw.read(_CHUNK)
                    n = len(data)
                    buf[:n] = data
                if not n:
                    break
                if n < _CHUNK // 2:  # a pipe hands over what arrived: copy it, keep buf
                    piece = memoryview(bytes(buf[:n]))
                else:  # the reader keeps views into buf: take a fresh one next time
                    piece, buf = memoryview(buf)[:n], bytearray(_CHUNK)
                if not self._put(piece):
                    return
            self._put(None)
        except BaseException as e:  # handed to the reading thread, which raises it
            self._put(e)

    def close(self) -> None:
        """Stop the helper thread, and let its current read finish before the
        caller closes the stream (a blocked network read is not waited for long:
        the thread then ends by itself when that read returns)."""
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join(timeout=2.0)

    # -- the reading thread ----------------------------------------------------

    def _next(self) -> bool:
        """Move to the next chunk; False at the end of the stream."""
        if self._eof:
            return False
        item = self._queue.get()
        if item is None:
            self._eof = True
            return False
        if isinstance(item, BaseException):
            self._eof = True
            if _is_decompress_error(item):
                raise _Damaged(f"its {self._kind} data is damaged ({item})") from None
            raise item
        self._cur, self._pos = item, 0
        return True

    def take(self, n: int) -> memoryview:
        """The next ``n`` bytes (fewer only at the end of the stream)."""
        pos = self._pos
        if len(self._cur) - pos >= n:
            self._pos = pos + n
            self.total += n
            return self._cur[pos:pos + n]
        out = bytearray(self._cur[pos:])
        self._pos = len(self._cur)
        while len(out) < n and self._next():
            piece = self._cur[:n - len(out)]
            out += piece
            self._pos = len(piece)
        self.total += len(out)
        return memoryview(out)

    def chunks(self, n: int) -> Iterator[memoryview]:
        """The next ``n`` bytes as successive views (fewer at the end of the stream)."""
        while n > 0:
            if self._pos >= len(self._cur) and not self._next():
                return
            piece = self._cur[self._pos:self._pos + n]
            self._pos += len(piece)
            self.total += len(piece)
            n -= len(piece)
            yield piece

    def skip(self, n: int) -> int:
        """Discard up to ``n`` bytes; returns how many there were."""
        done = 0
        for piece in self.chunks(n):
            done += len(piece)
        return done


class _Member:
    """One tar entry, after any pax / GNU long-name headers were applied."""

    __slots__ = ("name", "linkname", "type", "mode", "size", "sparse")

    def __init__(self, name: str, linkname: str, type: bytes, mode: int, size: int,
                 sparse: bool) -> None:
        self.name, self.linkname, self.type = name, linkname, type
        self.mode, self.size, self.sparse = mode, size, sparse

    def isfile(self) -> bool:
        return self.type in (_REG, _AREG)

    def isdir(self) -> bool:
        return self.type == _DIR


def _number(field: bytes) -> int:
    """A numeric header field: octal text, or GNU base-256."""
    try:  # the common case, fast: "0000644\0" or "00000001750 "
        return int(field.rstrip(b"\0 ") or b"0", 8)
    except ValueError:
        pass
    if field[:1] in (b"\x80", b"\xff"):
        n = int.from_bytes(field[1:], "big")
        return n - (256 ** (len(field) - 1)) if field[0] == 0xFF else n
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _checksum_ok(block: bytes, stored: bytes) -> bool:
    try:
        want = _number(stored)
    except ValueError:
        return False
    # The byte sum, computed in C: Adler-32's low half is 1 + the sum of the
    # bytes modulo 65521, exact for 256 bytes (at most 65,280).
    total = (zlib.adler32(block[:256]) & 0xFFFF) + (zlib.adler32(block[256:]) & 0xFFFF) - 2
    unsigned = total - sum(block[148:156]) + 8 * 32
    if want == unsigned:
        return True
    high = sum(1 for b in block[:148] if b > 127) + sum(1 for b in block[156:] if b > 127)
    return want == unsigned - 256 * high  # old tars summed signed chars


def _pax_records(data: bytes) -> Dict[str, str]:
    """``"%d key=value\\n"`` records of a pax header."""
    out: Dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # NUL padding after the last record
            break
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise _Damaged("a pax header is malformed") from None
        record = data[pos:pos + length]
        if space < 0 or length <= 0 or len(record) != length or not record.endswith(b"\n"):
            raise _Damaged("a pax header is malformed")
        key, sep, value = record[space - pos + 1:-1].partition(b"=")
        if not sep:
            raise _Damaged("a pax header is malformed")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


class _Reader:
    """Turns the stream into :class:`_Member` s, applying pax and GNU headers."""

    def __init__(self, src: _Input) -> None:
        self.src = src
        self.globals: Dict[str, str] = {}
        self.last = ""  # name of the last member, for messages

    def _extra(self, size: int) -> bytes:
        if size > _MAX_HEADER:
            raise _Damaged(f"a tar header of {size} bytes is implausibly large")
        data = bytes(self.src.take(size))
        if len(data) < size:
            raise _Damaged(self._truncated())
        self.src.skip(-size % _BLOCK)
        return data

    def _truncated(self) -> str:
        if self.last:
            return f"it ends early, after member {_show(self.last)}, without the end-of-archive marker"
        return "it ends early, without the end-of-archive marker"

    def next(self) -> Optional[_Member]:
        """The next member, or None at the end-of-archive marker."""
        pax: Dict[str, str] = {}
        longname: Optional[bytes] = None
        longlink: Optional[bytes] = None
        while True:
            first = self.src.total == 0
            block = bytes(self.src.take(_BLOCK))
            if len(block) < _BLOCK:
                if first:
                    raise _NotTar(len(block))
                raise _Damaged(self._truncated())
            if block == _ZERO_BLOCK:
                return None
            (name, mode, _uid, _gid, size, _mtime, chksum, type_, linkname, magic,
             _uname, _gname, _dmaj, _dmin, prefix) = _HEADER.unpack(block)
            if not _checksum_ok(block, chksum):
                if first:
                    raise _NotTar(len(block))
                after = f" after member {_show(self.last)}" if self.last else ""
                raise _Damaged(f"the header{after} is damaged (checksum mismatch)")
            try:
                n_size, n_mode = _number(size), _number(mode)
            except ValueError:
                raise _Damaged("a header has a malformed size or mode field") from None
            if n_size < 0 and type_ in (_PAX, _PAX_GLOBAL, _GNU_LONGNAME, _GNU_LONGLINK):
                raise _Damaged("an extended header has a negative size")
            if type_ in (_PAX, _PAX_GLOBAL):
                records = _pax_records(self._extra(n_size))
                (pax if type_ == _PAX else self.globals).update(records)
                continue
            if type_ in (_GNU_LONGNAME, _GNU_LONGLINK):
                value = self._extra(n_size).split(b"\0", 1)[0]
                if type_ == _GNU_LONGNAME:
                    longname = value
                else:
                    longlink = value
                continue
            return self._member(pax, longname, longlink, name, linkname, type_, n_mode,
                                n_size, magic, prefix)

    def _member(self, pax: Dict[str, str], longname: Optional[bytes],
                longlink: Optional[bytes], name: bytes, linkname: bytes, type_: bytes,
                mode: int, size: int, magic: bytes, prefix: bytes) -> _Member:
        if not (pax or self.globals or longname or longlink or prefix[0]):
            # The common case: a plain ustar / GNU header and nothing else.
            path = name.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            if type_ == _AREG and path.endswith("/"):
                type_ = _DIR  # old (v7) tars mark folders by the trailing slash
            self.last = path
            return _Member(path, _text(linkname), type_, mode, size, type_ == b"S")
        info = {**self.globals, **pax}
        path = info.get("path") or ""
        if not path:
            if longname is not None:
                path = longname.decode("utf-8", "surrogateescape")
            else:
                path = _text(name)
                if magic == b"ustar\x0000" and prefix[:1] not in (b"", b"\0"):
                    path = _text(prefix) + "/" + path  # POSIX ustar split name
        link = info.get("linkpath") or (
            longlink.decode("utf-8", "surrogateescape") if longlink is not None else _text(linkname))
        if "size" in info:
            try:
                size = int(info["size"])
            except ValueError:
                raise _Damaged(f"member {_show(path)} has a malformed pax size") from None
        if type_ == _AREG and path.endswith("/"):
            type_ = _DIR  # old (v7) tars mark folders by the trailing slash
        sparse = type_ == b"S" or any(k.startswith("GNU.sparse.") for k in info)
        self.last = path
        return _Member(path, link, type_, mode, size, sparse)


def _show(name: str, limit: int = 80) -> str:
    """A member name for a message: quoted, control characters escaped, and
    cut in the middle when long (a 5 KB name must not flood the terminal)."""
    text = repr(name)[1:-1]
    if len(text) > limit:
        text = f"{text[:limit // 2]}...{text[-limit // 4:]}"
    return f"'{text}'"


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


# --------------------------------------------------------------------------
# Reading: checking, hashing and writing members


class _Unpacker:
    """One pass over a tar stream: checks each member, keeps Tar.jl's view of
    what each path currently is, hashes, and (with ``root_fd``) writes."""

    def __init__(self, label: str, root_fd: Optional[int], sha256_checked: bool,
                 readonly: bool) -> None:
        self.label = label
        self.root_fd = root_fd
        self.sha256_checked = sha256_checked
        self.tree = TreeBuilder()
        # path -> ("file" | "hardlink" | "link" | "dir", blob sha or None).
        # Invariant: every ancestor of a recorded path is recorded as "dir".
        self.nodes: Dict[str, Tuple[str, Optional[bytes]]] = {}
        write_bits = 0 if readonly else 0o200
        self.file_modes = (0o444 | write_bits, 0o555 | write_bits)
        mask = umask()
        # Bits the umask takes away: those modes are forced with (f)chmod.
        self.umask = 0o777 if mask is None else mask
        self.cached: Optional[Tuple[str, int]] = None  # (folder, its open fd)
        self.pool: "Optional[ThreadPoolExecutor]" = None

    # -- errors ------------------------------------------------------------

    def _refuse(self, m: _Member, reason: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(
            f"{self.label}: member {_show(m.name)}: {reason}; the tarball is refused as "
            "unsafe (possible attack); get a clean archive from its publisher")

    def corrupt(self, how: str) -> UnsafeArchiveError:
        if self.sha256_checked:
            advice = ("its sha256 matches the pinned one, so downloading it again cannot help: "
                      "the archive's publisher must fix it (or pin a good archive)")
        else:
            advice = "the tarball is refused; download it again, or ask its publisher for a good copy"
        return UnsafeArchiveError(f"{self.label}: corrupt or truncated tarball: {how}; {advice}")

    def not_tar(self, head: bytes, kind: str, got: int) -> UnsupportedArchiveError:
        stripped = head.lstrip().lower()
        if not got:
            what = "the file is empty" if kind == "tar" else f"its {_KIND_NAMES[kind]} data is empty"
        elif kind == "tar" and head.startswith(b"PK\x03\x04"):
            what = "it is a zip file"
        elif kind == "tar" and stripped.startswith((b"<!doctype html", b"<html", b"<?xml", b"<")):
            what = "it looks like a web page, perhaps an error or login page served instead of the file"
        else:
            what = "its first bytes are not a tar header"
        if self.sha256_checked:
            advice = ("its sha256 matches the pinned one, so this very file was pinned: its "
                      "publisher must replace it with a tarball and re-pin it")
        else:
            advice = "check that the URL or file points at the archive itself"
        return UnsupportedArchiveError(
            f"{self.label}: not a tar archive ({what}); artifacts-py installs tarballs "
            f"(.tar, optionally gzip, bzip2, xz or zstd compressed); {advice}")

    def _too_long(self, m: _Member) -> UnsupportedArchiveError:
        longest = max((p for p in m.name.split("/")), key=lambda p: len(os.fsencode(p)))
        return UnsupportedArchiveError(
            f"{self.label}: member {_show(m.name)} cannot be unpacked here: its name "
            f"({len(os.fsencode(m.name))} bytes, one part {len(os.fsencode(longest))} bytes) "
            "is too long for this filesystem (a file or folder name may have 255 bytes); "
            "ask the archive's publisher for shorter names")

    # -- main loop ---------------------------------------------------------

    def run(self, src: _Input) -> str:
        reader = _Reader(src)
        try:
            while True:
                member = reader.next()
                if member is None:
                    break
                try:
                    self._member(src, member)
                except OSError as e:
                    if e.errno == errno.ENAMETOOLONG:
                        raise self._too_long(member) from None
                    raise
            # Drain what follows the end marker so gzip/xz/zstd check their trailers.
            while src.skip(_CHUNK):
                pass
        finally:
            self.close()
        return self.tree.hexdigest()

    def close(self) -> None:
        if self.cached is not None:
            os.close(self.cached[1])
            self.cached = None
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None

    def _member(self, src: _Input, m: _Member) -> None:
        self._check_header(m)
        parts = [p for p in m.name.split("/") if p and p != "."]
        if not parts:  # "./": the root itself
            return
        path = "/".join(parts)
        if m.type == _LNK:
            self._hardlink(m, path, parts)
            return
        self._make_parents(m, parts)
        if m.isdir():
            if self._kind(path) != "dir":
                self._clear(path)
                self._mkdir(m, path)
        elif m.type == _SYM:
            self._clear(path)
            if self.root_fd is not None:
                folder, name = self._at(path)
                try:
                    os.symlink(m.linkname, name, dir_fd=folder)
                except FileExistsError:
                    raise self._collision(m) from None
            self.nodes[path] = ("link", None)
            self.tree.add(path, MODE_LINK, blob_sha1(os.fsencode(m.linkname)))
        else:
            self._clear(path)
            sha = self._write_file(src, m, path)
            self.nodes[path] = ("file", sha)
            self.tree.add(path, _git_mode(m), sha)

    def _check_header(self, m: _Member) -> None:
        """Tar.jl's check_header, plus the types tar readers would otherwise accept."""
        name, reason = m.name, None
        if m.sparse:
            reason = "it is a sparse file, which is not supported"
        elif m.type not in (_REG, _AREG, _DIR, _SYM, _LNK):
            what = _TYPE_NAMES.get(m.type, f"an entry of type {m.type.decode('latin-1')!r}")
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
        elif m.linkname and m.type not in (_SYM, _LNK):
            reason = "a file or directory entry has a link target"
        elif m.type == _SYM and not m.linkname:
            reason = "a symlink has an empty target"
        if reason:
            raise self._refuse(m, reason)

    # -- state and disk ----------------------------------------------------

    def _kind(self, path: str) -> Optional[str]:
        node = self.nodes.get(path)
        return node[0] if node else None

    def _at(self, path: str) -> Tuple[int, str]:
        """(descriptor of the folder holding ``path``, last component)."""
        assert self.root_fd is not None
        folder, _, name = path.rpartition("/")
        if not folder:
            return self.root_fd, name
        cached = self.cached
        if cached is not None and cached[0] == folder:
            return cached[1], name
        if cached is not None and folder.startswith(cached[0] + "/"):  # going down
            fd = open_dir_at(cached[1], folder[len(cached[0]) + 1:])
        else:
            fd = open_dir_at(self.root_fd, folder)
        if cached is not None:
            os.close(cached[1])
        self.cached = (folder, fd)
        return fd, name

    def _collision(self, m: _Member) -> UnsafeArchiveError:
        return self._refuse(m, "it collides with a different path already unpacked "
                               "(case-insensitive or normalising filesystem?)")

    def _make_parents(self, m: _Member, parts: List[str]) -> None:
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
                raise self._refuse(m, f"its path goes through {_show(prefix)}, a symlink "
                                      "created earlier in the same tarball")
            self._clear(prefix)  # a file there is replaced by a directory (as Tar.jl)
            self._mkdir(m, prefix)

    def _mkdir(self, m: _Member, path: str) -> None:
        if self.root_fd is not None:
            folder, name = self._at(path)
            try:
                os.mkdir(name, 0o755, dir_fd=folder)
            except FileExistsError:
                raise self._collision(m) from None
            if self.umask & 0o755:
                os.chmod(name, 0o755, dir_fd=folder)  # whatever the umask
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
        if self.root_fd is not None:
            folder, name = self._at(path)
            if node[0] == "dir":
                cached = self.cached
                if cached is not None and (cached[0] == path or cached[0].startswith(below)):
                    os.close(cached[1])
                    self.cached = None
                    folder, name = self._at(path)
                remove_tree(name, dir_fd=folder)  # never follows symlinks inside
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=folder)

    def _create(self, m: _Member, path: str) -> int:
        """A new regular file at ``path`` with its final mode; never opens through a symlink."""
        mode = self.file_modes[1 if m.mode & stat.S_IXUSR else 0]
        folder, name = self._at(path)
        try:
            fd = os.open(name, _OPEN_FLAGS, mode, dir_fd=folder)
        except FileExistsError:
            raise self._collision(m) from None
        if self.umask & mode:
            os.fchmod(fd, mode)
        return fd

    def _write_file(self, src: _Input, m: _Member, path: str) -> bytes:
        """Read the member's data once: hash it and (with a destination) write it."""
        h = hashlib.sha1(blob_header(m.size))
        out = self._create(m, path) if self.root_fd is not None else None
        try:
            padded = m.size + (-m.size % _BLOCK)
            if padded <= _CHUNK:
                data = src.take(padded)
                if len(data) < padded:
                    raise _Damaged(f"it ends in the middle of member {_show(m.name)}")
                h.update(data[:m.size])
                if out is not None:
                    _write_all(out, data[:m.size])
                return h.digest()
            self._copy_big(src, m, h, out)
            src.skip(padded - m.size)
        finally:
            if out is not None:
                os.close(out)
        return h.digest()

    def _copy_big(self, src: _Input, m: _Member, h: Any, out: Optional[int]) -> None:
        """Stream a big member; its sha1 runs in a helper thread, beside the writes."""
        if self.pool is None and m.size > _BIG:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(1, thread_name_prefix="artifacts-py-sha1")
        pool = self.pool if m.size > _BIG else None
        previous: "Optional[Future[None]]" = None
        got = 0
        try:
            for piece in src.chunks(m.size):
                current = pool.submit(h.update, piece) if pool is not None else None
                if current is None:
                    h.update(piece)
                if out is not None:
                    _write_all(out, piece)
                if previous is not None:
                    previous.result()  # at most two chunks in flight: bounded memory
                previous = current
                got += len(piece)
        finally:
            if previous is not None:
                previous.result()
        if got < m.size:
            raise _Damaged(f"it ends in the middle of member {_show(m.name)}")

    def _hardlink(self, m: _Member, path: str, parts: List[str]) -> None:
        """A copy of an earlier regular file, with the link header's exec bit."""
        self._make_parents(m, parts)  # first: it may replace the target itself
        target = "/".join(p for p in m.linkname.split("/") if p and p != ".")
        node = self.nodes.get(target)
        if node is None or node[0] != "file":
            what = {"hardlink": "another hardlink", "link": "a symlink",
                    "dir": "a directory"}.get(node[0] if node else "", "no earlier member")
            raise self._refuse(m, f"it is a hardlink to {_show(m.linkname)}, which is {what}; "
                                  "hardlinks may only point to an earlier regular file")
        sha = node[1]
        if self.root_fd is not None:
            # Open the source before clearing the path: a link to itself stays readable.
            folder, name = self._at(target)
            fsrc = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                           dir_fd=folder)
            try:
                self._clear(path)
                fdst = self._create(m, path)
                try:
                    while True:
                        data = os.read(fsrc, _CHUNK)
                        if not data:
                            break
                        _write_all(fdst, memoryview(data))
                finally:
                    os.close(fdst)
            finally:
                os.close(fsrc)
        else:
            self._clear(path)
        self.nodes[path] = ("hardlink", sha)
        self.tree.add(path, _git_mode(m), sha)  # type: ignore[arg-type]


def _git_mode(m: _Member) -> bytes:
    return MODE_EXEC if m.mode & stat.S_IXUSR else MODE_FILE


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


def _unpack(source: Source, root_fd: Optional[int], label: Optional[str],
            sha256_checked: bool, readonly: bool) -> str:
    with _opened(source) as (raw, name):
        unpacker = _Unpacker(label or name, root_fd, sha256_checked, readonly)
        stream, kind, head = _decompressed(raw, label or name)
        src = _Input(stream, kind)
        try:
            return unpacker.run(src)
        except _NotTar as e:
            raise unpacker.not_tar(head, kind, e.args[0]) from None
        except _Damaged as e:
            raise unpacker.corrupt(str(e)) from None
        finally:
            src.close()
            if stream is not raw:
                with contextlib.suppress(Exception):  # a damaged stream may fail to close
                    stream.close()


def extract_tarball(source: Source, dest: PathLike, *, label: Optional[str] = None,
                    sha256_checked: bool = False, readonly: bool = False) -> str:
    """Unpack a (possibly compressed) tarball into the empty directory ``dest``.

    ``source`` is a path or a readable binary stream (a pipe, or a download
    still in progress: it is read once, front to back, and never seeked).
    Returns the git-tree-sha1 of the content, computed from the stream
    (``Tar.tree_hash`` with ``skip_empty=true``). Directories get mode 0755;
    files 0644 or 0755 (owner exec bit of the header), or with ``readonly``
    0444 or 0555, set when each file is created (no second walk).

    ``label`` names the archive in messages (pass the URL; the default is the
    path or stream name). ``sha256_checked``: the caller verified the file's
    sha256, so a corrupt archive cannot be cured by downloading it again and
    the message says so.

    Raises :class:`UnsafeArchiveError` for a hostile, corrupt or truncated
    tarball, :class:`UnsupportedArchiveError` for something that is not a tar
    archive or a name this filesystem cannot hold; ``dest`` may then hold
    partial content, which the caller removes.
    """
    target = os.fspath(dest)
    if not os.path.isdir(target):
        raise NotADirectoryError(errno.ENOTDIR, "extract_tarball needs an existing, "
                                 "empty directory to unpack into", target)
    with os.scandir(target) as it:
        if next(it, None) is not None:
            raise FileExistsError(errno.ENOTEMPTY, "extract_tarball unpacks only into an "
                                  "empty directory; use a fresh temporary one", target)
    root_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        return _unpack(source, root_fd, label, sha256_checked, readonly)
    finally:
        os.close(root_fd)


def tarball_tree_hash(source: Source, *, label: Optional[str] = None,
                      sha256_checked: bool = False) -> str:
    """The git-tree-sha1 :func:`extract_tarball` would return, writing nothing.

    The same safety checks apply, so a hash is only given for a tarball that
    would unpack.
    """
    return _unpack(source, None, label, sha256_checked, False)


# --------------------------------------------------------------------------
# Writing


class _HashingWriter:
    """Writes through to a file, counting bytes and computing their sha256."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._sha = hashlib.sha256()
        self._pos = 0

    def write(self, data: Any) -> int:
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


def _compressor(kind: str, sink: _HashingWriter, name: str) -> Any:
    """A writable context manager compressing into ``sink`` (left open)."""
    target: Any = sink
    if kind == "none":
        return contextlib.nullcontext(sink)
    if kind == "gz":  # no file name, mtime 0: the same bytes every time
        return gzip.GzipFile(filename="", mode="wb", fileobj=target,
                             compresslevel=_GZ_LEVEL, mtime=0)
    if kind == "bz2":
        return bz2.BZ2File(target, "wb", compresslevel=_BZ2_LEVEL)
    if kind == "xz":
        return lzma.LZMAFile(target, "wb", preset=_XZ_PRESET)
    return _zstandard(name).ZstdCompressor(level=_ZST_LEVEL, write_checksum=True).stream_writer(
        sink, closefd=False)


def _add_entry(tf: tarfile.TarFile, root: str, rel: str, name: str, dir_fd: int,
               st: os.stat_result) -> None:
    info = tarfile.TarInfo(rel)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if stat.S_ISDIR(st.st_mode):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(info)
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.mode = tarfile.SYMTYPE, 0o755
        info.linkname = os.readlink(name, dir_fd=dir_fd)
        tf.addfile(info)
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                     dir_fd=dir_fd)
        with open(fd, "rb") as f:
            fst = os.fstat(fd)
            info.size = fst.st_size
            info.mode = 0o755 if fst.st_mode & stat.S_IXUSR else 0o644
            tf.addfile(info, f)
    else:
        raise UnsupportedArchiveError(
            f"{os.path.join(root, rel)}: cannot archive a device, FIFO or socket; an artifact "
            "may hold only files, directories and symlinks; remove it from the directory")


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


def compression_for(archive_path: PathLike, compression: Optional[str] = None) -> str:
    """The compression :func:`create_archive` uses: ``"gz"``, ``"bz2"``,
    ``"xz"``, ``"zst"`` or ``"none"``.

    The archive's name decides (``.tar.gz``/``.tgz``, ``.tar.bz2``,
    ``.tar.xz``, ``.tar.zst``, ``.tar``); ``compression`` (also ``gzip``,
    ``bzip2``, ``zstd``, ``tar``) is for names that say nothing, and must
    agree with a name that does. Neither: gzip.
    """
    base = os.path.basename(os.fspath(archive_path)).lower()
    by_name = next((kind for suffix, kind in _SUFFIXES if base.endswith(suffix)), None)
    if compression is None:
        return by_name or "gz"
    kind = _COMPRESSIONS.get(str(compression).lower())
    if kind is None:
        raise UnsupportedArchiveError(
            f"unknown compression {compression!r}; use one of gz, bz2, xz, zst or none")
    if by_name is not None and by_name != kind:
        said = "no compression (.tar)" if by_name == "none" else _KIND_NAMES[by_name]
        raise UnsupportedArchiveError(
            f"{os.fspath(archive_path)}: the name says {said} but compression "
            f"{compression!r} was asked for; give the archive a {_PLAIN_SUFFIX[kind]} name, or "
            "leave the compression to the name")
    return kind


def create_archive(directory: PathLike, archive_path: PathLike,
                   compression: Optional[str] = None) -> str:
    """Write a deterministic tarball of the *content* of ``directory``.

    Entries are sorted (depth first, by name bytes), with no wrapper folder;
    directories are 0755, files 0644 or 0755 by their owner exec bit,
    symlinks stay symlinks; mtime, uid and gid are 0 and names empty; PAX
    format. The compression follows the archive's name (see
    :func:`compression_for`); ``compression`` may say it for a name that
    does not, and a contradiction is an error. The archive is written
    atomically. Returns its sha256 (hex).

    The same directory content gives byte-identical archives, whatever the
    files' mtimes, owners, other permission bits or the umask. Any depth
    works (the walk is iterative).
    """
    kind = compression_for(archive_path, compression)
    root, out_path = os.fspath(directory), os.fspath(archive_path)
    if not os.path.isdir(root):
        raise NotADirectoryError(errno.ENOTDIR, "create_archive needs a directory", root)
    with _atomic_output(out_path) as raw:
        sink = _HashingWriter(raw)
        with _compressor(kind, sink, out_path) as packed:
            with tarfile.TarFile(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT,
                                 encoding="utf-8", errors="surrogateescape",
                                 copybufsize=_CHUNK) as tf:
                for e in walk(root, sort=True):
                    _add_entry(tf, root, e.rel, e.name, e.dir_fd, e.st)
    return sink.hexdigest()


__all__ = ["detect_compression", "open_decompressed", "extract_tarball",
           "tarball_tree_hash", "create_archive", "compression_for"]
