"""artifacts-gypsum over real HTTP, on a local directory and on a real SeaweedFS.

Every endpoint of gypsum-protocol.md §4, the bucket layout of §2 (byte for
byte where the worker's JSON is fixed), upload sessions with dedup and links,
probation, locking, refresh, removal, caching of GitHub identities, the CLI
and the launcher.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
import subprocess
import sys
import tempfile

import pytest

from artifacts_py.servers.gypsum.actions.versions import purge_logs
from artifacts_py.servers.gypsum.launch import (
    GypsumProcess, GypsumStartError, start_gypsum, stop_gypsum,
)
from artifacts_py.servers.gypsum.store_local import LocalStore
from gypsum_fixtures import (  # noqa: F401 (fixtures)
    ADMIN, BUCKET, LIMITED, OWNER, STRANGER, UNTRUSTED, UPLOADER, Api, enc, github, gypsum,
    gypsum_local, gypsum_s3, md5_hex, s3_args, seaweed, start_service, unique,
)

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def error(reply, status, reason):
    assert reply.status == status, (reply.status, reply.data)
    assert json.loads(reply.data) == {"status": "error", "reason": reason}
    assert reply.headers["Access-Control-Allow-Origin"] == "*"


# ------------------------------------------------------------------ reads


def test_file_get_and_head(gypsum):
    api, p = gypsum.api, unique("read")
    api.create(p)
    api.upload(p, "a", "v1", {"a b+c.txt": b"hello", "d/é.bin": bytes(range(256)),
                              "odd %41#?&=;~.txt": b"odd"})
    assert api.file(f"{p}/a/v1/odd %41#?&=;~.txt").data == b"odd"
    reply = api.file(f"{p}/a/v1/a b+c.txt")
    assert reply.status == 200 and reply.data == b"hello"
    assert reply.headers["ETag"] == f'"{md5_hex(b"hello")}"'
    assert reply.headers["Content-Length"] == "5"
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    assert datetime.datetime.strptime(reply.headers["Last-Modified"],
                                      "%a, %d %b %Y %H:%M:%S GMT")
    assert api.file(f"{p}/a/v1/d/é.bin").data == bytes(range(256))
    head = api.call("HEAD", "/file/" + enc(f"{p}/a/v1/a b+c.txt"))
    assert head.status == 200 and head.data == b"" and head.headers["Content-Length"] == "5"
    summary = api.file(f"{p}/a/v1/..summary")
    assert summary.headers["Content-Type"] == "application/json"
    error(api.file(f"{p}/a/v1/a+b+c.txt"), 404, "object not found")  # '+' is not a space
    missing = api.call("HEAD", "/file/" + enc(f"{p}/nothing"))
    assert missing.status == 404 and missing.data == b""
    error(api.call("GET", f"/file/{p}/a/v1/x"), 404, "no such endpoint")
    error(gypsum.api.raw("GET", "/file/abc%zz"), 500, "URI malformed")


def test_lock_file_has_no_content_type(gypsum):
    api, p = gypsum.api, unique("lockct")
    api.create(p)
    started = api.upload(p, "a", "v1", {"x": b"1"}, complete=False)
    lock = api.file(f"{p}/..LOCK")
    doc = json.loads(lock.data)
    assert list(doc) == ["session_hash", "asset", "version"]
    assert doc["asset"] == "a" and doc["version"] == "v1" and len(doc["session_hash"]) == 44
    if gypsum.kind == "local":  # SeaweedFS sniffs a type of its own for untyped objects
        assert "Content-Type" not in lock.headers
    api.json("POST", started["abort_url"], started["session_token"])


def test_list(gypsum):
    api, p = gypsum.api, unique("list")
    api.create(p)
    api.upload(p, "a", "v1", {"x.txt": b"x", "sub/y.txt": b"y"})
    root = api.json("GET", "/list")
    assert "..logs/" in root and p + "/" in root
    assert sorted(api.json("GET", f"/list?prefix={p}/a/")) == [f"{p}/a/..latest", f"{p}/a/v1/"]
    assert sorted(api.json("GET", f"/list?prefix={p}/a/v1/&recursive=true")) == [
        f"{p}/a/v1/..manifest", f"{p}/a/v1/..summary", f"{p}/a/v1/sub/y.txt", f"{p}/a/v1/x.txt"]
    assert api.json("GET", f"/list?prefix={p}/a/v1/sub/") == [f"{p}/a/v1/sub/y.txt"]
    assert api.json("GET", f"/list?prefix={p[:-1]}") != []  # a plain string prefix
    assert api.json("GET", "/list?prefix=no-such-project/") == []
    assert api.json("GET", f"/list/?prefix={p}/&recursive=yes") == [f"{p}/a/", f"{p}/..permissions",
                                                                    f"{p}/..quota", f"{p}/..usage"] \
        or sorted(api.json("GET", f"/list/?prefix={p}/")) == sorted(
            [f"{p}/a/", f"{p}/..permissions", f"{p}/..quota", f"{p}/..usage"])


# ------------------------------------------------------------------ projects


def test_create_writes_worker_documents(gypsum):
    api, p = gypsum.api, unique("create")
    year = datetime.datetime.now(datetime.timezone.utc).year
    api.json("POST", "/create/" + p, ADMIN, {})
    assert api.file(f"{p}/..permissions").data == b'{"owners":[],"uploaders":[]}'
    assert api.file(f"{p}/..quota").data == \
        f'{{"baseline":10000000000,"growth_rate":20000000000,"year":{year}}}'.encode()
    assert api.file(f"{p}/..usage").data == b'{"total":0}'
    error(api.call("POST", "/create/" + p, ADMIN, {}), 400, f"project '{p}' already exists")
    q = unique("create")
    api.json("POST", "/create/" + q, ADMIN, {
        "permissions": {"owners": ["o"], "uploaders": [{"id": "u", "extra": 1}], "x": 1},
        "quota": {"baseline": 5, "growth_rate": 1, "year": 2020, "other": 3}})
    assert api.file(f"{q}/..permissions").data == \
        b'{"owners":["o"],"uploaders":[{"id":"u","extra":1}]}'
    assert api.file(f"{q}/..quota").data == b'{"baseline":5,"growth_rate":1,"year":2020}'
    error(api.call("POST", "/create/" + unique("c"), OWNER, {}), 403, "user is not an administrator")
    error(api.call("POST", "/create/" + unique("c"), None, {}), 401, "no user identity supplied")
    error(api.call("POST", "/create/a%2Fb", ADMIN, {}), 400, "project name cannot contain '/'")
    error(api.call("POST", "/create/" + unique("c"), ADMIN, []), 400,
          "expected a JSON object in the request body")
    bad = api.call("POST", "/create/" + unique("c"), ADMIN, raw=b"{nope")
    assert bad.status == 400 and json.loads(bad.data)["reason"].startswith(
        "failed to parse JSON body; ")
    error(api.call("POST", "/create/" + unique("c"), ADMIN,
                   {"permissions": {"uploaders": [{"id": "x", "asset": 1}]}}), 400,
          "expected 'asset' property to be a string")


def test_permissions(gypsum, github):
    api, p = gypsum.api, unique("perm")
    api.create(p, permissions={"owners": ["owner-user"], "uploaders": []})
    error(api.start(p, "a", "v1", [], UPLOADER), 403, "user is not authorized to upload")
    api.json("PUT", "/permissions/" + p, OWNER,
             {"uploaders": [{"id": "uploader-org", "until": "2999-01-01T00:00:00Z",
                             "trusted": True}]})
    assert json.loads(api.file(f"{p}/..permissions").data) == {
        "owners": ["owner-user"],
        "uploaders": [{"id": "uploader-org", "until": "2999-01-01T00:00:00Z", "trusted": True}]}
    api.upload(p, "a", "v1", {"f": b"by an org member"}, token=UPLOADER)  # cache was dropped
    error(api.call("PUT", "/permissions/" + p, STRANGER, {"owners": []}), 403,
          f"user does not own project '{p}'")
    error(api.call("PUT", "/permissions/nope-" + p, OWNER, {}), 404,
          f"project 'nope-{p}' does not exist")
    for body, reason in [
            ([], "expected permissions to be a JSON object"),
            ({"owners": "x"}, "expected 'owners' to be an array"),
            ({"owners": [1]}, "expected 'owners' to be an array of strings"),
            ({"uploaders": {}}, "expected 'uploaders' to be an array"),
            ({"uploaders": [1]}, "expected 'uploaders' to be an array of objects"),
            ({"uploaders": [{}]}, "expected 'uploaders.id' property to be a string"),
            ({"uploaders": [{"id": "x", "until": "tomorrow"}]},
             "expected 'uploaders.until' property to be a date/time-formatted string"),
            ({"uploaders": [{"id": "x", "trusted": "yes"}]},
             "expected 'uploaders.trusted' property to be a boolean"),
            ({"uploaders": [{"id": "x", "version": 2}]},
             "expected 'version' property to be a string")]:
        error(api.call("PUT", "/permissions/" + p, OWNER, body), 400, reason)
    api.json("PUT", "/permissions/" + p, OWNER, {"uploaders": [
        {"id": "uploader-org", "until": "2001-01-01T00:00:00Z", "trusted": True}]})
    error(api.start(p, "a", "v2", [], UPLOADER), 403, "user is not authorized to upload")


def test_quota(gypsum):
    api, p = gypsum.api, unique("quota")
    api.create(p)
    api.json("PUT", "/quota/" + p, ADMIN, {"growth_rate": 5, "baseline": 100})
    quota = json.loads(api.file(f"{p}/..quota").data)
    assert quota["baseline"] == 100 and quota["growth_rate"] == 5
    error(api.call("PUT", "/quota/" + p, OWNER, {}), 403, "user is not an administrator")
    error(api.call("PUT", "/quota/none-" + p, ADMIN, {}), 400, "project does not exist")
    error(api.call("PUT", "/quota/" + p, ADMIN, []), 400,
          "expected quota specification to be a JSON object")
    error(api.call("PUT", "/quota/" + p, ADMIN, {"year": "x"}), 400, "expected 'year' to be a number")
    error(api.call("PUT", "/quota/" + p, ADMIN, {"baseline": -1}), 400,
          "expected 'baseline' to be a non-negative number")
    api.upload(p, "a", "v1", {"f": b"x" * 90})
    error(api.start(p, "a", "v2", [{"type": "simple", "path": "g", "size": 10,
                                     "md5sum": md5_hex(b"0" * 10)}]), 400,
          "upload exceeds the storage quota for this project")  # 90 + 10 >= 100 refuses


# ------------------------------------------------------------------ uploads


def test_upload_session_writes_worker_layout(gypsum):
    api, p = gypsum.api, unique("up")
    api.create(p)
    started = api.upload(p, "asset 1", "v1", {"x.txt": b"hello", "deep/er/y": b"world!"})
    assert [f["path"] for f in started["file_urls"]] == ["x.txt", "deep/er/y"]
    assert all(f["method"] == "presigned" for f in started["file_urls"])
    assert started["complete_url"] == f"/upload/complete/{p}/asset%201/v1"
    assert re.match(r"^[0-9a-f-]{36}$", started["session_token"])
    base = f"{p}/asset 1/v1/"
    assert api.file(base + "..manifest").data == (
        b'{"x.txt":{"size":5,"md5sum":"5d41402abc4b2a76b9719d911017c592"},'
        b'"deep/er/y":{"size":6,"md5sum":"' + md5_hex(b"world!").encode() + b'"}}')
    summary = json.loads(api.file(base + "..summary").data)
    assert list(summary) == ["upload_user_id", "upload_start", "upload_finish"]
    assert summary["upload_user_id"] == "owner-user" and ISO.match(summary["upload_finish"])
    assert api.file(f"{p}/asset 1/..latest").data == b'{"version":"v1"}'
    assert api.file(f"{p}/..usage").data == b'{"total":11}'
    assert api.file(f"{p}/..LOCK").status == 404
    logs = [json.loads(api.file(k).data) for k in api.json("GET", "/list?prefix=..logs/")]
    assert {"type": "add-version", "project": p, "asset": "asset 1", "version": "v1",
            "latest": True} in logs
    assert all(re.match(r"^\.\.logs/\d{4}-.*Z_\d{6}$", k)
               for k in api.json("GET", "/list?prefix=..logs/"))


def test_dedup_links_and_ancestors(gypsum):
    api, p = gypsum.api, unique("dedup")
    api.create(p)
    api.upload(p, "a", "v1", {"same.txt": b"same", "other": b"o"})
    started = api.upload(p, "a", "v2", {"dir/copy.txt": b"same", "new": b"n"}, dedup=True)
    assert [f["path"] for f in started["file_urls"]] == ["new"]
    v2 = json.loads(api.file(f"{p}/a/v2/..manifest").data)
    assert v2["dir/copy.txt"] == {"size": 4, "md5sum": md5_hex(b"same"), "link": {
        "project": p, "asset": "a", "version": "v1", "path": "same.txt"}}
    assert json.loads(api.file(f"{p}/a/v2/dir/..links").data) == {
        "copy.txt": {"project": p, "asset": "a", "version": "v1", "path": "same.txt"}}
    assert api.file(f"{p}/a/v2/..links").status == 404
    assert api.file(f"{p}/a/v2/dir/copy.txt").status == 404  # links have no object
    api.upload(p, "b", "v1", {}, links={"l": {"project": p, "asset": "a", "version": "v2",
                                                "path": "dir/copy.txt", "note": "kept"}})
    entry = json.loads(api.file(f"{p}/b/v1/..manifest").data)["l"]
    assert entry["link"] == {"project": p, "asset": "a", "version": "v2", "path": "dir/copy.txt",
                             "note": "kept", "ancestor": {"project": p, "asset": "a",
                                                         "version": "v1", "path": "same.txt"}}
    assert api.file(f"{p}/..usage").data == b'{"total":6}'  # links never count
    link = {"type": "link", "path": "z", "link": {"project": p, "asset": "a", "version": "v3",
                                                  "path": "x"}}
    error(api.start(p, "a", "v3", [link]), 400,
          f"detected circular link from 'z' to '{p}/a/v3/x'")
    link["link"]["version"] = "v9"
    error(api.start(p, "a", "v3", [link]), 400,
          f"cannot find version summary for link from 'z' to '{p}/a/v9/x'")
    link["link"]["version"] = "v1"
    error(api.start(p, "a", "v3", [link]), 400, f"failed to link from 'z' to '{p}/a/v1/x'")
    api.upload(p, "a", "prob", {"q": b"q"}, probation=True)
    link["link"].update(version="prob", path="q")
    error(api.start(p, "a", "v3", [link]), 400,
          f"cannot refer to probational version for link from 'z' to '{p}/a/prob/q'")
    started = api.upload(p, "c", "open", {"q": b"q"}, complete=False)
    link["link"].update(asset="c", version="open")
    error(api.start(p + "-x", "a", "v3", [link]), 400, f"no existing permissions for project '{p}-x'")
    api.json("POST", started["abort_url"], started["session_token"])


def test_existing_version_is_refused_untouched(gypsum):
    api, p = gypsum.api, unique("exists")
    api.create(p)
    api.upload(p, "a", "v1", {"f": b"precious"})
    before = gypsum.snapshot()
    error(api.start(p, "a", "v1", []), 400, "project-asset-version already exists")
    assert gypsum.snapshot() == before
    assert api.file(f"{p}/..LOCK").status == 404


def test_complete_checks_files_and_keeps_the_lock(gypsum):
    api, p = gypsum.api, unique("complete")
    api.create(p)
    started = api.upload(p, "a", "v1", {"one": b"1", "two": b"22"}, complete=False)
    signed = api.presign(started["file_urls"][0]["url"], started["session_token"])
    assert api.put(signed["url"], b"1", signed["md5sum_base64"]).status == 200
    # "two" was uploaded by the helper, "one" twice: delete neither, but re-run a session
    # where one file is missing
    api.json("POST", started["abort_url"], started["session_token"])
    reply = api.start(p, "a", "v1", [{"type": "simple", "path": "gone", "size": 1,
                                      "md5sum": md5_hex(b"g")}])
    session = json.loads(reply.data)
    error(api.call("POST", session["complete_url"], session["session_token"]), 400,
          "path 'gone' in manifest should have a file")
    assert api.file(f"{p}/..LOCK").status == 200  # the session stays open
    signed = api.presign(session["file_urls"][0]["url"], session["session_token"])
    assert api.put(signed["url"], b"g", signed["md5sum_base64"]).status == 200
    api.json("POST", session["complete_url"], session["session_token"])
    assert api.file(f"{p}/a/v1/gone").data == b"g"


def test_abort_and_unlock(gypsum):
    api, p = gypsum.api, unique("abort")
    api.create(p)
    before = gypsum.snapshot()
    started = api.upload(p, "a", "v1", {"f": b"data"}, complete=False)
    assert api.file(f"{p}/a/v1/f").data == b"data"
    api.json("POST", started["abort_url"], started["session_token"])
    assert gypsum.snapshot() == before
    stale = api.upload(p, "a", "v2", {"f": b"data"}, complete=False)
    error(api.start(p, "b", "v1", []), 403, "project asset has already been locked")
    error(api.call("DELETE", "/unlock/" + p, OWNER), 403, "user is not an administrator")
    api.json("DELETE", "/unlock/" + p, ADMIN)
    api.json("DELETE", "/unlock/" + p, ADMIN)  # no lock: still 200
    error(api.call("POST", stale["complete_url"], stale["session_token"]), 403,
          "project has not been previously locked for upload")


def test_session_checks(gypsum):
    api, p = gypsum.api, unique("session")
    api.create(p)
    started = api.upload(p, "a", "v1", {"f": b"x"}, complete=False)
    url = started["file_urls"][0]["url"]
    error(api.call("POST", url), 401, "no user identity supplied")
    error(api.call("POST", url, "not-a-uuid"), 403, "session token does not look like a v4 UUID")
    error(api.call("POST", url, "0bbdab7a-1b17-42bc-9f38-eb3ddf684dba"), 403,
          "project was locked for a different upload session")
    token = started["session_token"]
    error(api.call("POST", f"/upload/complete/{p}/b/v1", token), 403,
          "project was locked for upload of a different asset")
    error(api.call("POST", f"/upload/abort/{p}/a/v2", token), 403,
          "project was locked for upload of a different version")
    error(api.call("POST", "/upload/presigned-file/!!!", token), 400,
          "invalid slug ('!!!') for the presigned URL endpoint; "
          + json.loads(api.call("POST", "/upload/presigned-file/!!!", token).data)["reason"]
          .split("; ", 1)[1])
    api.json("POST", started["abort_url"], token)


def test_probation_lifecycle(gypsum):
    api, p = gypsum.api, unique("prob")
    api.create(p)
    api.upload(p, "a", "v1", {"f": b"1"})
    api.upload(p, "a", "v2", {"f": b"22"}, token=UNTRUSTED)  # forced probation
    summary = json.loads(api.file(f"{p}/a/v2/..summary").data)
    assert summary["on_probation"] is True and list(summary)[-1] == "upload_finish"
    assert api.file(f"{p}/a/..latest").data == b'{"version":"v1"}'
    assert api.file(f"{p}/..usage").data == b'{"total":3}'
    error(api.call("POST", f"/probation/approve/{p}/a/v2", UNTRUSTED), 403,
          f"user is not an owner of project '{p}'")
    error(api.call("POST", f"/probation/approve/{p}/a/v1", OWNER), 400,
          "cannot approve probation for non-probational version")
    error(api.call("POST", f"/probation/approve/{p}/a/v9", OWNER), 400, "version does not exist")
    api.json("POST", f"/probation/approve/{p}/a/v2", OWNER)
    assert "on_probation" not in json.loads(api.file(f"{p}/a/v2/..summary").data)
    assert api.file(f"{p}/a/..latest").data == b'{"version":"v2"}'
    # the uploader may reject their own probational version; others may not
    api.upload(p, "a", "v3", {"g": b"333"}, token=UNTRUSTED)
    api.upload(p, "a", "v4", {"g": b"4444"}, token=UPLOADER, probation=True)
    error(api.call("POST", f"/probation/reject/{p}/a/v4", UNTRUSTED), 400,
          "cannot reject probation for different user")
    api.json("POST", f"/probation/reject/{p}/a/v3", UNTRUSTED)
    api.json("POST", f"/probation/reject/{p}/a/v4", OWNER)
    assert api.file(f"{p}/a/v3/..summary").status == 404
    assert api.json("GET", f"/list?prefix={p}/a/v4/&recursive=true") == []
    assert api.file(f"{p}/..usage").data == b'{"total":3}'


def test_refresh_latest_and_usage(gypsum):
    api, p = gypsum.api, unique("refresh")
    api.create(p)
    api.upload(p, "a", "v1", {"f": b"1"})
    api.upload(p, "a", "v2", {"f": b"22"})
    api.upload(p, "a", "v3", {"f": b"333"}, probation=True)
    gypsum_store_delete_latest(api, p)
    assert api.json("POST", f"/refresh/latest/{p}/a", ADMIN) == {"version": "v2"}
    assert api.file(f"{p}/a/..latest").data == b'{"version":"v2"}'
    assert api.json("POST", f"/refresh/latest/{p}/none", ADMIN) == {}
    error(api.call("POST", f"/refresh/latest/{p}/a", OWNER), 403, "user is not an administrator")
    error(api.call("POST", f"/refresh/latest/x{p}/a", ADMIN), 400, "project does not exist")
    assert api.json("POST", f"/refresh/usage/{p}", ADMIN) == {"total": 6}
    error(api.call("POST", f"/refresh/usage/x{p}", ADMIN), 400, "project does not exist")


def gypsum_store_delete_latest(api, p):
    """Make ..latest stale by removing the version it names, then re-upload v2."""
    api.json("DELETE", f"/remove/{p}/a/v2", ADMIN)
    assert api.file(f"{p}/a/..latest").data == b'{"version":"v1"}'
    api.upload(p, "a", "v2", {"f": b"22"})


def test_remove(gypsum):
    api, p = gypsum.api, unique("remove")
    api.create(p)
    api.upload(p, "a", "v1", {"f": b"1"})
    api.upload(p, "a", "v2", {"f": b"22"})
    api.upload(p, "b", "v1", {"f": b"333"})
    api.json("DELETE", f"/remove/{p}/a/v2", ADMIN)
    assert api.file(f"{p}/a/..latest").data == b'{"version":"v1"}'
    assert api.file(f"{p}/..usage").data == b'{"total":4}'
    api.json("DELETE", f"/remove/{p}/a", ADMIN)
    assert api.json("GET", f"/list?prefix={p}/a/") == []
    assert api.file(f"{p}/..usage").data == b'{"total":3}'
    error(api.call("DELETE", f"/remove/{p}/b", OWNER), 403, "user is not an administrator")
    error(api.call("DELETE", f"/remove/x{p}/b", ADMIN), 404, "project does not exist")
    api.json("DELETE", f"/remove/{p}", ADMIN)
    assert api.json("GET", f"/list?prefix={p}/") == []
    logs = [json.loads(api.file(k).data) for k in api.json("GET", "/list?prefix=..logs/")]
    for entry in ({"type": "delete-version", "project": p, "asset": "a", "version": "v2",
                   "latest": True},
                  {"type": "delete-asset", "project": p, "asset": "a"},
                  {"type": "delete-project", "project": p}):
        assert entry in logs
    error(api.call("DELETE", "/remove/..logs", ADMIN), 400, "project name cannot start with '..'")


# ------------------------------------------------------------------ auth and HTTP


def test_github_identity_is_cached_and_orgs_paged(gypsum_local, github):
    api = gypsum_local.api
    many = [f"org-{i}" for i in range(150)] + ["admin-org"]
    github.add_user("paged-token", "paged-user", many)
    p = unique("paged")
    api.json("POST", "/create/" + p, "paged-token", {})  # admin through the 151st org
    api.json("POST", "/create/" + unique("paged"), "paged-token", {})
    assert github.count("/user", "paged-token") == 1
    error(api.call("POST", "/create/x", "bogus"), 401,
          "failed to query GitHub for user identity: Bad credentials")
    error(api.call("POST", "/create/x", None, headers={"Authorization": "token abc"}), 401,
          "no user identity supplied")


def test_http_details(gypsum_local):
    api = gypsum_local.api
    error(api.call("GET", "/nothing"), 404, "no such endpoint")
    error(api.call("GET", "/create/x"), 404, "no such endpoint")
    assert api.call("HEAD", "/list").status == 404
    home = api.call("GET", "/")
    assert home.status == 301 and home.headers["Location"].startswith("https://artifactdb")
    double = gypsum_local.api.raw("GET", "/refresh//usage/x?y=1")
    assert double.status == 301 and double.headers["Location"] == "/refresh/usage/x?y=1"
    pre = api.call("OPTIONS", "/upload/start/a/b/c", headers={
        "Origin": "https://x.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert pre.status == 200 and pre.headers["Access-Control-Allow-Origin"] == "*"
    assert pre.headers["Access-Control-Allow-Headers"] == "authorization,content-type"
    assert "PUT" in pre.headers["Access-Control-Allow-Methods"]
    assert "Allow" in api.call("OPTIONS", "/list").headers
    error(api.call("GET", "/credentials/s3-api"), 404,
          "this service has no public S3 credentials to give")
    error(api.call("GET", "/credentials/github-app"), 404,
          "this service has no GitHub app configured")
    ok = api.call("DELETE", "/unlock/" + unique("x"), ADMIN)
    assert ok.status == 200 and ok.data == b"" and "Content-Type" not in ok.headers


def test_s3_credentials_and_github_app(github, seaweed):
    process = start_service(github, s3_args(seaweed), (
        "--s3-public-read-key", "ro", "--s3-public-read-secret", "ro-secret",
        "--github-app-id", "app", "--github-app-secret", "app-secret"))
    try:
        api = Api(process.url)
        assert api.json("GET", "/credentials/s3-api") == {
            "endpoint": seaweed.endpoint, "bucket": BUCKET, "key": "ro", "secret": "ro-secret"}
        assert api.json("GET", "/credentials/github-app") == {"id": "app", "secret": "app-secret"}
    finally:
        process.stop()


def test_a_bucket_written_by_one_back_end_is_served_by_the_other(gypsum_local, github, seaweed):
    api, p = gypsum_local.api, unique("move")
    api.create(p)
    api.upload(p, "a", "v1", {"x.txt": b"moved", "d/y": b"yy"})
    client = seaweed.client()
    client.create_bucket(Bucket="moved-" + p.lower()[-20:].strip("-"))
    bucket = "moved-" + p.lower()[-20:].strip("-")
    for key, data in gypsum_local.snapshot().items():
        if key.startswith(p + "/"):
            client.put_object(Bucket=bucket, Key=key, Body=data)
    process = start_service(github, s3_args(seaweed, bucket))
    try:
        s3 = Api(process.url)
        assert s3.file(f"{p}/a/v1/x.txt").data == b"moved"
        started = s3.upload(p, "a", "v2", {"x.txt": b"moved", "z": b"z"}, dedup=True)
        assert [f["path"] for f in started["file_urls"]] == ["z"]
        assert s3.file(f"{p}/..usage").data == b'{"total":8}'
    finally:
        process.stop()


def test_log_purge(tmp_path):
    store = LocalStore(str(tmp_path))
    store.write("..logs/2020-01-01T00:00:00.000Z_123456", b"{}")
    store.write("..logs/2999-01-01T00:00:00.000Z_123456", b"{}")
    assert purge_logs(store, 7) == 1
    assert [o.key for o in store.list("..logs/", True).objects] == [
        "..logs/2999-01-01T00:00:00.000Z_123456"]
    later = datetime.datetime(3000, 1, 1, tzinfo=datetime.timezone.utc)
    assert purge_logs(store, 7, now=later) == 1


# ------------------------------------------------------------------ command line


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "artifacts_py.servers.gypsum.server", *args],
                          capture_output=True, text=True, timeout=30)


def test_cli_messages(tmp_path):
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.startswith("artifacts-gypsum ")
    helped = run_cli("--help")
    assert "examples:" in helped.stdout and "--s3-endpoint" in helped.stdout
    missing = run_cli("--store", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == (f"artifacts-gypsum: error: store directory "
                                      f"{tmp_path / 'nope'} does not exist (create it first)")
    assert "unrecognized arguments: --bogus" in run_cli("--bogus").stderr
    assert "either --store" in run_cli().stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        clash = run_cli("--store", str(tmp_path), "--port", str(port))
    assert clash.returncode == 2 and f"port {port} on 127.0.0.1 is already in use" in clash.stderr
    assert len(clash.stderr.strip().splitlines()) == 1


def test_start_gypsum(github, tmp_path):
    url = start_gypsum(str(tmp_path), admin="admin-user", github_api=github.url)
    try:
        assert start_gypsum() == url  # already running
        api = Api(url)
        p = unique("launch")
        api.create(p)
        assert (tmp_path / p / "..permissions").is_file()
    finally:
        stop_gypsum()
    with pytest.raises(GypsumStartError):
        start_gypsum(str(tmp_path / "missing"))
    stop_gypsum()


def test_github_unreachable_and_orgs_refused(github, tmp_path):
    from seaweed import free_ports

    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    process = GypsumProcess(["--port", "0", "--store", str(tmp_path), "--admin", "admin-org",
                             "--github-api", dead])
    try:
        error(Api(process.url).call("POST", "/create/x", ADMIN, {}), 500,
              f"failed to reach GitHub at {dead}: MaxRetryError")
    finally:
        process.stop()
    github.add_user("org-less-token", "org-less", ["admin-org"])
    github.orgs_status = 403  # /user/orgs refused: no organisations, as the worker does
    try:
        api = Api(start_gypsum(str(tmp_path), admin="admin-org", github_api=github.url))
        error(api.call("POST", "/create/" + unique("o"), "org-less-token", {}), 403,
              "user is not an administrator")
    finally:
        github.orgs_status = 200
        stop_gypsum()


def test_local_store_without_saved_md5(tmp_path):
    """Objects an operator copied in (no saved MD5) are hashed on demand and read whole."""
    data = b'{"total":0}'
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "..usage").write_bytes(data)
    store = LocalStore(str(tmp_path))
    assert store.head("p/..usage").etag == f'"{md5_hex(data)}"'
    fresh = LocalStore(str(tmp_path))  # empty in-memory cache
    assert fresh.read("p/..usage") == data


def test_s3_upload_urls_sign_content_md5_and_no_checksum(gypsum_s3, seaweed):
    api, p = gypsum_s3.api, unique("sign")
    api.create(p)
    started = api.upload(p, "a", "v1", {"f": b"x"}, complete=False)
    signed = api.presign(started["file_urls"][0]["url"], started["session_token"])
    query = signed["url"].split("?", 1)[1]
    assert "X-Amz-SignedHeaders=content-md5%3Bhost" in query
    assert "checksum" not in query.lower()
    assert signed["url"].startswith(f"{seaweed.endpoint}/{BUCKET}/{p}/a/v1/f?")  # path style
    api.json("POST", started["abort_url"], started["session_token"])


def test_replicas_share_one_bucket_and_one_lock(gypsum_s3, github, seaweed):
    """Two services on one bucket: concurrent upload starts, exactly one gets the lock."""
    from concurrent.futures import ThreadPoolExecutor

    other = start_service(github, s3_args(seaweed))
    try:
        apis = [gypsum_s3.api, Api(other.url)]
        p = unique("replicas")
        apis[0].create(p)
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda i: apis[i % 2].start(p, f"a{i}", "v1", []), range(8)))
        assert sorted(r.status for r in replies) == [200] + [403] * 7
        winner = next(json.loads(r.data) for r in replies if r.status == 200)
        apis[1].json("POST", winner["complete_url"], winner["session_token"])  # via the other
        assert len(apis[0].json("GET", f"/list?prefix={p}/")) == 4  # 3 files + one asset
    finally:
        other.stop()
