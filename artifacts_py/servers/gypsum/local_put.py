"""``PUT /upload/put/<token>``: the local store's stand-in for a presigned S3 PUT (§10.14).

Checks what S3 would: the signature (the token's HMAC), expiry, the signed
``Content-MD5`` header, a ``Content-Length``; then that the upload session
is still open (a small improvement on S3, whose URLs outlive the session);
then hashes the body while writing it to a temporary file and refuses it
with ``BadDigest`` if it does not match. Answers carry S3's XML error shape.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Optional
from xml.sax.saxutils import escape

from artifacts_py.servers.gypsum import upload_tokens
from artifacts_py.servers.gypsum.documents import read_json
from artifacts_py.servers.gypsum.locking import lock_key
from artifacts_py.servers.gypsum.store_local import BadDigest, KeyRefused, LocalStore

_CHUNK = 1 << 20


@dataclass
class PutRefused(Exception):
    """An S3-style refusal: HTTP status, S3 error code, message."""

    status: int
    code: str
    message: str

    def xml(self) -> bytes:
        """The S3 XML error document."""
        return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
                f"{escape(self.code)}</Code><Message>{escape(self.message)}</Message></Error>"
                ).encode("utf-8")


def _body(stream: BinaryIO, length: int) -> Iterator[bytes]:
    remaining = length
    while remaining > 0:
        chunk = stream.read(min(remaining, _CHUNK))
        if not chunk:
            raise PutRefused(400, "IncompleteBody",
                             "You did not provide the number of bytes specified by the "
                             "Content-Length HTTP header")
        remaining -= len(chunk)
        yield chunk


def accept(store: LocalStore, token: str, content_md5: Optional[str],
           content_length: Optional[str], stream: BinaryIO) -> str:
    """Store the body for ``token``; returns the quoted ETag or raises PutRefused."""
    try:
        grant = upload_tokens.verify(store.secret, token, time.time())
    except upload_tokens.TokenError as exc:
        raise PutRefused(403, exc.code, str(exc)) from None
    if not content_md5:
        raise PutRefused(403, "SignatureDoesNotMatch",
                         "the signed Content-MD5 header is missing")
    try:
        sent = base64.b64decode(content_md5, validate=True).hex()
    except (ValueError, binascii.Error):
        raise PutRefused(400, "InvalidDigest",
                         "The Content-MD5 you specified is not valid.") from None
    if sent != grant.md5_hex:
        raise PutRefused(403, "SignatureDoesNotMatch",
                         "the Content-MD5 header differs from the signed one")
    if content_length is None or not content_length.isdigit():
        raise PutRefused(411, "MissingContentLength",
                         "You must provide the Content-Length HTTP header.")
    project = grant.key.partition("/")[0]
    lock = read_json(store, lock_key(project))
    if not isinstance(lock, dict) or lock.get("session_hash") != grant.session_hash:
        raise PutRefused(403, "AccessDenied", "the upload session of this URL has ended")
    try:
        store.write_verified(grant.key, _body(stream, int(content_length)), grant.md5_hex)
    except BadDigest:
        raise PutRefused(400, "BadDigest",
                         "The Content-MD5 you specified did not match what we received.") \
            from None
    except KeyRefused:
        raise PutRefused(400, "InvalidKey", "the key cannot be stored") from None
    return f'"{grant.md5_hex}"'
