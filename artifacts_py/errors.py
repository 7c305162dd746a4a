"""One error hierarchy for artifacts-py.

Every error is an :class:`ArtifactError` and also the standard exception a
caller would already catch: ``KeyError`` for an unknown name, ``ValueError``
for malformed input or a hash mismatch, ``OSError`` for I/O and network
trouble. Messages name the file, the artifact and what to do.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple


class ArtifactError(Exception):
    """Base class of every error raised by artifacts-py."""


class ArtifactsTomlError(ArtifactError, ValueError):
    """An Artifacts.toml (or Overrides.toml) is malformed.

    ``path``, ``name`` and ``key`` say where, when known.
    """

    def __init__(self, message: str, path: Optional[str] = None,
                 name: Optional[str] = None, key: Optional[str] = None) -> None:
        self.path, self.name, self.key = path, name, key
        where = []
        if path:
            where.append(str(path))
        if name:
            where.append(f"artifact {name!r}")
        if key:
            where.append(f"key {key!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ArtifactNotFoundError(ArtifactError, KeyError):
    """No entry of that name (or none for this platform) in the Artifacts.toml."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class TomlNotFoundError(ArtifactError, FileNotFoundError):
    """No Artifacts.toml could be found."""


class HashMismatchError(ArtifactError, ValueError):
    """Content did not hash to what was promised (tree, sha256, md5 or size)."""

    def __init__(self, message: str, expected: str = "", actual: str = "") -> None:
        self.expected, self.actual = expected, actual
        super().__init__(message)


class UnsafeArchiveError(ArtifactError, ValueError):
    """A tarball tried something hostile (absolute path, ``..``, device, ...)."""


class DownloadError(ArtifactError, OSError):
    """A transfer failed (network, HTTP status, truncated body)."""

    def __init__(self, message: str, url: Optional[str] = None) -> None:
        self.url = url
        super().__init__(message)


class OfflineError(DownloadError, ConnectionError):
    """The network was needed but ``ARTIFACTS_PY_OFFLINE`` forbids it."""


class NotInstalledError(ArtifactError, FileNotFoundError):
    """The artifact is not installed and may not be installed now."""


class InstallError(ArtifactError, OSError):
    """Every source of an artifact failed; ``failures`` lists (source, error)."""

    def __init__(self, message: str,
                 failures: Sequence[Tuple[str, BaseException]] = ()) -> None:
        self.failures = list(failures)
        lines = [message]
        for source, err in self.failures:
            lines.append(f"  - {source}: {err}")
        super().__init__("\n".join(lines))


class GobblerError(ArtifactError, OSError):
    """The Gobbler service (or registry) refused or failed a request.

    ``status`` is the HTTP status (``None`` for local failures) and
    ``reason`` the service's own explanation.
    """

    def __init__(self, message: str, status: Optional[int] = None,
                 reason: Optional[str] = None, url: Optional[str] = None) -> None:
        self.status, self.reason, self.url = status, reason, url
        super().__init__(message)


class GobblerNotFoundError(GobblerError, LookupError):
    """A project, asset, version or file is not in the registry."""


__all__ = [
    "ArtifactError", "ArtifactsTomlError", "ArtifactNotFoundError",
    "TomlNotFoundError", "HashMismatchError", "UnsafeArchiveError",
    "DownloadError", "OfflineError", "NotInstalledError", "InstallError",
    "GobblerError", "GobblerNotFoundError",
]


class PlatformError(ArtifactError, ValueError):
    """A platform triplet or tag is invalid (Julia's ``ArgumentError`` there).

    ``tag`` names the offending tag and ``char`` the forbidden character, when known.
    """

    def __init__(self, message: str, tag: Optional[str] = None,
                 char: Optional[str] = None) -> None:
        self.tag, self.char = tag, char
        super().__init__(message)


__all__ += ["PlatformError"]


class UnsupportedArchiveError(ArtifactError, ValueError):
    """An archive format, compression or file type that artifacts-py cannot handle
    (e.g. zstd without the optional ``zstandard`` package, lz4, a FIFO to archive)."""


__all__ += ["UnsupportedArchiveError"]
