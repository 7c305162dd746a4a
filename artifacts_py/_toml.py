"""Reading TOML with the standard library's ``tomllib`` (fast, and always there on 3.11+)."""

from __future__ import annotations

import os
from typing import Any, Dict

from .errors import ArtifactsTomlError

import tomllib


def parse_toml(data: bytes, path: "str | os.PathLike[str]") -> Dict[str, Any]:
    """Parse TOML bytes; a syntax error becomes :class:`ArtifactsTomlError` naming the file."""
    try:
        text = data.decode("utf-8-sig")  # a BOM (Windows editors) is not TOML's business
    except UnicodeDecodeError as e:
        raise ArtifactsTomlError(f"not UTF-8 text ({e}); save the file as UTF-8", path=str(path)) from None
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        raise ArtifactsTomlError(f"invalid TOML: {e}; fix the syntax (see https://toml.io)",
                                 path=str(path)) from None
