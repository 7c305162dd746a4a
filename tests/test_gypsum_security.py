"""Security of artifacts-gypsum over real HTTP, on a local directory and on SeaweedFS.

Each refusal is checked for the spec's status code and reason, and for
leaving the store exactly as it was (every key and every byte).
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import quote

import pytest

from gypsum_fixtures import (  # noqa: F401 (fixtures)
    ADMIN, LIMITED, OWNER, STRANGER, UNTRUSTED, UPLOADER, Api, Service, enc, github, gypsum,
    gypsum_local, gypsum_s3, local_snapshot, md5_b64, md5_hex, s3_args, s3_snapshot, seaweed,
    start_service, unique,
)


@contextmanager
def unchanged(service: Service) -> Iterator[None]:
    """The store must hold exactly the same keys and bytes afterwards."""
    before = service.snapshot()
    yield
    assert service.snapshot() == before


def refused(reply, status, reason=None):
    assert reply.status == status, (reply.status, reply.data)
    if reason is not None:
        assert json.loads(reply.data) == {"status": "error", "reason": reason}


def project(service: Service) -> str:
    p = unique("sec")
    service.api.create(p)
    service.api.upload(p, "a", "v1", {"f.txt": b"original"})
    return p


# ------------------------------------------------------------------ identity


@pytest.mark.parametrize("token", [None, "bogus-token"])
def test_missing_or_bad_token(gypsum, token):
    api, p = gypsum.api, project(gypsum)
    reason = "no user identity supplied" if token is None else \
        "failed to query GitHub for user identity: Bad credentials"
    files = [{"type": "simple", "path": "x", "size": 1, "md5sum": md5_hex(b"x")}]
    with unchanged(gypsum):
        for method, path, body in [
                ("POST", "/create/" + unique("new"), {}),
                ("POST", f"/upload/start/{p}/a/v2", {"files": files}),
                ("PUT", f"/permissions/{p}", {"owners": ["me"]}),
                ("PUT", f"/quota/{p}", {"baseline": 1}),
                ("POST", f"/probation/approve/{p}/a/v1", None),
                ("POST", f"/probation/reject/{p}/a/v1", None),
                ("DELETE", f"/remove/{p}", None),
                ("DELETE", f"/remove/{p}/a", None),
                ("DELETE", f"/remove/{p}/a/v1", None),
                ("POST", f"/refresh/latest/{p}/a", None),
                ("POST", f"/refresh/usage/{p}", None),
                ("DELETE", f"/unlock/{p}", None)]:
            refused(api.call(method, path, token, body), 401, reason)


def test_non_owner(gypsum):
    api, p = gypsum.api, project(gypsum)
    files = [{"type": "simple", "path": "x", "size": 1, "md5sum": md5_hex(b"x")}]
    with unchanged(gypsum):
        refused(api.start(p, "a", "v2", files, STRANGER), 403, "user is not authorized to upload")
        refused(api.call("PUT", f"/permissions/{p}", STRANGER, {"owners": ["stranger-user"]}),
                403, f"user does not own project '{p}'")
        refused(api.call("PUT", f"/permissions/{p}", UPLOADER, {"owners": ["uploader-user"]}),
                403, f"user does not own project '{p}'")
        refused(api.call("POST", f"/probation/approve/{p}/a/v1", UPLOADER), 403,
                f"user is not an owner of project '{p}'")
        refused(api.call("POST", f"/probation/reject/{p}/a/v1", STRANGER), 403,
                "user is not authorized to upload")
        for method, path in [("DELETE", f"/remove/{p}/a/v1"), ("DELETE", f"/unlock/{p}"),
                             ("POST", f"/refresh/usage/{p}"), ("PUT", f"/quota/{p}"),
                             ("POST", "/create/" + unique("own"))]:
            refused(api.call(method, path, OWNER, {}), 403, "user is not an administrator")


def test_uploader_limited_to_one_asset(gypsum):
    api, p = gypsum.api, project(gypsum)
    files = [{"type": "simple", "path": "x", "size": 1, "md5sum": md5_hex(b"x")}]
    with unchanged(gypsum):
        refused(api.start(p, "a", "v2", files, LIMITED), 403, "user is not authorized to upload")
    api.upload(p, "only-this", "v1", {"x": b"x"}, token=LIMITED)
    assert api.file(f"{p}/only-this/v1/x").data == b"x"


def test_untrusted_uploads_are_forced_into_probation(gypsum):
    api, p = gypsum.api, project(gypsum)
    api.upload(p, "a", "v2", {"x": b"x"}, token=UNTRUSTED, probation=False)
    assert json.loads(api.file(f"{p}/a/v2/..summary").data)["on_probation"] is True
    assert api.file(f"{p}/a/..latest").data == b'{"version":"v1"}'


# ------------------------------------------------------------------ presigned uploads


def session(api: Api, p: str, data: bytes = b"payload"):
    reply = api.start(p, "a", "v2", [{"type": "simple", "path": "new.bin", "size": len(data),
                                      "md5sum": md5_hex(data)}])
    assert reply.status == 200, reply.data
    started = json.loads(reply.data)
    return started, api.presign(started["file_urls"][0]["url"], started["session_token"])


def test_body_must_match_content_md5(gypsum):
    api, p = gypsum.api, project(gypsum)
    started, signed = session(api, p)
    with unchanged(gypsum):
        bad = api.put(signed["url"], b"PAYLOAD", signed["md5sum_base64"])
        assert bad.status == 400 and b"<Code>BadDigest</Code>" in bad.data
        other = api.put(signed["url"], b"other!!", md5_b64(b"other!!"))  # honest MD5, other body
        assert other.status == 403 and b"SignatureDoesNotMatch" in other.data
        assert api.put(signed["url"], b"payload", None).status == 403  # no Content-MD5
    assert api.put(signed["url"], b"payload", signed["md5sum_base64"]).status == 200
    api.json("POST", started["complete_url"], started["session_token"])


def alter(url: str) -> str:
    """The same URL aimed at another key (local: the token payload; S3: the path)."""
    if "/upload/put/" in url:
        base, token = url.split("/upload/put/")
        payload, mac = token.split(".")
        fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        fields[0] = fields[0].replace("new.bin", "..manifest")
        forged = base64.urlsafe_b64encode(json.dumps(fields, separators=(",", ":")).encode())
        return f"{base}/upload/put/{forged.rstrip(b'=').decode()}.{mac}"
    return url.replace("new.bin", "..manifest")


def test_altered_presigned_url(gypsum):
    api, p = gypsum.api, project(gypsum)
    started, signed = session(api, p)
    with unchanged(gypsum):
        reply = api.put(alter(signed["url"]), b"payload", signed["md5sum_base64"])
        assert reply.status == 403 and b"SignatureDoesNotMatch" in reply.data
        tampered = signed["url"][:-3] + ("000" if not signed["url"].endswith("000") else "111")
        assert api.put(tampered, b"payload", signed["md5sum_base64"]).status == 403
    api.json("POST", started["abort_url"], started["session_token"])


def test_presign_only_for_manifest_files(gypsum):
    from artifacts_py.servers.gypsum.actions.upload import make_slug

    api, p = gypsum.api, project(gypsum)
    started, _ = session(api, p)
    token = started["session_token"]
    with unchanged(gypsum):
        for path, md5 in [("..manifest", md5_hex(b"x")), ("other.bin", md5_hex(b"payload")),
                          ("new.bin", md5_hex(b"not the declared content"))]:
            slug = make_slug(p, "a", "v2", path, md5)
            reply = api.call("POST", "/upload/presigned-file/" + slug, token)
            assert reply.status == 400, reply.data
        slug = make_slug(p, "a", "v1", "f.txt", md5_hex(b"x"))  # a finished version
        refused(api.call("POST", "/upload/presigned-file/" + slug, token), 403,
                "project was locked for upload of a different version")
    api.json("POST", started["abort_url"], token)


def test_presigned_url_expires(github, request):
    """A service issuing 1-second URLs: the PUT after expiry is refused."""
    for service in expiring_services(github, request):
        api, p = service.api, project(service)
        started, signed = session(api, p)
        time.sleep(2.5)  # the URL's lifetime has to pass: this is the behaviour under test
        with unchanged(service):
            reply = api.put(signed["url"], b"payload", signed["md5sum_base64"])
            assert reply.status == 403 and b"AccessDenied" in reply.data, reply.data
        api.json("POST", started["abort_url"], started["session_token"])


def expiring_services(github, request):
    import tempfile

    root = tempfile.mkdtemp(prefix="gypsum-expiry-")
    request.addfinalizer(lambda: shutil.rmtree(root, ignore_errors=True))
    local = start_service(github, ["--store", root], ("--presign-expiry", "1"))
    request.addfinalizer(local.stop)
    yield Service("local", local, Api(local.url), local_snapshot(root))
    weed = request.getfixturevalue("seaweed")
    remote = start_service(github, s3_args(weed), ("--presign-expiry", "1"))
    request.addfinalizer(remote.stop)
    yield Service("s3", remote, Api(remote.url), s3_snapshot(weed))


def test_upload_url_dies_with_its_session_on_the_local_store(gypsum_local):
    api, p = gypsum_local.api, project(gypsum_local)
    started, signed = session(api, p)
    api.json("POST", started["abort_url"], started["session_token"])
    with unchanged(gypsum_local):
        reply = api.put(signed["url"], b"payload", signed["md5sum_base64"])
        assert reply.status == 403 and b"AccessDenied" in reply.data


# ------------------------------------------------------------------ locking and quota


def test_second_upload_while_locked(gypsum):
    api, p = gypsum.api, project(gypsum)
    started, _ = session(api, p)
    with unchanged(gypsum):
        refused(api.start(p, "b", "v1", [], UPLOADER), 403, "project asset has already been locked")
        refused(api.call("POST", f"/probation/approve/{p}/a/v1", OWNER), 403,
                "project asset has already been locked")
        refused(api.call("DELETE", f"/remove/{p}/a/v1", ADMIN), 403,
                "project asset has already been locked")
    api.json("POST", started["abort_url"], started["session_token"])


def test_quota_overrun(gypsum):
    api, p = gypsum.api, unique("quota")
    api.create(p, quota={"baseline": 100, "growth_rate": 0, "year": 2020})
    api.upload(p, "a", "v1", {"f": b"x" * 60})
    files = [{"type": "simple", "path": "g", "size": 40, "md5sum": md5_hex(b"y" * 40)}]
    with unchanged(gypsum):
        refused(api.start(p, "a", "v2", files), 400,
                "upload exceeds the storage quota for this project")
    assert api.file(f"{p}/..LOCK").status == 404


# ------------------------------------------------------------------ path tricks


BAD_NAMES = ["..", "..x", "a/b", "x\x00y", ".", ""]
BAD_PATHS = [("../x", "components of 'files.path' cannot start with '..'"),
             ("a/../b", "components of 'files.path' cannot start with '..'"),
             ("a/..b", "components of 'files.path' cannot start with '..'"),
             ("..manifest", "components of 'files.path' cannot start with '..'"),
             ("/abs", "'files.path' cannot start or end with '/'"),
             ("a//b", "'files.path' cannot contain repeated '/'"),
             ("a\\b", "'files.path' cannot contain '\\'"),
             ("a/./b", "components of 'files.path' cannot be '.'"),
             ("x\x00y", "'files.path' cannot contain control characters")]


@pytest.mark.parametrize("where", [0, 1, 2])
def test_bad_names_in_routes(gypsum, where):
    api, p = gypsum.api, project(gypsum)
    kind = ["project", "asset", "version"][where]
    with unchanged(gypsum):
        for bad in BAD_NAMES:
            names = [p, "a", "v2"]
            names[where] = bad
            reply = api.raw("POST", "/upload/start/" + enc(*names), OWNER, {"files": []})
            if bad == "":
                assert reply.status == (404 if where == 2 else 301)  # "//" or too few segments
                continue
            expected = {"..": f"{kind} name cannot start with '..'",
                        "..x": f"{kind} name cannot start with '..'",
                        "a/b": f"{kind} name cannot contain '/' or '\\'",
                        "x\x00y": f"{kind} name cannot contain control characters",
                        ".": f"{kind} name cannot be '.'"}[bad]
            refused(reply, 400, expected)
            if where == 0:
                refused(api.raw("DELETE", "/remove/" + enc(bad), ADMIN), 400, expected)
                refused(api.raw("PUT", "/permissions/" + enc(bad), ADMIN, {}), 400, expected)


def test_bad_file_paths(gypsum):
    api, p = gypsum.api, project(gypsum)
    with unchanged(gypsum):
        for path, reason in BAD_PATHS:
            files = [{"type": "simple", "path": path, "size": 1, "md5sum": md5_hex(b"x")}]
            refused(api.start(p, "a", "v2", files), 400, reason)
        link = {"type": "link", "path": "l", "link": {"project": "..", "asset": "a",
                                                      "version": "v1", "path": "f.txt"}}
        refused(api.start(p, "a", "v2", [link]), 400, "project name cannot start with '..'")
        refused(api.start(p, "a", "v2", [{"type": "simple", "path": "x", "size": 1,
                                           "md5sum": "zz"}]), 400,
                "'files.md5sum' should be a 32-digit hexadecimal MD5")
    assert api.file(f"{p}/..LOCK").status == 404


def test_reads_cannot_escape_the_store(gypsum_local):
    api = gypsum_local.api
    for key in ["../../../../etc/passwd", "/etc/passwd", "..tmp/x", "a/../../etc/passwd",
                "x\x00y"]:
        reply = api.raw("GET", "/file/" + quote(key, safe=""))
        refused(reply, 404, "object not found")
    assert api.json("GET", "/list?prefix=../") == []
    assert api.json("GET", "/list?prefix=..tmp/") == []
    assert "..tmp/" not in api.json("GET", "/list")


def test_tokens_are_never_logged(github, tmp_path):
    from artifacts_py.servers.gypsum.launch import GypsumProcess

    log = open(tmp_path / "stderr.txt", "wb")
    process = GypsumProcess(["--port", "0", "--store", str(tmp_path), "--verbose",
                             "--admin", "admin-user", "--github-api", github.url], stderr=log)
    try:
        api = Api(process.url)
        p = unique("log")
        api.create(p)
        started = api.upload(p, "a", "v1", {"f": b"x"}, complete=False)
        signed = api.presign(started["file_urls"][0]["url"], started["session_token"])
        api.json("POST", started["complete_url"], started["session_token"])
        refused(api.call("POST", "/create/" + p, "secret-bad-token", {}), 401)
    finally:
        process.stop()
        log.close()
    text = (tmp_path / "stderr.txt").read_text()
    assert "POST /create/" in text  # requests are logged...
    token = signed["url"].rsplit("/", 1)[1]
    for secret in (ADMIN, "secret-bad-token", started["session_token"], token):
        assert secret not in text  # ...but no credential is
