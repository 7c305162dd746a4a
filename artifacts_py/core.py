"""Resolution: ``artifact(name)`` and friends.

The warm path (an installed artifact) is: find the Artifacts.toml (cached per
calling module), re-use its parse unless its stat changed, pick the entry,
and ``stat`` the depot directories. No hashing, no walk, no network, and no
import of requests, tomlkit or filelock.

A miss installs through :func:`artifacts_py.depot.install`, trying each
source in order and reporting every failure in one :class:`InstallError`.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple, TypeVar, Union

from . import depot
from .errors import (ArtifactError, ArtifactNotFoundError, InstallError, NotInstalledError,
                     OfflineError)
from .tomlmodel import (ArtifactEntry, ArtifactsFile, caller_file, load_file, resolve_toml)

PathLike = Union[str, "os.PathLike[str]"]
T = TypeVar("T")


def _offline() -> bool:
    return os.environ.get("ARTIFACTS_PY_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _split(name: str) -> Tuple[str, str]:
    """Julia's ``artifact"Name/sub/file"``: the name and the path inside it.

    Like Julia, split at the first ``/`` or ``\\`` and join the rest with ``/``.
    """
    parts = name.replace("\\", "/").split("/", 1)
    return (parts[0], parts[1]) if len(parts) == 2 else (name, "")


def _either(value: Optional[T], alias: Optional[T], names: str) -> Optional[T]:
    """One argument given under our name or fetch-artifacts' (``toml``/``toml_path``)."""
    if alias is None:
        return value
    if value is not None and value != alias:
        raise TypeError(f"give {names} only once")
    return alias


def _file(toml: Optional[PathLike]) -> ArtifactsFile:
    """The Artifacts.toml given, or the one found next to the calling module."""
    return load_file(resolve_toml(toml, caller_file() if toml is None else None))


def _entry(name: str, toml: Optional[PathLike]) -> Tuple[ArtifactsFile, ArtifactEntry]:
    f = _file(toml)
    return f, f.entry(name)


def artifact(name: str, toml: Optional[PathLike] = None, verbose: bool = False, *,
             toml_path: Optional[PathLike] = None) -> Path:
    """The local directory of artifact ``name``, installing it if needed.

    ``name`` may carry a path inside the artifact (``"Data/sub/file.csv"``).
    ``toml`` (or fetch-artifacts' ``toml_path``) is the Artifacts.toml (default:
    found next to the calling module, see :func:`get_artifacts_toml`).
    ``verbose`` shows a progress bar while installing.
    """
    base, sub = _split(name) if "/" in name or "\\" in name else (name, "")
    f, entry = _entry(base, toml if toml_path is None else _either(toml, toml_path, "toml or toml_path"))
    path = depot.lookup(entry.git_tree_sha1, f.path)
    if path is None:
        path = install_entry(entry, progress=True if verbose else None)
    return path / sub if sub else path


def ensure_artifact_installed(name: str, toml: Optional[PathLike] = None, *,
                              toml_path: Optional[PathLike] = None,
                              progress: Optional[bool] = None) -> Path:
    """Install artifact ``name`` if it is missing; return its directory."""
    f, entry = _entry(name, _either(toml, toml_path, "toml or toml_path"))
    path = depot.find_installed(entry.git_tree_sha1) or install_entry(entry, progress=progress)
    depot.record_usage(f.path)
    return path


def ensure_all_artifacts_installed(toml: Optional[PathLike] = None, include_lazy: bool = False,
                                   *, toml_path: Optional[PathLike] = None,
                                   progress: Optional[bool] = None) -> Dict[str, Path]:
    """Install every (non-lazy, unless ``include_lazy``) artifact of a file.

    Names with no binding for this platform are skipped, as in Julia.
    """
    f = _file(_either(toml, toml_path, "toml or toml_path"))
    out = {}
    for name in f.names():
        try:
            entry = f.entry(name)
        except ArtifactNotFoundError:  # bound, but not for this platform: skip (Julia)
            continue
        if entry.lazy and not include_lazy:
            continue
        out[name] = (depot.find_installed(entry.git_tree_sha1)
                     or install_entry(entry, progress=progress))
    depot.record_usage(f.path)
    return out


