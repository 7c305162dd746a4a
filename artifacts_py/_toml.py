"""Reading TOML with the standard library's ``tomllib`` (fast, and always there on 3.11+)."""

from __future__ import annotations

import marshal
import os
from typing import Any, Dict, Tuple

from .errors import ArtifactsTomlError



def parse_toml(data: bytes, path: "str | os.PathLike[str]") -> Dict[str, Any]:
    """Parse TOML bytes; a syntax error becomes :class:`ArtifactsTomlError` naming the file."""
    try:
        text = data.decode("utf-8-sig")  # a BOM (Windows editors) is not TOML's business
    except UnicodeDecodeError as e:
        raise ArtifactsTomlError(f"not UTF-8 text ({e}); save the file as UTF-8", path=str(path)) from None
    import tomllib  # not on the warm path: a cached parse needs no parser

    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        raise ArtifactsTomlError(f"invalid TOML: {e}; fix the syntax (see https://toml.io)",
                                 path=str(path)) from None


# A parsed Artifacts.toml of this size or more is cached (marshal) in the first depot:
# tomllib needs ~25 ms for 1,000 entries, marshal ~1 ms, and a fresh process pays it.
CACHE_MIN_BYTES = 32 << 10
Signature = Tuple[int, int, int]  # (mtime_ns, size, inode)


def load_toml_file(path: str, signature: Signature) -> Dict[str, Any]:
    """Parse the TOML file at ``path`` (whose stat gave ``signature``), through the cache.

    The cache entry is keyed by the file's absolute path and holds its
    signature: any change of mtime, size or inode re-parses. Values marshal
    cannot hold (TOML dates) simply skip the cache.
    """
    if signature[1] < CACHE_MIN_BYTES:
        return parse_toml(_read(path), path)
    cache = _cache_file(path)
    try:
        with open(cache, "rb") as f:
            cached_signature, data = marshal.loads(f.read())
        if tuple(cached_signature) == signature and isinstance(data, dict):
            return data
    except (OSError, ValueError, EOFError, TypeError):
        pass
    data = parse_toml(_read(path), path)
    _store(cache, signature, data)
    return data


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _cache_file(path: str) -> str:
    from urllib.parse import quote  # loaded with pathlib already; hashlib costs ~3 ms

    from .depot import get_cache_dir

    key = quote(os.path.abspath(path), safe="")
    if len(key) > 200:
        import hashlib

        key = hashlib.sha1(key.encode()).hexdigest()
    return os.path.join(get_cache_dir(), "cache", "toml", key + ".marshal")


def _store(cache: str, signature: Signature, data: Dict[str, Any]) -> None:
    """Write the cache entry atomically; any failure (a read-only depot, a date) is ignored."""
    try:
        blob = marshal.dumps((signature, data))
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = f"{cache}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, cache)
    except (OSError, ValueError):
        pass
