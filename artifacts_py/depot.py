"""The depot stack: where installed artifacts live, and the one install step.

Layout (Julia-compatible, so a Julia depot can sit in the stack as is)::

    <depot>/artifacts/<git-tree-sha1>/   the tree itself, files read-only
    <depot>/artifacts/Overrides.toml     Julia's overrides, by hash
    <depot>/artifacts/.tmp-*             installs in progress (same filesystem)
    <depot>/locks/<hash>.lock            filelock; only saves duplicate work
    <depot>/logs/usage/<key>             one file per Artifacts.toml that used this depot

The first depot is written; the others are read-only shared caches. The
stack comes from ``set_cache_dir()``, else ``ARTIFACTS_PY_DEPOT_PATH``
(``os.pathsep``-separated; an empty entry means the default), else the
platformdirs user cache for ``artifacts-py``.

Correctness of :func:`install` comes from a unique temp dir in the target
``artifacts/`` folder, verification, and one ``rename``; the lock only keeps
two processes from doing the same work (it may silently not lock on NFS).
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from ._toml import parse_toml
from .errors import ArtifactsTomlError, HashMismatchError
from .treehash import is_sha1_hex as _is_hash

_DEPOT_ENV = "ARTIFACTS_PY_DEPOT_PATH"
_cache_dir_override: Optional[Path] = None
_stack_cache: Dict[Tuple[Optional[str], Optional[Path]], List[Path]] = {}
_overrides_cache: Dict[Tuple[Path, ...], Dict[str, Path]] = {}
_usage_recorded: set = set()

# Temp dirs older than this are leftovers of a crash and may be reaped by gc.
TEMP_GRACE_SECONDS = 24 * 3600
TEMP_PREFIX = ".tmp-"
DOWNLOAD_PREFIX = ".download-"


def default_depot() -> Path:
    """The user's default depot (platformdirs' user cache for artifacts-py)."""
    import platformdirs  # not on the warm path when the env var is set

    return Path(platformdirs.user_cache_dir("artifacts-py", appauthor=False))


def depot_stack() -> List[Path]:
    """The depots to search, first one writable."""
    env = os.environ.get(_DEPOT_ENV)
    key = (env, _cache_dir_override)
    stack = _stack_cache.get(key)
    if stack is None:
        stack = []
        if env:
            for item in env.split(os.pathsep):
                path = Path(os.path.expanduser(item)).absolute() if item else default_depot()
                if path not in stack:
                    stack.append(path)
        else:
            stack.append(default_depot())
        if _cache_dir_override is not None:
            stack = [_cache_dir_override] + [p for p in stack if p != _cache_dir_override]
        _stack_cache[key] = stack
    return stack


def set_cache_dir(path: "str | os.PathLike[str] | None") -> None:
    """Make ``path`` the first (written) depot for this process; ``None`` resets."""
    global _cache_dir_override
    _cache_dir_override = Path(path).expanduser().absolute() if path is not None else None


def get_cache_dir() -> Path:
    """The first (written) depot."""
    return depot_stack()[0]


def artifacts_dir(depot: Optional[Path] = None) -> Path:
    """``<depot>/artifacts`` of the given depot, by default the first."""
    return (depot or get_cache_dir()) / "artifacts"


# ----------------------------------------------------------------- overrides

def load_overrides(force: bool = False) -> Dict[str, Path]:
    """Hash overrides from every depot's ``artifacts/Overrides.toml``.

    Read once per process and depot stack (as Julia does); ``force`` re-reads.
    Later depots are applied first so that earlier ones win; ``""`` removes an
    override set by a later depot. Package-UUID tables are validated but have
    no effect: Python code has no package UUIDs.
    """
    stack = tuple(depot_stack())
    cached = _overrides_cache.get(stack)
    if cached is not None and not force:
        return cached
    _lookups.clear()
    result: Dict[str, Path] = {}
    redirects: Dict[str, str] = {}
    source: Dict[str, Path] = {}  # which file set each redirect, for errors
    for depot in reversed(stack):
        path = depot / "artifacts" / "Overrides.toml"
        try:
            data = path.read_bytes()
        except OSError:
            continue
        table = parse_toml(data, path)
        for key, value in table.items():
            if isinstance(value, dict):
                _check_uuid_table(path, key, value)
                continue
            if not _is_hash(key):
                raise ArtifactsTomlError("override keys must be 40-hex git-tree-sha1 hashes "
                                         "or package UUID tables", path=str(path), key=key)
            key = key.lower()
            if value == "":
                result.pop(key, None)
                redirects.pop(key, None)
            elif isinstance(value, str) and _is_hash(value):
                redirects[key] = value.lower()
                source[key] = path
                result.pop(key, None)
            elif isinstance(value, str) and os.path.isabs(value):
                result[key] = Path(value)
                redirects.pop(key, None)
            else:
                raise ArtifactsTomlError("an override must be an absolute path, a 40-hex hash "
                                         "or \"\"", path=str(path), key=key)
    paths = dict(result)
    for key in redirects:
        result[key] = _follow_redirect(key, redirects, paths, stack, source[key])
    _overrides_cache[stack] = result
    return result


def _follow_redirect(key: str, redirects: Dict[str, str], paths: Dict[str, Path],
                     stack: Tuple[Path, ...], path: Path) -> Path:
    """Where a hash-to-hash override ends: the target's own override, else its
    installed path (Julia's ``artifact_path(target)``, which honours overrides)."""
    chain = [key]
    target = redirects[key]
    while target in redirects:
        if target in chain:
            raise ArtifactsTomlError("hash overrides form a loop: " + " -> ".join(chain + [target])
                                     + "; point one of them at a path", path=str(path), key=key)
        chain.append(target)
        target = redirects[target]
    return paths.get(target) or _plain_artifact_path(target, stack)


def _check_uuid_table(path: Path, key: str, table: dict) -> None:
    import uuid

    try:
        uuid.UUID(key)
    except ValueError:
        raise ArtifactsTomlError("a table in Overrides.toml must be keyed by a package UUID",
                                 path=str(path), key=key) from None
    for name, value in table.items():
        valid = isinstance(value, str) and (value == "" or _is_hash(value) or os.path.isabs(value))
        if not valid:
            raise ArtifactsTomlError("an override must be an absolute path, a 40-hex hash or \"\"",
                                     path=str(path), key=f"{key}.{name}")


# -------------------------------------------------------------------- lookup

def _require_hash(tree_hash: str) -> str:
    """``tree_hash`` in lower case; a ValueError unless it is 40 hex digits.

    It becomes a path below the depot, so anything else (``..``, ``/abs``)
    must never get that far.
    """
    if not _is_hash(tree_hash):
        raise ValueError(f"{tree_hash!r} is not a 40-digit hex git-tree-sha1")
    return tree_hash.lower()


def _plain_artifact_path(tree_hash: str, stack) -> Path:
    for depot in stack:
        candidate = depot / "artifacts" / tree_hash
        if os.path.isdir(candidate):
            return candidate
    return stack[0] / "artifacts" / tree_hash


def artifact_path(tree_hash: str, honor_overrides: bool = True) -> Path:
    """Where the artifact with this tree hash is (or would be installed).

    An override wins; then the first depot that holds it; else the path in the
    first depot. Costs a few ``stat`` calls: no hashing, no listing.
    """
    tree_hash = _require_hash(tree_hash)
    if honor_overrides:
        override = load_overrides().get(tree_hash)
        if override is not None:
            return override
    return _plain_artifact_path(tree_hash, depot_stack())


def find_installed(tree_hash: str, honor_overrides: bool = True) -> Optional[Path]:
    """The installed directory for ``tree_hash``, or ``None``."""
    path = artifact_path(tree_hash, honor_overrides)
    return path if os.path.isdir(path) else None


# The warm path: per depot stack, the overrides and each depot's candidate
# Path for a hash are computed once; a lookup is then one stat per depot.
_lookups: Dict[Tuple[Optional[str], Optional[Path]], Tuple[Dict[str, Path], List[str], Dict[str, List[Path]]]] = {}


def lookup(tree_hash: str, used_by: "Path | None" = None) -> Optional[Path]:
    """:func:`find_installed` for a hash already validated (lower-case, 40 hex).

    A few dict look-ups and one ``stat`` per depot; nothing is read or hashed.
    ``used_by`` (an Artifacts.toml) is recorded for ``gc`` once per process.
    """
    key = (os.environ.get(_DEPOT_ENV), _cache_dir_override)
    state = _lookups.get(key)
    if state is None:
        stack = depot_stack()
        state = _lookups[key] = (load_overrides(), [os.path.join(d, "artifacts") for d in stack], {})
    if used_by is not None and (used_by, key) not in _usage_recorded:
        record_usage(used_by)
    overrides, dirs, candidates = state
    override = overrides.get(tree_hash)
    if override is not None:
        return override if os.path.isdir(override) else None
    paths = candidates.get(tree_hash)
    if paths is None:
        paths = candidates[tree_hash] = [Path(d, tree_hash) for d in dirs]
    for p in paths:
        if os.path.isdir(p):
            return p
    return None


def is_overridden(tree_hash: str) -> bool:
    """True when Overrides.toml redirects this hash."""
    return tree_hash.lower() in load_overrides()


# ------------------------------------------------------------------- install

def install(tree_hash: str, fill: Callable[[Path], Optional[str]], *, label: str = "",
            readonly: bool = False) -> Path:
    """Install the tree ``tree_hash`` into the first depot, atomically.

    ``fill(tmpdir)`` writes the tree into an empty temp dir inside
    ``<depot>/artifacts`` and returns the tree hash it computed on the way
    (from a tar stream or from known blob hashes), or ``None`` to have the
    directory hashed here. A mismatch raises :class:`HashMismatchError` and
    nothing is installed. An existing destination counts as success.
    ``readonly``: ``fill`` already cleared every file's write bits (no walk).
    """
    tree_hash = _require_hash(tree_hash)
    found = find_installed(tree_hash, honor_overrides=False)
    if found is not None:
        return found
    artifacts_dir().mkdir(parents=True, exist_ok=True)
    with install_lock(tree_hash):
        found = find_installed(tree_hash, honor_overrides=False)
        if found is not None:  # another process finished while we waited
            return found
        return _fill_and_commit(fill, tree_hash, label, readonly)


def persist(fill: Callable[[Path], Optional[str]]) -> Path:
    """Install a tree whose hash is not known yet (``create``/``add``).

    ``fill(tmpdir)`` writes it and may return its tree hash; the directory is
    then renamed to ``<depot>/artifacts/<hash>`` unless that already exists.
    """
    artifacts_dir().mkdir(parents=True, exist_ok=True)
    return _fill_and_commit(fill, None, "")


def _fill_and_commit(fill: Callable[[Path], Optional[str]], expected: Optional[str],
                     label: str, readonly: bool = False) -> Path:
    """The one persist step: temp dir, fill, verify, read-only, rename."""
    target_dir = artifacts_dir()
    import tempfile  # install-time only: keep the warm path's imports small

    tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=target_dir))
    try:
        computed = fill(tmp)
        if computed is None:
            from .treehash import compute_git_tree_sha1

            computed = compute_git_tree_sha1(tmp)
        if expected is not None and computed != expected:
            raise HashMismatchError(
                f"tree hash mismatch for {label or expected}: expected git-tree-sha1 "
                f"{expected}, the content hashes to {computed}; the source does not hold "
                "the content the Artifacts.toml pins (re-pin it, or fix the source)",
                expected=expected, actual=computed)
        found = find_installed(computed, honor_overrides=False)
        if found is not None:
            return found
        if not readonly:
            make_readonly(tmp)
        # mkdtemp made it 0700; an installed tree is as readable as its depot (Julia).
        os.chmod(tmp, stat.S_IMODE(os.stat(target_dir).st_mode))
        dest = target_dir / computed
        try:
            os.rename(tmp, dest)
        except OSError:
            if not os.path.isdir(dest):  # lost a race to an identical tree: fine
                raise
        return dest
    finally:
        if os.path.lexists(tmp):
            remove_tree(tmp)


