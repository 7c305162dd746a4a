"""Who is asking and what they may do (``gobbler-protocol.md`` §5).

Identity from UIDs, spoofing, the admin/owner/uploader roles, and the type
checks of the ``permissions`` objects that requests carry.
"""

from __future__ import annotations

import pwd
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, cast

from artifacts_py.servers.gobbler.config import Config
from artifacts_py.servers.gobbler.registry import ActionError, ordered_uploader, parse_rfc3339
from artifacts_py.servers.gobbler.shapes import Permissions, PermissionsUpdate, Uploader


def user_name(uid: int, what: str) -> str:
    """Map a UID to a user name through NSS; 403 when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        raise ActionError(403, f"cannot find a user name for UID {uid}, the owner of {what}; "
                               "ask the administrator to add it to the user database") from None


def spoofed_identity(cfg: Config, real: str, body: Dict[str, Any]) -> str:
    """The identity to use: ``body["spoof"]`` when ``real`` may act as them (§5.2)."""
    target = body.get("spoof")
    if target is None:
        return real
    if not isinstance(target, str):
        raise ActionError(400, "expected 'spoof' to be a string")
    if target == real:
        return real
    rule = cfg.spoof.get(real)
    if rule is None or not rule.permits(target):
        raise ActionError(403, f'user "{real}" is not authorized to spoof "{target}"')
    return target


def is_admin(cfg: Config, user: str) -> bool:
    """Whether ``user`` is one of the server's administrators."""
    return user in cfg.admins


def require_admin(cfg: Config, user: str) -> None:
    """403 unless ``user`` is an administrator."""
    if not is_admin(cfg, user):
        raise ActionError(403, f'user "{user}" is not an administrator')


def is_owner(perms: Permissions, user: str) -> bool:
    """Whether ``user`` is listed in the ``owners`` of a permissions object."""
    return user in (perms.get("owners") or [])


def is_admin_or_owner(cfg: Config, perms: Permissions, user: str) -> bool:
    """Whether ``user`` may manage what ``perms`` protects (§5.3)."""
    return is_admin(cfg, user) or is_owner(perms, user)


def validate_permissions(perms: Any, *, asset_level: bool) -> PermissionsUpdate:
    """Check the types of a ``permissions`` request object; 400 when wrong.

    Returns a dict with only the fields that were given (non-null).
    """
    if not isinstance(perms, dict):
        raise ActionError(400, "expected 'permissions' to be a JSON object")
    out: PermissionsUpdate = {}
    owners = perms.get("owners")
    if owners is not None:
        if not isinstance(owners, list) or not all(isinstance(o, str) for o in owners):
            raise ActionError(400, "expected 'owners' to be an array of strings")
        out["owners"] = list(owners)
    uploaders = perms.get("uploaders")
    if uploaders is not None:
        if not isinstance(uploaders, list):
            raise ActionError(400, "expected 'uploaders' to be an array")
        checked = []
        for entry in uploaders:
            checked.append(validate_uploader(entry, asset_level=asset_level))
        out["uploaders"] = checked
    global_write = perms.get("global_write")
    if global_write is not None and not asset_level:
        if not isinstance(global_write, bool):
            raise ActionError(400, "expected 'global_write' to be a boolean")
        out["global_write"] = global_write
    return out


def validate_uploader(entry: Any, *, asset_level: bool) -> Uploader:
    """One ``uploaders`` entry: ``id`` required, ``until`` RFC 3339; 400 otherwise."""
    if not isinstance(entry, dict):
        raise ActionError(400, "expected each entry of 'uploaders' to be a JSON object")
    if not isinstance(entry.get("id"), str):
        raise ActionError(400, "expected an 'id' string property in each entry of 'uploaders'")
    for key in ("asset", "version", "until"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise ActionError(400, f"expected '{key}' in 'uploaders' to be a string")
    if entry.get("trusted") is not None and not isinstance(entry["trusted"], bool):
        raise ActionError(400, "expected 'trusted' in 'uploaders' to be a boolean")
    if entry.get("until") is not None:
        try:
            parse_rfc3339(entry["until"])
        except ValueError:
            raise ActionError(400, f"invalid 'until' {entry['until']!r} in 'uploaders'; "
                                   "expected an RFC 3339 time such as 2026-01-01T00:00:00Z") from None
    clean = cast(Uploader, dict(entry))  # the types were checked above
    if asset_level:
        clean.pop("asset", None)
    return ordered_uploader(clean)


def merge_asset_permissions(project: Permissions, asset_perms: Permissions,
                            asset: str) -> Permissions:
    """Project permissions plus asset owners and asset uploaders (bound to ``asset``)."""
    merged = project.copy()
    merged["owners"] = list(project.get("owners") or []) + list(asset_perms.get("owners") or [])
    extra: List[Uploader] = []
    for uploader in asset_perms.get("uploaders") or []:
        bound = uploader.copy()
        bound["asset"] = asset
        extra.append(bound)
    merged["uploaders"] = list(project.get("uploaders") or []) + extra
    return merged


def upload_trust(cfg: Config, perms: Permissions, user: str, asset: str,
                 version: str) -> Optional[bool]:
    """None if ``user`` may not upload here, else whether they are trusted (§5.3)."""
    if is_admin_or_owner(cfg, perms, user):
        return True
    now = datetime.now(timezone.utc)
    for entry in perms.get("uploaders") or []:
        if not isinstance(entry, dict) or entry.get("id") != user:
            continue
        if entry.get("asset") is not None and entry["asset"] != asset:
            continue
        if entry.get("version") is not None and entry["version"] != version:
            continue
        if entry.get("until") is not None:
            try:
                if parse_rfc3339(entry["until"]) <= now:
                    continue
            except ValueError:
                continue
        return bool(entry.get("trusted"))
    return None

