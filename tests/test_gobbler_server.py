"""Functional tests of artifacts-gobbler: a real server process, real HTTP,
a real registry and staging directory, the real pygobbler client and
hand-written request files (``gobbler-protocol.md`` §2-§8)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest
import requests

from artifacts_py.servers.gobbler.actions import Config, daily_purge
from artifacts_py.servers.gobbler.registry import go_json
from gobbler_helpers import GobblerFactory, RunningGobbler

pyg = pytest.importorskip("pygobbler")

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root to chown files to other users")
ME = "root" if IS_ROOT else __import__("getpass").getuser()
DAEMON, NOBODY = 1, 65534
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")
MD5_HELLO = "5d41402abc4b2a76b9719d911017c592"


@pytest.fixture(scope="module")
def gob(gobbler_factory: GobblerFactory) -> RunningGobbler:
    return gobbler_factory(admin=ME)


def new_project(gob: RunningGobbler, name: str, **permissions: Any) -> None:
    payload: Dict[str, Any] = {"project": name}
    if permissions:
        payload["permissions"] = permissions
    gob.ok("create_project", payload)


def set_finish(gob: RunningGobbler, project: str, asset: str, version: str, when: str) -> None:
    """Give a version a chosen upload_finish (times have whole-second precision)."""
    path = os.path.join(gob.registry, project, asset, version, "..summary")
    summary = json.loads(open(path).read())
    summary["upload_finish"] = when
    with open(path, "w") as handle:
        handle.write(go_json(summary))


# ---------------------------------------------------------------- upload and formats


def test_upload_writes_go_formatted_metadata(gob: RunningGobbler) -> None:
    new_project(gob, "fmt")
    assert gob.read("fmt", "..quota") == (
        '{ "baseline": 1000000000, "growth_rate": 1000000000, "year": %d }' % time.localtime().tm_year)
    assert gob.read("fmt", "..usage") == '{ "total": 0 }'
    assert gob.read("fmt", "..permissions") == go_json({"owners": [ME], "uploaders": []})
    assert gob.read("fmt", "..permissions") == '{\n    "owners": [\n        "%s"\n    ],\n    "uploaders": []\n}' % ME

    status, body = gob.upload("fmt", "a", "v1", {
        "x.txt": "hello", "sub/y<&>.txt": "abc", ".hidden": "no", "sub/..reserved": "no",
        "link.txt": "->x.txt",
    }, dirs=["empty", "nested/deeper", "onlydots/.git"], ignore_dot=True)
    assert status == 200 and body == {"status": "SUCCESS"}

    manifest_text = gob.read("fmt", "a", "v1", "..manifest")
    assert not manifest_text.endswith("\n")
    assert "\\u003c\\u0026\\u003e" in manifest_text  # Go's HTML escaping of <&>
    manifest = json.loads(manifest_text)
    assert manifest_text == go_json(manifest)  # 4-space indent, sorted keys, no newline
    assert list(manifest) == sorted(manifest)
    assert manifest["x.txt"] == {"size": 5, "md5sum": MD5_HELLO}
    assert list(manifest["x.txt"]) == ["size", "md5sum"]
    assert manifest["link.txt"] == {"size": 5, "md5sum": MD5_HELLO, "link": {
        "project": "fmt", "asset": "a", "version": "v1", "path": "x.txt"}}
    # Leaf empty directories only; a dir holding only skipped dot files counts as empty.
    assert manifest["empty"] == {"size": 0, "md5sum": ""}
    assert manifest["nested/deeper"] == {"size": 0, "md5sum": ""}
    assert "nested" not in manifest
    assert manifest["onlydots"] == {"size": 0, "md5sum": ""}
    assert ".hidden" not in manifest and "sub/..reserved" not in manifest
    assert not os.path.exists(os.path.join(gob.registry, "fmt", "a", "v1", ".hidden"))
    assert os.readlink(os.path.join(gob.registry, "fmt", "a", "v1", "link.txt")) == "x.txt"

    summary_text = gob.read("fmt", "a", "v1", "..summary")
    summary = json.loads(summary_text)
    assert list(summary) == ["upload_user_id", "upload_start", "upload_finish"]  # no on_probation
    assert summary["upload_user_id"] == ME
    assert RFC3339.match(summary["upload_start"]) and RFC3339.match(summary["upload_finish"])
    assert gob.read("fmt", "a", "..latest") == '{\n    "version": "v1"\n}'
    assert gob.read_json("fmt", "..usage") == {"total": 8}
    assert gob.read("fmt", "a", "v1", "..links") == go_json({"link.txt": {
        "project": "fmt", "asset": "a", "version": "v1", "path": "x.txt"}})
    assert not os.path.exists(os.path.join(gob.registry, "fmt", "a", "v1", "sub", "..links"))
    mode = os.stat(os.path.join(gob.registry, "fmt", "a", "v1", "x.txt")).st_mode & 0o777
    assert mode == 0o644
    events = [json.loads(gob.read("..logs", n)) for n in os.listdir(os.path.join(gob.registry, "..logs"))]
    assert {"type": "add-version", "project": "fmt", "asset": "a", "version": "v1",
            "latest": True} in events

    status, body = gob.upload("fmt", "a", "v1", {"z": "z"})
    assert status == 400 and "already exists" in body["reason"]


def test_dedup_against_latest_with_ancestors(gob: RunningGobbler, tmp_path: Path) -> None:
    new_project(gob, "dedup")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("hello")
    (src / "sub" / "b.bin").write_text("bbbb")
    (src / "c.txt").symlink_to("a.txt")
    pyg.upload_directory("dedup", "d", "v1", str(src), staging=gob.staging, url=gob.url)
    (src / "new.txt").write_text("fresh")
    pyg.upload_directory("dedup", "d", "v2", str(src), staging=gob.staging, url=gob.url)
    pyg.upload_directory("dedup", "d", "v3", str(src), staging=gob.staging, url=gob.url)

    v2 = gob.read_json("dedup", "d", "v2", "..manifest")
    v1link = {"project": "dedup", "asset": "d", "version": "v1", "path": "a.txt"}
    assert v2["a.txt"]["link"] == v1link
    assert v2["c.txt"]["link"] == {"project": "dedup", "asset": "d", "version": "v2",
                                   "path": "a.txt", "ancestor": v1link}
    assert "link" not in v2["new.txt"]
    v3 = gob.read_json("dedup", "d", "v3", "..manifest")
    assert v3["a.txt"]["link"] == {"project": "dedup", "asset": "d", "version": "v2",
                                   "path": "a.txt", "ancestor": v1link}
    base = os.path.join(gob.registry, "dedup", "d")
    assert os.readlink(os.path.join(base, "v3", "a.txt")) == "../v1/a.txt"  # ancestor, relative
    assert os.readlink(os.path.join(base, "v3", "sub", "b.bin")) == "../../v1/sub/b.bin"
    assert os.readlink(os.path.join(base, "v2", "c.txt")) == "../v1/a.txt"
    assert open(os.path.join(base, "v3", "c.txt")).read() == "hello"
    assert gob.read_json("dedup", "d", "v3", "sub", "..links") == {"b.bin": {
        "project": "dedup", "asset": "d", "version": "v2", "path": "sub/b.bin", "ancestor": {
            "project": "dedup", "asset": "d", "version": "v1", "path": "sub/b.bin"}}}
    assert gob.read_json("dedup", "..usage")["total"] == 5 + 4 + 5


def test_registry_links_and_their_restrictions(gob: RunningGobbler) -> None:
    new_project(gob, "reg")
    gob.upload("reg", "base", "v1", {"f.txt": "hello"})
    target = os.path.join(gob.registry, "reg", "base", "v1", "f.txt")
    status, _ = gob.upload("reg", "other", "v1", {"ln": "->" + target})
    assert status == 200
    assert gob.read_json("reg", "other", "v1", "..manifest")["ln"]["link"]["asset"] == "base"
    assert os.readlink(os.path.join(gob.registry, "reg", "other", "v1", "ln")) == "../../base/v1/f.txt"

    # Links to probational versions, to metadata, outside versions and outside the registry fail.
    gob.upload("reg", "prob", "v1", {"p.txt": "x"}, on_probation=True)
    for link, message in [
        (os.path.join(gob.registry, "reg", "prob", "v1", "p.txt"), "probational"),
        (os.path.join(gob.registry, "reg", "..permissions"), "outside of a project asset version"),
        (os.path.join(gob.registry, "reg", "base", "v1", "..summary"), "'..'"),
        ("/etc/hostname", "outside the registry"),
        (os.path.join(gob.registry, "reg", "base", "v1"), "is a directory"),
    ]:
        status, body = gob.upload("reg", "bad", "v" + str(abs(hash(link))), {"ln": "->" + link})
        assert status == 500 and message in body["reason"], body
    # The failed uploads were rolled back.
    assert os.listdir(os.path.join(gob.registry, "reg", "bad")) == [] or \
        all(n.startswith("..") for n in os.listdir(os.path.join(gob.registry, "reg", "bad")))


def test_local_link_problems(gob: RunningGobbler) -> None:
    new_project(gob, "loc")
    status, body = gob.upload("loc", "a", "v1", {"a": "->b", "b": "->a"})
    assert status == 500
    status, body = gob.upload("loc", "a", "v1", {".dot": "x", "ln": "->.dot"}, ignore_dot=True)
    assert status == 500 and "should point to a file in the manifest" in body["reason"]
    status, _ = gob.upload("loc", "a", "v1", {"t": "x", "l1": "->l2", "l2": "->t"})
    assert status == 200
    manifest = gob.read_json("loc", "a", "v1", "..manifest")
    assert manifest["l1"]["link"]["path"] == "l2"
    assert "ancestor" in manifest["l1"]["link"] and manifest["l1"]["link"]["ancestor"]["path"] == "t"


def test_special_files_are_refused_without_hanging(gob: RunningGobbler) -> None:
    new_project(gob, "fifo")
    source = gob.make_source({"ok.txt": "fine"})
    os.mkfifo(os.path.join(gob.staging, source, "pipe"))
    status, body = gob.submit("upload", {"source": source, "project": "fifo", "asset": "a",
                                         "version": "v1"})
    assert status == 500 and "pipe" in body["reason"]
    assert not os.path.exists(os.path.join(gob.registry, "fifo", "a", "v1"))  # rolled back
    os.mkfifo(os.path.join(gob.staging, "request-health_check-fifo"))
    status, body = gob.post("request-health_check-fifo")
    assert status == 400 and "regular file" in body["reason"]


def test_consume_moves_files(gob: RunningGobbler) -> None:
    new_project(gob, "cons")
    source = gob.make_source({"a.txt": "hello", "sub/b": "b"})
    gob.ok("upload", {"source": source, "project": "cons", "asset": "a", "version": "v1",
                      "consume": True})
    root = os.path.join(gob.staging, source)
    assert not os.path.exists(os.path.join(root, "a.txt"))
    assert os.path.isdir(os.path.join(root, "sub"))  # directories stay
    assert gob.read("cons", "a", "v1", "a.txt") == "hello"


def test_concurrent_uploads_share_the_locks(gob: RunningGobbler) -> None:
    from concurrent.futures import ThreadPoolExecutor
    new_project(gob, "conc")
    jobs = [("a" if i % 2 else "b", f"v{i}", {"f": "x" * (i + 1)}) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda job: gob.upload("conc", *job), jobs))
    assert [status for status, _ in results] == [200] * 8, results
    # Every version was recorded once; dedup never matched (all sizes differ).
    assert gob.read_json("conc", "..usage") == {"total": sum(range(1, 9))}
    assert pyg.refresh_usage("conc", staging=gob.staging, url=gob.url) == sum(range(1, 9))
    for asset in ("a", "b"):
        assert len([v for v in os.listdir(os.path.join(gob.registry, "conc", asset))
                    if not v.startswith("..")]) == 4


# ---------------------------------------------------------------- probation and permissions


def test_probation_approve_and_reject(gob: RunningGobbler) -> None:
    new_project(gob, "prob")
    gob.upload("prob", "a", "v1", {"x": "one"})
    logs_before = set(os.listdir(os.path.join(gob.registry, "..logs")))
    gob.upload("prob", "a", "v2", {"x": "two"}, on_probation=True)
    assert os.listdir(os.path.join(gob.registry, "..logs")) != [] and \
        set(os.listdir(os.path.join(gob.registry, "..logs"))) == logs_before  # no log
    summary = gob.read_json("prob", "a", "v2", "..summary")
    assert summary["on_probation"] is True
    assert list(summary)[-1] == "on_probation"
    assert gob.read_json("prob", "a", "..latest") == {"version": "v1"}
    assert gob.read_json("prob", "..usage") == {"total": 6}  # probational versions count

    gob.upload("prob", "a", "v3", {"x": "three"}, on_probation=True)
    set_finish(gob, "prob", "a", "v3", "2999-01-01T00:00:00Z")  # strictly later than v1
    pyg.approve_probation("prob", "a", "v3", staging=gob.staging, url=gob.url)
    assert "on_probation" not in gob.read_json("prob", "a", "v3", "..summary")
    assert gob.read_json("prob", "a", "..latest") == {"version": "v3"}

    pyg.reject_probation("prob", "a", "v2", staging=gob.staging, url=gob.url)
    assert not os.path.exists(os.path.join(gob.registry, "prob", "a", "v2"))
    assert gob.read_json("prob", "..usage") == {"total": 3 + 5}
    status, body = gob.submit("approve_probation", {"project": "prob", "asset": "a", "version": "v1"})
    assert status == 500 and "not on probation" in body["reason"]
    status, _ = gob.submit("reject_probation", {"project": "prob", "asset": "a", "version": "v9"})
    assert status == 404
    status, _ = gob.submit("approve_probation", {"project": "nope", "asset": "a", "version": "v1"})
    assert status == 404


@needs_root
def test_permissions_uploaders_and_global_write(gob: RunningGobbler) -> None:
    new_project(gob, "perm", owners=[ME], uploaders=[{"id": "daemon", "asset": "only"}])
    # Non-owner upload to a new asset without global_write: refused.
    status, body = gob.upload("perm", "x", "v1", {"f": "1"}, uid=NOBODY)
    assert status == 403, body
    # Untrusted uploader: forced onto probation.
    status, body = gob.upload("perm", "only", "v1", {"f": "1"}, uid=DAEMON)
    assert status == 200, body
    assert gob.read_json("perm", "only", "v1", "..summary")["on_probation"] is True
    assert not os.path.exists(os.path.join(gob.registry, "perm", "only", "..latest"))
    # Only admins and project owners may approve, not the uploader.
    status, _ = gob.submit("approve_probation", {"project": "perm", "asset": "only", "version": "v1"},
                           uid=DAEMON)
    assert status == 403

    # Source directory owned by someone else than the request file: 403.
    source = gob.make_source({"f": "1"})
    status, body = gob.submit("upload", {"source": source, "project": "perm", "asset": "only",
                                         "version": "v2"}, uid=DAEMON)
    assert status == 403 and "owner of the 'source'" in body["reason"]

    gob.ok("set_permissions", {"project": "perm", "permissions": {"global_write": True}})
    status, body = gob.upload("perm", "mine", "v1", {"f": "1"}, uid=NOBODY)
    assert status == 200, body
    assert gob.read("perm", "mine", "..permissions") == \
        '{\n    "owners": [\n        "nobody"\n    ],\n    "uploaders": null\n}'
    assert "on_probation" not in gob.read_json("perm", "mine", "v1", "..summary")
    # global_write does not open existing assets to others.
    status, _ = gob.upload("perm", "only", "v3", {"f": "1"}, uid=NOBODY)
    assert status == 403
    # The asset owner may set asset permissions; 'asset' inside uploaders is stripped.
    gob.ok("set_permissions", {"project": "perm", "asset": "mine", "permissions": {
        "uploaders": [{"id": "daemon", "asset": "zzz", "trusted": True,
                       "until": "2999-01-01T00:00:00Z"}]}}, uid=NOBODY)
    assert gob.read_json("perm", "mine", "..permissions") == {
        "owners": ["nobody"],
        "uploaders": [{"id": "daemon", "until": "2999-01-01T00:00:00Z", "trusted": True}]}
    status, body = gob.upload("perm", "mine", "v2", {"f": "2"}, uid=DAEMON)
    assert status == 200 and "on_probation" not in gob.read_json("perm", "mine", "v2", "..summary")
    # Project-level changes are for owners only.
    status, _ = gob.submit("set_permissions", {"project": "perm", "permissions": {"owners": []}},
                           uid=NOBODY)
    assert status == 403
    # Admin-only actions refuse others.
    for action in ("create_project", "delete_project", "refresh_usage"):
        status, body = gob.submit(action, {"project": "perm"}, uid=NOBODY)
        assert status == 403, (action, body)


def test_set_permissions_validation_and_client_append(gob: RunningGobbler) -> None:
    new_project(gob, "sp")
    status, body = gob.submit("set_permissions", {"project": "sp"})
    assert status == 400 and "permissions" in body["reason"]
    status, _ = gob.submit("set_permissions", {"project": "sp", "permissions": {
        "uploaders": [{"id": "a", "until": "tomorrow"}]}})
    assert status == 400
    status, _ = gob.submit("set_permissions", {"project": "sp", "permissions": {"uploaders": [{}]}})
    assert status == 400
    status, _ = gob.submit("set_permissions", {"project": "missing", "permissions": {}})
    assert status == 404
    pyg.set_permissions("sp", owners=["extra"], uploaders=[{"id": "u1"}], registry=gob.registry,
                        staging=gob.staging, url=gob.url)
    assert gob.read_json("sp", "..permissions") == {"owners": [ME, "extra"],
                                                    "uploaders": [{"id": "u1"}]}
    # Asset level on a missing asset: the admin creates it.
    gob.ok("set_permissions", {"project": "sp", "asset": "new", "permissions": {"owners": ["o"]}})
    assert gob.read_json("sp", "new", "..permissions") == {"owners": ["o"], "uploaders": []}


def test_names_are_checked(gob: RunningGobbler) -> None:
    for project in (".", "..x", "a/b", "", "a\\b"):
        status, body = gob.submit("create_project", {"project": project})
        assert status == 400, (project, body)
    assert not os.path.exists(os.path.join(gob.registry, "..x"))
    new_project(gob, "names")
    for field in ("asset", "version"):
        payload = {"project": "names", "asset": "a", "version": "v"}
        payload[field] = "."
        source = gob.make_source({"f": "1"})
        status, body = gob.submit("upload", dict(payload, source=source))
        assert status == 400 and "'.'" in body["reason"], body
    status, _ = gob.submit("delete_version", {"project": "names", "asset": "a", "version": "."})
    assert status == 400
    for source in (".", "..", "a/b", "missing"):
        status, _ = gob.submit("upload", {"source": source, "project": "names", "asset": "a",
                                          "version": "v"})
        assert status == 400, source
    status, body = gob.submit("create_project", {"project": "names"})
    assert status == 400 and "already exists" in body["reason"]


# ---------------------------------------------------------------- deletion, refreshes, reindex


def test_delete_refresh_latest_and_usage(gob: RunningGobbler) -> None:
    new_project(gob, "del")
    for i, version in enumerate(["v1", "v2", "v3"]):
        gob.upload("del", "a", version, {"f": version * (i + 1)})
        set_finish(gob, "del", "a", version, f"2030-01-0{i + 1}T00:00:00+02:00")
    assert gob.read_json("del", "a", "..latest") == {"version": "v3"}
    pyg.remove_version("del", "a", "v3", staging=gob.staging, url=gob.url)
    assert gob.read_json("del", "a", "..latest") == {"version": "v2"}
    assert gob.read_json("del", "..usage") == {"total": 2 + 4}
    os.unlink(os.path.join(gob.registry, "del", "a", "..latest"))
    assert pyg.refresh_latest("del", "a", staging=gob.staging, url=gob.url) == "v2"
    assert gob.read_json("del", "a", "..latest") == {"version": "v2"}

    with open(os.path.join(gob.registry, "del", "..usage"), "w") as handle:
        handle.write('{"total": 999}')
    assert pyg.refresh_usage("del", staging=gob.staging, url=gob.url) == 6
    assert gob.read("del", "..usage") == '{\n    "total": 6\n}'

    gob.ok("delete_version", {"project": "del", "asset": "a", "version": "v1"})
    gob.ok("delete_version", {"project": "del", "asset": "a", "version": "v2"})
    assert not os.path.exists(os.path.join(gob.registry, "del", "a", "..latest"))
    assert gob.ok("refresh_latest", {"project": "del", "asset": "a"}) == {"status": "SUCCESS"}
    gob.ok("delete_version", {"project": "del", "asset": "a", "version": "gone"})  # no-op

    gob.upload("del", "b", "v1", {"f": "12345"})
    pyg.remove_asset("del", "b", staging=gob.staging, url=gob.url)
    assert not os.path.exists(os.path.join(gob.registry, "del", "b"))
    assert gob.read_json("del", "..usage") == {"total": 0}
    pyg.remove_project("del", staging=gob.staging, url=gob.url)
    assert not os.path.exists(os.path.join(gob.registry, "del"))
    gob.ok("delete_project", {"project": "del"})  # missing project: success
    events = [json.loads(gob.read("..logs", n)) for n in os.listdir(os.path.join(gob.registry, "..logs"))]
    assert {"type": "delete-project", "project": "del"} in events
    assert {"type": "delete-asset", "project": "del", "asset": "b"} in events
    assert {"type": "delete-version", "project": "del", "asset": "a", "version": "v3",
            "latest": True} in events


def test_reindex_and_validate(gob: RunningGobbler) -> None:
    new_project(gob, "idx")
    gob.upload("idx", "a", "v1", {"a.txt": "hello", "sub/b": "bb"})
    gob.upload("idx", "a", "v2", {"a.txt": "hello", "c.txt": "->a.txt", "d": "new"},
               dirs=["empty"])
    gob.ok("validate_version", {"project": "idx", "asset": "a", "version": "v2"})
    original = gob.read("idx", "a", "v2", "..manifest")
    v2 = os.path.join(gob.registry, "idx", "a", "v2")

    os.unlink(os.path.join(v2, "..manifest"))
    gob.ok("reindex_version", {"project": "idx", "asset": "a", "version": "v2"})
    assert gob.read("idx", "a", "v2", "..manifest") == original  # ancestry recovered from ..links
    assert os.readlink(os.path.join(v2, "c.txt")) == "../v1/a.txt"

    with open(os.path.join(v2, "d"), "w") as handle:
        handle.write("tampered")
    status, body = gob.submit("validate_version", {"project": "idx", "asset": "a", "version": "v2"})
    assert status == 500 and 'incorrect size in manifest for "d"' in body["reason"]
    gob.ok("reindex_version", {"project": "idx", "asset": "a", "version": "v2"})
    gob.ok("validate_version", {"project": "idx", "asset": "a", "version": "v2"})

    with open(os.path.join(v2, "whee"), "w") as handle:
        handle.write("stray")
    status, body = gob.submit("validate_version", {"project": "idx", "asset": "a", "version": "v2"})
    assert status == 500 and 'extra file "whee"' in body["reason"]  # Go's wording
    os.unlink(os.path.join(v2, "whee"))

    os.unlink(os.path.join(v2, "..links"))
    status, body = gob.submit("validate_version", {"project": "idx", "asset": "a", "version": "v2"})
    assert status == 500 and "link" in body["reason"]
    # Names are checked before the admin check; a missing version is a 404.
    status, _ = gob.submit("reindex_version", {"project": "idx", "asset": "a"})
    assert status == 400
    status, _ = gob.submit("reindex_version", {"project": "idx", "asset": "a", "version": "v9"})
    assert status == 404


def test_reroute_links_copy_and_relink(gob: RunningGobbler) -> None:
    new_project(gob, "rr")
    gob.upload("rr", "a", "v1", {"a.txt": "hello", "b.txt": "bye"})
    gob.upload("rr", "a", "v2", {"a.txt": "hello", "b.txt": "bye", "c.txt": "->a.txt"})
    gob.upload("rr", "a", "v3", {"a.txt": "hello"})
    # v2/a.txt -> v1 (no ancestor); v3/a.txt -> v2/a.txt with ancestor v1/a.txt.
    to_delete = [{"project": "rr", "asset": "a", "version": "v1"}]
    dry = pyg.reroute_links(to_delete, staging=gob.staging, url=gob.url, dry_run=True)
    assert os.path.islink(os.path.join(gob.registry, "rr", "a", "v2", "a.txt"))  # untouched
    changes = pyg.reroute_links(to_delete, staging=gob.staging, url=gob.url)
    assert changes == dry
    by_path = {c["path"]: c for c in changes}
    assert by_path["rr/a/v2/a.txt"] == {"copy": True, "path": "rr/a/v2/a.txt",
                                        "source": "rr/a/v1/a.txt", "usage": 5}
    assert by_path["rr/a/v3/a.txt"] == {"copy": False, "path": "rr/a/v3/a.txt",
                                        "source": "rr/a/v1/a.txt", "usage": 0}
    assert by_path["rr/a/v2/c.txt"]["copy"] is False
    v2 = os.path.join(gob.registry, "rr", "a", "v2")
    assert not os.path.islink(os.path.join(v2, "a.txt"))
    assert open(os.path.join(v2, "a.txt")).read() == "hello"
    manifest = gob.read_json("rr", "a", "v3", "..manifest")
    assert manifest["a.txt"]["link"] == {"project": "rr", "asset": "a", "version": "v2",
                                         "path": "a.txt"}
    assert os.readlink(os.path.join(gob.registry, "rr", "a", "v3", "a.txt")) == "../v2/a.txt"
    assert gob.read_json("rr", "..usage")["total"] == 8 + 5 + 3
    gob.ok("delete_version", {"project": "rr", "asset": "a", "version": "v1"})
    for version in ("v2", "v3"):
        gob.ok("validate_version", {"project": "rr", "asset": "a", "version": version})
    assert open(os.path.join(gob.registry, "rr", "a", "v3", "a.txt")).read() == "hello"

    assert gob.ok("reroute_links", {"to_delete": []})["changes"] == []
    status, _ = gob.submit("reroute_links", {})
    assert status == 400
    status, _ = gob.submit("reroute_links", {"to_delete": [{"project": "rr", "version": "v1"}]})
    assert status == 400
    status, _ = gob.submit("reroute_links", {"to_delete": [{"project": "nothere"}]})
    assert status == 500


# ---------------------------------------------------------------- REST endpoints


def test_list_semantics(gob: RunningGobbler) -> None:
    new_project(gob, "lst")
    gob.upload("lst", "a", "v1", {"A": "1", "sub/B": "2", "sub/link": "->../A", "odd name+%": "3"},
               dirs=["sub/whee", "deep/er"])

    def listing(query: str) -> Tuple[int, Any]:
        status, headers, body = gob.http("GET", "/list" + query)
        assert headers["Content-Type"] == "application/json"
        assert headers["Access-Control-Allow-Origin"] == "*"
        return status, json.loads(body)

    status, top = listing("")
    assert status == 200 and "..logs/" in top and "lst/" in top
    assert listing("?path=lst%2Fa%2Fv1")[1] == sorted(listing("?path=lst%2Fa%2Fv1")[1])
    assert listing("?path=lst/a/v1/")[1] == ["..manifest", "..summary", "A",
                                             "deep/", "odd name+%", "sub/"]
    status, rec = listing("?path=lst%2Fa%2Fv1&recursive=true")
    files = [e for e in rec if not e.endswith("/")]
    assert files == ["..manifest", "..summary", "A", "odd name+%", "sub/..links",
                     "sub/B", "sub/link"]
    assert sorted(e for e in rec if e.endswith("/")) == ["deep/er/", "sub/whee/"]
    assert listing("?path=lst/a/v1&recursive=True")[1] == listing("?path=lst/a/v1")[1]
    # Decoded once: a '+' sent as %2B stays a '+'.
    assert listing("?path=" + "lst/a/v1/odd%20name%2B%25")[1] == []  # a file lists as []
    assert listing("?path=lst/a/v1/sub/link")[1] == []
    status, body = listing("?path=..%2F..")
    assert status == 400 and body["reason"] == "'path' is not local to the registry"
    status, body = listing("?path=/etc")
    assert status == 400
    status, body = listing("?path=lst/none")
    assert status == 500 and "no such file or directory" in body["reason"]
    assert pyg.list_versions("lst", "a", registry=gob.registry, url=gob.url, force_remote=True) == ["v1"]
    assert "lst" in pyg.list_projects(registry=gob.registry, url=gob.url, force_remote=True)


def test_fetch_static_files(gob: RunningGobbler, tmp_path: Path) -> None:
    new_project(gob, "fe")
    payload = bytes(range(256)) * 64
    source = gob.make_source({"t.txt": "hello", "sub/l": "->../t.txt"})
    with open(os.path.join(gob.staging, source, "bin.dat"), "wb") as handle:
        handle.write(payload)
    gob.ok("upload", {"source": source, "project": "fe", "asset": "a", "version": "v1"})

    status, headers, body = gob.http("GET", "/fetch/fe/a/v1/bin.dat")
    assert status == 200 and body == payload
    assert headers["Content-Length"] == str(len(payload))
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Access-Control-Allow-Origin"] == "*"
    last_modified = headers["Last-Modified"]
    assert last_modified.endswith("GMT")

    status, headers, body = gob.http("GET", "/fetch/fe/a/v1/bin.dat", {"Range": "bytes=10-19"})
    assert status == 206 and body == payload[10:20]
    assert headers["Content-Range"] == f"bytes 10-19/{len(payload)}"
    status, _, body = gob.http("GET", "/fetch/fe/a/v1/bin.dat", {"Range": "bytes=-5"})
    assert status == 206 and body == payload[-5:]
    status, headers, _ = gob.http("GET", "/fetch/fe/a/v1/bin.dat", {"Range": "bytes=999999-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(payload)}"
    status, _, body = gob.http("GET", "/fetch/fe/a/v1/bin.dat", {"Range": "bytes=0-1,5-6"})
    assert status in (200, 206) and (status == 206 or body == payload)

    status, headers, body = gob.http("HEAD", "/fetch/fe/a/v1/bin.dat")
    assert status == 200 and body == b"" and headers["Content-Length"] == str(len(payload))
    status, _, body = gob.http("GET", "/fetch/fe/a/v1/bin.dat", {"If-Modified-Since": last_modified})
    assert status == 304 and body == b""
    status, _, body = gob.http("GET", "/fetch/fe/a/v1/bin.dat",
                               {"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert status == 200 and body == payload

    status, headers, body = gob.http("GET", "/fetch/fe/a/v1/sub/l")  # symlinks are followed
    assert status == 200 and body == b"hello"
    assert headers["Content-Type"].startswith("text/plain")
    status, headers, body = gob.http("GET", "/fetch/fe/a/v1/..manifest")
    assert status == 200 and json.loads(body)["t.txt"]["size"] == 5
    status, headers, body = gob.http("GET", "/fetch/fe/a/v1/nothing")
    assert status == 404 and body == b"404 page not found\n"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Access-Control-Allow-Origin"] == "*"

    status, headers, _ = gob.http("GET", "/fetch/fe/a/v1")
    assert status == 301 and headers["Location"] == "v1/"
    status, headers, body = gob.http("GET", "/fetch/fe/a/v1/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<a href="..manifest">..manifest</a>' in body and b'<a href="sub/">sub/</a>' in body
    status, headers, _ = gob.http("GET", "/fetch/fe/a/v1/t.txt/")
    assert status == 301 and headers["Location"] == "../t.txt"
    status, headers, _ = gob.http("GET", "/fetch")
    assert status == 301 and headers["Location"] == "/fetch/"
    # '..' never escapes the registry, even encoded.
    for path in ("/fetch/../../../etc/passwd", "/fetch/%2e%2e/%2e%2e/etc/passwd",
                 "/fetch/fe/..%2f..%2f..%2fetc/passwd"):
        status, headers, body = gob.http("GET", path)
        assert b"root:" not in body
        assert status in (301, 404), (path, status)
        if status == 301:  # the cleaned path is outside /fetch/: the banner, not the file
            status, _, body = gob.http("GET", headers["Location"])
            assert b"root:" not in body

    cache = tmp_path / "cache"
    local = pyg.fetch_file("fe/a/v1/bin.dat", registry=gob.registry, url=gob.url, cache=str(cache),
                           force_remote=True)
    assert open(local, "rb").read() == payload
    assert pyg.fetch_usage("fe", registry=gob.registry, url=gob.url, force_remote=True) == 5 + len(payload)


def test_banner_info_options_and_405(gob: RunningGobbler) -> None:
    status, headers, body = gob.http("GET", "/whatever/else")
    assert status == 200 and json.loads(body) == {"name": "gobbler API",
                                                  "url": "https://github.com/ArtifactDB/gobbler"}
    assert headers["Content-Type"] == "application/json"
    status, _, body = gob.http("GET", "/new/request-upload-x")
    assert status == 200 and json.loads(body)["name"] == "gobbler API"
    status, _, body = gob.http("GET", "/info")
    assert json.loads(body) == {"staging": gob.staging, "registry": gob.registry}
    assert pyg.service_info(gob.url) == {"staging": gob.staging, "registry": gob.registry}
    status, headers, body = gob.http("OPTIONS", "/anything")
    assert status == 204 and body == b""
    assert headers["Access-Control-Allow-Methods"] == "GET, OPTIONS"
    assert headers["Access-Control-Allow-Headers"] == "*"
    for method, path in (("POST", "/list"), ("POST", "/info"), ("POST", "/new/"),
                         ("DELETE", "/fetch/x"), ("PUT", "/")):
        status, headers, body = gob.http(method, path)
        assert status == 405 and body == b"Method Not Allowed\n", (method, path)
        assert "GET, HEAD, OPTIONS" in headers["Allow"]
    # The connection stays usable after an error (keep-alive with bodies consumed).
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", gob.port, timeout=10)
    for _ in range(3):
        conn.request("POST", "/list", body=b"x" * 100)
        assert conn.getresponse().read() == b"Method Not Allowed\n"
        conn.request("GET", "/info")
        assert json.loads(conn.getresponse().read())["registry"] == gob.registry
    conn.close()


# ---------------------------------------------------------------- request-file checks


def test_request_file_checks(gob: RunningGobbler) -> None:
    new_project(gob, "rq")
    name = gob.write_request("health_check", {})
    assert gob.post(name) == (200, {"status": "SUCCESS"})
    status, body = gob.post(name)  # replay
    assert status == 400 and body["reason"] == "path is already being processed"

    name = gob.write_request("health_check", {})
    old = time.time() - 120
    os.utime(os.path.join(gob.staging, name), (old, old))
    status, body = gob.post(name)
    assert status == 400 and body["reason"] == "request file is expired"

    target = gob.write_request("health_check", {})
    os.symlink(os.path.join(gob.staging, target), os.path.join(gob.staging, "request-health_check-sym"))
    assert gob.post("request-health_check-sym")[0] == 400
    os.link(os.path.join(gob.staging, target), os.path.join(gob.staging, "request-health_check-hard"))
    status, body = gob.post("request-health_check-hard")
    assert status == 400 and "hard link" in body["reason"]
    os.mkdir(os.path.join(gob.staging, "request-health_check-dir"))
    assert gob.post("request-health_check-dir")[0] == 400
    assert gob.post("request-health_check-missing")[0] == 400
    assert gob.post("not-a-request")[0] == 400
    assert gob.post("request-health_check-x%2Fy")[0] == 400
    status, body = gob.submit("frobnicate", {})
    assert status == 400 and body["reason"] == "invalid request type"

    status, body = gob.post(gob.write_request("create_project", None, raw=b"{not json"))
    assert status == 400 and "JSON" in body["reason"]
    big = json.dumps({"project": "big", "pad": "x" * (2 << 20)}).encode()
    status, body = gob.post(gob.write_request("create_project", None, raw=big))
    assert status == 400 and "larger" in body["reason"]


@needs_root
def test_unknown_uid_gets_a_clear_error(gob: RunningGobbler) -> None:
    status, body = gob.submit("create_project", {"project": "ghost"}, uid=54321)
    assert status == 403 and "54321" in body["reason"]


def test_staging_entries_present_at_startup_cannot_be_replayed(
        gobbler_factory_fn: GobblerFactory, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "request-health_check-early").write_text("{}")
    server = gobbler_factory_fn(base=tmp_path)
    status, body = server.post("request-health_check-early")
    assert status == 400 and body["reason"] == "path is already being processed"


# ---------------------------------------------------------------- flags and start-up


def test_whitelist_spoof_and_prefix(gobbler_factory_fn: GobblerFactory, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "data.bin").write_text("whitelisted")
    (tmp_path / "wl").write_text(f"\n{allowed}\n\n")
    (tmp_path / "spoof").write_text(f"\n{ME}:alice,bob\nmallory:*,-root\n")
    server = gobbler_factory_fn("-whitelist", str(tmp_path / "wl"), "-spoof",
                                str(tmp_path / "spoof"), "-prefix", "api/v1", admin=ME)
    status, _, body = server.http("GET", "/api/v1/info")
    assert status == 200 and json.loads(body)["registry"] == server.registry
    status, headers, _ = server.http("GET", "/info")  # only OPTIONS is unprefixed, as in Go
    assert status == 405 and headers["Allow"] == "OPTIONS"
    status, _, body = server.http("POST", "/api/v1/new/" + server.write_request(
        "create_project", {"project": "wl"}))
    assert status == 200, body
    server.post = lambda name: _post(server, "/api/v1/new/" + name)  # type: ignore[method-assign]
    status, reply = server.upload("wl", "a", "v1", {"ln": "->" + str(allowed / "data.bin")})
    assert status == 200, reply
    entry = server.read_json("wl", "a", "v1", "..manifest")["ln"]
    assert entry == {"size": 11, "md5sum": entry["md5sum"]} and "link" not in entry
    assert os.readlink(os.path.join(server.registry, "wl", "a", "v1", "ln")) == str(allowed / "data.bin")

    # Spoofing: allowed for listed users, recorded as the uploader.
    status, reply = server.upload("wl", "a", "v2", {"f": "1"}, spoof="alice")
    assert status == 403  # alice is no owner of the project...
    server.ok("set_permissions", {"project": "wl", "permissions": {"owners": [ME, "alice"]}})
    status, reply = server.upload("wl", "a", "v2", {"f": "1"}, spoof="alice")
    assert status == 200, reply
    assert server.read_json("wl", "a", "v2", "..summary")["upload_user_id"] == "alice"
    status, reply = server.upload("wl", "a", "v3", {"f": "1"}, spoof="carol")
    assert status == 403 and "spoof" in reply["reason"]


def _post(server: RunningGobbler, path: str) -> Tuple[int, Dict[str, Any]]:
    status, headers, body = server.http("POST", path)
    return status, json.loads(body)


def test_flags_accept_go_and_gnu_spellings() -> None:
    from artifacts_py.servers.gobbler.server import parse_args
    args = parse_args(["-registry=/r/", "--staging", "/s", "-port=0", "-admin=a,b",
                       "-prefix", "api", "-probation=3", "-host=0.0.0.0"])
    assert (args.registry, args.staging, args.port, args.admin, args.prefix, args.probation,
            args.host) == ("/r/", "/s", 0, "a,b", "api", 3, "0.0.0.0")
    assert parse_args(["-registry", "/r", "-staging", "/s"]).port == 8080


def test_startup_errors(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "artifacts_py.servers.gobbler.server"]
    res = subprocess.run(run + ["-registry", str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 1 and "usage" in res.stderr.lower()
    (tmp_path / "wl").write_text("relative/dir\n")
    res = subprocess.run(run + ["-registry", str(tmp_path), "-staging", str(tmp_path),
                                "-whitelist", str(tmp_path / "wl")], capture_output=True, text=True)
    assert res.returncode == 1 and "not an absolute path" in res.stderr
    (tmp_path / "spoof").write_text("a:b:c\n")
    res = subprocess.run(run + ["-registry", str(tmp_path), "-staging", str(tmp_path),
                                "-spoof", str(tmp_path / "spoof")], capture_output=True, text=True)
    assert res.returncode == 1


# ---------------------------------------------------------------- purge and launcher


def test_daily_purge(gobbler_factory_fn: GobblerFactory) -> None:
    server = gobbler_factory_fn("-probation", "1")
    server.ok("create_project", {"project": "pp"})
    server.upload("pp", "a", "v1", {"f": "12345"}, on_probation=True)
    server.upload("pp", "a", "v2", {"f": "abc"})
    server.stop()
    old_entry = os.path.join(server.staging, "old-upload")
    os.makedirs(os.path.join(old_entry, "inner"))
    ancient = time.time() - 8 * 86400
    os.utime(old_entry, (ancient, ancient))
    log = os.path.join(server.registry, "..logs", "old-log")
    open(log, "w").close()
    os.utime(log, (ancient, ancient))
    cfg = Config(registry=server.registry, staging=server.staging, probation_days=1)

    removed = daily_purge(cfg, time.time())
    assert old_entry in removed and log in removed
    assert os.path.isdir(os.path.join(server.registry, "pp", "a", "v1"))  # not a day old yet
    assert any(n.startswith("src") for n in os.listdir(server.staging))   # recent uploads stay

    removed = daily_purge(cfg, time.time() + 2 * 86400)
    assert os.path.join(server.registry, "pp", "a", "v1") in removed
    assert not os.path.exists(os.path.join(server.registry, "pp", "a", "v1"))
    assert os.path.isdir(os.path.join(server.registry, "pp", "a", "v2"))
    assert json.loads(open(os.path.join(server.registry, "pp", "..usage")).read()) == {"total": 3}


def test_launcher_start_and_stop(tmp_path: Path) -> None:
    from artifacts_py.servers.gobbler.launch import start_gobbler, stop_gobbler
    new, staging, registry, url = start_gobbler()
    try:
        assert new and url.startswith("http://127.0.0.1:")
        assert os.stat(staging).st_mode & 0o7777 == 0o1777
        again = start_gobbler()
        assert again == (False, staging, registry, url)
        assert pyg.service_info(url)["registry"] == registry
        pyg.create_project("launched", staging=staging, url=url)  # current user is admin
        assert os.path.isdir(os.path.join(registry, "launched"))
    finally:
        stop_gobbler()
        _remove_default_dirs(staging, registry)
    with pytest.raises(requests.exceptions.ConnectionError):
        pyg.service_info(url)

    from artifacts_py.servers.gobbler.launch import serve_in_thread
    new, staging, registry, url = serve_in_thread()
    try:
        assert new and pyg.service_info(url) == {"staging": staging, "registry": registry}
        assert serve_in_thread()[0] is False and start_gobbler()[0] is False
        pyg.create_project("threaded", staging=staging, url=url)
        assert os.path.isdir(os.path.join(registry, "threaded"))
    finally:
        stop_gobbler()
        _remove_default_dirs(staging, registry)


def test_launcher_uses_the_given_directories_and_admins(tmp_path: Path) -> None:
    from artifacts_py.servers.gobbler.launch import start_gobbler, stop_gobbler
    staging, registry = tmp_path / "staging", tmp_path / "registry"
    staging.mkdir()
    staging.chmod(0o1777)
    registry.mkdir()
    stop_gobbler()  # never reuse a server someone else configured
    new, st, reg, url = start_gobbler(staging=str(staging), registry=str(registry),
                                      admin=["daemon", ME])
    try:
        assert new and (st, reg) == (str(staging), str(registry))
        pyg.create_project("given", staging=st, url=url)  # ME is the second admin
        assert (registry / "given").is_dir()
    finally:
        stop_gobbler()


def _remove_default_dirs(*dirs: str) -> None:
    # The launcher's default staging/registry are mkdtemp folders in TMPDIR
    # that stop_gobbler leaves behind; this test made them, so it removes them.
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def test_version_flag_missing_staging_and_port_clash(tmp_path: Path) -> None:
    import socket

    run = [sys.executable, "-m", "artifacts_py.servers.gobbler.server"]
    out = subprocess.run([*run, "-V"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("artifacts-gobbler (artifacts-py ")
    registry = tmp_path / "registry"
    registry.mkdir()
    out = subprocess.run([*run, "-registry", str(registry), "-staging", str(tmp_path / "nope"),
                          "-port", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "staging directory" in out.stderr and "does not exist" in out.stderr
    assert list(registry.iterdir()) == []  # nothing created before the check
    (tmp_path / "staging").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run([*run, "-registry", str(registry), "-staging",
                              str(tmp_path / "staging"), "-port", str(port)],
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and f"port {port}" in out.stderr and "in use" in out.stderr
    assert list(registry.iterdir()) == [] and "Traceback" not in out.stderr
