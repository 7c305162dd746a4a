"""The store: the one persist step that puts a tree into a depot, and removal.

:func:`install` reads top to bottom like Julia's install protocol:

1. take the depot's shared lock (``gc`` takes it exclusively, so it never
   removes a tree that an install is writing or has just written), and, for a
   known hash, the per-hash lock (it only saves duplicate work: correctness
   never depends on a lock, which may silently not lock on NFS);
2. for each source in order: make a private temp dir inside
   ``<depot>/artifacts`` named after its owner (host and pid, so a crashed
   install's leftovers are recognised at once), let the source fill it,
   compare the tree hash with the expected one, clear write bits, and
   ``rename`` it into place in one step;
3. the first source that works wins; all failures are raised together.

An existing destination counts as success; a crash leaves only a temp dir,
which the next install (or ``gc``) on the same host removes.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

from . import settings
from .depot import artifacts_dir, get_cache_dir, require_hash
from .errors import (ArtifactError, DepotError, InstallError, OfflineError, hash_mismatch)
from .files import make_readonly, remove_tree
from .progress import Bar
from .sources.base import Filled, Source

log = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"
DOWNLOAD_PREFIX = ".download-"  # older releases' download files; reaped like temp dirs
# Temp entries of other hosts (or in an old format) older than this are reaped by gc.
TEMP_GRACE_SECONDS = 24 * 3600
# Say that we are waiting for another process after this many seconds (Julia does).
WAIT_NOTICE_SECONDS = 2.0
LOCK_WAIT_SECONDS = 900.0
CACHEDIR_TAG = ("Signature: 8a477f597d28d172789f06886806bc55\n"
                "# This file is a cache directory tag created by artifacts-py.\n"
                "# For information about cache directory tags see https://bford.info/cachedir/\n")

_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


# ---------------------------------------------------------------- install

def install(expected: Optional[str], sources: Sequence[Source], *, what: str,
            depot: Optional[Path] = None, progress: Optional[bool] = None,
            desc: Optional[str] = None) -> Path:
    """Install a tree from the first source that works; return its directory.

    ``expected`` is the git-tree-sha1 the tree must have, or None to accept
    whatever the source holds (pinning: the hash is learnt). ``what`` names
    the artifact in messages, ``desc`` on the progress bar. Raises :class:`InstallError` listing every
    source's failure, :class:`OfflineError` when every source needed the
    network while offline, :class:`DepotError` when the depot is full or
    cannot be written. Nothing is installed on failure.
    """
    depot = depot or get_cache_dir()
    target = prepare_depot(depot, what)
    if expected is not None:
        expected = require_hash(expected)
        done = _installed(target, expected)
        if done is not None:
            return done
    if not sources:
        raise InstallError(f"{what} has no source to install from")
    failures: List[Tuple[str, BaseException]] = []
    offline = settings.offline()
    with depot_lock(depot, exclusive=False), _hash_lock(depot, expected, what):
        if expected is not None:
            done = _installed(target, expected)
            if done is not None:  # another process finished while we waited
                return done
        reap_dead_temps(target)
        for source in sources:
            if offline and source.network:
                failures.append((source.label, OfflineError(
                    "skipped: ARTIFACTS_PY_OFFLINE is set and this source needs the network")))
                continue
            try:
                return persist(target, expected, source, what, progress, desc)
            except (ArtifactError, OSError, ValueError) as e:
                log.info("%s: %s failed: %s", what, source.label, e)
                failures.append((source.label, e))
                if isinstance(e, OSError) and e.errno is not None and e.errno in _DISK_FULL:
                    raise _disk_full(what, depot, failures, e.errno) from e
    if offline and all(isinstance(e, OfflineError) for _, e in failures):
        raise OfflineError(f"{what} is not installed, and every source needs the network "
                           "while ARTIFACTS_PY_OFFLINE is set; unset it to download")
    raise InstallError(f"could not install {what}; nothing was installed. Sources tried:",
                       failures)


def _installed(target: Path, tree_hash: str) -> Optional[Path]:
    path = target / tree_hash
    return path if os.path.isdir(path) else None


def persist(target: Path, expected: Optional[str], source: Source, what: str,
            progress: Optional[bool] = None, desc: Optional[str] = None) -> Path:
    """The one persist step: temp dir, fill, verify, read-only, rename."""
    started = time.monotonic()
    tmp = new_temp_dir(target)
    dest = tmp / "tree"
    try:
        os.mkdir(dest)
        with Bar(desc or what, enabled=progress) as bar:
            try:
                filled: Filled = source.fill(dest, tmp, bar)
            except OSError as e:
                raise _readable(e, tmp, source.label) from None
            computed = filled.tree_hash
            if computed is None:
                from .treehash import compute_git_tree_sha1

                bar.stage(f"verifying {desc or what}")
                computed = compute_git_tree_sha1(dest)
        if expected is not None and computed != expected:
            raise hash_mismatch(
                "git-tree-sha1", expected, computed, what=what, source=source.label,
                advice="the source does not hold the content the Artifacts.toml pins; "
                       "nothing was installed (re-pin it with `artifacts add --force`, or fix "
                       "the source)")
        final = target / computed
        if not os.path.isdir(final):
            if not source.readonly:
                make_readonly(dest)
            # The tree is as readable as its depot (Julia), whatever the umask.
            os.chmod(dest, stat.S_IMODE(os.stat(target).st_mode))
            try:
                os.rename(dest, final)
            except OSError:
                if not os.path.isdir(final):  # lost a race to an identical tree: fine
                    raise
        log.info("installed %s from %s: %s in %d files, %.2f s", what, source.label,
                 _bytes(filled.nbytes), filled.nfiles, time.monotonic() - started)
        return final
    finally:
        remove_tree(tmp)


# What to do about a system error while filling, beyond what its text says.
_ADVICE = {errno.EMFILE: "; raise the open-file limit (ulimit -n) or lower "
                         "ARTIFACTS_PY_MAX_CONNECTIONS",
           errno.ENFILE: "; the system is out of file handles: try again later",
           errno.ENAMETOOLONG: "; a name in the artifact is too long for this filesystem"}


def _readable(e: OSError, tmp: Path, label: str) -> OSError:
    """A system error from a fill as one line naming its source, never our temp dir.

    Errors of our own (ArtifactError) already read well and pass unchanged; the
    errno is kept, so a full disk is still recognised.
    """
    if isinstance(e, ArtifactError):
        return e
    name = os.fsdecode(e.filename) if e.filename is not None else ""
    tree = os.path.join(tmp, "tree")
    if name.startswith(tree + os.sep):
        name = f"writing {name[len(tree) + 1:]!r}"
    elif name == str(tmp) or name.startswith(f"{tmp}{os.sep}"):
        name = "in its temp dir"
    text = e.strerror or str(e).replace(f"{tree}{os.sep}", "").replace(str(tmp), "its temp dir")
    err = InstallError(f"{label}: {name + ': ' if name else ''}{text}"
                       f"{_ADVICE.get(e.errno or 0, '')}")
    err.errno = e.errno
    return err


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def prepare_depot(depot: Path, what: str) -> Path:
    """``<depot>/artifacts``, created (with a CACHEDIR.TAG) if needed; one clear error if not."""
    target = depot / "artifacts"
    if os.path.isdir(target):
        return target
    try:
        target.mkdir(parents=True, exist_ok=True)
        tag = depot / "CACHEDIR.TAG"
        if not tag.exists():
            tag.write_text(CACHEDIR_TAG, encoding="ascii")
    except OSError as e:
        raise DepotError(
            f"could not install {what}: cannot create {target} ({e.strerror or e}); the first "
            "entry of ARTIFACTS_PY_DEPOT_PATH (or set_cache_dir) must be a writable "
            "directory") from e
    return target


def _disk_full(what: str, depot: Path, failures: List[Tuple[str, BaseException]],
               code: int) -> DepotError:
    """Other sources would fail the same way: stop, and say where space is missing."""
    err = DepotError(
        f"could not install {what}: the depot {depot} is full ({os.strerror(code)}); nothing "
        "was installed. Free space (`artifacts gc`) or put a depot with room first in "
        "ARTIFACTS_PY_DEPOT_PATH. Sources tried:", failures)
    err.errno = code
    return err


# ---------------------------------------------------------------- temp dirs

_HOST: Optional[str] = None


def _host() -> str:
    global _HOST
    if _HOST is None:
        # os.uname's nodename is what gethostname() returns, without importing socket
        # (about 10 ms of a cold install's start).
        name = os.uname().nodename if hasattr(os, "uname") else __import__("socket").gethostname()
        _HOST = name.replace("-", "_").replace("/", "_") or "host"
    return _HOST


def new_temp_dir(target: Path) -> Path:
    """A private dir ``.tmp-<host>-<pid>-<random>`` in ``target`` (same filesystem).

    Made here, not with ``tempfile.mkdtemp``: importing tempfile (random, shutil)
    costs more than the install of a small version.
    """
    prefix = f"{TEMP_PREFIX}{_host()}-{os.getpid()}-"
    while True:
        path = target / f"{prefix}{os.urandom(6).hex()}"
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:  # 48 random bits taken: draw again
            continue


def _owner(name: str) -> Optional[Tuple[str, int]]:
    """(host, pid) of a temp entry in the current format, else None."""
    parts = name[len(TEMP_PREFIX):].split("-")
    if not name.startswith(TEMP_PREFIX) or len(parts) < 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def stale_temp_entries(depot: Optional[Path] = None, now: Optional[float] = None) -> List[Path]:
    """Temp entries of dead processes on this host, and others older than the grace period."""
    d = artifacts_dir(depot)
    now = time.time() if now is None else now
    out: List[Path] = []
    try:
        entries = list(os.scandir(d))
    except OSError:
        return out
    for e in entries:
        if not e.name.startswith((TEMP_PREFIX, DOWNLOAD_PREFIX)):
            continue
        owner = _owner(e.name)
        if owner is not None and owner[0] == _host():
            if not _alive(owner[1]):
                out.append(Path(e.path))
            continue
        try:
            if now - e.stat(follow_symlinks=False).st_mtime > TEMP_GRACE_SECONDS:
                out.append(Path(e.path))
        except OSError:
            pass
    return out


def reap_dead_temps(target: Path) -> None:
    """Remove the temp dirs that crashed processes of this host left in ``target``."""
    host = _host()
    try:
        names = [n for n in os.listdir(target) if n.startswith(TEMP_PREFIX)]
    except OSError:
        return
    for name in names:
        owner = _owner(name)
        if owner is not None and owner[0] == host and not _alive(owner[1]):
            log.debug("removing %s, left by dead process %d", name, owner[1])
            remove_tree(target / name)


# ---------------------------------------------------------------- locks

@contextmanager
def depot_lock(depot: Path, exclusive: bool) -> Iterator[None]:
    """The depot-wide lock: shared for installs and edits, exclusive for ``gc`` (uv's model).

    ``fcntl.flock`` directly: filelock has no shared mode except an SQLite one,
    which is unreliable on network filesystems. Each call opens its own
    descriptor, so nested shared holds (pin, then bind) are fine. Where
    locking is impossible (no fcntl, a filesystem that refuses), we carry on
    unlocked: the lock only keeps gc away from fresh trees.
    """
    fd = _flock(str(depot / "locks" / "depot.lock"), exclusive)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the flock


def _flock(path: str, exclusive: bool) -> Optional[int]:
    try:
        import fcntl
    except ImportError:
        return None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError:
        return None
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for %s (%s)", "other artifacts-py processes to finish"
                     if exclusive else "a running `artifacts gc`", path)
            fcntl.flock(fd, mode)
    except OSError:
        os.close(fd)
        return None
    return fd


def _hash_lock(depot: Path, tree_hash: Optional[str], what: str) -> Any:
    """The per-hash install lock (none when the hash is not known yet)."""
    if tree_hash is None:
        from contextlib import nullcontext

        return nullcontext()
    return named_lock(depot, tree_hash, f"installing {what}")


@contextmanager
def named_lock(depot: Path, name: str, doing: str) -> Iterator[None]:
    """An inter-process lock ``<depot>/locks/<name>.lock`` (filelock).

    Says so (INFO) when another process holds it for more than a moment; if
    the filesystem cannot lock or the wait times out, we carry on unlocked.
    """
    lock: Any = None
    try:
        import filelock

        path = depot / "locks" / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(path))
        try:
            lock.acquire(timeout=WAIT_NOTICE_SECONDS)
        except filelock.Timeout:
            log.info("waiting for another process %s (%s)", doing, path)
            lock.acquire(timeout=LOCK_WAIT_SECONDS)
    except Exception:  # noqa: BLE001 - unlockable filesystem or timeout: carry on
        lock = None
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def stale_lock_files(depot: Optional[Path] = None) -> List[Path]:
    """Named lock files nobody holds (call with the depot lock held exclusively)."""
    d = (depot or get_cache_dir()) / "locks"
    try:
        names = [n for n in os.listdir(d) if n.endswith(".lock") and n != "depot.lock"]
    except OSError:
        return []
    return [d / n for n in names]


# ---------------------------------------------------------------- removal

def remove_artifact(tree_hash: str, depot: Optional[Path] = None) -> List[Path]:
    """Delete an installed artifact from the first (written) depot.

    The other depots are read-only shared caches and are never touched;
    overridden hashes are left alone (as in Julia). Returns what was removed.
    """
    from .overrides import is_overridden

    tree_hash = require_hash(tree_hash)
    if is_overridden(tree_hash):
        return []
    p = artifacts_dir(depot) / tree_hash
    return [p] if retire(p) else []


def retire(path: Path) -> bool:
    """Rename a tree out of sight, then delete it (readers never see half a tree)."""
    doomed = path.with_name(f"{TEMP_PREFIX}{_host()}-{os.getpid()}-rm-{path.name}-"
                            f"{time.monotonic_ns()}")
    try:
        os.rename(path, doomed)
    except FileNotFoundError:
        return False
    remove_tree(doomed)
    return True
