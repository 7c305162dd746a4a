"""Every ``ARTIFACTS_PY_*`` environment variable, read in one place.

Each function reads the environment when called (tests and long-running
processes change it), and costs one dict look-up: the warm path uses them.
Nothing here imports anything beyond ``os``.
"""

from __future__ import annotations

import os
from typing import Optional

from .errors import SettingError

DEPOT_PATH = "ARTIFACTS_PY_DEPOT_PATH"
OFFLINE = "ARTIFACTS_PY_OFFLINE"
TOML = "ARTIFACTS_PY_TOML"
PLATFORM = "ARTIFACTS_PY_PLATFORM"
GOBBLER_URL = "ARTIFACTS_PY_GOBBLER_URL"
GOBBLER_REGISTRY = "ARTIFACTS_PY_GOBBLER_REGISTRY"
GYPSUM_URL = "ARTIFACTS_PY_GYPSUM_URL"
MAX_CONNECTIONS = "ARTIFACTS_PY_MAX_CONNECTIONS"
RETRIES = "ARTIFACTS_PY_RETRIES"
TIMEOUT = "ARTIFACTS_PY_TIMEOUT"
DEBUG = "ARTIFACTS_PY_DEBUG"

_TRUTHY = ("1", "true", "yes", "on")

# Defaults of the transfer settings, documented in the README.
DEFAULT_MAX_CONNECTIONS = 64  # per host; the engine usually needs far fewer
DEFAULT_RETRIES = 5
DEFAULT_TIMEOUT = 60.0  # seconds without a byte before a read gives up


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name)
    return value if value else None


def depot_path() -> Optional[str]:
    """``ARTIFACTS_PY_DEPOT_PATH`` as given (``os.pathsep``-separated), or None."""
    return _env(DEPOT_PATH)


def offline() -> bool:
    """True when ``ARTIFACTS_PY_OFFLINE`` is 1/true/yes/on."""
    return os.environ.get(OFFLINE, "").strip().lower() in _TRUTHY


def set_offline(value: bool) -> None:
    """Turn offline mode on or off for this process (the CLI's ``--offline``)."""
    if value:
        os.environ[OFFLINE] = "1"
    else:
        os.environ.pop(OFFLINE, None)


def toml_path() -> Optional[str]:
    """``ARTIFACTS_PY_TOML``: the Artifacts.toml to use when none is given."""
    return _env(TOML)


def platform() -> Optional[str]:
    """``ARTIFACTS_PY_PLATFORM``: resolve for this triplet instead of the host's."""
    value = os.environ.get(PLATFORM, "").strip()
    return value or None


def gobbler_url() -> Optional[str]:
    """``ARTIFACTS_PY_GOBBLER_URL``: replaces every entry's Gobbler ``url`` here."""
    return _env(GOBBLER_URL)


def gobbler_registry() -> Optional[str]:
    """``ARTIFACTS_PY_GOBBLER_REGISTRY``: replaces every entry's Gobbler ``registry`` here."""
    return _env(GOBBLER_REGISTRY)


def gypsum_url() -> Optional[str]:
    """``ARTIFACTS_PY_GYPSUM_URL``: replaces every entry's gypsum ``url`` here."""
    return _env(GYPSUM_URL)


def _number(name: str, default: float, minimum: float) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = float(raw)
        if value != value or value in (float("inf"), float("-inf")):  # nan, inf
            raise ValueError(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not a number; unset it or give e.g. "
                           f"{name}={default:g}") from None
    if value < minimum:
        raise SettingError(f"{name}={raw!r} must be at least {minimum:g}")
    return value


def max_connections() -> int:
    """``ARTIFACTS_PY_MAX_CONNECTIONS``: the most connections opened to one host.

    Never more than a quarter of the open-file limit (``ulimit -n``; 256 by
    default on macOS): each connection's worker also holds a file open, and
    the rest belong to the program.
    """
    return min(int(_number(MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS, 1)), _open_file_budget())


def _open_file_budget() -> int:
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):  # no rlimits here (Windows)
        return 1 << 20
    if soft < 0 or soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(1, soft // 4)


def retries() -> int:
    """``ARTIFACTS_PY_RETRIES``: how often a failed request is retried."""
    return int(_number(RETRIES, DEFAULT_RETRIES, 0))


def timeout() -> float:
    """``ARTIFACTS_PY_TIMEOUT``: seconds to wait for a connection or the next bytes."""
    return _number(TIMEOUT, DEFAULT_TIMEOUT, 0.1)


def debug() -> bool:
    """``ARTIFACTS_PY_DEBUG``: the CLI shows tracebacks."""
    return os.environ.get(DEBUG, "").strip().lower() in _TRUTHY

