"""Security tests for artifacts-gobbler over real HTTP, acting as other users.

The server identifies users by the Unix owner of request files, so these tests
run as root and ``chown`` request files and upload directories to existing
accounts (``daemon``: project owner, ``bin``: untrusted uploader, ``nobody``:
stranger).  Every refused request must answer a JSON error with a reason and
leave the registry tree exactly as it was (apart from ``..logs`` and the empty
``..LOCK*`` files that are created lazily).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import pytest
from gobbler_helpers import GobblerFactory, RunningGobbler

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                       reason="needs root to chown request files to other users"),
]

ADMIN, OWNER, UPLOADER, STRANGER = "root", "daemon", "bin", "nobody"
PROJECT = "sec"

# An upload tree: relative path -> file bytes, or Link(target) for a symlink.
Tree = dict[str, Union[bytes, "Link"]]


@dataclass(frozen=True)
class Link:
    """A symlink to create in an upload directory."""

    target: str


def _ids(user: Union[str, int]) -> tuple[int, int]:
    """(uid, gid) of a user name, or (uid, uid) for a bare numeric uid."""
    if isinstance(user, int):
        return user, user
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _unknown_uid() -> int:
    """A uid with no passwd entry."""
    uid = 54321
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


def _chown_tree(root: Path, user: Union[str, int]) -> None:
    uid, gid = _ids(user)
    os.lchown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


def snapshot(registry: Path) -> dict[str, str]:
    """Every entry of the registry (type + content hash or link target).

    ``..logs`` and the ``..LOCK*`` files are left out: the first records events,
    the second are empty lock files that Go also creates lazily.
    """
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(registry):
        rel = os.path.relpath(dirpath, registry)
        if rel == ".":
            dirnames[:] = [d for d in dirnames if d != "..logs"]
        for name in dirnames + filenames:
            if name.startswith("..LOCK"):
                continue
            path = os.path.join(dirpath, name)
            key = os.path.normpath(os.path.join(rel, name))
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[key] = "link:" + os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                out[key] = "dir"
            else:
                out[key] = "file:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return out


@contextlib.contextmanager
def unchanged(registry: Path) -> Iterator[None]:
    """Assert that the body of the ``with`` leaves the registry tree as it was."""
    before = snapshot(registry)
    yield
    assert snapshot(registry) == before, "the registry changed"


def assert_error(resp: Any, *statuses: int) -> str:
    """The response is a JSON error envelope with one of ``statuses``; return the reason."""
    assert resp.status_code in statuses, (resp.status_code, resp.text[:500])
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    body: dict[str, Any] = resp.json()
    assert body["status"] == "ERROR", body
    reason = body.get("reason")
    assert isinstance(reason, str) and reason.strip(), body
    return reason


def assert_success(resp: Any) -> dict[str, Any]:
    """The response is a JSON success envelope."""
    assert resp.status_code == 200, (resp.status_code, resp.text[:500])
    body: dict[str, Any] = resp.json()
    assert body["status"] == "SUCCESS", body
    return body


@dataclass(frozen=True)
class Gobbler:
    """A running server (from ``gobbler_factory``) seen as a given user: request
    files and upload directories are ``chown``ed to that user."""

    server: RunningGobbler

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def staging(self) -> Path:
        return Path(self.server.staging)

    @property
    def registry(self) -> Path:
        return Path(self.server.registry)

    def write_request(self, action: str, body: Union[dict[str, Any], bytes],
                      user: Union[str, int] = ADMIN) -> Path:
        """Drop a request file owned by ``user`` into staging."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        path = self.staging / self.server.write_request(action, None, raw=raw)
        path.chmod(0o644)
        os.chown(path, *_ids(user))
        return path

    def post(self, name: str) -> Any:
        """Trigger a request file by name."""
        import requests

        # A redirect must never be followed silently (it would turn into a GET).
        return requests.post(f"{self.url}/new/{name}", timeout=60, allow_redirects=False)

    def request(self, action: str, body: Union[dict[str, Any], bytes],
                user: Union[str, int] = ADMIN) -> Any:
        """Write a request file as ``user`` and trigger it."""
        return self.post(self.write_request(action, body, user).name)

    def upload_dir(self, tree: Tree, user: Union[str, int] = OWNER,
                   name: Optional[str] = None) -> str:
        """Create an upload directory in staging owned by ``user``; return its name."""
        root = self.staging / (name or f"up{uuid.uuid4().hex[:10]}")
        root.mkdir()
        for rel, content in tree.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Link):
                os.symlink(content.target, path)
            else:
                path.write_bytes(content)
        _chown_tree(root, user)
        return root.name

    def upload(self, version: str, tree: Tree, user: Union[str, int] = OWNER,
               asset: str = "a", project: str = PROJECT, **extra: Any) -> Any:
        """Upload ``tree`` as ``user`` (upload dir and request file both theirs)."""
        body = {"source": self.upload_dir(tree, user), "project": project, "asset": asset,
                "version": version, **extra}
        return self.request("upload", body, user)

    def refused(self, action: str, body: Union[dict[str, Any], bytes],
                user: Union[str, int], *statuses: int) -> str:
        """Assert the request is refused and the registry is untouched; return the reason."""
        with unchanged(self.registry):
            return assert_error(self.request(action, body, user), *statuses)


