"""The S3 store: any S3-compatible object store (AWS, R2, MinIO, Ceph, SeaweedFS).

The library is botocore (the core of boto3, without boto3 itself), chosen on
its merits for this job:

* it presigns a ``PutObject`` with ``Content-MD5`` as a *signed* header, which
  is what makes the store reject a body that does not match the manifest
  (minio-py and obstore presign only ``host``, so a client could upload any
  bytes; aiobotocore is botocore plus asyncio, which a threaded server
  does not need);
* it is the reference implementation of SigV4, conditional ``PutObject``
  (``If-None-Match: *``, our atomic project lock), paging and retries, kept
  current by AWS; hand-writing those is what the project rules forbid;
* it is pure Python on urllib3 (already a dependency), ~14 MB installed and
  ~0.35 s to create a client, paid once at service start; only this module
  imports it, and only ``artifacts-gypsum --s3-endpoint`` loads this module.

Reads (``HEAD``/``GET``, the hot path of ``GET /file``) skip the client's
per-call machinery (parameter validation, event hooks, response parsing,
several milliseconds of CPU per call): the request is signed with botocore's
own ``S3SigV4Auth`` and sent on a urllib3 pool, and the body is streamed.

Checksums are computed "when required" only: newer botocore otherwise bakes a
CRC32 of an empty body into presigned URLs (protocol §10.3) and sends CRC32
headers some S3-compatible stores refuse. Path-style addressing is the
default so that an IP or ``localhost`` endpoint works (§10.4). The service
keeps no state of its own, so several replicas can serve one bucket.
"""

from __future__ import annotations

import calendar
import email.utils
from typing import Any, BinaryIO, Dict, Iterable, List, Optional, Tuple, cast
from urllib.parse import quote, urlsplit

import botocore.session  # type: ignore[import-untyped]
import urllib3
from botocore.auth import S3SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from artifacts_py.servers.gypsum.errors import StoreError
from artifacts_py.servers.gypsum.store import (
    JSON_TYPE, Listing, ObjectInfo, PresignContext, Store,
)

_MISSING = ("404", "NoSuchKey", "NotFound")
_TAKEN = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")
_DELETE_BATCH = 1000


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _timestamp(value: Any) -> float:
    return float(calendar.timegm(value.utctimetuple())) if value is not None else 0.0


