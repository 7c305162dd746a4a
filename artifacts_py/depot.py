"""The depot stack and the warm lookup: where installed artifacts are.

Layout (Julia-compatible, so a Julia depot can sit in the stack as is)::

    <depot>/artifacts/<git-tree-sha1>/   the tree itself, files read-only
    <depot>/artifacts/Overrides.toml     Julia's overrides, by hash (overrides.py)
    <depot>/artifacts/.tmp-*             installs in progress (store.py)
    <depot>/locks/                       per-hash and depot-wide locks (store.py)
    <depot>/logs/usage/<key>             one file per Artifacts.toml that used it (usage.py)
    <depot>/gobbler/                     the Gobbler client's file cache
    <depot>/CACHEDIR.TAG                 backup tools skip the depot

The first depot is written; the others are read-only shared caches. The
stack comes from ``set_cache_dir()``, else ``ARTIFACTS_PY_DEPOT_PATH``
(``os.pathsep``-separated; an empty entry means the default), else the
platformdirs user cache for ``artifacts-py``. A caller may also put a depot
first for one call (``first=``), which is how ``ArtifactManager(cache_dir=)``
stays local to the manager.

A hit costs a few dict look-ups and one ``stat`` per depot: nothing is read,
hashed or written here (usage is recorded once per process, by usage.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from . import settings
from .errors import InvalidArgumentError

_cache_dir_override: Optional[Path] = None
_stack_cache: Dict[Tuple[Optional[str], Optional[Path], Optional[Path]], List[Path]] = {}

Stack = Sequence[Path]


def default_depot() -> Path:
    """The user's default depot (platformdirs' user cache for artifacts-py).

    The XDG path is worked out here on Linux: importing platformdirs costs a
    fresh process a few milliseconds (it pulls in tempfile and more).
    """
    import sys

    if sys.platform.startswith("linux"):
        base = os.environ.get("XDG_CACHE_HOME", "")  # exactly platformdirs' rule
        if not base.strip():
            base = os.path.expanduser("~/.cache")
        return Path(base, "artifacts-py")
    import platformdirs

    return Path(platformdirs.user_cache_dir("artifacts-py", appauthor=False))


def depot_stack(first: Optional[Path] = None) -> List[Path]:
    """The depots to search, the first one written; ``first`` is put in front."""
    env = settings.depot_path()
    key = (env, _cache_dir_override, first)
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
        for front in (_cache_dir_override, first):
            if front is not None:
                stack = [front] + [p for p in stack if p != front]
        _stack_cache[key] = stack
    return stack


def set_cache_dir(path: "str | os.PathLike[str] | None") -> None:
    """Make ``path`` the first (written) depot for this process; ``None`` resets.

    This is fetch-artifacts' process-wide setting; to use another depot for
    one manager only, pass ``cache_dir=`` to :func:`load_artifacts`.
    """
    global _cache_dir_override
    _cache_dir_override = Path(path).expanduser().absolute() if path is not None else None


def get_cache_dir(first: Optional[Path] = None) -> Path:
    """The first (written) depot."""
    return depot_stack(first)[0]


def artifacts_dir(depot: Optional[Path] = None) -> Path:
    """``<depot>/artifacts`` of the given depot, by default the first."""
    return (depot or get_cache_dir()) / "artifacts"


def is_sha1_hex(s: object) -> bool:
    """True for a 40-digit hex string (either case): a tree's name in a depot."""
    return isinstance(s, str) and len(s) == 40 and all(c in "0123456789abcdefABCDEF" for c in s)


def require_hash(tree_hash: str) -> str:
    """``tree_hash`` in lower case, or an error unless it is 40 hex digits.

    It becomes a path below the depot, so anything else (``..``, ``/abs``)
    must never get that far.
    """
    if not is_sha1_hex(tree_hash):
        raise InvalidArgumentError(f"{tree_hash!r} is not a 40-digit hex git-tree-sha1")
    return tree_hash.lower()


def plain_artifact_path(tree_hash: str, stack: Stack) -> Path:
    """The first depot holding ``tree_hash``, else where the first depot would hold it."""
    for depot in stack:
        candidate = depot / "artifacts" / tree_hash
        if os.path.isdir(candidate):
            return candidate
    return stack[0] / "artifacts" / tree_hash


def artifact_path(tree_hash: str, honor_overrides: bool = True,
                  first: Optional[Path] = None) -> Path:
    """Where the artifact with this tree hash is (or would be installed).

    An override wins; then the first depot that holds it; else the path in the
    first depot. Costs a few ``stat`` calls: no hashing, no listing.
    """
    from .overrides import load_overrides

    tree_hash = require_hash(tree_hash)
    stack = depot_stack(first)
    if honor_overrides:
        override = load_overrides(stack=stack).get(tree_hash)
        if override is not None:
            return override
    return plain_artifact_path(tree_hash, stack)


def find_installed(tree_hash: str, honor_overrides: bool = True,
                   first: Optional[Path] = None) -> Optional[Path]:
    """The installed directory for ``tree_hash``, or ``None``."""
    path = artifact_path(tree_hash, honor_overrides, first)
    return path if os.path.isdir(path) else None


# The warm path: per depot stack, the overrides and each depot's candidate
# Path for a hash are computed once; a lookup is then one stat per depot.
_Lookup = Tuple[Dict[str, Path], List[str], Dict[str, List[Path]]]
_lookups: Dict[Tuple[Optional[str], Optional[Path]], _Lookup] = {}
_used: set[Tuple[Path, Tuple[Optional[str], Optional[Path]]]] = set()


def forget_lookups() -> None:
    """Drop the warm path's cached state (after the overrides changed)."""
    _lookups.clear()


def lookup(tree_hash: str, used_by: "Path | None" = None) -> Optional[Path]:
    """:func:`find_installed` for a hash already validated (lower-case, 40 hex).

    A few dict look-ups and one ``stat`` per depot; nothing is read or hashed.
    ``used_by`` (an Artifacts.toml) is recorded for ``gc`` once per process.
    """
    key = (settings.depot_path(), _cache_dir_override)
    state = _lookups.get(key)
    if state is None:
        from .overrides import load_overrides

        stack = depot_stack()
        state = _lookups[key] = (load_overrides(stack=stack),
                                 [os.path.join(d, "artifacts") for d in stack], {})
    if used_by is not None and (used_by, key) not in _used:
        _used.add((used_by, key))
        from .usage import record_usage

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


def installed_hashes(depot: Optional[Path] = None) -> List[str]:
    """Tree hashes installed in a depot (one directory listing)."""
    d = artifacts_dir(depot)
    try:
        names = os.listdir(d)
    except OSError:
        return []
    return sorted(n for n in names if is_sha1_hex(n) and os.path.isdir(d / n))


def tree_size(path: Path) -> int:
    """Bytes used by the regular files below ``path`` (a walk: not for the warm path)."""
    import stat

    from .files import walk

    try:
        return sum(e.st.st_size for e in walk(path) if stat.S_ISREG(e.st.st_mode))
    except OSError:  # gone, or changed, while being walked
        return 0
