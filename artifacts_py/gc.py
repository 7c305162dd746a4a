"""Garbage collection of the first depot (Julia's usage-log idea).

Every Artifacts.toml that resolves or binds through a depot leaves a usage
record (:func:`artifacts_py.usage.record_usage`; Julia's ``artifact_usage.toml``
is honoured too). ``gc`` keeps every tree that a still-existing recorded file
binds (all platform variants), removes the rest, reaps temp dirs of crashed
installs (at once for dead processes of this host, after a grace period for
others), removes lock files nobody holds, and can then evict the oldest used
trees to fit a size cap. It holds the depot's lock exclusively (installs hold
it shared), so it never removes a tree an install is writing or has just
written. Only the first depot is ever touched: the others are shared,
read-only caches.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple, TypedDict

from . import depot, store
from .files import remove_tree
from .errors import ArtifactError, InvalidArgumentError
from .usage import recorded_tomls


# Caches in a depot, re-made on use: the Gobbler and gypsum clients' files
# (artifacts_py.gobbler/gypsum) and parsed Artifacts.toml files (cache/toml).
CLIENT_CACHES = ("gobbler", "gypsum", "cache")


class TreeInfo(TypedDict):
    """One installed tree in a gc report."""

    hash: str
    path: str
    size: int
    mtime: float


@dataclass
class GcReport:
    """What ``gc`` removed (or would remove, on a dry run) and what it kept."""

    removed: List[TreeInfo] = field(default_factory=list)
    kept: List[TreeInfo] = field(default_factory=list)
    temp_removed: List[str] = field(default_factory=list)
    locks_removed: List[str] = field(default_factory=list)
    client_cache_bytes: int = 0  # the registry clients' file caches (<depot>/gobbler, /gypsum)
    forgotten_tomls: List[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def freed_bytes(self) -> int:
        return sum(r["size"] for r in self.removed)

    def as_dict(self) -> Dict[str, Any]:
        return {"dry_run": self.dry_run, "removed": self.removed, "kept": self.kept,
                "temp_removed": self.temp_removed, "locks_removed": self.locks_removed,
                "forgotten_tomls": self.forgotten_tomls, "freed_bytes": self.freed_bytes,
                "client_cache_bytes": self.client_cache_bytes}


def _recorded() -> List[Tuple[Optional[Path], Path]]:
    """(our usage record or None, Artifacts.toml) for every file that used the first depot.

    Julia's own log (``logs/artifact_usage.toml``) counts too, so a Julia depot
    placed first in the stack keeps what Julia uses; that log is only read.
    """
    from ._toml import parse_toml

    out: List[Tuple[Optional[Path], Path]] = [(r, t) for r, t, _ in recorded_tomls()]
    julia_log = depot.get_cache_dir() / "logs" / "artifact_usage.toml"
    if julia_log.is_file():
        out += [(None, Path(p)) for p in parse_toml(julia_log.read_bytes(), julia_log)]
    return out


def used_hashes(report: Optional[GcReport] = None) -> Set[str]:
    """Tree hashes bound by every recorded, still-existing Artifacts.toml.

    Every ``git-tree-sha1`` counts, whatever the platform and even in an
    entry that is otherwise malformed: keeping too much is the safe side. A
    file that is not valid TOML at all aborts (``ArtifactsTomlError``).
    """
    from ._toml import parse_toml
    from .errors import ArtifactsTomlError

    used: Set[str] = set()
    for record, toml in _recorded():
        try:
            data = parse_toml(toml.read_bytes(), toml)
        except FileNotFoundError:
            if report is not None and record is not None:
                report.forgotten_tomls.append(str(toml))
                if not report.dry_run:
                    record.unlink(missing_ok=True)
            continue
        except (ArtifactError, OSError) as e:
            raise ArtifactsTomlError(f"gc needs every recorded Artifacts.toml and cannot read "
                                     f"this one ({e}); nothing was removed. Fix the file, or "
                                     "delete it if it is no longer used", path=str(toml)) from None
        for value in data.values():
            for binding in value if isinstance(value, list) else [value]:
                h = binding.get("git-tree-sha1") if isinstance(binding, dict) else None
                if isinstance(h, str) and depot.is_sha1_hex(h):
                    used.add(h.lower())
    return used


def collect_garbage(dry_run: bool = False, max_size: Optional[int] = None,
                    now: Optional[float] = None) -> GcReport:
    """Remove unused artifacts from the first depot; see the module docstring.

    An unreadable recorded Artifacts.toml aborts the collection (nothing is
    removed) rather than risk deleting what it binds.
    """
    with store.depot_lock(depot.get_cache_dir(), exclusive=True):
        return _collect(dry_run, max_size, now)


def _collect(dry_run: bool, max_size: Optional[int], now: Optional[float]) -> GcReport:
    from .overrides import load_overrides

    report = GcReport(dry_run=dry_run)
    used = used_hashes(report)
    adir = depot.artifacts_dir()
    overrides = load_overrides()
    used |= {Path(overrides[h]).name for h in used if h in overrides}  # redirected to a hash
    candidates = []
    for h in depot.installed_hashes():
        p = adir / h
        try:
            info = TreeInfo(hash=h, path=str(p), size=depot.tree_size(p),
                            mtime=os.stat(p).st_mtime)
        except FileNotFoundError:  # removed by someone else meanwhile
            continue
        if h in used:
            candidates.append(info)
            continue
        report.removed.append(info)
    if max_size is not None:
        total = sum(i["size"] for i in candidates)
        for info in sorted(candidates, key=lambda i: i["mtime"]):
            if total <= max_size:
                break
            total -= info["size"]
            report.removed.append(info)
        candidates = [i for i in candidates if i not in report.removed]
    report.kept = candidates
    for entry in store.stale_temp_entries(now=now if now is not None else time.time()):
        report.temp_removed.append(str(entry))
    # Nobody holds a per-hash lock now: installers hold the depot lock we hold exclusively.
    report.locks_removed = [str(p) for p in store.stale_lock_files()]
    # The registry clients' caches hold verified copies that are fetched again on use.
    caches = [d for d in (depot.get_cache_dir() / n for n in CLIENT_CACHES) if d.is_dir()]
    report.client_cache_bytes = sum(depot.tree_size(d) for d in caches)
    if not dry_run:
        for info in report.removed:
            store.retire(Path(info["path"]))
        for leftover in report.temp_removed:
            remove_tree(leftover)
        for lock in report.locks_removed:
            Path(lock).unlink(missing_ok=True)
        for cache in caches:
            remove_tree(cache)
    return report


def parse_size(text: str) -> int:
    """``"10G"``, ``"512MiB"``, ``"1.5T"``, ``"1000"`` -> bytes (powers of 1024)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*", text.upper())
    if not m:
        raise InvalidArgumentError(f"{text!r} is not a size; use e.g. 500M, 10G or a number "
                                   "of bytes")
    return int(float(m.group(1)) * (1 << (10 * " KMGT".index(m.group(2) or " "))))
