"""Signed upload URLs of the local store (protocol §10.14).

A local directory has no S3 endpoint to presign against, so the service mints
its own ``PUT`` URLs: ``/upload/put/<token>`` where the token is the
base64url JSON of what it allows (key, MD5, upload session, expiry) followed
by an HMAC-SHA256 of that text under a per-process secret. Nothing is kept
server-side; the token alone authorises exactly one key with one content.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class UploadGrant:
    """What a valid token allows."""

    key: str
    md5_hex: str
    session_hash: str
    expires: float


class TokenError(Exception):
    """The token is malformed, altered (``signature``) or expired (``expired``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: bytes, grant: UploadGrant) -> str:
    """The URL-safe token for ``grant``."""
    body = json.dumps([grant.key, grant.md5_hex, grant.session_hash, int(grant.expires)],
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    payload = _b64(body)
    mac = hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest()
    return payload + "." + _b64(mac)


def verify(secret: bytes, token: str, now: float) -> UploadGrant:
    """The grant of ``token``; TokenError if it was not signed by us or has expired."""
    payload, dot, mac_text = token.partition(".")
    try:
        mac = _unb64(mac_text)
        good = hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest()
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise TokenError("SignatureDoesNotMatch", "malformed upload URL") from None
    if not dot or not hmac.compare_digest(mac, good):
        raise TokenError("SignatureDoesNotMatch",
                         "the upload URL's signature does not match its content")
    fields: Any = json.loads(_unb64(payload))
    grant = UploadGrant(str(fields[0]), str(fields[1]), str(fields[2]), float(fields[3]))
    if now > grant.expires:
        raise TokenError("AccessDenied", "Request has expired")
    return grant