def _create_project(gob: Gobbler, project: str, **permissions: Any) -> None:
    assert_success(gob.request("create_project", {"project": project,
                                                   "permissions": permissions}))


@pytest.fixture(scope="module")
def gob(gobbler_factory: GobblerFactory) -> Gobbler:
    """Our server, admin root, with project ``sec``.

    ``sec`` is owned by daemon, bin is an untrusted uploader.  Set-up also
    proves that identities come from file ownership: daemon's upload is
    trusted and recorded as daemon's, bin's is forced onto probation.
    """
    g = Gobbler(gobbler_factory(admin=[ADMIN]))
    _create_project(g, PROJECT, owners=[OWNER], uploaders=[{"id": UPLOADER}])
    assert_success(g.upload("v1", {"x.txt": b"version one\n"}, OWNER))
    assert_success(g.upload("p1", {"x.txt": b"probational\n"}, UPLOADER))
    summary = json.loads((g.registry / PROJECT / "a" / "v1" / "..summary").read_text())
    assert summary["upload_user_id"] == OWNER and "on_probation" not in summary
    summary = json.loads((g.registry / PROJECT / "a" / "p1" / "..summary").read_text())
    assert summary["upload_user_id"] == UPLOADER and summary["on_probation"] is True
    return g


# --- authorisation -----------------------------------------------------------


def test_stranger_cannot_upload(gob: Gobbler) -> None:
    body = {"source": gob.upload_dir({"f": b"intruder"}, STRANGER), "project": PROJECT,
            "asset": "a", "version": "v9"}
    gob.refused("upload", body, STRANGER, 403)
    body = {"source": gob.upload_dir({"f": b"intruder"}, STRANGER), "project": PROJECT,
            "asset": "brand-new", "version": "v1"}
    gob.refused("upload", body, STRANGER, 403)
    assert not (gob.registry / PROJECT / "brand-new").exists()


def test_upload_dir_of_another_user_is_refused(gob: Gobbler) -> None:
    # daemon may upload, but not a directory that nobody owns.
    body = {"source": gob.upload_dir({"f": b"theirs"}, STRANGER), "project": PROJECT,
            "asset": "a", "version": "v9"}
    gob.refused("upload", body, OWNER, 403)


@pytest.mark.parametrize("user", [STRANGER, UPLOADER])
@pytest.mark.parametrize("action", ["approve_probation", "reject_probation"])
def test_non_owner_cannot_approve_or_reject(gob: Gobbler, user: str, action: str) -> None:
    gob.refused(action, {"project": PROJECT, "asset": "a", "version": "p1"}, user, 403)
    assert (gob.registry / PROJECT / "a" / "p1" / "..summary").exists()


@pytest.mark.parametrize("user", [STRANGER, UPLOADER])
@pytest.mark.parametrize("asset", [None, "a", "not-yet"])
def test_non_owner_cannot_change_permissions(gob: Gobbler, user: str,
                                             asset: Optional[str]) -> None:
    body: dict[str, Any] = {"project": PROJECT,
                            "permissions": {"owners": [user], "uploaders": [{"id": user,
                                                                            "trusted": True}]}}
    if asset is not None:
        body["asset"] = asset
    gob.refused("set_permissions", body, user, 403)


@pytest.mark.parametrize("action,body", [
    ("create_project", {"project": "mine"}),
    ("delete_project", {"project": PROJECT}),
    ("delete_asset", {"project": PROJECT, "asset": "a"}),
    ("delete_version", {"project": PROJECT, "asset": "a", "version": "v1"}),
    ("refresh_latest", {"project": PROJECT, "asset": "a"}),
    ("refresh_usage", {"project": PROJECT}),
    ("reindex_version", {"project": PROJECT, "asset": "a", "version": "v1"}),
    ("reroute_links", {"to_delete": [{"project": PROJECT}]}),
])
def test_owner_cannot_do_admin_actions(gob: Gobbler, action: str, body: dict[str, Any]) -> None:
    gob.refused(action, body, OWNER, 403)


