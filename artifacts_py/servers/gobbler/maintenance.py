"""Admin and owner upkeep of versions that exist: probation, deletion, refreshes, daily purge.

Actions ``approve_probation``, ``reject_probation``, ``delete_project``,
``delete_asset``, ``delete_version``, ``refresh_latest``, ``refresh_usage``
(§3.5.4-3.5.10), and the daily job (§8.3).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from artifacts_py.servers.gobbler.access import (
    BAD_METADATA, enter_asset, enter_project, find_asset, find_project, finish_time,
    latest_or_none, load_permissions, load_summary, recompute_latest, require_version,
)
from artifacts_py.servers.gobbler.auth import is_admin_or_owner, require_admin, spoofed_identity
from artifacts_py.servers.gobbler.config import Config
from artifacts_py.servers.gobbler.registry import (
    LOCK_USAGE_NAME, ActionError, add_usage, asset_usage, dir_lock, lock, make_summary,
    parse_rfc3339, project_usage, read_latest, read_summary, subdirectories, version_usage,
    write_json, write_latest, write_log, write_usage,
)
from artifacts_py.servers.gobbler.request import Request, names, optional_bool
from artifacts_py.servers.gobbler.shapes import Summary

DAY = 86400.0


# ---------------------------------------------------------------- probation


def _probation_request(cfg: Config, req: Request) -> Tuple[str, str, str, str]:
    body = req.body()
    user = spoofed_identity(cfg, req.user(), body)
    project, asset, version = names(body, "project", "asset", "version")
    return user, project, asset, version


def _project_owner_check(cfg: Config, user: str, project: str) -> Callable[[str], None]:
    """A ``before`` hook for :func:`enter_asset`: admins and project owners only."""
    def check(project_dir: str) -> None:
        perms = load_permissions(os.path.join(project_dir, "..permissions"))
        if not is_admin_or_owner(cfg, perms, user):
            raise ActionError(403, f'user "{user}" is not an owner of project "{project}"')
    return check


def _probational_summary(version_dir: str) -> Summary:
    summary = load_summary(version_dir)
    if not summary.get("on_probation"):
        raise ActionError(500, f"version at {version_dir!r} is not on probation")
    return summary


def approve_probation(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``approve_probation`` (§3.5.4)."""
    user, project, asset, version = _probation_request(cfg, req)
    with enter_asset(cfg, project, asset, before=_project_owner_check(cfg, user, project)) as asset_dir:
        version_dir = require_version(asset_dir, version)
        summary = _probational_summary(version_dir)
        write_json(os.path.join(version_dir, "..summary"),
                   make_summary(summary.get("upload_user_id", ""), summary.get("upload_start", ""),
                                summary.get("upload_finish", ""), False))
        latest = read_latest(asset_dir)
        moved = latest is None or finish_time(summary, version_dir) > finish_time(
            load_summary(os.path.join(asset_dir, latest)), os.path.join(asset_dir, latest))
        if moved:
            write_latest(asset_dir, version)
        write_log(cfg.registry, {"type": "add-version", "project": project, "asset": asset,
                                 "version": version, "latest": moved})
    return {}


