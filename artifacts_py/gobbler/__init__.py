"""Gobbler, client side: a complete client of the Gobbler protocol, and the launcher.

The client functions (:mod:`artifacts_py.gobbler.client`) mirror pygobbler's
names and arguments, on artifacts-py's one transport (retries, timeouts,
offline); :func:`start_gobbler` / :func:`stop_gobbler` run our own
Gobbler-compatible server (:mod:`artifacts_py.servers.gobbler`) for tests
and demos. :mod:`artifacts_py.gobbler.protocol` holds the rules shared with
the sources and the server. Names are loaded on first use (PEP 562), so
importing the protocol module stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..servers.gobbler.launch import start_gobbler, stop_gobbler
    from .client import (
        allocate_upload_directory,
        approve_probation,
        clone_version,
        create_project,
        fetch_directory,
        fetch_file,
        fetch_latest,
        fetch_manifest,
        fetch_permissions,
        fetch_summary,
        fetch_usage,
        list_assets,
        list_files,
        list_projects,
        list_versions,
        refresh_latest,
        refresh_usage,
        reindex_version,
        reject_probation,
        remove_asset,
        remove_project,
        remove_version,
        reroute_links,
        service_info,
        set_permissions,
        unpack_path,
        upload_directory,
        validate_version,
        version_path,
    )

_CLIENT = {"allocate_upload_directory", "approve_probation", "clone_version", "create_project", "fetch_directory", "fetch_file", "fetch_latest", "fetch_manifest", "fetch_permissions", "fetch_summary", "fetch_usage", "list_assets", "list_files", "list_projects", "list_versions", "refresh_latest", "refresh_usage", "reindex_version", "reject_probation", "remove_asset", "remove_project", "remove_version", "reroute_links", "service_info", "set_permissions", "unpack_path", "upload_directory", "validate_version", "version_path"}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _CLIENT:
        return getattr(importlib.import_module(".client", __name__), name)
    if name in ("start_gobbler", "stop_gobbler"):
        return getattr(importlib.import_module("..servers.gobbler.launch", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "allocate_upload_directory", "approve_probation", "clone_version", "create_project",
    "fetch_directory", "fetch_file", "fetch_latest", "fetch_manifest", "fetch_permissions",
    "fetch_summary", "fetch_usage", "list_assets", "list_files", "list_projects",
    "list_versions", "refresh_latest", "refresh_usage", "reindex_version",
    "reject_probation", "remove_asset", "remove_project", "remove_version",
    "reroute_links", "service_info", "set_permissions", "unpack_path",
    "upload_directory", "validate_version", "version_path",
    "start_gobbler", "stop_gobbler",
]
