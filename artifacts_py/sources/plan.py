"""The one ordering policy: which sources an entry has, in the order they are tried.

A mounted Gobbler registry (read in place, never over HTTP), the Gobbler
REST API, a gypsum service, then each ``[[download]]`` tarball mirror. Each kind is one module
of this package; adding a kind is one module and one line here. Pinning and
publishing use the same functions (:func:`gobbler_sources`) with a version
whose tree hash is not known yet.
"""

from __future__ import annotations

import os
from typing import List

from .. import settings
from ..gobbler.protocol import GobblerSource
from ..tomlmodel import ArtifactEntry
from .base import Source, Unavailable


def plan(entry: ArtifactEntry) -> List[Source]:
    """Every source of ``entry``, in the order they should be tried.

    Only the last mirror gets the full HTTP retry budget; earlier ones give
    up sooner, since trying the next mirror is the better retry. Each kind's
    module is imported only when an entry has that kind of source: a cold
    install from a mounted registry imports no HTTP or tar code.
    """
    out: List[Source] = []
    if entry.gobbler is not None:
        out += gobbler_sources(entry.gobbler, entry.name)
    if entry.gypsum is not None:
        from .gypsum import GypsumVersionSource

        out.append(GypsumVersionSource(entry.gypsum))
    if entry.downloads:
        from .tarball import MIRROR_RETRIES, TarballSource

        last = len(entry.downloads) - 1
        out += [TarballSource(d.url, d.sha256, retries=None if i == last else MIRROR_RETRIES)
                for i, d in enumerate(entry.downloads)]
    return out


def gobbler_sources(g: GobblerSource, name: str = "NAME") -> List[Source]:
    """The mounted-registry source (if mounted here) and the REST source (if a URL).

    ``ARTIFACTS_PY_GOBBLER_REGISTRY`` / ``ARTIFACTS_PY_GOBBLER_URL`` replace
    the table's ``registry`` / ``url`` on this machine.
    """
    registry = settings.gobbler_registry() or g.registry
    url = settings.gobbler_url() or g.url
    out: List[Source] = []
    if registry and os.path.isdir(registry):
        from .gobbler_registry import RegistrySource

        out.append(RegistrySource(registry, g))
    elif registry:
        out.append(Unavailable(f"gobbler registry {registry} ({g.coordinates})",
                               f"{registry} is not mounted on this machine; set "
                               f"{settings.GOBBLER_REGISTRY} to where it is mounted here"))
    if url:
        from .gobbler_rest import RestSource

        out.append(RestSource(url, g))
    elif not out:
        out.append(Unavailable(f"gobbler {g.coordinates}",
                               f"the [gobbler] table has neither url nor registry; set "
                               f"{settings.GOBBLER_URL}, or add url to [{name}.gobbler]"))
    return out
