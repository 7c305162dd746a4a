"""Keeping pins current: which registry pins are behind their asset's latest, and re-pinning.

:func:`outdated` reads only each asset's ``..latest`` (one small request per
Gobbler or gypsum entry, all in parallel; a mounted Gobbler registry is read
in place). :func:`update` installs the latest version of each outdated
entry (so its tree hash is known and verified) and rewrites all the entries
in one atomic edit of the Artifacts.toml, keeping comments and formatting.
Tarball entries have no "latest": they are listed as not updatable.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

from .errors import ArtifactError, ArtifactNotFoundError, InvalidArgumentError
from .tomlmodel import ArtifactEntry, load_file

PathLike = Union[str, "os.PathLike[str]"]
# Latest lookups in flight at once (each is one small GET or one file read).
LOOKUPS = 16


class Pin(NamedTuple):
    """One entry's pin: backend ``gobbler``, ``gypsum`` or ``tarball``; ``latest`` when known."""

    name: str
    backend: str
    pinned: Optional[str]
    latest: Optional[str]
    error: Optional[str] = None

    @property
    def outdated(self) -> bool:
        return self.latest is not None and self.latest != self.pinned

    def as_dict(self) -> Dict[str, Optional[str]]:
        out: Dict[str, Optional[str]] = {"name": self.name, "backend": self.backend,
                                         "pinned": self.pinned, "latest": self.latest}
        if self.error:
            out["error"] = self.error
        return out


class Update(NamedTuple):
    """What :func:`update` did (or would do): old -> new version and tree hash."""

    name: str
    backend: str
    old_version: str
    new_version: str
    old_tree: str
    new_tree: Optional[str]  # None on a dry run
    dropped_mirrors: bool = False


def pins(toml_path: PathLike) -> List[Pin]:
    """Every entry of the file with its pinned and latest version (lookups in parallel)."""
    f = load_file(toml_path)
    entries: List[Tuple[str, Optional[ArtifactEntry], Optional[str]]] = []
    for name in f.names():
        try:
            entries.append((name, f.entry(name), None))
        except ArtifactError as e:
            entries.append((name, None, str(e)))
    with ThreadPoolExecutor(max_workers=LOOKUPS) as pool:
        return list(pool.map(lambda item: _pin(*item), entries))


def outdated(toml_path: PathLike) -> List[Pin]:
    """The Gobbler and gypsum entries whose pinned version is not their asset's latest."""
    return [p for p in pins(toml_path) if p.outdated]


def _pin(name: str, entry: Optional[ArtifactEntry], error: Optional[str]) -> Pin:
    if entry is None:
        return Pin(name, "?", None, None, error)
    try:
        if entry.gobbler is not None:
            return Pin(name, "gobbler", entry.gobbler.version, _latest_gobbler(entry))
        if entry.gypsum is not None:
            from .pin import latest_gypsum_version

            return Pin(name, "gypsum", entry.gypsum.version, latest_gypsum_version(entry.gypsum))
    except ArtifactError as e:
        backend = "gobbler" if entry.gobbler is not None else "gypsum"
        source = entry.gobbler or entry.gypsum
        pinned = source.version if source is not None else None
        return Pin(name, backend, pinned, None, str(e))
    return Pin(name, "tarball", None, None)


def _latest_gobbler(entry: ArtifactEntry) -> str:
    from . import settings
    from .pin import latest_version

    g = entry.gobbler
    assert g is not None
    registry = settings.gobbler_registry() or g.registry
    mounted = registry if registry and os.path.isdir(registry) else None
    url = settings.gobbler_url() or g.url
    if not mounted and not url:
        raise ArtifactError(f"[{entry.name}.gobbler] has neither a mounted registry nor a url "
                            "here; set ARTIFACTS_PY_GOBBLER_URL")
    return latest_version(g.project, g.asset, mounted, url)


def update(toml_path: PathLike, names: Sequence[str] = (), *, dry_run: bool = False,
           progress: Optional[bool] = None) -> List[Update]:
    """Re-pin outdated Gobbler/gypsum entries (all, or ``names``) to their latest version.

    Each new version is installed first (its tree hash computed and
    verified), then every entry is rewritten in one atomic write. A name
    that is not bound, a tarball entry or an entry whose latest cannot be
    read, when asked for by name, is an error; with no names those are
    skipped. ``dry_run`` installs and writes nothing.
    """
    from . import binding
    from .pin import pin_gobbler, pin_gypsum

    toml_path = Path(toml_path)
    every = {p.name: p for p in pins(toml_path)}
    for name in names:
        p = every.get(name)
        if p is None:
            raise ArtifactNotFoundError(f"{toml_path}: no artifact named {name!r}")
        if p.error:
            raise InvalidArgumentError(f"{toml_path}: cannot update {name!r}: {p.error}")
        if p.backend == "tarball":
            raise InvalidArgumentError(f"{toml_path}: {name!r} is pinned to tarball mirrors, "
                                       "which have no latest version; re-pin it with "
                                       "`artifacts add --force`")
    chosen = [every[n] for n in names] if names else list(every.values())
    todo = [p for p in chosen if p.outdated]
    f = load_file(toml_path)
    plan: List[Update] = []
    changes: Dict[str, Tuple[str, str, str]] = {}
    for p in todo:
        entry = f.entry(p.name)
        assert p.latest is not None and p.pinned is not None
        new_tree: Optional[str] = None
        if not dry_run:
            if entry.gobbler is not None:
                g = entry.gobbler
                info = pin_gobbler(g.project, g.asset, p.latest, url=g.url, registry=g.registry,
                                   progress=progress)
            else:
                s = entry.gypsum
                assert s is not None
                info = pin_gypsum(s.project, s.asset, p.latest, url=s.url,
                                  probation=s.probation, progress=progress)
            new_tree = str(info["git_tree_sha1"])
            changes[p.name] = (p.backend, p.latest, new_tree)
        plan.append(Update(p.name, p.backend, p.pinned, p.latest, entry.git_tree_sha1, new_tree,
                           bool(entry.downloads)))
    if changes:
        binding.repin_versions(toml_path, changes)
    return plan
