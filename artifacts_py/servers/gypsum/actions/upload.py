"""Upload sessions: start, presign, complete, abort (§4.9-4.12, §5).

Stricter than the worker where it matters for integrity (§9.1): an existing
version is refused without being touched; slugs are base64url of UTF-8 JSON;
a presign is granted only for a manifest path with the manifest's MD5; and
completion checks size *and* MD5 of every file and refuses objects that are
not in the manifest.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Dict, List, Optional
from urllib.parse import quote

from artifacts_py.servers.gypsum import locking
from artifacts_py.servers.gypsum.actions import Service, delete_prefix, parse_body, version_prefix
from artifacts_py.servers.gypsum.actions.manifest import check_files, deduplicate, resolve_links
from artifacts_py.servers.gypsum.actions.projects import quota_in_force
from artifacts_py.servers.gypsum.auth import bearer
from artifacts_py.servers.gypsum.documents import (
    add_log, adjust_usage, now_iso, read_json, require_json, usage_key, write_json,
)
from artifacts_py.servers.gypsum.errors import GypsumError
from artifacts_py.servers.gypsum.names import check_names, check_path
from artifacts_py.servers.gypsum.store import PresignContext


def make_slug(project: str, asset: str, version: str, path: str, md5: str) -> str:
    """base64url (no padding) of the UTF-8 JSON ``[p, a, v, path, md5]``: never has ``/``."""
    text = json.dumps([project, asset, version, path, md5], separators=(",", ":"),
                      ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode("utf-8")).rstrip(b"=").decode("ascii")


def read_slug(slug: str) -> List[str]:
    """The five strings of a slug; 400 with the worker's message when it is not one."""
    try:
        padded = slug + "=" * (-len(slug) % 4)
        fields = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8"))
        if not (isinstance(fields, list) and len(fields) == 5
                and all(isinstance(f, str) for f in fields)):
            raise ValueError("expected an array of five strings")
    except (ValueError, UnicodeError, binascii.Error) as exc:
        raise GypsumError(400, f"invalid slug ('{slug}') for the presigned URL endpoint; "
                               f"{exc}") from None
    return fields


def start(svc: Service, project: str, asset: str, version: str, raw: bytes,
          header: Optional[str]) -> Dict[str, Any]:
    """``POST /upload/start/{p}/{a}/{v}``: lock, write summary and manifest, hand out URLs."""
    check_names(project, asset, version)
    body = parse_body(raw)
    if not isinstance(body, dict):
        raise GypsumError(400, "expected request body to be a JSON object")
    probation = body.get("on_probation", False)
    if not isinstance(probation, bool):
        raise GypsumError(400, "expected the 'on_probation' property to be a boolean")
    identity, right = svc.auth.uploader(header, project, asset, version)
    probation = probation or not right.trusted
    token = locking.acquire(svc.store, project, asset, version)
    prefix = version_prefix(project, asset, version)
    written: List[str] = []
    try:
        if svc.store.head(prefix + "..summary") is not None:
            raise GypsumError(400, "project-asset-version already exists")
        plan = check_files(body.get("files"), prefix)
        deduped = deduplicate(svc.store, project, asset, plan)
        link_entries = resolve_links(svc.store, (project, asset, version),
                                     plan.links + deduped)
        needed = sum(e["size"] for e in plan.uploads)
        usage = read_json(svc.store, usage_key(project))
        used = usage.get("total", 0) if isinstance(usage, dict) else 0
        if used + needed >= quota_in_force(read_json(svc.store, f"{project}/..quota")):
            raise GypsumError(400, "upload exceeds the storage quota for this project")
        manifest: Dict[str, Any] = {e["path"]: {"size": e["size"], "md5sum": e["md5sum"]}
                                    for e in plan.uploads}
        manifest.update(link_entries)
        summary = {"upload_user_id": identity.login, "upload_start": now_iso(),
                   "on_probation": probation}
        written.append(prefix + "..summary")
        write_json(svc.store, prefix + "..summary", summary)
        written.append(prefix + "..manifest")
        write_json(svc.store, prefix + "..manifest", manifest)
    except BaseException:
        svc.store.delete(written)  # only what this request wrote (§9.1.1)
        locking.release(svc.store, project)
        raise
    names = "/".join(quote(n, safe="") for n in (project, asset, version))
    return {
        "file_urls": [{"path": e["path"], "method": "presigned",
                       "url": "/upload/presigned-file/" + make_slug(
                           project, asset, version, e["path"], e["md5sum"])}
                      for e in plan.uploads],
        "complete_url": f"/upload/complete/{names}",
        "abort_url": f"/upload/abort/{names}",
        "session_token": token,
    }