class _Body:
    """A streamed object body that returns its connection to the pool when closed."""

    def __init__(self, reply: urllib3.BaseHTTPResponse) -> None:
        self.reply = reply

    def read(self, size: int = -1) -> bytes:
        return self.reply.read(None if size < 0 else size)

    def close(self) -> None:
        if self.reply.length_remaining:  # cut short: the connection cannot be reused
            self.reply.close()
        self.reply.release_conn()

    def __enter__(self) -> "_Body":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class S3Store(Store):
    """Objects in ``bucket`` at ``endpoint``; uploads presigned for ``public_endpoint``."""

    name = "s3"

    def __init__(self, endpoint: str, bucket: str, access_key: str, secret_key: str,
                 region: str = "us-east-1", addressing: str = "path",
                 public_endpoint: Optional[str] = None,
                 public_credentials: Optional[Tuple[str, str]] = None,
                 max_connections: int = 64) -> None:
        self.bucket = bucket
        self.endpoint = endpoint
        self.public_endpoint = public_endpoint or endpoint
        self._public = public_credentials
        self._credentials = Credentials(access_key, secret_key)
        self._region = region
        parts = urlsplit(endpoint)
        self._base = (f"{parts.scheme}://{bucket}.{parts.netloc}" if addressing == "virtual"
                      else f"{endpoint.rstrip('/')}/{bucket}")
        self._http = urllib3.PoolManager(
            maxsize=max_connections, timeout=urllib3.Timeout(connect=10, read=60),
            retries=urllib3.Retry(total=2, connect=2, read=0, status=0, redirect=0))
        config = Config(signature_version="s3v4", s3={"addressing_style": addressing},
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required",
                        max_pool_connections=max_connections,
                        retries={"max_attempts": 3, "mode": "standard"},
                        connect_timeout=10, read_timeout=60)
        session = botocore.session.get_session()
        kwargs: Dict[str, Any] = dict(region_name=region, aws_access_key_id=access_key,
                                      aws_secret_access_key=secret_key, config=config)
        self.client = session.create_client("s3", endpoint_url=endpoint, **kwargs)
        # Presigning is local computation; a second client signs for the public host.
        self.signer = (self.client if self.public_endpoint == endpoint else
                       session.create_client("s3", endpoint_url=self.public_endpoint, **kwargs))

    def _call(self, what: str, key: str, op: str, **params: Any) -> Dict[str, Any]:
        try:
            return cast(Dict[str, Any], getattr(self.client, op)(Bucket=self.bucket, **params))
        except ClientError:
            raise
        except BotoCoreError as exc:
            raise StoreError(f"cannot {what} '{key}' in S3 bucket '{self.bucket}' at "
                             f"{self.endpoint}: {exc}") from None

    def check(self) -> None:
        """Fail early, with a clear message, when the bucket cannot be reached."""
        try:
            self._call("reach", "", "head_bucket")
        except ClientError as exc:
            raise StoreError(f"cannot use S3 bucket '{self.bucket}' at {self.endpoint}: "
                             f"{_code(exc) or exc}") from None

    # ------------------------------------------------------------ reads

    def _signed(self, method: str, key: str) -> Optional[urllib3.BaseHTTPResponse]:
        """A SigV4-signed HEAD/GET of ``key``; None when it is absent."""
        url = f"{self._base}/{quote(key, safe='/~')}"
        request = AWSRequest(method=method, url=url)
        S3SigV4Auth(self._credentials, "s3", self._region).add_auth(request)
        try:
            reply = self._http.request(method, url, headers=dict(request.headers.items()),
                                       preload_content=False, decode_content=False)
        except urllib3.exceptions.HTTPError as exc:
            raise StoreError(f"cannot read '{key}' from S3 bucket '{self.bucket}' at "
                             f"{self.endpoint}: {type(exc).__name__}") from None
        if reply.status == 200:
            return reply
        reply.drain_conn()
        reply.release_conn()
        if reply.status == 404:
            return None
        raise StoreError(f"cannot read '{key}' from S3 bucket '{self.bucket}': "
                         f"HTTP {reply.status}")

    @staticmethod
    def _info(key: str, reply: urllib3.BaseHTTPResponse) -> ObjectInfo:
        modified = reply.headers.get("Last-Modified")
        stamp = email.utils.parsedate_to_datetime(modified).timestamp() if modified else 0.0
        return ObjectInfo(key, int(reply.headers.get("Content-Length") or 0),
                          reply.headers.get("ETag") or "", stamp,
                          reply.headers.get("Content-Type"))

    def head(self, key: str) -> Optional[ObjectInfo]:
        reply = self._signed("HEAD", key)
        if reply is None:
            return None
        reply.release_conn()
        return self._info(key, reply)

    def open(self, key: str) -> Optional[Tuple[ObjectInfo, BinaryIO]]:
        reply = self._signed("GET", key)
        return None if reply is None else (self._info(key, reply),
                                           cast(BinaryIO, _Body(reply)))

    def read(self, key: str) -> Optional[bytes]:
        opened = self.open(key)
        if opened is None:
            return None
        body = opened[1]
        try:
            return body.read()
        finally:
            body.close()

    # ------------------------------------------------------------ writes

    def _put(self, key: str, data: bytes, content_type: Optional[str],
             **extra: Any) -> None:
        params: Dict[str, Any] = dict(Key=key, Body=data, **extra)
        if content_type:
            params["ContentType"] = content_type
        self._call("write", key, "put_object", **params)

    def write(self, key: str, data: bytes, content_type: Optional[str] = JSON_TYPE) -> None:
        try:
            self._put(key, data, content_type)
        except ClientError as exc:
            raise StoreError(f"cannot write '{key}': {_code(exc)}") from None

    def create(self, key: str, data: bytes, content_type: Optional[str] = None) -> bool:
        # A conditional create is atomic across replicas (protocol §10.9).
        try:
            self._put(key, data, content_type, IfNoneMatch="*")
        except ClientError as exc:
            if _code(exc) in _TAKEN:
                return False
            raise StoreError(f"cannot create '{key}': {_code(exc)}") from None
        return True

    def delete(self, keys: Iterable[str]) -> None:
        pending = list(keys)
        for start in range(0, len(pending), _DELETE_BATCH):
            batch = [{"Key": k} for k in pending[start:start + _DELETE_BATCH]]
            try:
                reply = self._call("delete", batch[0]["Key"], "delete_objects",
                                   Delete={"Objects": batch, "Quiet": True})
            except ClientError as exc:
                raise StoreError(f"cannot delete '{batch[0]['Key']}': {_code(exc)}") from None
            errors = reply.get("Errors") or []
            if errors:  # a 200 does not mean every key went (§10.8)
                first = errors[0]
                raise StoreError(f"cannot delete '{first.get('Key')}': {first.get('Code')}")

    # ------------------------------------------------------------ listing

    def list(self, prefix: str, recursive: bool) -> Listing:
        prefixes: List[str] = []
        objects: List[ObjectInfo] = []
        params: Dict[str, Any] = {"Prefix": prefix, "MaxKeys": 1000}
        if not recursive:
            params["Delimiter"] = "/"
        while True:
            try:
                page = self._call("list", prefix, "list_objects_v2", **params)
            except ClientError as exc:
                raise StoreError(f"cannot list '{prefix}': {_code(exc)}") from None
            prefixes.extend(p["Prefix"] for p in page.get("CommonPrefixes") or [])
            objects.extend(ObjectInfo(o["Key"], int(o.get("Size", 0)), str(o.get("ETag", "")),
                                      _timestamp(o.get("LastModified")))
                           for o in page.get("Contents") or [])
            if not page.get("IsTruncated"):
                return Listing([p for p in prefixes if self._has_objects(p)], objects)
            params["ContinuationToken"] = page["NextContinuationToken"]

    def _has_objects(self, prefix: str) -> bool:
        """Whether anything is stored under a common prefix.

        Filer-backed stores (SeaweedFS) keep a deleted "folder" listed as a
        common prefix until a background clean-up runs; S3 lists only
        prefixes that have objects, and so do we.
        """
        try:
            page = self._call("list", prefix, "list_objects_v2", Prefix=prefix, MaxKeys=1)
        except ClientError as exc:
            raise StoreError(f"cannot list '{prefix}': {_code(exc)}") from None
        return bool(page.get("Contents"))

    # ------------------------------------------------------------ uploads

    def presign_put(self, key: str, md5_base64: str, ctx: PresignContext) -> str:
        return cast(str, self.signer.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": key, "ContentMD5": md5_base64},
            ExpiresIn=ctx.expires))

    def public_credentials(self) -> Optional[Dict[str, str]]:
        if self._public is None:
            return None
        return {"endpoint": self.public_endpoint, "bucket": self.bucket,
                "key": self._public[0], "secret": self._public[1]}

    def close(self) -> None:
        self._http.clear()
        self.client.close()
        if self.signer is not self.client:
            self.signer.close()
