"""Reading TOML: stdlib ``tomllib`` (3.11+) with tomlkit as the fallback parser."""

from __future__ import annotations

import os
from typing import Any, Dict

from .errors import ArtifactsTomlError

try:
    import tomllib as _tomllib
except ImportError:  # Python < 3.11: tomlkit is a dependency anyway
    _tomllib = None


def parse_toml(data: bytes, path: "str | os.PathLike[str]") -> Dict[str, Any]:
    """Parse TOML bytes; a syntax error becomes :class:`ArtifactsTomlError` naming the file."""
    try:
        text = data.decode("utf-8-sig")  # a BOM (Windows editors) is not TOML's business
    except UnicodeDecodeError as e:
        raise ArtifactsTomlError(f"not UTF-8 text ({e}); save the file as UTF-8", path=str(path)) from None
    try:
        if _tomllib is not None:
            return _tomllib.loads(text)
        import tomlkit

        return tomlkit.parse(text).unwrap()
    except Exception as e:  # noqa: BLE001 - both parsers raise their own error types
        raise ArtifactsTomlError(f"invalid TOML: {e}; fix the syntax (see https://toml.io)",
                                 path=str(path)) from None
