"""artifacts-py: Julia-compatible, content-addressed artifacts for Python.

``artifact("Name")`` returns the verified local directory of an artifact
bound in an ``Artifacts.toml``, installing it on first use from a Gobbler
registry or a tarball mirror. The names mirror fetch-artifacts and Julia's
Pkg.Artifacts.

Authoring helpers (bind, create, add, publish) and the Gobbler client are
imported on first use, so ``import artifacts_py`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__  # explicit re-export
from .core import (ArtifactManager, artifact, artifact_exists, artifact_hash, artifact_path,
                   clear_artifact_cache, ensure_all_artifacts_installed,
                   ensure_artifact_installed, load_artifacts, remove_artifact, verify_artifact)
from .depot import get_cache_dir, set_cache_dir
from .errors import (ArtifactError, ArtifactNotFoundError, ArtifactsTomlError,
                     BindingExistsError, DepotError, DownloadError, GobblerError,
                     GobblerNotFoundError, GypsumError, GypsumNotFoundError, HashMismatchError,
                     InstallError, InvalidArgumentError, NotInstalledError, OfflineError,
                     PlatformError, SettingError, SourceUnavailableError, TomlNotFoundError,
                     UnsafeArchiveError, UnsupportedArchiveError)
from .overrides import load_overrides
from .tomlmodel import ArtifactEntry, DownloadInfo, get_artifacts_toml

# Logging: modules log to ``artifacts_py.*`` at INFO/DEBUG only, so nothing is
# printed unless the application configures logging (the CLI's -v does);
# ``logging`` itself is not imported on the warm path.

if TYPE_CHECKING:  # the lazily loaded names, with their real signatures for type checkers
    from . import gobbler as gobbler
    from .authoring import add_artifact as add_artifact
    from .authoring import create_artifact as create_artifact
    from .authoring import publish_artifact as publish_artifact
    from .authoring import query_artifact_info as query_artifact_info
    from .binding import add_download_source as add_download_source
    from .binding import bind_artifact as bind_artifact
    from .binding import unbind_artifact as unbind_artifact
    from .gobbler.protocol import GobblerSource as GobblerSource
    from .treehash import compute_git_tree_sha1 as compute_git_tree_sha1
    from .treehash import compute_sha256 as compute_sha256

# Heavier names (tomlkit, the hashing code) are loaded when first touched (PEP 562).
_LAZY = {
    "bind_artifact": "binding",
    "unbind_artifact": "binding",
    "add_download_source": "binding",
    "create_artifact": "authoring",
    "add_artifact": "authoring",
    "query_artifact_info": "authoring",
    "publish_artifact": "authoring",
    "compute_git_tree_sha1": "treehash",
    "GobblerSource": "gobbler.protocol",
    "compute_sha256": "treehash",
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
    "get_cache_dir", "get_artifacts_toml", "load_overrides", "ArtifactEntry", "DownloadInfo",
    "ArtifactError", "ArtifactNotFoundError", "ArtifactsTomlError", "BindingExistsError",
    "DepotError", "DownloadError", "GobblerError", "GobblerNotFoundError", "GypsumError",
    "GypsumNotFoundError", "HashMismatchError", "InstallError", "InvalidArgumentError",
    "NotInstalledError", "OfflineError", "PlatformError", "SettingError",
    "SourceUnavailableError", "TomlNotFoundError", "UnsafeArchiveError",
    "UnsupportedArchiveError", "__version__", *_LAZY,
]
