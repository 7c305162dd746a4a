"""Actions on projects and their permissions: ``create_project``, ``set_permissions``."""

from __future__ import annotations

import os
import time
from typing import Any, Dict

from artifacts_py.servers.gobbler.access import enter_project, hold_asset, load_permissions
from artifacts_py.servers.gobbler.auth import (
    is_admin_or_owner, is_owner, require_admin, spoofed_identity, validate_permissions,
)
from artifacts_py.servers.gobbler.config import Config
from artifacts_py.servers.gobbler.registry import (
    ActionError, check_name, dir_lock, ordered_permissions, write_json,
)
from artifacts_py.servers.gobbler.request import Request, names
from artifacts_py.servers.gobbler.shapes import Permissions


def create_project(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``create_project`` (§3.5.2), admins only."""
    user = req.user()
    require_admin(cfg, user)
    body = req.body()
    (project,) = names(body, "project")
    given = body.get("permissions")
    given = {} if given is None else validate_permissions(given, asset_level=False)
    perms: Permissions = {
        "owners": given.get("owners", [user]),
        "uploaders": given.get("uploaders", []),
    }
    if "global_write" in given:
        perms["global_write"] = given["global_write"]

    with dir_lock(cfg.registry, True):
        project_dir = os.path.join(cfg.registry, project)
        if os.path.lexists(project_dir):
            raise ActionError(400, f'project "{project}" already exists')
        os.makedirs(project_dir, 0o755)
        write_json(os.path.join(project_dir, "..permissions"), ordered_permissions(perms))
        year = time.localtime().tm_year
        for name, text in (("..quota", '{ "baseline": 1000000000, "growth_rate": 1000000000, '
                                       f'"year": {year} }}'),
                           ("..usage", '{ "total": 0 }')):
            with open(os.path.join(project_dir, name), "w", encoding="utf-8") as handle:
                handle.write(text)
    return {}


def set_permissions(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``set_permissions`` (§3.5.3), project or asset level; replaces given fields."""
    body = req.body()
    user = spoofed_identity(cfg, req.user(), body)
    (project,) = names(body, "project")
    asset = check_name(body, "asset") if body.get("asset") is not None else None
    if body.get("permissions") is None:
        raise ActionError(400, "expected a 'permissions' property in the request details")
    given = validate_permissions(body["permissions"], asset_level=asset is not None)

    if asset is None:
        with enter_project(cfg, project, exclusive=True) as project_dir:
            path = os.path.join(project_dir, "..permissions")
            perms = load_permissions(path)
            if not is_admin_or_owner(cfg, perms, user):
                raise ActionError(403, f'user "{user}" is not authorized to modify permissions '
                                       f'of project "{project}"')
            perms.update(given)
            write_json(path, ordered_permissions(perms))
        return {}

    with enter_project(cfg, project) as project_dir:
        project_perms = load_permissions(os.path.join(project_dir, "..permissions"))
        asset_dir = os.path.join(project_dir, asset)
        path = os.path.join(asset_dir, "..permissions")
        allowed = is_admin_or_owner(cfg, project_perms, user)

        def create_if_missing() -> None:
            if not os.path.isdir(asset_dir):
                if not allowed:
                    raise ActionError(403, f'user "{user}" is not authorized to create asset '
                                           f'"{asset}" in project "{project}"')
                os.mkdir(asset_dir, 0o755)

        with hold_asset(project_dir, asset_dir, create_if_missing):
            perms = load_permissions(path) if os.path.exists(path) else {"owners": [], "uploaders": []}
            if not (allowed or is_owner(perms, user)):
                raise ActionError(403, f'user "{user}" is not authorized to modify permissions '
                                       f'of asset "{asset}" in project "{project}"')
            perms.update(given)
            perms.pop("global_write", None)
            write_json(path, ordered_permissions(perms))
    return {}