def install_entry(entry: ArtifactEntry, *, progress: Optional[bool] = None) -> Path:
    """Install ``entry`` from its sources, in order; all failures in one error."""
    from .sources import sources_for

    where = f"artifact {entry.name!r} ({entry.git_tree_sha1}) from {entry.toml_path}"
    sources = sources_for(entry, progress=progress)
    if not sources:
        raise NotInstalledError(
            f"{where} is not installed and has no source: add a [{entry.name}.gobbler] table "
            f"or a [[{entry.name}.download]] mirror (`artifacts add`)")
    offline = _offline()
    if not offline or any(not s.network for s in sources):
        _check_depot(where)
    failures: List[Tuple[str, BaseException]] = []
    for source in sources:
        if offline and source.network:
            failures.append((source.label, OfflineError(
                "skipped: ARTIFACTS_PY_OFFLINE is set and this source needs the network")))
            continue
        try:
            return depot.install(entry.git_tree_sha1, source.fill, readonly=source.readonly,
                                 label=f"{entry.name!r} from {source.label}")
        except (ArtifactError, OSError, ValueError) as e:
            failures.append((source.label, e))
            if isinstance(e, OSError) and e.errno in _DISK_FULL:
                raise _disk_full(where, failures, e.errno) from e
    if offline and all(isinstance(e, OfflineError) for _, e in failures):
        raise OfflineError(f"{where} is not installed, and every source needs the network "
                           "while ARTIFACTS_PY_OFFLINE is set; unset it to download")
    raise InstallError(f"could not install {where}; nothing was installed. Sources tried:",
                       failures)


def _check_depot(where: str) -> None:
    """Fail once, naming the depot, when it cannot be written (not once per source)."""
    target = depot.artifacts_dir()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InstallError(
            f"could not install {where}: cannot create {target} ({e.strerror or e}); the first "
            "entry of ARTIFACTS_PY_DEPOT_PATH (or set_cache_dir) must be a writable "
            "directory") from e


_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))  # no EDQUOT on Windows


def _disk_full(where: str, failures: List[Tuple[str, BaseException]], code: int) -> InstallError:
    """Other sources would fail the same way: stop, and say where space is missing."""
    err = InstallError(
        f"could not install {where}: the depot {depot.get_cache_dir()} is full "
        f"({os.strerror(code)}); nothing was installed. Free space (`artifacts gc`) or put "
        f"a depot with room first in ARTIFACTS_PY_DEPOT_PATH. Sources tried:", failures)
    err.errno = code
    return err


def artifact_hash(name: str, toml: Optional[PathLike] = None, *,
                  toml_path: Optional[PathLike] = None) -> str:
    """The ``git-tree-sha1`` bound to ``name`` for this platform."""
    return _entry(name, _either(toml, toml_path, "toml or toml_path"))[1].git_tree_sha1


def artifact_exists(name_or_hash: Optional[str] = None, toml: Optional[PathLike] = None, *,
                    name: Optional[str] = None, toml_path: Optional[PathLike] = None) -> bool:
    """Is the artifact installed? Takes a name, or a 40-hex tree hash. No download.

    ``False`` for a name the Artifacts.toml does not bind (for this platform),
    like fetch-artifacts; a malformed entry still raises.
    """
    from .treehash import is_sha1_hex

    key = _either(name_or_hash, name, "the name")
    if key is None:
        raise TypeError("artifact_exists() needs a name or a tree hash")
    toml = _either(toml, toml_path, "toml or toml_path")
    if is_sha1_hex(key) and toml is None:
        return depot.find_installed(key) is not None
    try:
        tree = _entry(key, toml)[1].git_tree_sha1
    except ArtifactNotFoundError:
        return is_sha1_hex(key) and depot.find_installed(key) is not None
    return depot.find_installed(tree) is not None


def artifact_path(tree_hash: str) -> Path:
    """Where the tree ``tree_hash`` is installed, or would be (Julia's ``artifact_path``)."""
    return depot.artifact_path(tree_hash)