def test_spoofing_without_spoof_file_is_refused(gob: Gobbler) -> None:
    body = {"project": PROJECT, "asset": "a", "version": "p1", "spoof": OWNER}
    gob.refused("approve_probation", body, STRANGER, 403)


# --- symlinks out of the upload ----------------------------------------------


def _assert_nothing_leaked(gob: Gobbler, version: str, secret: Path) -> None:
    assert not (gob.registry / PROJECT / "a" / version).exists()
    data = secret.read_bytes()
    real = os.path.realpath(secret)
    for dirpath, _, filenames in os.walk(gob.registry):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                assert os.path.realpath(path) != real, path
            elif data:
                assert data not in Path(path).read_bytes(), path


@pytest.fixture(scope="module")
def outside_secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file in a sibling temporary directory, outside staging and registry."""
    path = tmp_path_factory.mktemp("outside") / "secret.bin"
    path.write_bytes(b"TOP-SECRET-" + uuid.uuid4().hex.encode())
    return path


@pytest.mark.parametrize("kind", ["shadow", "absolute", "relative", "staging-sibling",
                                  "nested", "directory", "via-dir-link", "via-registry"])
def test_symlink_escaping_upload_is_refused(gob: Gobbler, outside_secret: Path,
                                            kind: str) -> None:
    secret = Path("/etc/shadow") if kind == "shadow" else outside_secret
    if kind == "staging-sibling":
        # Another user's upload directory in the same staging area.
        other = gob.staging / gob.upload_dir({"private.bin": outside_secret.read_bytes()},
                                             STRANGER)
        secret = other / "private.bin"
    assert secret.is_file()
    name = f"up{uuid.uuid4().hex[:10]}"
    rel = "deep/er/evil" if kind == "nested" else "evil"
    target = str(secret.parent if kind == "directory" else secret)
    tree: Tree = {"ok.txt": b"fine"}
    if kind in ("relative", "nested"):
        target = os.path.relpath(target, (gob.staging / name / rel).parent)
    elif kind == "via-dir-link":
        # Lexically local ("d/secret.bin"), but d is a symlink to the outside dir.
        tree["d"] = Link(str(secret.parent))
        target = f"d/{secret.name}"
    elif kind == "via-registry":
        # Starts inside the registry, '..' walks back out.
        target = f"{gob.registry}/{PROJECT}/a/v1/../../../{os.path.relpath(secret, gob.registry)}"
    tree[rel] = Link(target)
    version = f"esc-{kind}"
    body = {"source": gob.upload_dir(tree, OWNER, name),
            "project": PROJECT, "asset": "a", "version": version}
    with unchanged(gob.registry):
        reason = assert_error(gob.request("upload", body, OWNER), 500)
    assert "link" in reason.lower(), reason
    _assert_nothing_leaked(gob, version, secret)


@pytest.mark.parametrize("where", ["project-permissions", "version-summary", "probational",
                                   "not-in-manifest"])
def test_registry_links_to_forbidden_targets_are_refused(gob: Gobbler, where: str) -> None:
    target = {
        "project-permissions": f"{gob.registry}/{PROJECT}/..permissions",
        "version-summary": f"{gob.registry}/{PROJECT}/a/v1/..summary",
        "probational": f"{gob.registry}/{PROJECT}/a/p1/x.txt",
        "not-in-manifest": f"{gob.registry}/{PROJECT}/a/v1/..manifest",
    }[where]
    assert os.path.exists(target)
    with unchanged(gob.registry):
        assert_error(gob.upload(f"reg-{where}", {"l": Link(target)}, OWNER), 500)


def test_symlinked_upload_source_is_refused(gob: Gobbler, outside_secret: Path) -> None:
    alias = gob.staging / f"up{uuid.uuid4().hex[:10]}"
    os.symlink(outside_secret.parent, alias)
    os.lchown(alias, *_ids(OWNER))
    body = {"source": alias.name, "project": PROJECT, "asset": "a", "version": "via-link"}
    gob.refused("upload", body, OWNER, 400)


# --- the request file itself -------------------------------------------------


def test_symlinked_request_file_is_refused(gob: Gobbler) -> None:
    real = gob.write_request("health_check", {}, OWNER)
    alias = gob.staging / f"request-health_check-{uuid.uuid4().hex[:12]}"
    os.symlink(real, alias)
    with unchanged(gob.registry):
        assert_error(gob.post(alias.name), 400)


def test_hard_linked_request_file_is_refused(gob: Gobbler) -> None:
    # The classic attack: hard-link a file owned by someone else to act as them.
    real = gob.write_request("delete_project", {"project": PROJECT}, ADMIN)
    alias = gob.staging / f"request-delete_project-{uuid.uuid4().hex[:12]}"
    os.link(real, alias)
    with unchanged(gob.registry):
        assert_error(gob.post(alias.name), 400)
        assert_error(gob.post(real.name), 400)


def test_expired_request_file_is_refused(gob: Gobbler) -> None:
    path = gob.write_request("delete_project", {"project": PROJECT}, ADMIN)
    old = time.time() - 120
    os.utime(path, (old, old))
    with unchanged(gob.registry):
        assert "expire" in assert_error(gob.post(path.name), 400).lower()


def test_replayed_request_is_refused(gob: Gobbler) -> None:
    path = gob.write_request("health_check", {}, OWNER)
    assert_success(gob.post(path.name))
    with unchanged(gob.registry):
        assert "already" in assert_error(gob.post(path.name), 400)


@pytest.mark.parametrize("name", ["not-a-request", "request-missing-file",
                                  "request-dir-x", "request-health_check-a%2F..%2Fb"])
def test_bad_request_names_are_refused(gob: Gobbler, name: str) -> None:
    if name == "not-a-request":
        gob.write_request("health_check", {}, OWNER).rename(gob.staging / name)
    if name == "request-dir-x":
        (gob.staging / name).mkdir(exist_ok=True)
    with unchanged(gob.registry):
        assert_error(gob.post(name), 400)


@pytest.mark.parametrize("payload", [b"", b'{"project": "sec", ', b"\xff\xfe\x00garbage",
                                     b"[1, 2, 3]"], ids=["empty", "truncated", "binary", "array"])
def test_malformed_json_is_refused(gob: Gobbler, payload: bytes) -> None:
    gob.refused("set_permissions", payload, OWNER, 400)


def test_oversized_json_is_refused(gob: Gobbler) -> None:
    body = {"project": PROJECT, "permissions": {"owners": [OWNER]},
            "padding": "x" * (5 * 1024 * 1024)}
    gob.refused("set_permissions", json.dumps(body).encode(), OWNER, 400)


def test_unknown_uid_gets_an_error_not_a_dropped_connection(gob: Gobbler) -> None:
    uid = _unknown_uid()
    gob.refused("set_permissions", {"project": PROJECT, "permissions": {"owners": ["x"]}},
                uid, 403, 500)
    body = {"source": gob.upload_dir({"f": b"ghost"}, uid), "project": PROJECT,
            "asset": "a", "version": "ghost"}
    gob.refused("upload", body, uid, 403, 500)


# --- names -------------------------------------------------------------------


BAD_NAMES = [".", "..x"]


def _name_cases() -> list[tuple[str, str, dict[str, Any]]]:
    cases: list[tuple[str, str, dict[str, Any]]] = []
    for bad in BAD_NAMES:
        cases += [
            ("create_project", ADMIN, {"project": bad}),
            ("set_permissions", OWNER, {"project": bad, "permissions": {"owners": [OWNER]}}),
            ("set_permissions", OWNER, {"project": PROJECT, "asset": bad,
                                        "permissions": {"owners": [OWNER]}}),
            ("delete_project", ADMIN, {"project": bad}),
            ("delete_asset", ADMIN, {"project": PROJECT, "asset": bad}),
            ("delete_asset", ADMIN, {"project": bad, "asset": "a"}),
            ("delete_version", ADMIN, {"project": PROJECT, "asset": "a", "version": bad}),
            ("delete_version", ADMIN, {"project": PROJECT, "asset": bad, "version": "v1"}),
            ("upload", OWNER, {"project": bad, "asset": "a", "version": "n1"}),
            ("upload", OWNER, {"project": PROJECT, "asset": bad, "version": "n1"}),
            ("upload", OWNER, {"project": PROJECT, "asset": "a", "version": bad}),
        ]
    return cases


@pytest.mark.parametrize("action,user,body", _name_cases(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_dot_names_are_refused(gob: Gobbler, action: str, user: str,
                               body: dict[str, Any]) -> None:
    if action == "upload":
        body = {**body, "source": gob.upload_dir({"f": b"dots"}, user)}
    gob.refused(action, body, user, 400)


def test_delete_project_dot_leaves_registry(gob: Gobbler) -> None:
    before = snapshot(gob.registry)
    assert before, "fixture should have populated the registry"
    gob.refused("delete_project", {"project": "."}, ADMIN, 400)
    assert (gob.registry / PROJECT / "a" / "v1" / "x.txt").read_bytes() == b"version one\n"


@pytest.mark.parametrize("source", [".", "..", "../outside", ""])
def test_bad_upload_source_is_refused(gob: Gobbler, source: str) -> None:
    body = {"source": source, "project": PROJECT, "asset": "a", "version": "src"}
    gob.refused("upload", body, ADMIN, 400)


# --- start-up files: blank lines, spoofing, whitelist --------------------------


@pytest.fixture(scope="module")
def spoofy(gobbler_factory: GobblerFactory, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[Gobbler, Path]:
    """A server with blank lines in its spoof and whitelist files."""
    conf = tmp_path_factory.mktemp("conf")
    allowed = tmp_path_factory.mktemp("allowed")
    (allowed / "data.txt").write_bytes(b"whitelisted bytes\n")
    # A sibling whose name merely starts with the whitelisted path.
    evil = Path(f"{allowed}-evil")
    evil.mkdir(exist_ok=True)
    (evil / "data.txt").write_bytes(b"not whitelisted\n")
    spoof = conf / "spoof.txt"
    spoof.write_text(f"{STRANGER}:{OWNER}\n\n{UPLOADER}:*,-{ADMIN}\n{OWNER}:\n")
    whitelist = conf / "whitelist.txt"
    whitelist.write_text(f"\n{allowed}\n\n")
    g = Gobbler(gobbler_factory("-spoof", str(spoof), "-whitelist", str(whitelist),
                                admin=[ADMIN]))
    _create_project(g, PROJECT, owners=[OWNER])
    return g, allowed


def test_blank_lines_do_not_stop_server(spoofy: tuple[Gobbler, Path]) -> None:
    import requests

    gob, _ = spoofy
    info = requests.get(f"{gob.url}/info", timeout=10).json()
    assert Path(info["registry"]) == gob.registry
    assert gob.server.proc.poll() is None


@pytest.mark.parametrize("spoofer,spoofed,allowed", [
    (STRANGER, OWNER, True),     # listed explicitly
    (UPLOADER, OWNER, True),     # '*'
    (UPLOADER, ADMIN, False),    # '*' minus '-root'
    (OWNER, STRANGER, False),    # empty list: nobody
    (STRANGER, UPLOADER, False), # not in nobody's list
    (ADMIN, OWNER, False),       # not a spoofer at all, even as admin
])
def test_spoofing_follows_spoof_file(spoofy: tuple[Gobbler, Path], spoofer: str,
                                     spoofed: str, allowed: bool) -> None:
    gob, _ = spoofy
    body = {"project": PROJECT, "permissions": {"owners": [OWNER]}, "spoof": spoofed}
    if allowed:
        assert_success(gob.request("set_permissions", body, spoofer))
    else:
        assert "spoof" in gob.refused("set_permissions", body, spoofer, 403).lower()


def test_spoofed_upload_is_recorded_as_spoofed_user(spoofy: tuple[Gobbler, Path]) -> None:
    gob, _ = spoofy
    assert_success(gob.upload("sp1", {"f.txt": b"spoofed"}, STRANGER, spoof=OWNER))
    summary = json.loads((gob.registry / PROJECT / "a" / "sp1" / "..summary").read_text())
    assert summary["upload_user_id"] == OWNER


def test_whitelisted_link_is_accepted(spoofy: tuple[Gobbler, Path]) -> None:
    gob, allowed = spoofy
    target = str(allowed / "data.txt")
    assert_success(gob.upload("wl1", {"w.txt": Link(target)}, OWNER))
    version = gob.registry / PROJECT / "a" / "wl1"
    manifest = json.loads((version / "..manifest").read_text())
    assert manifest["w.txt"]["size"] == len(b"whitelisted bytes\n")
    assert "link" not in manifest["w.txt"]
    assert os.readlink(version / "w.txt") == target


@pytest.mark.parametrize("how", ["prefix-sibling", "dotdot"])
def test_link_just_outside_whitelist_is_refused(spoofy: tuple[Gobbler, Path], how: str) -> None:
    gob, allowed = spoofy
    if how == "prefix-sibling":
        target = f"{allowed}-evil/data.txt"
    else:
        target = f"{allowed}/../{allowed.name}-evil/data.txt"
    with unchanged(gob.registry):
        assert_error(gob.upload(f"bad-{how}", {"w.txt": Link(target)}, OWNER), 500)
    assert not (gob.registry / PROJECT / "a" / f"bad-{how}").exists()
