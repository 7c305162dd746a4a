"""The transfer engine: fill a directory from a manifest of files, in parallel.

Used by every manifest-driven source (a mounted Gobbler registry, Gobbler
REST, gypsum). The caller gives the manifest's files as (path, size, md5)
and a ``fetch(rel, dst, size)`` that creates ``dst`` and returns (bytes,
md5 hex, raw git blob sha1); the engine runs fetches on worker threads,
checks each file against the manifest as it lands, creates the empty
directories, and computes the tree hash from the blob hashes (no re-read).

Files are created read-only in one step (``0o444`` at ``open``), so the
store needs no chmod walk afterwards.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from .errors import hash_mismatch
from .progress import Bar
from .treehash import MODE_FILE, TreeBuilder, blob_hasher, hash_file

CHUNK = 1 << 20
# Files up to this size are read into memory, hashed and written from one buffer.
SMALL_FILE = 1 << 20
# Installed files are read-only whatever the umask, set as each file is created.
FILE_MODE = 0o444
# A mounted registry is read from the page cache: CPU-bound, so more threads than
# cores only fight over the GIL (2,000 x 16 KiB: 0.40 s with 2 threads, 1.23 s with 8).
LOCAL_WORKERS = max(1, min(8, os.cpu_count() or 1))

Fetch = Callable[[str, str, int], Tuple[int, str, bytes]]


class FileSpec(NamedTuple):
    """One file to fetch: its path in the tree, and what the manifest promises."""

    path: str
    size: int
    md5: str


def fill(dest: Path, files: Sequence[FileSpec], empty_dirs: Sequence[str], fetch: Fetch, *,
         workers: int, where: str, bar: Bar) -> str:
    """Fetch every file into ``dest`` in parallel, check each, return the tree hash.

    ``where`` names the version in errors (a URL or registry path, never a
    temp dir). ``fetch(rel, dst, size)`` creates ``dst`` (``dest/rel`` as a
    string: no pathlib per file) and returns (bytes, md5 hex, raw blob sha1).
    """
    top = os.fspath(dest)
    for parent in sorted({os.path.dirname(f.path) for f in files} - {""}):
        os.makedirs(f"{top}/{parent}", exist_ok=True)  # once, not per file
    bar.set_total(sum(f.size for f in files))
    bar.nfiles = len(files)

    def one(spec: FileSpec) -> Callable[[], Tuple[str, bytes]]:
        def task() -> Tuple[str, bytes]:
            n, got_md5, sha = fetch(spec.path, f"{top}/{spec.path}", spec.size)
            check_file(spec, n, got_md5, where)
            bar.file_done()
            return spec.path, sha
        return task

    digests = run_pool([one(f) for f in files], workers)
    for rel in empty_dirs:
        os.makedirs(os.path.join(top, *rel.split("/")), exist_ok=True)
    builder = TreeBuilder()
    for rel, sha in digests.items():
        builder.add(rel, MODE_FILE, sha)
    return builder.hexdigest()


def check_file(spec: FileSpec, size: int, md5: str, where: str) -> None:
    """The file that landed must have the manifest's size and md5."""
    if size != spec.size:
        raise hash_mismatch("size", f"{spec.size} bytes", f"{size} bytes",
                            what=f"{where}/{spec.path}", advice=_ADVICE)
    if md5 != spec.md5:
        raise hash_mismatch("md5", spec.md5, md5, what=f"{where}/{spec.path}", advice=_ADVICE)


_ADVICE = ("the file does not match the version's ..manifest: the registry copy was changed "
           "after publishing, or the transfer was corrupted; nothing was installed")


