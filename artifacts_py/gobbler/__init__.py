"""Gobbler: a client of the Gobbler registry protocol, and an embedded server.

The client functions (:mod:`artifacts_py.gobbler.client`) mirror pygobbler's
names and arguments; :func:`start_gobbler` / :func:`stop_gobbler` run our own
Gobbler-compatible server for tests and demos. Importing this package does
not import ``requests``.
"""

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
from ..servers.gobbler.launch import start_gobbler, stop_gobbler

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
