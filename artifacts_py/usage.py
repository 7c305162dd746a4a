"""Usage records: which Artifacts.toml files use a depot, for ``gc``.

``<depot>/logs/usage/<key>`` holds the absolute path of one Artifacts.toml;
the key is the quoted path (its sha1 when too long), so concurrent writers
never conflict. Written once per process and file; a read-only depot simply
gets no record.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Set, Tuple

from .depot import get_cache_dir

_recorded: Set[Tuple[str, Path]] = set()


def usage_dir(depot: Optional[Path] = None) -> Path:
    """``<depot>/logs/usage``: one small file per Artifacts.toml that used the depot."""
    return (depot or get_cache_dir()) / "logs" / "usage"


def _record_name(toml_path: str) -> str:
    """A readable, reversible file name for a usage record (sha1 if too long)."""
    from urllib.parse import quote  # already loaded by pathlib

    name = quote(toml_path, safe="")
    if len(name) > 200:
        import hashlib

        name = hashlib.sha1(os.fsencode(toml_path)).hexdigest()
    return name


def record_usage(toml_path: "str | os.PathLike[str]", depot: Optional[Path] = None) -> None:
    """Note that ``toml_path`` uses ``depot`` (default: the first), for ``gc``."""
    depot = depot or get_cache_dir()
    path = os.path.abspath(toml_path)
    if (path, depot) in _recorded:
        return
    _recorded.add((path, depot))
    record = usage_dir(depot) / _record_name(path)
    try:
        if record.exists():
            os.utime(record)
            return
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_name(f"{record.name}.{os.getpid()}.tmp")
        tmp.write_text(path + "\n", encoding="utf-8")
        os.replace(tmp, record)
    except OSError:
        pass


def recorded_tomls(depot: Optional[Path] = None) -> List[Tuple[Path, Path, float]]:
    """(record file, Artifacts.toml path, last-use time) for every usage record."""
    out: List[Tuple[Path, Path, float]] = []
    d = usage_dir(depot)
    if not d.is_dir():
        return out
    for rec in d.iterdir():
        if rec.name.endswith(".tmp"):
            continue
        try:
            toml = Path(rec.read_text(encoding="utf-8").strip())
            out.append((rec, toml, rec.stat().st_mtime))
        except OSError:
            continue
    return out
