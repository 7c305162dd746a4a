"""Where the gypsum client talks to and where it caches, decided at call time.

Unlike gypsum_client, whose ``url=`` and ``cache_dir=`` defaults are frozen
when it is imported, every function here resolves them when called:
:func:`rest_url` (``ARTIFACTS_PY_GYPSUM_URL``, else gypsum's production URL,
unless set) and :func:`cache_directory` (``<first depot>/gypsum``, inside the
depot stack so ``artifacts gc`` sees it, unless set).
"""

from __future__ import annotations

import os
from typing import Optional, Union

from .. import settings
from .protocol import DEFAULT_URL

BUCKET_CACHE_NAME = "bucket"
_state = {"url": "", "cache": ""}


class Default:
    """The type of :data:`DEFAULT`: "the cache directory", as opposed to None (no cache)."""

    def __repr__(self) -> str:
        return "<default cache directory>"


DEFAULT = Default()
CacheDir = Union[str, "os.PathLike[str]", None, Default]


def rest_url(url: Optional[str] = None) -> str:
    """The gypsum REST API root: get it, or set it (and return the new value)."""
    if url is not None:
        _state["url"] = url.rstrip("/")
    return _state["url"] or (settings.gypsum_url() or DEFAULT_URL).rstrip("/")


def cache_directory(dir: Optional[str] = None) -> str:
    """The cache root: get it, or set it and return the previous one (as gypsum_client does)."""
    previous = _state["cache"]
    if not previous:
        from ..depot import get_cache_dir

        previous = os.path.join(get_cache_dir(), "gypsum")
    if dir is not None:
        _state["cache"] = os.fspath(dir)
    return previous


def base_url(url: Optional[str]) -> str:
    """``url`` without trailing slashes, or :func:`rest_url` when None."""
    return url.rstrip("/") if url else rest_url()


def cache_root(cache_dir: CacheDir) -> Optional[str]:
    """The cache directory a call uses: :data:`DEFAULT` -> :func:`cache_directory`; None stays None."""
    if isinstance(cache_dir, Default):
        return cache_directory()
    return None if cache_dir is None else os.fspath(cache_dir)
