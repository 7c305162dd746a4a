"""One error hierarchy for artifacts-py: every exception the package raises.

Every error is an :class:`ArtifactError` and also the standard exception a
caller would already catch: ``KeyError`` for an unknown name, ``ValueError``
for malformed input or a hash mismatch, ``OSError`` for I/O and network
trouble. Messages name the file, the artifact and what to do. Every class
here is exported from :mod:`artifacts_py`.
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


class BindingExistsError(ArtifactError, ValueError):
    """The name is already bound in the Artifacts.toml and ``force`` was not given."""


class SettingError(ArtifactError, ValueError):
    """An ``ARTIFACTS_PY_*`` environment variable has an unusable value."""


class InvalidArgumentError(ArtifactError, ValueError):
    """An argument to an API call or command is malformed (a name, a size, a hash)."""


class HashMismatchError(ArtifactError, ValueError):
    """Content did not hash to what was promised.

    ``kind`` is what was compared (``"git-tree-sha1"``, ``"sha256"``,
    ``"md5"``, ``"size"`` or ``"manifest"``); ``expected`` is the value that
    was promised (by the Artifacts.toml, a manifest or a mirror entry) and
    ``actual`` what the content gave. Build them with :func:`hash_mismatch`.
    """

    def __init__(self, message: str, expected: str = "", actual: str = "",
                 kind: str = "") -> None:
        self.expected, self.actual, self.kind = expected, actual, kind
        super().__init__(message)


def hash_mismatch(kind: str, expected: object, actual: object, *, what: str,
                  source: str = "", advice: str = "") -> HashMismatchError:
    """The one way to build a :class:`HashMismatchError`.

    ``what`` names the file or artifact (never an internal temp path),
    ``source`` where the bytes came from, ``advice`` what to do.
    """
    origin = f" from {source}" if source else ""
    message = (f"{what}{origin}: {kind} mismatch: expected {expected}, got {actual}"
               + (f"; {advice}" if advice else ""))
    return HashMismatchError(message, expected=str(expected), actual=str(actual), kind=kind)


class UnsafeArchiveError(ArtifactError, ValueError):
    """A tarball tried something hostile (absolute path, ``..``, device, ...)."""


class UnsupportedArchiveError(ArtifactError, ValueError):
    """An archive format, compression or file type that artifacts-py cannot handle
    (e.g. zstd without the optional ``zstandard`` package, lz4, a FIFO to archive)."""


class PlatformError(ArtifactError, ValueError):
    """A platform triplet or tag is invalid (Julia's ``ArgumentError`` there).

    ``tag`` names the offending tag and ``char`` the forbidden character, when known.
    """

    def __init__(self, message: str, tag: Optional[str] = None,
                 char: Optional[str] = None) -> None:
        self.tag, self.char = tag, char
        super().__init__(message)


class DownloadError(ArtifactError, OSError):
    """A transfer failed (network, HTTP status, truncated body)."""

    def __init__(self, message: str, url: Optional[str] = None,
                 status: Optional[int] = None) -> None:
        self.url, self.status = url, status
        super().__init__(message)


class OfflineError(DownloadError, ConnectionError):
    """The network was needed but ``ARTIFACTS_PY_OFFLINE`` forbids it."""


class NotInstalledError(ArtifactError, FileNotFoundError):
    """The artifact is not installed and may not be installed now."""


class SourceUnavailableError(ArtifactError, OSError):
    """A source cannot be used on this machine (a registry not mounted, no URL)."""


class InstallError(ArtifactError, OSError):
    """Every source of an artifact failed; ``failures`` lists (source, error)."""

    def __init__(self, message: str,
                 failures: Sequence[Tuple[str, BaseException]] = ()) -> None:
        self.failures = list(failures)
        lines = [message]
        for source, err in self.failures:
            text = str(err)
            if text.startswith(f"{source}: "):  # the error already names its source
                text = text[len(source) + 2:]
            lines.append(f"  - {source}: {text}")
        super().__init__("\n".join(lines))


class DepotError(InstallError):
    """The depot cannot be written or is full: no source could help."""


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


class GypsumError(ArtifactError, OSError):
    """The gypsum service refused or failed a request (``status``, ``reason``)."""

    def __init__(self, message: str, status: Optional[int] = None,
                 reason: Optional[str] = None, url: Optional[str] = None) -> None:
        self.status, self.reason, self.url = status, reason, url
        super().__init__(message)


class GypsumNotFoundError(GypsumError, LookupError):
    """A gypsum project, asset, version or file does not exist."""


__all__ = [
    "ArtifactError", "ArtifactsTomlError", "ArtifactNotFoundError", "TomlNotFoundError",
    "BindingExistsError", "SettingError", "InvalidArgumentError", "HashMismatchError",
    "hash_mismatch", "UnsafeArchiveError", "UnsupportedArchiveError", "PlatformError",
    "DownloadError", "OfflineError", "NotInstalledError", "SourceUnavailableError",
    "InstallError", "DepotError", "GobblerError", "GobblerNotFoundError", "GypsumError",
    "GypsumNotFoundError",
]
