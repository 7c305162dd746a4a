"""Resolution: ``artifact(name)`` and friends.

The warm path (an installed artifact) is: find the Artifacts.toml (cached per
calling module), re-use its parse unless its stat changed, pick the entry,
and ``stat`` the depot directories. No hashing, no walk, no network, and no
import of requests, tomlkit or filelock.

A miss installs through :func:`install_entry`: the entry's sources in the
order :func:`artifacts_py.sources.plan.plan` gives, each run by
:func:`artifacts_py.store.install` (temp dir, fill, verify, rename), every
failure reported in one :class:`InstallError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple, TypeVar, Union

from . import depot
from .errors import ArtifactError, ArtifactNotFoundError, InvalidArgumentError, NotInstalledError
from .tomlmodel import (ArtifactEntry, ArtifactsFile, caller_file, load_file, resolve_toml)

PathLike = Union[str, os.PathLike[str]]
T = TypeVar("T")


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


def _toml(toml: Optional[PathLike], toml_path: Optional[PathLike]) -> Optional[PathLike]:
    """The Artifacts.toml given under our name (``toml``) or fetch-artifacts' (``toml_path``)."""
    if toml_path is None:
        return toml
    if toml is not None and toml != toml_path:
        raise TypeError("give toml or toml_path only once")
    return toml_path


def _file(toml: Optional[PathLike]) -> ArtifactsFile:
    """The Artifacts.toml given, or the one found next to the calling module."""
    return load_file(resolve_toml(toml, caller_file() if toml is None else None))


def _entry(name: str, toml: Optional[PathLike]) -> Tuple[ArtifactsFile, ArtifactEntry]:
    f = _file(toml)
    return f, f.entry(_check_name(name))


def _check_name(name: object) -> str:
    if isinstance(name, str) and name:
        return name
    raise InvalidArgumentError(f"an artifact name must be a non-empty string, not {name!r}")


def artifact(name: str, toml: Optional[PathLike] = None, verbose: bool = False, *,
             toml_path: Optional[PathLike] = None) -> Path:
    """The local directory of artifact ``name``, installing it if needed.

    ``name`` may carry a path inside the artifact (``"Data/sub/file.csv"``).
    ``toml`` (or fetch-artifacts' ``toml_path``) is the Artifacts.toml (default:
    found next to the calling module, see :func:`get_artifacts_toml`).
    ``verbose`` shows a progress bar while installing.
    """
    base, sub = _split(name) if "/" in _check_name(name) or "\\" in name else (name, "")
    f, entry = _entry(base, toml if toml_path is None else _toml(toml, toml_path))
    path = depot.lookup(entry.git_tree_sha1, f.path)
    if path is None:
        path = install_entry(entry, progress=True if verbose else None)
    return path / sub if sub else path


def ensure_artifact_installed(name: str, toml: Optional[PathLike] = None, *,
                              toml_path: Optional[PathLike] = None,
                              progress: Optional[bool] = None) -> Path:
    """Install artifact ``name`` if it is missing; return its directory."""
    return resolve(_entry(name, _toml(toml, toml_path))[1],
                   progress=progress)


def ensure_all_artifacts_installed(toml: Optional[PathLike] = None, include_lazy: bool = False,
                                   *, toml_path: Optional[PathLike] = None,
                                   progress: Optional[bool] = None) -> Dict[str, Path]:
    """Install every (non-lazy, unless ``include_lazy``) artifact of a file.

    Names with no binding for this platform are skipped, as in Julia.
    """
    f = _file(_toml(toml, toml_path))
    out = {}
    for name in f.names():
        try:
            entry = f.entry(name)
        except ArtifactNotFoundError:  # bound, but not for this platform: skip (Julia)
            continue
        if entry.lazy and not include_lazy:
            continue
        out[name] = resolve(entry, progress=progress)
    return out


def resolve(entry: ArtifactEntry, *, progress: Optional[bool] = None,
            first: Optional[Path] = None) -> Path:
    """The entry's installed directory, installing it if needed; usage is recorded."""
    path = depot.find_installed(entry.git_tree_sha1, first=first)
    if path is None:
        return install_entry(entry, progress=progress, first=first)
    if entry.toml_path is not None:
        from .usage import record_usage

        record_usage(entry.toml_path, depot.get_cache_dir(first))
    return path


def install_entry(entry: ArtifactEntry, *, progress: Optional[bool] = None,
                  first: Optional[Path] = None) -> Path:
    """Install ``entry`` from its sources, in order; all failures in one error.

    ``first`` is a depot to install into instead of the stack's first.
    """
    from . import store
    from .sources.plan import plan
    from .usage import record_usage

    what = f"artifact {entry.name!r} ({entry.git_tree_sha1}) from {entry.toml_path}"
    sources = plan(entry)
    if not sources:
        import json
        import re

        # A TOML key: bare when it can be, else quoted ("My data")
        key = entry.name if re.fullmatch(r"[A-Za-z0-9_-]+", entry.name) else json.dumps(entry.name)
        raise NotInstalledError(
            f"{what} is not installed and has no source: add a [{key}.gobbler] table "
            f"or a [[{key}.download]] mirror (`artifacts add`)")
    target = depot.get_cache_dir(first)
    with store.depot_lock(target, exclusive=False):
        path = store.install(entry.git_tree_sha1, sources, what=what, depot=target,
                             progress=progress, desc=entry.name)
        if entry.toml_path is not None:  # before gc can look: it must see the tree as used
            record_usage(entry.toml_path, target)
    return path


