"""The one exception every endpoint raises: an HTTP status plus the spec's reason."""

from __future__ import annotations


class GypsumError(Exception):
    """A refusal answered as ``{"status":"error","reason":...}`` with ``status``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class StoreError(Exception):
    """The object store failed (unreachable, refused, out of space); answered as 500."""
