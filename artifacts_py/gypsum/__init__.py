"""gypsum, client side: a gypsum_client-compatible client, the metadata index, the launcher.

Every public function of gypsum_client 0.2.0, with the same names and
parameters (switch by changing the import), on artifacts-py's one transport
and with every download verified (:mod:`.client` lists the differences).
:func:`start_gypsum`/:func:`stop_gypsum` run our gypsum-compatible service
(:mod:`artifacts_py.servers.gypsum`) for tests and demos.
:mod:`artifacts_py.gypsum.protocol` holds the rules shared with the sources
and the server. Names are loaded on first use (PEP 562), so importing the
protocol module stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

if TYPE_CHECKING:  # the launcher is left out: type-checking it would check the server
    from .admin import (
        approve_probation,
        create_project,
        refresh_latest,
        refresh_usage,
        reject_probation,
        remove_asset,
        remove_project,
        remove_version,
        set_permissions,
        set_quota,
        unlock_project,
    )
    from .auth import (
        access_token,
        set_access_token,
    )
    from .client import (
        clone_version,
        fetch_latest,
        fetch_manifest,
        fetch_permissions,
        fetch_quota,
        fetch_summary,
        fetch_usage,
        list_assets,
        list_files,
        list_projects,
        list_versions,
        public_s3_config,
        resolve_links,
        save_file,
        save_version,
    )
    from .config import (
        BUCKET_CACHE_NAME,
        cache_directory,
        rest_url,
    )
    from .metadata import (
        GypsumSearchClause,
        define_text_query,
        fetch_metadata_database,
        fetch_metadata_schema,
        search_metadata_text,
        validate_metadata,
    )
    from .upload import (
        abort_upload,
        complete_upload,
        prepare_directory_upload,
        start_upload,
        upload_directory,
        upload_files,
    )

_SUBMODULES = ("admin", "auth", "client", "config", "metadata", "protocol", "upload")
_WHERE: Dict[str, str] = {
    "list_projects": ".client",
    "list_assets": ".client",
    "list_versions": ".client",
    "list_files": ".client",
    "fetch_manifest": ".client",
    "fetch_summary": ".client",
    "fetch_latest": ".client",
    "fetch_permissions": ".client",
    "fetch_quota": ".client",
    "fetch_usage": ".client",
    "public_s3_config": ".client",
    "save_file": ".client",
    "save_version": ".client",
    "resolve_links": ".client",
    "clone_version": ".client",
    "prepare_directory_upload": ".upload",
    "start_upload": ".upload",
    "upload_files": ".upload",
    "complete_upload": ".upload",
    "abort_upload": ".upload",
    "upload_directory": ".upload",
    "create_project": ".admin",
    "set_permissions": ".admin",
    "set_quota": ".admin",
    "remove_project": ".admin",
    "remove_asset": ".admin",
    "remove_version": ".admin",
    "approve_probation": ".admin",
    "reject_probation": ".admin",
    "refresh_latest": ".admin",
    "refresh_usage": ".admin",
    "unlock_project": ".admin",
    "access_token": ".auth",
    "set_access_token": ".auth",
    "rest_url": ".config",
    "cache_directory": ".config",
    "BUCKET_CACHE_NAME": ".config",
    "fetch_metadata_database": ".metadata",
    "fetch_metadata_schema": ".metadata",
    "validate_metadata": ".metadata",
    "GypsumSearchClause": ".metadata",
    "define_text_query": ".metadata",
    "search_metadata_text": ".metadata",
    "start_gypsum": "..servers.gypsum.launch",
    "stop_gypsum": "..servers.gypsum.launch",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)


__all__ = [
    "list_projects", "list_assets", "list_versions", "list_files", "fetch_manifest",
    "fetch_summary", "fetch_latest", "fetch_permissions", "fetch_quota", "fetch_usage",
    "public_s3_config", "save_file", "save_version", "resolve_links", "clone_version",
    "prepare_directory_upload", "start_upload", "upload_files", "complete_upload",
    "abort_upload", "upload_directory", "create_project", "set_permissions", "set_quota",
    "remove_project", "remove_asset", "remove_version", "approve_probation",
    "reject_probation", "refresh_latest", "refresh_usage", "unlock_project", "access_token",
    "set_access_token", "rest_url", "cache_directory", "BUCKET_CACHE_NAME",
    "fetch_metadata_database", "fetch_metadata_schema", "validate_metadata",
    "GypsumSearchClause", "define_text_query", "search_metadata_text", "start_gypsum",
    "stop_gypsum",
]
