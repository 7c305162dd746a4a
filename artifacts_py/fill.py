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
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from .errors import hash_mismatch
from .files import umask
from .progress import Bar
from .treehash import MODE_FILE, TreeBuilder, blob_hasher, hash_file

if TYPE_CHECKING:
    from . import transport

log = logging.getLogger(__name__)

CHUNK = 1 << 20
# Files up to this size are read into memory, hashed and written from one buffer.
SMALL_FILE = 1 << 20
# Over HTTP, files up to this size take Transport.get_small (a lean GET whose per-request
# cost is most of a small file's); a failure there refetches them whole, so bigger
# files go straight to transport.download(), which resumes with Range.
SMALL_GET = 256 << 10
# Installed files are read-only whatever the umask, set as each file is created.
FILE_MODE = 0o444
# A mounted registry is read from the page cache: CPU-bound, so more threads than
# cores only fight over the GIL (2,000 x 16 KiB: 0.40 s with 2 threads, 1.23 s with 8).
LOCAL_WORKERS = max(1, min(8, os.cpu_count() or 1))

# Over a network: our CPU spends about 0.4 ms per small file, so to keep a link of
# round trip R busy about R / 0.4 ms requests must be in flight (its bandwidth-delay
# product, counted in files). Near (R < 5 ms) the CPU is the limit and 4 is best.
PER_FILE_CPU = 0.0004
NEAR = 0.005
NEAR_WORKERS = 4

Fetch = Callable[[str, str, int], Tuple[int, str, bytes]]


def workers_for(latency: float, cap: int) -> int:
    """How many requests to start with, given one request's latency (seconds)."""
    if latency < NEAR:
        return min(cap, NEAR_WORKERS)
    return max(1, min(cap, max(NEAR_WORKERS, round(latency / PER_FILE_CPU))))


class FileSpec(NamedTuple):
    """One file to fetch: its path in the tree, and what the manifest promises."""

    path: str
    size: int
    md5: str


def fill(dest: Path, files: Sequence[FileSpec], empty_dirs: Sequence[str], fetch: Fetch, *,
         workers: int, where: str, bar: Bar, cap: Optional[int] = None,
         copies: Optional[Dict[str, str]] = None) -> str:
    """Fetch every file into ``dest`` in parallel, check each, return the tree hash.

    ``where`` names the version in errors (a URL or registry path, never a
    temp dir). ``workers`` threads start; up to ``cap`` when more help
    (see :func:`run_pool`). ``copies`` maps more paths to a fetched path with
    the same bytes (one object listed under several names is fetched once). ``fetch(rel, dst, size)`` creates ``dst`` (``dest/rel`` as a
    string: no pathlib per file) and returns (bytes, md5 hex, raw blob sha1).
    """
    top = os.fspath(dest)
    copies = copies or {}
    for parent in sorted({os.path.dirname(p) for p in [f.path for f in files] + list(copies)}
                         - {""}):
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

    digests = run_pool([one(f) for f in files], workers, cap=cap)
    for rel, source in copies.items():
        _duplicate(f"{top}/{source}", f"{top}/{rel}")
        digests[rel] = digests[source]
        bar.file_done()
    for rel in empty_dirs:
        os.makedirs(os.path.join(top, *rel.split("/")), exist_ok=True)
    builder = TreeBuilder()
    for rel, sha in digests.items():
        builder.add(rel, MODE_FILE, sha)
    return builder.hexdigest()


class WarmUp:
    """How many requests to keep in flight at first, with their connections opened early.

    Made before a source's first small request (a manifest): connecting takes
    about a round trip, a request about two, so the connect time gives a first
    worker count whose connections open while that request is on its way.
    :meth:`settle`, once it has been answered, raises the count to what its
    latency asks for (a connect that returns at once, through a proxy or a
    link emulator, hides the round trip). The extra workers connect for
    themselves: opening their connections here as well only added hundreds
    of threads fighting over the GIL (100 ms at 100 ms round trip).
    """

    def __init__(self, t: "transport.Transport", url: str, cap: int) -> None:
        import time

        self.cap = cap
        self.started = time.monotonic()
        self.workers = workers_for(2 * t.open(url), cap)
        t.preconnect(url, self.workers)

    def settle(self) -> int:
        """The worker count after the first request (never fewer than at first)."""
        import time

        self.workers = max(self.workers, workers_for(time.monotonic() - self.started, self.cap))
        return self.workers


