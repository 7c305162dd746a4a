"""Pinning: install a source whose tree hash is not known yet, and learn the hash.

``artifacts add`` pins a tarball URL, a Gobbler or a gypsum version (the
latest when none is given) through the same sources and the same store as
``artifact()``: only the expected hash is missing, so the store accepts the
tree and names it by the hash it computed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import settings, store
from .errors import (GobblerError, GobblerNotFoundError, GypsumError, GypsumNotFoundError,
                     InstallError)
from .gobbler.protocol import GobblerSource, which_missing
from .gypsum import protocol as gypsum_protocol
from .gypsum.protocol import GypsumSource
from .sources.base import Source
from .sources.gobbler_registry import local_exists
from .sources.gobbler_rest import remote_exists
from .sources.gypsum import GypsumVersionSource, fetch_document, service_url
from .sources.gypsum import which_missing as which_missing_gypsum
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


def pin_gypsum(project: str, asset: str, version: Optional[str] = None, *,
               url: Optional[str] = None, probation: bool = False,
               progress: Optional[bool] = None) -> Dict[str, Any]:
    """Install a gypsum version (the latest non-probational one when ``version`` is None).

    Returns ``git_tree_sha1``, ``path``, ``version`` and ``gypsum`` (the table
    to bind: the given url, not this machine's ``ARTIFACTS_PY_GYPSUM_URL``).
    """
    for what, value in (("project", project), ("asset", asset), ("version", version)):
        if value is not None:
            gypsum_protocol.check_name(value, what)
    g = GypsumSource(project, asset, version or "latest", url, probation)
    if version is None:
        version = latest_gypsum_version(g)
        g = g._replace(version=version)
    path = _install([GypsumVersionSource(g)], f"gypsum version {g.coordinates}", progress)
    table: Dict[str, Any] = {"project": project, "asset": asset, "version": version}
    if url is not None:
        table["url"] = url
    if probation:
        table["probation"] = True
    return {"git_tree_sha1": path.name, "path": path, "version": version, "gypsum": table}


def latest_gypsum_version(g: GypsumSource) -> str:
    """The asset's latest non-probational version (``..latest``); a missing name is named."""
    url = service_url(g)
    key = f"{g.project}/{g.asset}/..latest"
    latest = fetch_document(url, key, f"{url} {g.project}/{g.asset}", missing_ok=True)
    if latest is None:
        raise which_missing_gypsum(url, f"{g.project}/{g.asset}/..latest") or \
            GypsumNotFoundError(f"{url}: {g.project}/{g.asset} has no latest version (none "
                                "uploaded, or all on probation); give one with @VERSION",
                                status=404, url=url)
    if not isinstance(latest, dict) or not isinstance(latest.get("version"), str):
        raise GypsumError(f"{url}: {key} is malformed; ask the gypsum administrator to "
                          "refresh it", url=url)
    return str(latest["version"])


def _install(sources: List[Source], what: str, progress: Optional[bool]) -> Path:
    """The store's install with the hash unknown; one source's failure is raised as itself.

    A missing project/asset/version is raised at once whichever source said
    so: the other way into the same registry cannot have it either.
    """
    try:
        return store.install(None, sources, what=what, progress=progress)
    except InstallError as e:
        missing = [err for _, err in e.failures
                   if isinstance(err, (GobblerNotFoundError, GypsumNotFoundError))]
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


__all__ = ["pin_tarball", "pin_gobbler", "pin_gypsum", "latest_version",
           "latest_gypsum_version"]
