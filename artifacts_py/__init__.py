"""artifacts-py: Julia-compatible, content-addressed artifacts for Python.

``artifact("Name")`` returns the verified local directory of an artifact
bound in an ``Artifacts.toml``, installing it on first use from a Gobbler
registry or a tarball mirror. The names mirror fetch-artifacts and Julia's
Pkg.Artifacts.

Authoring helpers (bind, create, add, publish) and the Gobbler client are
imported on first use, so ``import artifacts_py`` stays cheap.
"""

from __future__ import annotations

from typing import Any

from .core import (ArtifactManager, artifact, artifact_exists, artifact_hash, artifact_path,
                   clear_artifact_cache, ensure_all_artifacts_installed,
                   ensure_artifact_installed, load_artifacts, remove_artifact, verify_artifact)
from .depot import get_cache_dir, load_overrides, set_cache_dir
from .errors import (ArtifactError, ArtifactNotFoundError, ArtifactsTomlError, DownloadError,
                     GobblerError, HashMismatchError, InstallError, NotInstalledError,
                     OfflineError, TomlNotFoundError, UnsafeArchiveError)
from .tomlmodel import ArtifactEntry, DownloadInfo, GobblerSource, get_artifacts_toml
from ._version import __version__ as __version__  # explicit re-export
from .treehash import compute_git_tree_sha1, compute_sha256

# Heavier names (tomlkit, requests) are loaded when first touched (PEP 562).
_LAZY = {
    "bind_artifact": "binding",
    "unbind_artifact": "binding",
    "add_download_source": "binding",
    "create_artifact": "authoring",
    "add_artifact": "authoring",
    "query_artifact_info": "authoring",
    "publish_artifact": "authoring",
    "gobbler": None,
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'artifacts_py' has no attribute {name!r}")
    import importlib

    module = _LAZY[name]
    if module is None:
        return importlib.import_module(f".{name}", __name__)
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = [
    "artifact", "artifact_exists", "artifact_hash", "artifact_path", "load_artifacts",
    "ArtifactManager", "ensure_artifact_installed", "ensure_all_artifacts_installed",
    "verify_artifact", "remove_artifact", "clear_artifact_cache", "set_cache_dir",
    "get_cache_dir", "get_artifacts_toml", "load_overrides", "compute_git_tree_sha1",
    "compute_sha256", "ArtifactEntry", "DownloadInfo", "GobblerSource",
    "ArtifactError", "ArtifactNotFoundError", "ArtifactsTomlError", "DownloadError",
    "GobblerError", "HashMismatchError", "InstallError", "NotInstalledError", "OfflineError",
    "TomlNotFoundError", "UnsafeArchiveError", *_LAZY,
]