def artifact_hash(name: str, toml: Optional[PathLike] = None, *,
                  toml_path: Optional[PathLike] = None) -> str:
    """The ``git-tree-sha1`` bound to ``name`` for this platform."""
    return _entry(name, _toml(toml, toml_path))[1].git_tree_sha1


def artifact_exists(name_or_hash: Optional[str] = None, toml: Optional[PathLike] = None, *,
                    name: Optional[str] = None, toml_path: Optional[PathLike] = None) -> bool:
    """Is the artifact installed? Takes a name, or a 40-hex tree hash. No download.

    ``False`` for a name the Artifacts.toml does not bind (for this platform),
    like fetch-artifacts; a malformed entry still raises.
    """
    key = _either(name_or_hash, name, "the name")
    if key is None:
        raise TypeError("artifact_exists() needs a name or a tree hash")
    toml = _toml(toml, toml_path)
    if depot.is_sha1_hex(key) and toml is None:
        return depot.find_installed(key) is not None
    try:
        tree = _entry(key, toml)[1].git_tree_sha1
    except ArtifactNotFoundError:
        return depot.is_sha1_hex(key) and depot.find_installed(key) is not None
    return depot.find_installed(tree) is not None


def artifact_path(tree_hash: str) -> Path:
    """Where the tree ``tree_hash`` is installed, or would be (Julia's ``artifact_path``)."""
    return depot.artifact_path(tree_hash)


def verify_artifact(tree_hash: str, honor_overrides: bool = False) -> bool:
    """Re-hash an installed artifact; ``False`` if absent or changed.

    An overridden hash is trusted (``True``) unless ``honor_overrides``.
    """
    from .treehash import compute_git_tree_sha1

    tree_hash = depot.require_hash(tree_hash)
    from .overrides import is_overridden

    if is_overridden(tree_hash) and not honor_overrides:
        return True
    path = depot.find_installed(tree_hash, honor_overrides=honor_overrides)
    if path is None:
        return False
    return compute_git_tree_sha1(path) == tree_hash


def remove_artifact(tree_hash: str) -> None:
    """Delete an installed artifact from the first depot (never a shared one, never an override)."""
    from .store import remove_artifact as remove

    remove(tree_hash)


def clear_artifact_cache(name: Optional[str] = None, toml_path: Optional[PathLike] = None, *,
                         toml: Optional[PathLike] = None) -> None:
    """Remove artifact ``name`` (every platform's tree), or every artifact
    bound in the Artifacts.toml, from the first depot. Unknown names are ignored.

    The trees are content-addressed, so another Artifacts.toml binding the
    same hash loses it too (it is re-installed on use); ``artifacts gc`` only
    removes what no recorded file uses.
    """
    from .store import remove_artifact as remove

    f = _file(_toml(toml, toml_path))
    for h in _bound_hashes(f, f.names() if name is None else [name]):
        remove(h)


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
        # A depot for this manager only (fetch-artifacts' cache_dir), not the process.
        self.cache_dir = Path(cache_dir).expanduser().absolute() if cache_dir is not None else None
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
        if not download and depot.find_installed(entry.git_tree_sha1, first=self.cache_dir) is None:
            raise NotInstalledError(
                f"artifact {name!r} ({entry.git_tree_sha1}) from {self.toml_path} is not "
                "installed; call with download=True or run `artifacts fetch`")
        return resolve(entry, progress=True if self.verbose else None, first=self.cache_dir)

    __getitem__ = get_path

    def __contains__(self, name: object) -> bool:
        return name in self.file

    def exists(self, name: str) -> bool:
        """Is ``name`` bound here and installed? (False for unknown names.)"""
        try:
            return depot.find_installed(self._get(name).git_tree_sha1,
                                        first=self.cache_dir) is not None
        except ArtifactError:
            return False

    def clear(self, name: Optional[str] = None) -> None:
        """Remove one installed artifact, or all of this file's (unknown names: no-op)."""
        from .store import remove_artifact as remove

        for h in _bound_hashes(self.file, self.file.names() if name is None else [name]):
            remove(h, depot.get_cache_dir(self.cache_dir))


def load_artifacts(toml_path: Optional[PathLike] = None, cache_dir: Optional[PathLike] = None,
                   verbose: bool = False) -> ArtifactManager:
    """Parse an Artifacts.toml (found as :func:`artifact` finds it when not given)."""
    path = resolve_toml(toml_path, caller_file() if toml_path is None else None)
    return ArtifactManager(path, cache_dir=cache_dir, verbose=verbose)
