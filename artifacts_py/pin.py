"""Pinning: install a source whose tree hash is not known yet, and learn the hash.

``artifacts add`` pins a tarball URL or a Gobbler version (the latest when
none is given) through the same sources and the same store as
``artifact()``: only the expected hash is missing, so the store accepts the
tree and names it by the hash it computed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import settings, store
from .errors import GobblerError, GobblerNotFoundError, InstallError
from .gobbler.protocol import GobblerSource, which_missing
from .sources.base import Source
from .sources.gobbler_registry import local_exists
from .sources.gobbler_rest import remote_exists
from .sources.plan import gobbler_sources
from .sources.tarball import TarballSource


def pin_tarball(url: str, *, progress: Optional[bool] = None) -> Dict[str, Any]:
    """Download ``url`` once and install it; its ``git_tree_sha1``, ``sha256``, ``size``, ``path``."""
    source = TarballSource(url, None)
    path = _install([source], f"tarball {url}", progress)
    return {"git_tree_sha1": path.name, "sha256": source.downloaded_sha256, "url": url,
            "path": path, "size": source.downloaded_size}


def pin_gobbler(project: str, asset: str, version: Optional[str] = None, *,
                url: Optional[str] = None, registry: Optional[str] = None,
                progress: Optional[bool] = None) -> Dict[str, Any]:
    """Install a Gobbler version (the latest when ``version`` is None) and hash it.

    Returns ``git_tree_sha1``, ``path``, ``version`` and ``gobbler`` (the
    table to bind: the given url/registry, not this machine's overrides).
    """
    mounted = settings.gobbler_registry() or registry
    rest = settings.gobbler_url() or url
    if mounted and not os.path.isdir(mounted):
        mounted = None
    if not mounted and not rest:
        raise GobblerError(f"cannot reach Gobbler for {project}/{asset}: registry "
                           f"{registry or '(none)'} is not mounted here and no --url / "
                           f"{settings.GOBBLER_URL} was given")
    if version is None:
        version = latest_version(project, asset, mounted, rest)
    g = GobblerSource(project, asset, version, url, registry)
    path = _install(gobbler_sources(g), f"gobbler version {g.coordinates}", progress)
    table = {k: v for k, v in (("project", project), ("asset", asset), ("version", version),
                               ("url", url), ("registry", registry)) if v is not None}
    return {"git_tree_sha1": path.name, "path": path, "version": version, "gobbler": table}


def _install(sources: List[Source], what: str, progress: Optional[bool]) -> Path:
    """The store's install with the hash unknown; one source's failure is raised as itself.

    A missing project/asset/version is raised at once whichever source said
    so: the other way into the same registry cannot have it either.
    """
    try:
        return store.install(None, sources, what=what, progress=progress)
    except InstallError as e:
        missing = [err for _, err in e.failures if isinstance(err, GobblerNotFoundError)]
        if missing:
            raise missing[0] from None
        if len(e.failures) == 1:
            raise e.failures[0][1] from None
        raise


def latest_version(project: str, asset: str, registry: Optional[str], url: Optional[str]) -> str:
    """The latest version's name (read from ``..latest``); a missing project or asset is named."""
    from .gobbler import client

    if registry:
        latest = client.fetch_latest(project, asset, registry=registry)
        where, exists = registry, local_exists(registry)
    else:
        assert url is not None
        latest = client.fetch_latest(project, asset, url=url, force_remote=True)
        where, exists = url, remote_exists(url)
    if latest is None:
        raise which_missing(where, project, asset, None, exists) or GobblerNotFoundError(
            f"{where}: {project}/{asset} has no latest version (none uploaded, or all on "
            "probation); give one with @VERSION", status=404)
    return latest


__all__ = ["pin_tarball", "pin_gobbler", "latest_version"]
