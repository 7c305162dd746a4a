"""gypsum administration: projects, permissions, quotas, probation, removal, refresh, unlock.

gypsum_client's functions, plus :func:`unlock_project`; names are
percent-encoded per segment, ``until`` datetimes are sent as UTC ISO text,
and :func:`refresh_latest` returns None when no version qualifies.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from .. import transport
from ..errors import GypsumError
from .auth import resolve_token
from .client import _call, _get_json, _json, _names
from .config import base_url
from .protocol import route

def _until(uploaders: Optional[Sequence[Mapping[str, Any]]]) -> List[Dict[str, Any]]:
    """Uploader entries with each datetime ``until`` as ISO text in UTC (naive = local time)."""
    out = []
    for entry in uploaders or ():
        entry = dict(entry)
        until = entry.get("until")
        if isinstance(until, datetime):
            entry["until"] = until.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append(entry)
    return out


def _admin(method: str, endpoint: str, names: Sequence[str], what: str, token: Optional[str],
           url: Optional[str], body: Any = None) -> transport.Response:
    _names(*names)
    token = resolve_token(token, what)
    return _call(method, route(base_url(url), endpoint, *names), what, token=token, body=body)


def create_project(project: str, owners: Union[str, Sequence[str]],
                   uploaders: Optional[Sequence[Mapping[str, Any]]] = None,
                   baseline: Optional[int] = None, growth_rate: Optional[int] = None,
                   year: Optional[int] = None, url: Optional[str] = None,
                   token: Optional[str] = None) -> None:
    """Create a project (administrators only) with its owners, uploaders and quota."""
    quota = {k: v for k, v in (("baseline", baseline), ("growth_rate", growth_rate),
                               ("year", year)) if v is not None}
    body: Dict[str, Any] = {"permissions": {
        "owners": [owners] if isinstance(owners, str) else list(owners),
        "uploaders": _until(uploaders)}}
    if quota:
        body["quota"] = quota
    _admin("POST", "create", [project], f"create_project {project}", token, url, body)


def set_permissions(project: str, owners: Optional[Sequence[str]] = None,
                    uploaders: Optional[Sequence[Mapping[str, Any]]] = None, append: bool = True,
                    url: Optional[str] = None, token: Optional[str] = None) -> None:
    """Change a project's owners and/or uploaders (owners and administrators).

    With ``append`` the new owners are added to the current ones (order
    kept) and the uploaders appended; otherwise they replace them.
    """
    perms: Dict[str, Any] = {}
    if append and (owners is not None or uploaders is not None):
        old = _get_json(base_url(url), f"{project}/..permissions", f"set_permissions {project}")
        if not isinstance(old, dict):
            raise GypsumError(f"gypsum: {project}/..permissions is not a JSON object")
        if owners is not None:
            current = list(old.get("owners") or [])
            perms["owners"] = current + [o for o in owners if o not in current]
        if uploaders is not None:
            perms["uploaders"] = list(old.get("uploaders") or []) + _until(uploaders)
    else:
        if owners is not None:
            perms["owners"] = list(owners)
        if uploaders is not None:
            perms["uploaders"] = _until(uploaders)
    _admin("PUT", "permissions", [project], f"set_permissions {project}", token, url, perms)


def set_quota(project: str, baseline: Optional[int] = None, growth_rate: Optional[int] = None,
              year: Optional[int] = None, url: Optional[str] = None,
              token: Optional[str] = None) -> None:
    """Change a project's quota (administrators only); None leaves a field unchanged."""
    body = {k: v for k, v in (("baseline", baseline), ("growth_rate", growth_rate),
                              ("year", year)) if v is not None}
    _admin("PUT", "quota", [project], f"set_quota {project}", token, url, body)


def remove_project(project: str, url: Optional[str] = None, token: Optional[str] = None) -> bool:
    """Delete a project and everything in it (administrators only)."""
    _admin("DELETE", "remove", [project], f"remove_project {project}", token, url)
    return True


def remove_asset(project: str, asset: str, url: Optional[str] = None,
                 token: Optional[str] = None) -> bool:
    """Delete an asset with all its versions (administrators only)."""
    _admin("DELETE", "remove", [project, asset], f"remove_asset {project}/{asset}", token, url)
    return True


def remove_version(project: str, asset: str, version: str, url: Optional[str] = None,
                   token: Optional[str] = None) -> bool:
    """Delete one version (administrators only); ``..latest`` is recomputed."""
    _admin("DELETE", "remove", [project, asset, version],
           f"remove_version {project}/{asset}/{version}", token, url)
    return True


def approve_probation(project: str, asset: str, version: str, url: Optional[str] = None,
                      token: Optional[str] = None) -> None:
    """Approve a probational version (owners and administrators)."""
    _admin("POST", "probation/approve", [project, asset, version],
           f"approve_probation {project}/{asset}/{version}", token, url)


def reject_probation(project: str, asset: str, version: str, url: Optional[str] = None,
                     token: Optional[str] = None) -> None:
    """Reject (delete) a probational version (owners, administrators, its uploader)."""
    _admin("POST", "probation/reject", [project, asset, version],
           f"reject_probation {project}/{asset}/{version}", token, url)


def refresh_latest(project: str, asset: str, url: Optional[str] = None,
                   token: Optional[str] = None) -> Optional[str]:
    """Recompute ``..latest`` (administrators only); the latest version, or None if none."""
    res = _admin("POST", "refresh/latest", [project, asset], f"refresh_latest {project}/{asset}",
                 token, url)
    doc = _json(res, "refresh_latest")
    return str(doc["version"]) if isinstance(doc, dict) and doc.get("version") else None


def refresh_usage(project: str, url: Optional[str] = None, token: Optional[str] = None) -> int:
    """Recompute ``..usage`` (administrators only); returns the total in bytes."""
    doc = _json(_admin("POST", "refresh/usage", [project], f"refresh_usage {project}", token,
                       url), "refresh_usage")
    if not isinstance(doc, dict) or not isinstance(doc.get("total"), (int, float)):
        raise GypsumError(f"gypsum refresh_usage {project}: unexpected reply")
    return int(doc["total"])


def unlock_project(project: str, url: Optional[str] = None, token: Optional[str] = None) -> None:
    """Remove a stale project lock (administrators only; not in gypsum_client)."""
    _admin("DELETE", "unlock", [project], f"unlock_project {project}", token, url)