def verify_artifact(tree_hash: str, honor_overrides: bool = False) -> bool:
    """Re-hash an installed artifact; ``False`` if absent or changed.

    An overridden hash is trusted (``True``) unless ``honor_overrides``.
    """
    from .treehash import compute_git_tree_sha1

    tree_hash = tree_hash.lower()
    if depot.is_overridden(tree_hash) and not honor_overrides:
        return True
    path = depot.find_installed(tree_hash, honor_overrides=honor_overrides)
    if path is None:
        return False
    return compute_git_tree_sha1(path) == tree_hash


def remove_artifact(tree_hash: str) -> None:
    """Delete an installed artifact from the first depot (never a shared one, never an override)."""
    depot.remove_artifact(tree_hash)


def clear_artifact_cache(name: Optional[str] = None, toml_path: Optional[PathLike] = None, *,
                         toml: Optional[PathLike] = None) -> None:
    """Remove artifact ``name`` (every platform's tree), or every artifact
    bound in the Artifacts.toml, from the first depot. Unknown names are ignored.

    The trees are content-addressed, so another Artifacts.toml binding the
    same hash loses it too (it is re-installed on use); ``artifacts gc`` only
    removes what no recorded file uses.
    """
    f = _file(_either(toml, toml_path, "toml or toml_path"))
    for h in _bound_hashes(f, f.names() if name is None else [name]):
        depot.remove_artifact(h)


def _bound_hashes(f: ArtifactsFile, names: List[str]) -> List[str]:
    """Tree hashes of every platform variant of ``names``; unknown or malformed names skipped."""
    out: List[str] = []
    for n in names:
        try:
            out.extend(e.git_tree_sha1 for e in f.variants(n))
        except ArtifactError:  # not bound, or not readable: nothing of ours to remove
            continue
    return out


class ArtifactManager:
    """fetch-artifacts' manager: ``manager[name]`` is the artifact's path.

    ``artifacts`` maps each well-formed name to its entry for this platform
    (``.metadata`` holds the free keys); ``errors`` holds why the others fail.
    """

    def __init__(self, toml_path: PathLike, cache_dir: Optional[PathLike] = None,
                 verbose: bool = False) -> None:
        if cache_dir is not None:
            depot.set_cache_dir(cache_dir)
        self.file = load_file(toml_path)  # a directory means the file in it
        self.toml_path = self.file.path
        self.verbose = verbose
        self.artifacts: Dict[str, ArtifactEntry] = {}
        self.errors: Dict[str, ArtifactError] = {}
        for name in self.file.names():
            try:
                self.artifacts[name] = self.file.entry(name)
            except ArtifactError as e:
                self.errors[name] = e

    def _get(self, name: str) -> ArtifactEntry:
        if name in self.errors:
            raise self.errors[name]
        return self.file.entry(name)

    def get_path(self, name: str, download: bool = True) -> Path:
        """The artifact's directory; installs it unless ``download`` is False."""
        entry = self._get(name)
        path = depot.find_installed(entry.git_tree_sha1)
        if path is None:
            if not download:
                raise NotInstalledError(
                    f"artifact {name!r} ({entry.git_tree_sha1}) from {self.toml_path} is not "
                    "installed; call with download=True or run `artifacts fetch`")
            path = install_entry(entry, progress=True if self.verbose else None)
        depot.record_usage(self.toml_path)
        return path

    __getitem__ = get_path

    def __contains__(self, name: object) -> bool:
        return name in self.file

    def exists(self, name: str) -> bool:
        """Is ``name`` bound here and installed? (False for unknown names.)"""
        try:
            return depot.find_installed(self._get(name).git_tree_sha1) is not None
        except ArtifactError:
            return False

    def clear(self, name: Optional[str] = None) -> None:
        """Remove one installed artifact, or all of this file's (unknown names: no-op)."""
        for h in _bound_hashes(self.file, self.file.names() if name is None else [name]):
            depot.remove_artifact(h)


def load_artifacts(toml_path: Optional[PathLike] = None, cache_dir: Optional[PathLike] = None,
                   verbose: bool = False) -> ArtifactManager:
    """Parse an Artifacts.toml (found as :func:`artifact` finds it when not given)."""
    path = resolve_toml(toml_path, caller_file() if toml_path is None else None)
    return ArtifactManager(path, cache_dir=cache_dir, verbose=verbose)