def presign(svc: Service, slug: str, header: Optional[str], base_url: str) -> Dict[str, str]:
    """``POST /upload/presigned-file/{slug}``: a signed PUT URL for one manifest file."""
    project, asset, version, path, md5 = read_slug(slug)
    token = bearer(header)
    check_names(project, asset, version)
    lock = locking.check_session(svc.store, project, asset, version, token)
    prefix = version_prefix(project, asset, version)
    check_path(path, prefix)
    manifest = require_json(svc.store, prefix + "..manifest")
    entry = manifest.get(path) if isinstance(manifest, dict) else None
    if not isinstance(entry, dict) or "link" in entry or entry.get("md5sum") != md5:
        raise GypsumError(400, f"'{path}' with md5sum '{md5}' is not a file to upload "
                               f"in '{project}/{asset}/{version}'")
    md5_base64 = base64.b64encode(bytes.fromhex(md5)).decode("ascii")
    url = svc.store.presign_put(prefix + path, md5_base64, PresignContext(
        base_url, str(lock["session_hash"]), svc.presign_expiry))
    return {"url": url, "md5sum_base64": md5_base64}


def _check_contents(svc: Service, prefix: str, manifest: Dict[str, Any]) -> int:
    """Every manifest file present with its size and MD5, nothing else; returns new bytes."""
    found = {o.key[len(prefix):]: o for o in svc.store.list(prefix, recursive=True).objects}
    added = 0
    for path, entry in manifest.items():
        info = found.get(path)
        if isinstance(entry, dict) and "link" in entry:
            if info is not None:
                raise GypsumError(500, f"linked-from path '{path}' in manifest should not "
                                       "have a file")
            continue
        if info is None:
            raise GypsumError(400, f"path '{path}' in manifest should have a file")
        if info.size != entry.get("size"):
            raise GypsumError(400, f"actual size of '{path}' does not match its reported "
                                   "size in the manifest")
        md5 = svc.store.md5_hex(info)
        if md5 is None:
            head = svc.store.head(info.key)
            md5 = svc.store.md5_hex(head) if head is not None else None
        if md5 != entry.get("md5sum"):
            raise GypsumError(400, f"actual md5sum of '{path}' does not match its reported "
                                   "md5sum in the manifest")
        added += info.size
    for path in found:
        if path not in manifest and path not in ("..summary", "..manifest"):
            raise GypsumError(400, f"path '{path}' is stored but is not in the manifest")
    return added


def _write_links(svc: Service, prefix: str, manifest: Dict[str, Any]) -> None:
    by_dir: Dict[str, Dict[str, Any]] = {}
    for path, entry in manifest.items():
        if isinstance(entry, dict) and isinstance(entry.get("link"), dict):
            directory, _, base = path.rpartition("/")
            by_dir.setdefault(directory, {})[base] = entry["link"]
    for directory, links in by_dir.items():
        write_json(svc.store, prefix + (directory + "/" if directory else "") + "..links", links)


def complete(svc: Service, project: str, asset: str, version: str,
             header: Optional[str]) -> None:
    """``POST /upload/complete/{p}/{a}/{v}``: check the files, finish, unlock."""
    token = bearer(header)
    check_names(project, asset, version)
    locking.check_session(svc.store, project, asset, version, token)
    prefix = version_prefix(project, asset, version)
    manifest = require_json(svc.store, prefix + "..manifest")
    summary = require_json(svc.store, prefix + "..summary")
    if not isinstance(manifest, dict) or not isinstance(summary, dict):
        raise GypsumError(500, f"bookkeeping files of '{prefix}' are not JSON objects")
    added = _check_contents(svc, prefix, manifest)
    _write_links(svc, prefix, manifest)
    probation = summary.get("on_probation") is True
    if not probation:
        write_json(svc.store, f"{project}/{asset}/..latest", {"version": version})
        summary.pop("on_probation", None)
    summary["upload_finish"] = now_iso()
    write_json(svc.store, prefix + "..summary", summary)
    adjust_usage(svc.store, project, added)
    if not probation:
        add_log(svc.store, {"type": "add-version", "project": project, "asset": asset,
                            "version": version, "latest": True})
    locking.release(svc.store, project)


def abort(svc: Service, project: str, asset: str, version: str,
          header: Optional[str]) -> None:
    """``POST /upload/abort/{p}/{a}/{v}``: delete the version being uploaded and unlock."""
    token = bearer(header)
    check_names(project, asset, version)
    locking.check_session(svc.store, project, asset, version, token)
    delete_prefix(svc.store, version_prefix(project, asset, version))
    locking.release(svc.store, project)