def http_fetch(url_for: Callable[[str], str], bar: Bar, where: str,
               shared: "Optional[transport.Transport]" = None) -> Fetch:
    """A ``fetch`` for :func:`fill` over HTTP: ``url_for(rel)`` is each file's URL.

    A small file takes the transport's lean GET (a kept-alive connection per
    worker thread), anything else (or anything unusual there) the robust
    download, which retries and resumes. Bytes are hashed as they arrive.
    ``shared`` is one transport for every worker (give it a pool as large as
    the cap; its :meth:`~transport.Transport.preconnect` connections are
    taken by the workers); by default each worker has its own.
    """
    from . import transport

    local = threading.local()

    def fetch(rel: str, dst: str, size: int) -> Tuple[int, str, bytes]:
        t = shared or getattr(local, "t", None)
        if t is None:
            t = local.t = transport.Transport()
        url = url_for(rel)
        if size <= SMALL_GET:  # the common case on a lean path; anything odd falls through
            data = t.get_small(url, size)
            if data is not None:
                got = write_and_hash(dst, data)
                bar.update(got[0])
                return got
        res = transport.download(url, dst, transport=t, on_bytes=bar.update,
                                 hashers=(hashlib.md5, lambda: blob_hasher(size)),
                                 compute_sha256=False, mode=FILE_MODE, label=f"{where}/{rel}")
        md5_obj, sha_obj = res.digests
        return res.size, md5_obj.hexdigest(), sha_obj.digest()

    return fetch


def _duplicate(src: str, dst: str) -> None:
    """``dst`` with ``src``'s bytes: a hard link in our own temp dir, else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        with open(src, "rb") as reader, open(create(dst), "wb") as writer:
            shutil.copyfileobj(reader, writer, CHUNK)


def check_file(spec: FileSpec, size: int, md5: str, where: str) -> None:
    """The file that landed must have the manifest's size and md5."""
    if size != spec.size:
        raise hash_mismatch("size", f"{spec.size} bytes", f"{size} bytes",
                            what=f"{where}/{spec.path}", advice=_ADVICE)
    if md5 != spec.md5:
        raise hash_mismatch("md5", spec.md5, md5, what=f"{where}/{spec.path}", advice=_ADVICE)


_ADVICE = ("the file does not match the version's ..manifest: the registry copy was changed "
           "after publishing, or the transfer was corrupted; nothing was installed")


def run_pool(tasks: List[Callable[[], Tuple[str, bytes]]], workers: int = LOCAL_WORKERS, *,
             cap: Optional[int] = None) -> Dict[str, bytes]:
    """Run file tasks on worker threads; the first error stops them all.

    Each worker takes the next task itself: no future per file and no wake-up
    of this thread per result, which costs as much as a small file's copy.
    With ``cap`` above ``workers`` the pool is adaptive, like TCP's window:
    this thread measures the files finished per window (a few task latencies
    long), doubles the workers while that rate grows by a fifth or more, and
    settles back to the last level that helped once it stops growing (extra
    workers leave after their current task). On a fast link the CPU is the
    limit and few threads win; across an ocean many requests must be in flight.
    """
    if workers <= 1 and (cap or 1) <= 1:  # one worker: this thread, no hand-offs
        return dict(task() for task in tasks)
    pool = _Pool(tasks, max(1, workers), max(workers, cap or workers))
    return pool.run()


