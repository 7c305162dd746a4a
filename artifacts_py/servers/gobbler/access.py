"""Getting at projects, assets and versions inside an action (``gobbler-protocol.md`` §2, §6.2).

Locks are taken top-down (registry, project, asset) and existence is checked
under the parent's ``..LOCK_NEWDIR``; metadata files that cannot be read
become 500s that name the file.
"""

from __future__ import annotations

import contextlib
import os
from datetime import datetime
from typing import Callable, Iterator, Optional, Tuple, TypeVar

from artifacts_py.servers.gobbler.config import Config
from artifacts_py.servers.gobbler.shapes import Manifest, Permissions, Summary
from artifacts_py.servers.gobbler.registry import (
    ActionError, acquire_lock, dir_lock, newdir_lock, parse_rfc3339, read_latest, read_manifest,
    read_permissions, read_summary, release_lock, subdirectories, write_latest,
)

T = TypeVar("T")
# What reading a malformed ``..latest``, or summing usage over malformed manifests, raises.
BAD_METADATA = (OSError, ValueError, KeyError, TypeError)


def read_or_500(read: Callable[[str], T], path: str, what: str) -> T:
    """``read(path)``, turning an unreadable or malformed file into a 500 about ``what``."""
    try:
        return read(path)
    except (OSError, ValueError) as exc:
        raise ActionError(500, f"failed to read {what}; {exc}") from exc


def load_permissions(path: str) -> Permissions:
    """Read a permissions file, turning failures into 500s that name the file."""
    return read_or_500(read_permissions, path, f"permissions from {path!r}")


def load_summary(version_dir: str) -> Summary:
    """The ``..summary`` of a version (500 when unreadable)."""
    path = os.path.join(version_dir, "..summary")
    return read_or_500(read_summary, path, f"the summary {path!r}")


def load_manifest(version_dir: str) -> Manifest:
    """The ``..manifest`` of a version (500 when unreadable)."""
    path = os.path.join(version_dir, "..manifest")
    return read_or_500(read_manifest, path, f"the manifest {path!r}")


@contextlib.contextmanager
def _enter_child(parent_dir: str, name: str, exclusive: bool,
                 before: Optional[Callable[[str], None]] = None) -> Iterator[Optional[str]]:
    """Check ``parent_dir/name`` exists under the parent's newdir lock, then lock it.

    Yields the child directory, or None when it is missing. ``before(parent_dir)``
    runs under the newdir lock ahead of the check.
    """
    child = os.path.join(parent_dir, name)
    with newdir_lock(parent_dir, False):
        if before is not None:
            before(parent_dir)
        exists = os.path.isdir(child)
    if not exists:
        yield None
        return
    with dir_lock(child, exclusive):
        yield child


def _require(directory: Optional[str], missing: str) -> str:
    if directory is None:
        raise ActionError(404, missing)
    return directory


@contextlib.contextmanager
def find_project(cfg: Config, project: str, exclusive: bool = False) -> Iterator[Optional[str]]:
    """Shared registry lock, then the project locked; yields None when it is missing."""
    with dir_lock(cfg.registry, False):
        with _enter_child(cfg.registry, project, exclusive) as project_dir:
            yield project_dir


@contextlib.contextmanager
def enter_project(cfg: Config, project: str, exclusive: bool = False) -> Iterator[str]:
    """Like :func:`find_project`, but a missing project is a 404."""
    with find_project(cfg, project, exclusive) as project_dir:
        yield _require(project_dir, f'project "{project}" does not exist')


@contextlib.contextmanager
def find_asset(cfg: Config, project: str, asset: str,
               before: Optional[Callable[[str], None]] = None,
               project_missing_ok: bool = True) -> Iterator[Optional[str]]:
    """Lock down to an asset exclusively; yields None when it (or its project) is missing.

    ``before(project_dir)`` runs under the project lock before the asset
    check, for actions whose authorisation comes before the 404 on the asset.
    """
    with find_project(cfg, project) as project_dir:
        if project_dir is None:
            if not project_missing_ok:
                raise ActionError(404, f'project "{project}" does not exist')
            yield None
            return
        with _enter_child(project_dir, asset, True, before) as asset_dir:
            yield asset_dir


@contextlib.contextmanager
def enter_asset(cfg: Config, project: str, asset: str,
                before: Optional[Callable[[str], None]] = None) -> Iterator[str]:
    """Like :func:`find_asset`, but a missing project or asset is a 404."""
    with find_asset(cfg, project, asset, before, project_missing_ok=False) as asset_dir:
        yield _require(asset_dir, f'asset "{asset}" does not exist in project "{project}"')


@contextlib.contextmanager
def hold_asset(project_dir: str, asset_dir: str, prepare: Callable[[], T]) -> Iterator[T]:
    """Run ``prepare()`` under the project's exclusive newdir lock, then hold the asset.

    For actions that may create the asset: its lock is taken before the
    newdir lock is let go, so no other action gets at the asset in between.
    Yields what ``prepare`` returned.
    """
    asset_lock = os.path.join(asset_dir, "..LOCK")
    with newdir_lock(project_dir, True):
        prepared = prepare()
        acquire_lock(asset_lock, True)
    try:
        yield prepared
    finally:
        release_lock(asset_lock)


def require_version(asset_dir: str, version: str) -> str:
    """The directory of an existing version (404 when missing)."""
    version_dir = os.path.join(asset_dir, version)
    if not os.path.isdir(version_dir):
        raise ActionError(404, f'version "{version}" does not exist in {asset_dir!r}')
    return version_dir


def finish_time(summary: Summary, where: str) -> datetime:
    """The summary's ``upload_finish`` (500 naming ``where`` when invalid)."""
    try:
        return parse_rfc3339(summary.get("upload_finish"))
    except ValueError as exc:
        raise ActionError(500, f"invalid 'upload_finish' in {where!r}; {exc}") from exc


def latest_or_none(asset_dir: str) -> Optional[str]:
    """The asset's ``..latest`` version, None when it is missing or unreadable."""
    try:
        return read_latest(asset_dir)
    except BAD_METADATA:
        return None


def recompute_latest(asset_dir: str) -> Optional[str]:
    """Write (or delete) ``..latest`` from every version's summary (§6.9)."""
    best: Optional[Tuple[datetime, str]] = None
    for version in subdirectories(asset_dir):
        version_dir = os.path.join(asset_dir, version)
        summary = load_summary(version_dir)
        if summary.get("on_probation"):
            continue
        when = finish_time(summary, version_dir)
        if best is None or when > best[0]:
            best = (when, version)
    if best is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(asset_dir, "..latest"))
        return None
    write_latest(asset_dir, best[1])
    return best[1]
