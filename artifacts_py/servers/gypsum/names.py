"""Name and path rules (protocol §2.2), applied on every endpoint that takes a name.

The real worker checks names only at upload start; we check them everywhere
(the spec's SHOULD), and also refuse ``.`` as a name or path component,
control characters and keys longer than S3's 1024 bytes, so a request can
never address a key outside its project, asset or version.
"""

from __future__ import annotations

import re

from artifacts_py.servers.gypsum.errors import GypsumError

MAX_KEY_BYTES = 1024
# Four names of at most this many bytes, plus separators, fit in one S3 key.
MAX_NAME_BYTES = 250
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_name(kind: str, name: str) -> str:
    """Validate a project, asset or version name (400 with the worker's reasons)."""
    if name == "":
        raise GypsumError(400, f"{kind} name cannot be empty")
    if "/" in name or "\\" in name:
        raise GypsumError(400, f"{kind} name cannot contain '/' or '\\'")
    if name.startswith(".."):
        raise GypsumError(400, f"{kind} name cannot start with '..'")
    if name == ".":
        raise GypsumError(400, f"{kind} name cannot be '.'")
    if _CONTROL.search(name):
        raise GypsumError(400, f"{kind} name cannot contain control characters")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise GypsumError(400, f"{kind} name is longer than {MAX_NAME_BYTES} bytes")
    return name


def check_names(project: str, asset: str = "", version: str = "") -> None:
    """Validate whichever of the three names are given (non-empty)."""
    check_name("project", project)
    if asset:
        check_name("asset", asset)
    if version:
        check_name("version", version)


def check_path(path: str, prefix: str = "") -> str:
    """Validate a file path of an upload (§5.3 reasons, all answered 400).

    ``prefix`` is the version's key prefix: the whole key must fit in S3's limit.
    """
    if path == "":
        raise GypsumError(400, "'files.path' cannot be empty")
    parts = path.split("/")
    if any(part.startswith("..") for part in parts):
        raise GypsumError(400, "components of 'files.path' cannot start with '..'")
    if path.startswith("/") or path.endswith("/"):
        raise GypsumError(400, "'files.path' cannot start or end with '/'")
    if "" in parts:
        raise GypsumError(400, "'files.path' cannot contain repeated '/'")
    if "\\" in path:
        raise GypsumError(400, "'files.path' cannot contain '\\'")
    if "." in parts:
        raise GypsumError(400, "components of 'files.path' cannot be '.'")
    if _CONTROL.search(path):
        raise GypsumError(400, "'files.path' cannot contain control characters")
    if len((prefix + path).encode("utf-8")) > MAX_KEY_BYTES:
        raise GypsumError(400, f"'files.path' makes a key longer than {MAX_KEY_BYTES} bytes")
    return path


def is_internal(key: str) -> bool:
    """Bookkeeping keys: they start with ``..`` or contain ``/..`` (§2.1)."""
    return key.startswith("..") or "/.." in key
