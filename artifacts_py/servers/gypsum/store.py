"""What the service needs from an object store, whatever the back end.

Two implementations: :mod:`.store_local` (a directory, pure Python) and
:mod:`.store_s3` (any S3-compatible store). Keys are the bucket keys of the
protocol (§2.1); values are bytes; JSON helpers live in :mod:`.documents`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import BinaryIO, Iterable, List, Optional, Tuple

JSON_TYPE = "application/json"


@dataclass(frozen=True)
class ObjectInfo:
    """Metadata of one stored object."""

    key: str
    size: int
    etag: str  # quoted, as in an HTTP ETag header
    last_modified: float  # seconds since the epoch
    content_type: Optional[str] = None


@dataclass(frozen=True)
class Listing:
    """One listing: common prefixes (ending in ``/``) and objects directly found."""

    prefixes: List[str]
    objects: List[ObjectInfo]


@dataclass(frozen=True)
class PresignContext:
    """What a store may bind an upload URL to besides key and MD5.

    ``base_url`` is the service's own URL as the client reached it (the local
    store sends uploads there); ``session_hash`` is the lock's hash (the local
    store refuses uploads once that session has ended).
    """

    base_url: str
    session_hash: str
    expires: int  # lifetime in seconds


class Store(abc.ABC):
    """Object store operations used by the service (thread-safe)."""

    name = "store"

    @abc.abstractmethod
    def head(self, key: str) -> Optional[ObjectInfo]:
        """Metadata of ``key``, or None when absent."""

    @abc.abstractmethod
    def open(self, key: str) -> Optional[Tuple[ObjectInfo, BinaryIO]]:
        """The object's metadata and a readable stream (close it), or None."""

    @abc.abstractmethod
    def read(self, key: str) -> Optional[bytes]:
        """The whole object, or None when absent."""

    @abc.abstractmethod
    def write(self, key: str, data: bytes, content_type: Optional[str] = JSON_TYPE) -> None:
        """Create or replace ``key`` atomically."""

    @abc.abstractmethod
    def create(self, key: str, data: bytes, content_type: Optional[str] = None) -> bool:
        """Create ``key`` only if absent (atomically); False when it already exists."""

    @abc.abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Delete the given keys; absent keys are not an error."""

    @abc.abstractmethod
    def list(self, prefix: str, recursive: bool) -> Listing:
        """Objects whose key starts with ``prefix``; grouped at ``/`` unless recursive."""

    @abc.abstractmethod
    def presign_put(self, key: str, md5_base64: str, ctx: PresignContext) -> str:
        """An absolute URL that accepts one ``PUT`` of ``key`` with that ``Content-MD5``."""

    def md5_hex(self, info: ObjectInfo) -> Optional[str]:
        """The object's hex MD5 when the store knows it cheaply (its plain ETag), else None."""
        etag = info.etag.strip('"')
        return etag if len(etag) == 32 and "-" not in etag else None

    def public_credentials(self) -> Optional[dict[str, str]]:
        """Read-only S3 credentials for ``/credentials/s3-api``, if configured."""
        return None

    def close(self) -> None:
        """Release connections."""
