"""Project-level endpoints: create (§4.5), permissions (§4.13), quota (§4.14)."""

from __future__ import annotations

import datetime
import re
from typing import Any, Dict, Optional

from artifacts_py.servers.gypsum.actions import Service, parse_body
from artifacts_py.servers.gypsum.documents import read_json, write_json
from artifacts_py.servers.gypsum.errors import GypsumError
from artifacts_py.servers.gypsum.names import check_name

_UNTIL = re.compile(r"^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")
QUOTA_FIELDS = ("baseline", "growth_rate", "year")


def validate_permissions(value: Any) -> None:
    """The §4.13 checks (the worker's two HTTP-200 errors are sent as 400 here)."""
    if not isinstance(value, dict):
        raise GypsumError(400, "expected permissions to be a JSON object")
    if "owners" in value:
        owners = value["owners"]
        if not isinstance(owners, list):
            raise GypsumError(400, "expected 'owners' to be an array")
        if not all(isinstance(o, str) for o in owners):
            raise GypsumError(400, "expected 'owners' to be an array of strings")
    if "uploaders" in value:
        uploaders = value["uploaders"]
        if not isinstance(uploaders, list):
            raise GypsumError(400, "expected 'uploaders' to be an array")
        for entry in uploaders:
            _validate_uploader(entry)


def _validate_uploader(entry: Any) -> None:
    if not isinstance(entry, dict):
        raise GypsumError(400, "expected 'uploaders' to be an array of objects")
    if not isinstance(entry.get("id"), str):
        raise GypsumError(400, "expected 'uploaders.id' property to be a string")
    if "until" in entry:
        until = entry["until"]
        ok = isinstance(until, str) and _UNTIL.match(until) is not None
        if ok:
            try:
                datetime.datetime.fromisoformat(until)
            except ValueError:
                ok = False
        if not ok:
            raise GypsumError(400, "expected 'uploaders.until' property to be a "
                                   "date/time-formatted string")
    if "trusted" in entry and not isinstance(entry["trusted"], bool):
        raise GypsumError(400, "expected 'uploaders.trusted' property to be a boolean")
    if "asset" in entry and not isinstance(entry["asset"], str):
        raise GypsumError(400, "expected 'asset' property to be a string")
    if "version" in entry and not isinstance(entry["version"], str):
        raise GypsumError(400, "expected 'version' property to be a string")


def validate_quota(value: Any) -> Dict[str, Any]:
    """The §4.14 checks; returns the fields that were given."""
    if not isinstance(value, dict):
        raise GypsumError(400, "expected quota specification to be a JSON object")
    given = {}
    for field in QUOTA_FIELDS:
        if field in value:
            number = value[field]
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise GypsumError(400, f"expected '{field}' to be a number")
            if number < 0:
                raise GypsumError(400, f"expected '{field}' to be a non-negative number")
            given[field] = number
    return given


def default_quota() -> Dict[str, Any]:
    """10 GB baseline, 20 GB a year from this year (§2.4.2)."""
    return {"baseline": 10_000_000_000, "growth_rate": 20_000_000_000,
            "year": datetime.datetime.now(datetime.timezone.utc).year}


def create(svc: Service, project: str, raw: bytes, header: Optional[str]) -> None:
    """``POST /create/{p}``: write ``..usage``, ``..permissions`` and ``..quota``."""
    svc.auth.admin(header)
    if "/" in project:
        raise GypsumError(400, "project name cannot contain '/'")
    check_name("project", project)
    if svc.store.head(f"{project}/..permissions") is not None:
        raise GypsumError(400, f"project '{project}' already exists")
    body = parse_body(raw)
    if not isinstance(body, dict):
        raise GypsumError(400, "expected a JSON object in the request body")
    permissions: Dict[str, Any] = {"owners": [], "uploaders": []}
    if "permissions" in body:
        validate_permissions(body["permissions"])
        permissions.update({k: body["permissions"][k] for k in ("owners", "uploaders")
                            if k in body["permissions"]})
    quota = default_quota()
    if "quota" in body:
        quota.update(validate_quota(body["quota"]))
    # Validated before anything is written, so a refusal leaves nothing behind;
    # ..permissions last, because it is what makes the project exist.
    write_json(svc.store, f"{project}/..usage", {"total": 0})
    write_json(svc.store, f"{project}/..quota", quota)
    write_json(svc.store, f"{project}/..permissions", permissions)
    svc.auth.forget_permissions(project)


def set_permissions(svc: Service, project: str, raw: bytes, header: Optional[str]) -> None:
    """``PUT /permissions/{p}``: replace ``owners`` and/or ``uploaders``."""
    identity = svc.auth.identity(header)
    check_name("project", project)
    current = svc.auth.permissions(project, cached=False)
    if current is None:
        raise GypsumError(404, f"project '{project}' does not exist")
    if not svc.auth.is_owner(identity, current):
        raise GypsumError(403, f"user does not own project '{project}'")
    body = parse_body(raw)
    validate_permissions(body)
    changed = {k: body[k] for k in ("owners", "uploaders") if k in body}
    if changed:
        updated = {"owners": current.get("owners", []), "uploaders": current.get("uploaders", [])}
        updated.update(changed)
        write_json(svc.store, f"{project}/..permissions", updated)
    svc.auth.forget_permissions(project)


def set_quota(svc: Service, project: str, raw: bytes, header: Optional[str]) -> None:
    """``PUT /quota/{p}``: change any of baseline, growth rate, year."""
    svc.auth.admin(header)
    check_name("project", project)
    current = read_json(svc.store, f"{project}/..quota")
    if not isinstance(current, dict):
        raise GypsumError(400, "project does not exist")
    given = validate_quota(parse_body(raw))
    if given:
        current.update(given)
        write_json(svc.store, f"{project}/..quota", current)


def quota_in_force(quota: Any) -> float:
    """``baseline + (this year - year) * growth_rate`` (§2.4.2)."""
    if not isinstance(quota, dict):
        return 0.0
    year = datetime.datetime.now(datetime.timezone.utc).year
    return float(quota.get("baseline", 0)) + \
        (year - float(quota.get("year", year))) * float(quota.get("growth_rate", 0))
