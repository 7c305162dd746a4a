"""Julia's ``Overrides.toml``: hash -> path or hash -> hash, per depot.

Read once per process and depot stack (as Julia does). Later depots are
applied first so that earlier ones win; ``""`` removes an override set by a
later depot. Package-UUID tables are validated but have no effect: Python
code has no package UUIDs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from ._toml import parse_toml
from .depot import is_sha1_hex
from .errors import ArtifactsTomlError

_cache: Dict[Tuple[Path, ...], Dict[str, Path]] = {}


def load_overrides(force: bool = False, stack: Optional[Sequence[Path]] = None) -> Dict[str, Path]:
    """Hash overrides from every depot's ``artifacts/Overrides.toml``; ``force`` re-reads."""
    from .depot import depot_stack, forget_lookups, plain_artifact_path

    depots = tuple(depot_stack() if stack is None else stack)
    cached = _cache.get(depots)
    if cached is not None and not force:
        return cached
    if force:
        forget_lookups()
    result: Dict[str, Path] = {}
    redirects: Dict[str, str] = {}
    source: Dict[str, Path] = {}  # which file set each redirect, for errors
    for depot in reversed(depots):
        path = depot / "artifacts" / "Overrides.toml"
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for key, value in parse_toml(data, path).items():
            if isinstance(value, dict):
                _check_uuid_table(path, key, value)
                continue
            if not is_sha1_hex(key):
                raise ArtifactsTomlError("override keys must be 40-hex git-tree-sha1 hashes "
                                         "or package UUID tables", path=str(path), key=key)
            key = key.lower()
            if value == "":
                result.pop(key, None)
                redirects.pop(key, None)
            elif isinstance(value, str) and is_sha1_hex(value):
                redirects[key] = value.lower()
                source[key] = path
                result.pop(key, None)
            elif isinstance(value, str) and os.path.isabs(value):
                result[key] = Path(value)
                redirects.pop(key, None)
            else:
                raise ArtifactsTomlError("an override must be an absolute path, a 40-hex hash "
                                         "or \"\"", path=str(path), key=key)
    paths = dict(result)
    for key in redirects:
        target = _follow(key, redirects, source[key])
        result[key] = paths.get(target) or plain_artifact_path(target, depots)
    _cache[depots] = result
    return result


def _follow(key: str, redirects: Dict[str, str], path: Path) -> str:
    """The hash a chain of hash-to-hash overrides ends at (a loop is an error)."""
    chain = [key]
    target = redirects[key]
    while target in redirects:
        if target in chain:
            raise ArtifactsTomlError("hash overrides form a loop: " + " -> ".join(chain + [target])
                                     + "; point one of them at a path", path=str(path), key=key)
        chain.append(target)
        target = redirects[target]
    return target


def _check_uuid_table(path: Path, key: str, table: Mapping[str, Any]) -> None:
    import uuid

    try:
        uuid.UUID(key)
    except ValueError:
        raise ArtifactsTomlError("a table in Overrides.toml must be keyed by a package UUID",
                                 path=str(path), key=key) from None
    for name, value in table.items():
        valid = isinstance(value, str) and (value == "" or is_sha1_hex(value)
                                            or os.path.isabs(value))
        if not valid:
            raise ArtifactsTomlError("an override must be an absolute path, a 40-hex hash or \"\"",
                                     path=str(path), key=f"{key}.{name}")


def is_overridden(tree_hash: str, stack: Optional[Sequence[Path]] = None) -> bool:
    """True when Overrides.toml redirects this hash."""
    return tree_hash.lower() in load_overrides(stack=stack)
