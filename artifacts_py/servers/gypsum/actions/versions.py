"""Administrative endpoints: probation (§4.15-4.16), removal (§4.6-4.8),
refresh (§4.17-4.18), unlock (§4.19) and the log purge (§4.20).

Every name is checked (the worker checks none here, §9.3.6), so an
administrator cannot act on ``..logs`` or on a ``p/a`` prefix by mistake.
"""

from __future__ import annotations

import datetime
from typing import Any, Dict, Optional

from artifacts_py.servers.gypsum import locking
from artifacts_py.servers.gypsum.actions import Service, delete_prefix, version_prefix
from artifacts_py.servers.gypsum.documents import (
    add_log, adjust_usage, now_iso, parse_iso, read_json, require_json, usage_key, write_json,
)
from artifacts_py.servers.gypsum.errors import GypsumError
from artifacts_py.servers.gypsum.names import check_names, is_internal
from artifacts_py.servers.gypsum.store import Store

_EPOCH = datetime.datetime(1, 1, 1, tzinfo=datetime.timezone.utc)


def _finish(summary: Any) -> datetime.datetime:
    value = summary.get("upload_finish") if isinstance(summary, dict) else None
    return (parse_iso(value) if isinstance(value, str) else None) or _EPOCH


def _probational_summary(svc: Service, prefix: str, verb: str) -> Dict[str, Any]:
    summary = read_json(svc.store, prefix + "..summary")
    if not isinstance(summary, dict):
        raise GypsumError(400, "version does not exist")
    if summary.get("on_probation") is not True:
        raise GypsumError(400, f"cannot {verb} probation for non-probational version")
    return summary


def approve(svc: Service, project: str, asset: str, version: str,
            header: Optional[str]) -> None:
    """Make a probational version ordinary; it becomes latest if it finished last."""
    check_names(project, asset, version)
    svc.auth.manager(header, project)
    with locking.held(svc.store, project, asset, version):
        prefix = version_prefix(project, asset, version)
        summary = _probational_summary(svc, prefix, "approve")
        summary.pop("on_probation")
        write_json(svc.store, prefix + "..summary", summary)
        latest_key = f"{project}/{asset}/..latest"
        latest = read_json(svc.store, latest_key)
        current = latest.get("version") if isinstance(latest, dict) else None
        is_latest = not isinstance(current, str) or _finish(require_json(
            svc.store, version_prefix(project, asset, current) + "..summary")) < _finish(summary)
        if is_latest:
            write_json(svc.store, latest_key, {"version": version})
        add_log(svc.store, {"type": "add-version", "project": project, "asset": asset,
                            "version": version, "latest": is_latest})


def reject(svc: Service, project: str, asset: str, version: str,
           header: Optional[str]) -> None:
    """Delete a probational version (owners, admins, or the uploader who made it)."""
    check_names(project, asset, version)
    identity, right = svc.auth.uploader(header, project, asset, version)
    with locking.held(svc.store, project, asset, version):
        prefix = version_prefix(project, asset, version)
        summary = _probational_summary(svc, prefix, "reject")
        uploader = str(summary.get("upload_user_id", ""))
        if not right.can_manage and uploader.lower() != identity.login.lower():
            raise GypsumError(400, "cannot reject probation for different user")
        freed = delete_prefix(svc.store, prefix)
        adjust_usage(svc.store, project, -freed)


def _require_usage(svc: Service, project: str) -> None:
    if svc.store.head(usage_key(project)) is None:
        raise GypsumError(404, "project does not exist")


def remove_project(svc: Service, project: str, header: Optional[str]) -> None:
    """``DELETE /remove/{p}``: every key of the project (200 even if absent)."""
    svc.auth.admin(header)
    check_names(project)
    with locking.held(svc.store, project, "", ""):
        delete_prefix(svc.store, project + "/", keep=(locking.lock_key(project),))
    svc.auth.forget_permissions(project)
    add_log(svc.store, {"type": "delete-project", "project": project})