def run_pool(tasks: List[Callable[[], Tuple[str, bytes]]],
              workers: int = LOCAL_WORKERS) -> Dict[str, bytes]:
    """Run file tasks on ``workers`` threads; the first error stops them all.

    Each worker takes the next task itself: no future per file and no wake-up
    of this thread per result, which costs as much as a small file's copy.
    """
    out: Dict[str, bytes] = {}
    errors: List[BaseException] = []
    todo = iter(tasks)
    take = threading.Lock()

    def work() -> None:
        while not errors:
            with take:
                task = next(todo, None)
            if task is None:
                return
            try:
                rel, sha = task()
            except BaseException as e:  # handed to the caller's thread below
                errors.append(e)
                return
            out[rel] = sha

    threads = [threading.Thread(target=work, name=f"artifacts-py-fill-{i}", daemon=True)
               for i in range(max(1, min(workers, len(tasks))))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException as e:  # KeyboardInterrupt: let the workers finish their file
        errors.append(e)
        for t in threads:
            t.join()
        raise
    if errors:
        raise errors[0]
    return out


_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | \
    getattr(os, "O_CLOEXEC", 0)


def create(dst: str) -> int:
    """A new file in our temp dir, read-only whatever the umask (the fd stays writable)."""
    fd = os.open(dst, _O_NEW, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def write_and_hash(dst: str, data: bytes) -> Tuple[int, str, bytes]:
    """Write a small file's bytes to a new ``dst``; (size, md5 hex, raw blob sha1)."""
    fout = create(dst)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fout, view):]
    finally:
        os.close(fout)
    sha = blob_hasher(len(data))
    sha.update(data)
    return len(data), hashlib.md5(data).hexdigest(), sha.digest()


def copy_and_hash(src: str, dst: str, size: int) -> Tuple[int, str, bytes]:
    """Copy ``src`` to ``dst`` (kernel copy where possible), then hash what landed.

    Hashing the destination checks the bytes we install, and reads them from
    the page cache the copy just filled. A small file is read once into memory
    (at most one byte more than the manifest says, so growth is caught),
    hashed, and written: cheaper than a copy and a re-read.
    """
    if size <= SMALL_FILE:
        fin = os.open(src, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            data = os.read(fin, size + 1)
            while len(data) <= size:  # a short read (network filesystems): keep going
                more = os.read(fin, size + 1 - len(data))
                if not more:
                    break
                data += more
        finally:
            os.close(fin)
        return write_and_hash(dst, data)
    with open(src, "rb") as reader, open(create(dst), "wb") as writer:
        _kernel_copy(reader.fileno(), writer.fileno(), size)
    md5, sha = hashlib.md5(), blob_hasher(os.path.getsize(dst))
    n = hash_file(dst, md5, sha)
    return n, md5.hexdigest(), sha.digest()


def _kernel_copy(fin: int, fout: int, size: int) -> None:
    """reflink (FICLONE), else copy_file_range / sendfile, else a buffered copy.

    The caller hashes what landed, so the copy only has to be complete: a
    kernel copy that fails, or stops short of ``size`` (some network and FUSE
    filesystems answer 0 early), is redone buffered from the start.
    """
    try:
        import fcntl

        fcntl.ioctl(fout, 0x40049409, fin)  # FICLONE: share blocks, copy nothing
        return
    except (OSError, ImportError):
        pass
    try:
        if _copy_range(fin, fout) >= size:
            return
    except OSError:
        pass
    os.lseek(fin, 0, os.SEEK_SET)
    os.lseek(fout, 0, os.SEEK_SET)
    os.ftruncate(fout, 0)
    with open(fin, "rb", closefd=False) as a, open(fout, "wb", closefd=False) as b:
        shutil.copyfileobj(a, b, CHUNK)


def _copy_range(fin: int, fout: int) -> int:
    """Copy in the kernel until the source says end of file; returns the bytes copied.

    Copies past the manifest's size too, so that a file that grew is caught.
    """
    copy = getattr(os, "copy_file_range", None)
    done = 0
    while True:
        n = copy(fin, fout, 1 << 30) if copy else os.sendfile(fout, fin, done, 1 << 30)
        if n == 0:
            return done
        done += n