def reject_probation(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``reject_probation`` (§3.5.5): delete a probational version."""
    user, project, asset, version = _probation_request(cfg, req)
    force = optional_bool(req.body(), "force")
    with enter_asset(cfg, project, asset, before=_project_owner_check(cfg, user, project)) as asset_dir:
        version_dir = require_version(asset_dir, version)
        _probational_summary(version_dir)
        _remove_version(version_dir, force)
    return {}


def _remove_version(version_dir: str, force: bool) -> None:
    """Delete a version and take its usage off the project (500 unless ``force``)."""
    _remove_counted(version_dir, version_usage, os.path.dirname(os.path.dirname(version_dir)),
                    force)


def _remove_counted(path: str, usage_of: Callable[[str], int], project_dir: str,
                    force: bool) -> None:
    """Delete the asset or version ``path`` and take ``usage_of(path)`` off the project.

    A usage that cannot be computed is a 500, unless ``force``: then ``path``
    goes anyway and the project's usage is left as it was.
    """
    try:
        usage = usage_of(path)
    except BAD_METADATA as exc:
        if not force:
            raise ActionError(500, f"failed to compute the usage of {path!r}; {exc} "
                                   "(set 'force' to delete anyway)") from exc
        usage = 0
    shutil.rmtree(path)
    if usage:
        add_usage(project_dir, -usage)


# ---------------------------------------------------------------- deletion and refreshes


def _admin_request(cfg: Config, req: Request, *fields: str) -> Tuple[Dict[str, Any], List[str]]:
    """identity -> admin (403) -> JSON (400) -> names (400), Go's order for admin actions."""
    require_admin(cfg, req.user())
    body = req.body()
    return body, names(body, *fields)


def delete_project(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``delete_project`` (§3.5.6); a missing project is a success."""
    _, (project,) = _admin_request(cfg, req, "project")
    with dir_lock(cfg.registry, True):
        project_dir = os.path.join(cfg.registry, project)
        if os.path.isdir(project_dir):
            shutil.rmtree(project_dir)
            write_log(cfg.registry, {"type": "delete-project", "project": project})
    return {}


def delete_asset(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``delete_asset`` (§3.5.7); a missing project or asset is a success."""
    body, (project, asset) = _admin_request(cfg, req, "project", "asset")
    force = optional_bool(body, "force")
    with find_project(cfg, project, exclusive=True) as project_dir:
        if project_dir is None:
            return {}
        asset_dir = os.path.join(project_dir, asset)
        if not os.path.isdir(asset_dir):
            return {}
        _remove_counted(asset_dir, asset_usage, project_dir, force)
        write_log(cfg.registry, {"type": "delete-asset", "project": project, "asset": asset})
    return {}


def delete_version(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``delete_version`` (§3.5.8); refreshes ``..latest`` afterwards."""
    body, (project, asset, version) = _admin_request(cfg, req, "project", "asset", "version")
    force = optional_bool(body, "force")
    with find_asset(cfg, project, asset) as asset_dir:
        if asset_dir is None:
            return {}
        version_dir = os.path.join(asset_dir, version)
        if not os.path.isdir(version_dir):
            return {}
        try:
            summary: Optional[Summary] = load_summary(version_dir)
        except ActionError:
            if not force:
                raise
            summary = None
        _remove_version(version_dir, force)
        if summary is None or summary.get("on_probation"):
            return {}
        was_latest = latest_or_none(asset_dir) == version
        write_log(cfg.registry, {"type": "delete-version", "project": project, "asset": asset,
                                 "version": version, "latest": was_latest})
        try:
            recompute_latest(asset_dir)
        except (ActionError, OSError):
            if not force:
                raise
    return {}


def refresh_latest(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``refresh_latest`` (§3.5.9): ``{"version": ...}`` unless none qualifies."""
    _, (project, asset) = _admin_request(cfg, req, "project", "asset")
    with enter_asset(cfg, project, asset) as asset_dir:
        latest = recompute_latest(asset_dir)
    return {} if latest is None else {"version": latest}


def refresh_usage(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``refresh_usage`` (§3.5.10): ``{"total": N}``."""
    _, (project,) = _admin_request(cfg, req, "project")
    with enter_project(cfg, project, exclusive=True) as project_dir:
        try:
            total = project_usage(project_dir)
        except BAD_METADATA as exc:
            raise ActionError(500, f"failed to compute the usage of project {project!r}; "
                                   f"{exc}") from exc
        with lock(os.path.join(project_dir, LOCK_USAGE_NAME), exclusive=True):
            write_usage(project_dir, total)
    return {"total": total}


# ---------------------------------------------------------------- daily purge


def purge_old_entries(directory: str, now: float, max_age: float = 7 * DAY) -> List[str]:
    """Remove top-level entries of ``directory`` whose own mtime is older than ``max_age``."""
    removed: List[str] = []
    try:
        entries = list(os.scandir(directory))
    except OSError as exc:
        _log(f"failed to list {directory!r} for purging; {exc}")
        return removed
    for entry in entries:
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime <= max_age:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(entry.path)
        except OSError as exc:
            _log(f"failed to purge {entry.path!r}; {exc}")
    return removed


def purge_probation(cfg: Config, now: float) -> List[str]:
    """Reject probational versions finished more than ``cfg.probation_days`` ago."""
    removed: List[str] = []
    if cfg.probation_days < 0:
        return removed
    limit = cfg.probation_days * DAY
    with dir_lock(cfg.registry, False):
        for project in subdirectories(cfg.registry):
            project_dir = os.path.join(cfg.registry, project)
            with dir_lock(project_dir, False):
                for asset in subdirectories(project_dir):
                    asset_dir = os.path.join(project_dir, asset)
                    with dir_lock(asset_dir, True):
                        for version in subdirectories(asset_dir):
                            version_dir = os.path.join(asset_dir, version)
                            try:
                                summary = read_summary(os.path.join(version_dir, "..summary"))
                                if not summary.get("on_probation"):
                                    continue
                                finished = parse_rfc3339(summary.get("upload_finish")).timestamp()
                                if now - finished > limit:
                                    _remove_version(version_dir, force=False)
                                    removed.append(version_dir)
                            except (OSError, ValueError, ActionError) as exc:
                                _log(f"failed to purge probational {version_dir!r}; {exc}")
    return removed


def daily_purge(cfg: Config, now: Optional[float] = None) -> List[str]:
    """The daily job (§8.3) as of ``now`` (seconds since the epoch); returns what it removed."""
    now = time.time() if now is None else now
    removed = purge_old_entries(cfg.staging, now)
    removed += purge_old_entries(os.path.join(cfg.registry, "..logs"), now)
    try:
        removed += purge_probation(cfg, now)
    except (OSError, ActionError) as exc:
        _log(f"probation purge failed; {exc}")
    return removed


def _log(message: str) -> None:
    sys.stderr.write(f"artifacts-gobbler: {message}\n")