def remove_asset(svc: Service, project: str, asset: str, header: Optional[str]) -> None:
    """``DELETE /remove/{p}/{a}``: all versions and ``..latest``; usage reduced."""
    svc.auth.admin(header)
    check_names(project, asset)
    _require_usage(svc, project)
    with locking.held(svc.store, project, asset, ""):
        freed = delete_prefix(svc.store, f"{project}/{asset}/")
        adjust_usage(svc.store, project, -freed)
    add_log(svc.store, {"type": "delete-asset", "project": project, "asset": asset})


def remove_version(svc: Service, project: str, asset: str, version: str,
                   header: Optional[str]) -> None:
    """``DELETE /remove/{p}/{a}/{v}``: the version; latest recomputed if it was latest."""
    svc.auth.admin(header)
    check_names(project, asset, version)
    _require_usage(svc, project)
    with locking.held(svc.store, project, asset, version):
        latest = read_json(svc.store, f"{project}/{asset}/..latest")
        was_latest = isinstance(latest, dict) and latest.get("version") == version
        freed = delete_prefix(svc.store, version_prefix(project, asset, version))
        adjust_usage(svc.store, project, -freed)
        if was_latest:
            store_latest(svc.store, project, asset)
    add_log(svc.store, {"type": "delete-version", "project": project, "asset": asset,
                        "version": version, "latest": was_latest})


def store_latest(store: Store, project: str, asset: str) -> Optional[str]:
    """Recompute ``..latest`` from the summaries (deleted when nothing qualifies).

    Unlike the worker (§9.3.8), versions without a summary or still being
    uploaded are skipped rather than failing or winning.
    """
    best: Optional[str] = None
    best_time = _EPOCH
    base = f"{project}/{asset}/"
    for prefix in store.list(base, recursive=False).prefixes:
        name = prefix[len(base):-1]
        if name.startswith(".."):
            continue
        summary = read_json(store, prefix + "..summary")
        if not isinstance(summary, dict) or summary.get("on_probation") is True \
                or "upload_finish" not in summary:
            continue
        finished = _finish(summary)
        if best is None or finished > best_time:
            best, best_time = name, finished
    if best is None:
        store.delete([base + "..latest"])
    else:
        write_json(store, base + "..latest", {"version": best})
    return best


def refresh_latest(svc: Service, project: str, asset: str,
                   header: Optional[str]) -> Dict[str, str]:
    """``POST /refresh/latest/{p}/{a}``: ``{"version": v}`` or ``{}``."""
    svc.auth.admin(header)
    check_names(project, asset)
    if svc.store.head(f"{project}/..permissions") is None:
        raise GypsumError(400, "project does not exist")
    with locking.held(svc.store, project, asset, ""):
        best = store_latest(svc.store, project, asset)
    return {} if best is None else {"version": best}


def refresh_usage(svc: Service, project: str, header: Optional[str]) -> Dict[str, int]:
    """``POST /refresh/usage/{p}``: recount the user bytes of the project."""
    svc.auth.admin(header)
    check_names(project)
    if svc.store.head(usage_key(project)) is None:
        raise GypsumError(400, "project does not exist")
    with locking.held(svc.store, project, "placeholder", "placeholder"):
        total = sum(o.size for o in svc.store.list(project + "/", recursive=True).objects
                    if not is_internal(o.key))
        write_json(svc.store, usage_key(project), {"total": total})
    return {"total": total}


def unlock(svc: Service, project: str, header: Optional[str]) -> None:
    """``DELETE /unlock/{p}``: drop the lock, whoever holds it."""
    svc.auth.admin(header)
    check_names(project)
    locking.release(svc.store, project)


def purge_logs(store: Store, days: float, now: Optional[datetime.datetime] = None) -> int:
    """Delete ``..logs/*`` older than ``days`` (§4.20); returns how many went."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    cutoff = now_iso(now - datetime.timedelta(days=days))
    old = [o.key for o in store.list("..logs/", recursive=True).objects
           if o.key[len("..logs/"):] < cutoff]
    store.delete(old)
    return len(old)
