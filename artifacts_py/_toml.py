"""Reading TOML with the standard library's ``tomllib`` (fast, and always there on 3.11+)."""

from __future__ import annotations

import marshal
import os
import time
from typing import Any, Dict, Iterator, Mapping, Tuple

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


# A parsed Artifacts.toml is cached (marshal) in the first depot, so that a warm hit in
# a fresh process never imports tomllib: importing it costs more than the rest of the hit
# (~19 ms in a clean venv here, with re and typing), and parsing 1,000 entries ~25 ms.
Signature = Tuple[int, int, int]  # (mtime_ns, size, inode)
# A file changed this recently is not cached: on a filesystem with coarse timestamps
# (FAT: 2 s) an edit in the same tick that keeps the size would go unseen (git's "racy"
# entries). Later edits then always change the mtime.
RACY_SECONDS = 3
CACHE_FORMAT = 2  # (format, signature, {table name: marshalled table})


def load_toml_file(path: str, signature: Signature) -> Mapping[str, Any]:
    """Parse the TOML file at ``path`` (whose stat gave ``signature``), through the cache.

    The cache entry is keyed by the file's absolute path and holds its
    signature: any change of mtime, size or inode re-parses. Each top-level
    table is marshalled on its own and read back only when asked for (a hit
    in a 1,000-entry file reads one). Values marshal cannot hold (TOML dates)
    simply skip the cache.
    """
    cache = _cache_file(path)
    try:
        with open(cache, "rb") as f:
            form, cached_signature, tables = marshal.loads(f.read())
        if form == CACHE_FORMAT and tuple(cached_signature) == signature and \
                isinstance(tables, dict) and all(type(v) is bytes for v in tables.values()):
            return Tables(tables)
    except (OSError, ValueError, EOFError, TypeError):
        pass
    data = parse_toml(_read(path), path)
    if settled(signature):
        _store(cache, signature, data)
    return data


class Tables(Mapping[str, Any]):
    """A cached file's top-level tables, each unmarshalled when first looked up."""

    def __init__(self, marshalled: Dict[str, bytes]) -> None:
        self._marshalled = marshalled
        self._loaded: Dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        try:
            return self._loaded[name]
        except KeyError:
            value = self._loaded[name] = marshal.loads(self._marshalled[name])
            return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._marshalled)

    def __len__(self) -> int:
        return len(self._marshalled)


def settled(signature: Signature) -> bool:
    """Whether a parse of a file with this signature may be kept (see RACY_SECONDS)."""
    return signature[0] < time.time_ns() - RACY_SECONDS * 10**9


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
        blob = marshal.dumps((CACHE_FORMAT, signature,
                              {k: marshal.dumps(v) for k, v in data.items()}))
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = f"{cache}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, cache)
    except (OSError, ValueError):
        pass