class install_lock:
    """A best-effort per-hash inter-process lock (filelock).

    It never decides correctness: if the filesystem cannot lock, or another
    process holds it for too long, we go ahead and rely on the atomic rename.
    """

    WAIT_SECONDS = 900.0

    def __init__(self, tree_hash: str) -> None:
        self.path = get_cache_dir() / "locks" / f"{tree_hash}.lock"
        self.lock = None

    def __enter__(self) -> "install_lock":
        try:
            import filelock

            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = filelock.FileLock(str(self.path), timeout=self.WAIT_SECONDS)
            lock.acquire()
            self.lock = lock
        except Exception:  # noqa: BLE001 - unlockable filesystem or timeout: carry on
            self.lock = None
        return self

    def __exit__(self, *exc) -> None:
        if self.lock is not None:
            self.lock.release()


def make_readonly(root: Path) -> None:
    """Clear write bits on every regular file below ``root`` (dirs stay writable)."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o222:
                os.chmod(p, stat.S_IMODE(st.st_mode) & ~0o222)


def remove_tree(path: "str | os.PathLike[str]") -> None:
    """``rm -rf`` that also works on read-only files and tolerates races."""
    import shutil

    def onerror(func, p, exc_info):
        err = exc_info[1]
        if isinstance(err, FileNotFoundError):
            return
        try:
            os.chmod(os.path.dirname(p), 0o755)
            if not os.path.islink(p):
                os.chmod(p, 0o755 if os.path.isdir(p) else 0o644)
            func(p)
        except FileNotFoundError:
            pass

    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=lambda f, p, e: onerror(f, p, (type(e), e, None)))
        else:
            shutil.rmtree(path, onerror=onerror)


def new_download_path() -> Path:
    """A fresh file name in the first depot (same filesystem as installs)."""
    target = artifacts_dir()
    target.mkdir(parents=True, exist_ok=True)
    import tempfile

    fd, name = tempfile.mkstemp(prefix=DOWNLOAD_PREFIX, dir=target)
    os.close(fd)
    return Path(name)


def remove_artifact(tree_hash: str) -> List[Path]:
    """Delete an installed artifact from the first (written) depot.

    The other depots are read-only shared caches and are never touched;
    overridden hashes are left alone (as in Julia). Returns what was removed.
    """
    tree_hash = _require_hash(tree_hash)
    if is_overridden(tree_hash):
        return []
    p = artifacts_dir() / tree_hash
    # Rename first so that readers never see a half-deleted tree.
    doomed = p.with_name(f"{TEMP_PREFIX}rm-{tree_hash}-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.rename(p, doomed)
    except FileNotFoundError:
        return []
    remove_tree(doomed)
    return [p]


# --------------------------------------------------------------------- usage

def usage_dir(depot: Optional[Path] = None) -> Path:
    """``<depot>/logs/usage``: one small file per Artifacts.toml that used the depot."""
    return (depot or get_cache_dir()) / "logs" / "usage"


def _record_name(toml_path: str) -> str:
    """A readable, reversible file name for a usage record (sha1 if too long)."""
    from urllib.parse import quote  # already loaded by pathlib

    name = quote(toml_path, safe="")
    if len(name) > 200:
        import hashlib

        name = hashlib.sha1(os.fsencode(toml_path)).hexdigest()
    return name


def record_usage(toml_path: "str | os.PathLike[str]") -> None:
    """Note that ``toml_path`` uses this depot, for ``gc``.

    Once per process and file; the record is a file named by the path's hash,
    so concurrent writers never conflict. A read-only depot is fine: no record.
    """
    key = (toml_path, (os.environ.get(_DEPOT_ENV), _cache_dir_override))
    if key in _usage_recorded:
        return
    _usage_recorded.add(key)
    toml_path = os.path.abspath(toml_path)
    depot = get_cache_dir()
    record = usage_dir(depot) / _record_name(toml_path)
    try:
        if record.exists():
            os.utime(record)
            return
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_name(f"{record.name}.{os.getpid()}.tmp")
        tmp.write_text(toml_path + "\n", encoding="utf-8")
        os.replace(tmp, record)
    except OSError:
        pass


def recorded_tomls(depot: Optional[Path] = None) -> List[Tuple[Path, Path, float]]:
    """(record file, Artifacts.toml path, last-use time) for every usage record."""
    out = []
    d = usage_dir(depot)
    if not d.is_dir():
        return out
    for rec in d.iterdir():
        if rec.name.endswith(".tmp"):
            continue
        try:
            toml = Path(rec.read_text(encoding="utf-8").strip())
            out.append((rec, toml, rec.stat().st_mtime))
        except OSError:
            continue
    return out


def installed_hashes(depot: Optional[Path] = None) -> List[str]:
    """Tree hashes installed in a depot (one directory listing)."""
    d = artifacts_dir(depot)
    try:
        names = os.listdir(d)
    except OSError:
        return []
    return sorted(n for n in names if _is_hash(n) and os.path.isdir(d / n))


def stale_temp_entries(depot: Optional[Path] = None, now: Optional[float] = None) -> List[Path]:
    """Leftover temp dirs and downloads older than the grace period."""
    d = artifacts_dir(depot)
    now = time.time() if now is None else now
    out = []
    try:
        entries = list(os.scandir(d))
    except OSError:
        return out
    for e in entries:
        if e.name.startswith((TEMP_PREFIX, DOWNLOAD_PREFIX)):
            try:
                if now - e.stat(follow_symlinks=False).st_mtime > TEMP_GRACE_SECONDS:
                    out.append(Path(e.path))
            except OSError:
                pass
    return out


def tree_size(path: Path) -> int:
    """Bytes used by the regular files below ``path`` (a walk: not for the warm path)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total