class _Pool:
    """The worker threads of :func:`run_pool` and their controller."""

    def __init__(self, tasks: List[Callable[[], Tuple[str, bytes]]], target: int,
                 cap: int) -> None:
        self.todo = iter(tasks)
        self.left = len(tasks)
        self.cap = min(cap, max(1, len(tasks)))
        self.target = min(target, self.cap)
        self.out: Dict[str, bytes] = {}
        self.errors: List[BaseException] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.threads: List[threading.Thread] = []
        self.active = 0
        self.finished = 0
        self.busy = 0.0  # seconds spent in tasks, for the mean latency

    def run(self) -> Dict[str, bytes]:
        if self.left == 0:
            return self.out
        self._spawn(self.target)
        try:
            if self.cap > self.target:
                self._steer()
            for t in self.threads:
                t.join()
        except BaseException as e:  # KeyboardInterrupt: let the workers finish their file
            self.errors.append(e)
            for t in self.threads:
                t.join()
            raise
        if self.errors:
            raise self.errors[0]
        return self.out

    def _spawn(self, n: int) -> None:
        for _ in range(n):
            with self.lock:
                self.active += 1
            t = threading.Thread(target=self._work, name=f"artifacts-py-fill-{len(self.threads)}",
                                 daemon=True)
            self.threads.append(t)
            t.start()

    def _work(self) -> None:
        import time

        try:
            while not self.errors:
                with self.lock:
                    if self.active > self.target:  # the controller shrank the pool
                        return
                    task = next(self.todo, None)
                if task is None:
                    return
                start = time.monotonic()
                try:
                    rel, sha = task()
                except BaseException as e:  # handed to the caller's thread
                    self.errors.append(e)
                    return
                self.out[rel] = sha
                with self.lock:
                    self.finished += 1
                    self.busy += time.monotonic() - start
        finally:
            with self.lock:
                self.active -= 1
                if self.active == 0 or self.errors:
                    self.done.set()

    def _steer(self) -> None:
        """Grow the pool while the finishing rate grows; settle at the best level."""
        import time

        last_time, last_done, best, previous = time.monotonic(), 0, 0.0, self.target
        while not self.done.is_set():
            with self.lock:
                mean = self.busy / self.finished if self.finished else 0.01
            if self.done.wait(min(1.0, max(0.05, 4 * mean))):
                return
            now = time.monotonic()
            with self.lock:
                finished = self.finished
            rate = (finished - last_done) / (now - last_time)
            last_time, last_done = now, finished
            if finished == 0:
                continue  # nothing measured yet
            if rate > best * 1.2 and self.target < self.cap:
                best, previous = rate, self.target
                grown = min(self.cap, self.target * 2)
                log.debug("fill: %.0f files/s with %d workers; trying %d", rate, self.target,
                          grown)
                with self.lock:
                    self.target = grown
                    extra = self.target - self.active
                self._spawn(max(0, extra))
            else:
                if rate < best:  # the last doubling did not help: go back
                    with self.lock:
                        self.target = previous
                log.debug("fill: settled at %d workers (%.0f files/s)", self.target, rate)
                return


_O_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | \
    getattr(os, "O_CLOEXEC", 0)


# The usual umask (022, 002) leaves 0444 alone: then open() alone sets the mode and
# the fchmod per file (a syscall out of about six) is skipped.
_NEEDS_CHMOD = (umask() or 0o777) & FILE_MODE != 0


def create(dst: str) -> int:
    """A new file in our temp dir, read-only whatever the umask (the fd stays writable)."""
    fd = os.open(dst, _O_NEW, FILE_MODE)
    if _NEEDS_CHMOD:
        os.fchmod(fd, FILE_MODE)
    return fd


def write_and_hash(dst: str, data: bytes) -> Tuple[int, str, bytes]:
    """Write a small file's bytes to a new ``dst``; (size, md5 hex, raw blob sha1)."""
    fout = create(dst)
    try:
        done = os.write(fout, data)
        if done < len(data):  # rare: a short write
            view = memoryview(data)[done:]
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
    hashed, and written: cheaper than a copy and a re-read. Reading stops once
    ``size`` bytes are in: a file that grew shows in the first read (a local
    filesystem returns all it has), and a read that stops short exactly at
    ``size`` still installs exactly the manifest's bytes, which the md5 checks.
    """
    if size <= SMALL_FILE:
        fin = os.open(src, _O_READ)
        try:
            data = os.read(fin, size + 1)
            while len(data) < size:  # a short read (network filesystems): keep going
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


