"""Publishing to gypsum: prepare a directory, start a session, upload, complete or abort.

gypsum_client's upload functions with its bugs fixed: ``deduplicate=True``
sends ``"dedup"``; :func:`upload_directory` aborts at the URL it started on
and, if even that fails, says that the project stays locked until an
administrator unlocks it; :func:`start_upload` refuses locally an existing
version (the real worker would delete it), bad names and unsafe paths, and
hashes files by streaming them. The session remembers its ``rest_url``, so
complete/abort go to the same service. Files are ``PUT`` on threads,
streamed from disk with their ``Content-MD5``.
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Union

from .. import transport
from ..errors import DownloadError, GypsumError, GypsumNotFoundError, OfflineError
from .auth import resolve_token
from .client import _cache_for_save, _call, _json, _names, _run
from .config import BUCKET_CACHE_NAME, DEFAULT, CacheDir, base_url
from .protocol import check_name, file_url, path_problem, route, version_key

UPLOAD_WORKERS = 4

def _cache_link(target: str, bucket: str) -> Optional[Dict[str, str]]:
    """The upload link for a symlink target inside ``<cache>/bucket/``, or None."""
    if not target.startswith(bucket):
        return None
    parts = target[len(bucket):].split(os.sep)
    if len(parts) < 4 or any(not p for p in parts):
        return None
    return {"to.project": parts[0], "to.asset": parts[1], "to.version": parts[2],
            "to.path": "/".join(parts[3:])}


def prepare_directory_upload(directory: str,
                             links: Literal["auto", "always", "never"] = "auto",
                             cache_dir: CacheDir = DEFAULT) -> Dict[str, List[Any]]:
    """List a directory for :func:`start_upload`: ``{"files": [...], "links": [...]}``.

    Regular files are uploads. A symlink into ``<cache>/bucket/{p}/{a}/{v}/``
    (as :func:`clone_version` makes; it may dangle) becomes a link record
    (``from.path``, ``to.project``, ``to.asset``, ``to.version``, ``to.path``).
    Other symlinks: ``"auto"`` uploads their content, ``"always"`` refuses,
    ``"never"`` uploads every symlink's content. Relative symlinks are read
    against their own directory. A symlink to a directory is refused.
    """
    if links not in ("auto", "always", "never"):
        raise GypsumError(f"prepare_directory_upload: links={links!r} must be 'auto', "
                          "'always' or 'never'")
    if not os.path.isdir(directory):
        raise GypsumError(f"prepare_directory_upload: {directory} is not a directory")
    root = _cache_for_save(cache_dir)
    buckets = {os.path.join(os.path.normpath(os.path.abspath(root)), BUCKET_CACHE_NAME) + os.sep,
               os.path.join(os.path.realpath(root), BUCKET_CACHE_NAME) + os.sep}
    files: List[str] = []
    out_links: List[Dict[str, str]] = []
    for here, dirs, names in os.walk(directory):
        for d in dirs:
            if os.path.islink(os.path.join(here, d)):
                raise GypsumError(f"cannot upload {os.path.join(here, d)}: it is a symlink to a "
                                  "directory; replace it by the directory or by links to its "
                                  "files")
        for name in names:
            full = os.path.join(here, name)
            rel = os.path.relpath(full, directory).replace(os.sep, "/")
            if not os.path.islink(full):
                files.append(rel)
                continue
            target = os.path.normpath(os.path.join(here, os.readlink(full)))
            record = None if links == "never" else next(
                (r for r in (_cache_link(target, b) for b in buckets) if r), None)
            if record is not None:
                out_links.append({"from.path": rel, **record})
                continue
            if links == "always":
                raise GypsumError(f"cannot upload {full}: its target {target} is not a file in "
                                  f"the gypsum cache ({root}), and links='always'")
            if not os.path.exists(full):
                raise GypsumError(f"cannot upload {full}: it is a dangling symlink to {target}")
            files.append(rel)
    return {"files": sorted(files), "links": sorted(out_links, key=lambda r: r["from.path"])}


def _md5_of(path: str) -> Tuple[int, str]:
    digest, size = hashlib.md5(), 0
    with open(path, "rb") as handle:
        while True:
            block = handle.read(1 << 20)
            if not block:
                return size, digest.hexdigest()
            digest.update(block)
            size += len(block)


def _upload_entries(files: Union[str, Sequence[str], Sequence[Mapping[str, Any]]],
                    links: Optional[Sequence[Mapping[str, Any]]], deduplicate: bool,
                    directory: Optional[str]) -> List[Dict[str, Any]]:
    """The ``files`` array of ``/upload/start``, checked locally (§2.2, §5.3)."""
    items: List[Any] = [files] if isinstance(files, str) else list(files)
    if len({isinstance(f, str) for f in items}) > 1:
        raise GypsumError("start_upload: 'files' must be all paths or all dicts, not a mix")
    out: List[Dict[str, Any]] = []
    for item in items:
        if isinstance(item, str):
            rel = item.replace(os.sep, "/")
            size, md5 = _md5_of(os.path.join(directory, item) if directory else item)
            dedup = deduplicate
        else:
            rel, size, md5 = item["path"], item["size"], str(item["md5sum"]).lower()
            dedup = bool(item.get("dedup", deduplicate))
            if type(size) is not int or size < 0 or len(md5) != 32 or \
                    any(c not in "0123456789abcdef" for c in md5):
                raise GypsumError(f"start_upload: file {rel!r} needs an integer size >= 0 and a "
                                  "32-digit hex md5sum")
        out.append({"type": "dedup" if dedup else "simple", "path": rel, "size": size,
                    "md5sum": md5})
    for link in links or ():
        target = {k: link[f"to.{k}"] for k in ("project", "asset", "version", "path")}
        for what in ("project", "asset", "version"):
            check_name(target[what], f"link target {what}")
        out.append({"type": "link", "path": str(link["from.path"]).replace(os.sep, "/"),
                    "link": target})
    seen = set()
    for entry in out:
        problem = path_problem(entry["path"]) or (path_problem(entry["link"]["path"])
                                                  if "link" in entry else None)
        if problem:
            raise GypsumError(f"start_upload: {problem}; gypsum cannot store it, rename it")
        if entry["path"] in seen:
            raise GypsumError(f"start_upload: {entry['path']!r} is listed twice")
        seen.add(entry["path"])
    return out


def start_upload(project: str, asset: str, version: str,
                 files: Union[str, Sequence[str], Sequence[Mapping[str, Any]]],
                 links: Optional[Sequence[Mapping[str, Any]]] = None, deduplicate: bool = True,
                 probation: bool = False, url: Optional[str] = None, token: Optional[str] = None,
                 directory: Optional[str] = None) -> Dict[str, Any]:
    """Start an upload session for a new version; returns the service's reply.

    ``files`` are paths (relative to ``directory``; size and md5 are computed
    by streaming) or dicts ``{path, size, md5sum[, dedup]}``; ``links`` are
    records as :func:`prepare_directory_upload` makes. With ``deduplicate``
    the service links files identical to the asset's latest version. An
    existing version is refused here (the real service would delete it).
    The reply also records ``rest_url``, so that later steps go to the same
    service.
    """
    _names(project, asset, version)
    entries = _upload_entries(files, links, deduplicate, directory)
    token = resolve_token(token, f"start_upload {project}/{asset}/{version}")
    base = base_url(url)
    what = f"start_upload {project}/{asset}/{version}"
    try:
        _call("HEAD", file_url(base, version_key(project, asset, version, "..summary")), what)
    except GypsumNotFoundError:
        pass
    else:
        raise GypsumError(f"gypsum {what}: version {version!r} already exists; versions are "
                          "immutable, choose a new version name", status=400)
    reply = _json(_call("POST", route(base, "upload/start", project, asset, version), what,
                        token=token, body={"files": entries, "on_probation": bool(probation)}),
                  what)
    if not isinstance(reply, dict) or not isinstance(reply.get("file_urls"), list) or \
            not all(isinstance(reply.get(k), str)
                    for k in ("complete_url", "abort_url", "session_token")):
        raise GypsumError(f"gypsum {what}: unexpected reply from {base}")
    reply["rest_url"] = base
    return reply


def _session_base(init: Mapping[str, Any], url: Optional[str]) -> str:
    return base_url(url or init.get("rest_url"))


def _relative(base: str, path: object, what: str) -> str:
    """``base + path`` for a path the service gave; refuses anything but a local path."""
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//"):
        raise GypsumError(f"gypsum {what}: the service gave an unexpected URL {path!r}")
    return base + path


def _s3_error(res: transport.Response) -> str:
    import re

    code = re.search(rb"<Code>([^<]*)</Code>", res.data)
    message = re.search(rb"<Message>([^<]*)</Message>", res.data)
    text = " ".join(m.group(1).decode("utf-8", "replace") for m in (code, message) if m)
    return text or res.text.strip()[:200] or res.reason


def _upload_one(base: str, item: Mapping[str, Any], directory: Optional[str],
                session: str) -> None:
    rel = item.get("path")
    problem = path_problem(rel)
    if problem:
        raise GypsumError(f"gypsum upload_files: the service asked for an unsafe path: {problem}")
    assert isinstance(rel, str)
    what = f"upload of {rel!r}"
    if item.get("method") != "presigned":
        raise GypsumError(f"gypsum {what}: unknown upload method {item.get('method')!r}; this "
                          "client only knows 'presigned'")
    signed = _json(_call("POST", _relative(base, item.get("url"), what), what, token=session),
                   what)
    if not isinstance(signed, dict) or not isinstance(signed.get("url"), str):
        raise GypsumError(f"gypsum {what}: the presign reply has no URL")
    local = os.path.join(directory, *rel.split("/")) if directory else rel
    with open(local, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        headers = {"Content-MD5": str(signed.get("md5sum_base64", "")),
                   "Content-Length": str(size)}
        try:
            res = transport.default().request("PUT", signed["url"], body=handle, headers=headers,
                                              retry=False)
        except OfflineError:
            raise
        except DownloadError as exc:
            raise GypsumError(f"gypsum {what} failed: {exc}") from None
    if res.status >= 300:
        reason = _s3_error(res)
        hint = ("; the file changed since start_upload computed its md5"
                if "BadDigest" in reason else "")
        raise GypsumError(f"gypsum {what} failed (HTTP {res.status}): {reason}{hint}",
                          status=res.status, reason=reason)


def upload_files(init: Mapping[str, Any], directory: Optional[str] = None,
                 url: Optional[str] = None, concurrent: int = UPLOAD_WORKERS) -> None:
    """Upload the files :func:`start_upload` asked for, on ``concurrent`` threads.

    Each is presigned with the session token and ``PUT`` with its
    ``Content-MD5``, streamed from ``directory/<path>``.
    """
    base = _session_base(init, url)
    session = str(init["session_token"])
    items = list(init.get("file_urls") or [])
    _run([functools.partial(_upload_one, base, i, directory, session) for i in items],
         concurrent)


def complete_upload(init: Mapping[str, Any], url: Optional[str] = None) -> None:
    """Finish the upload session (the service checks every file and unlocks the project)."""
    base = _session_base(init, url)
    _call("POST", _relative(base, init.get("complete_url"), "complete_upload"),
          "complete_upload", token=str(init["session_token"]))


def abort_upload(init: Mapping[str, Any], url: Optional[str] = None) -> None:
    """Abandon the upload session: the partial version is deleted and the project unlocked."""
    base = _session_base(init, url)
    _call("POST", _relative(base, init.get("abort_url"), "abort_upload"), "abort_upload",
          token=str(init["session_token"]))


def upload_directory(directory: str, project: str, asset: str, version: str,
                     cache_dir: CacheDir = DEFAULT, deduplicate: bool = True,
                     probation: bool = False, url: Optional[str] = None,
                     token: Optional[str] = None, concurrent: int = UPLOAD_WORKERS,
                     abort_failed: bool = True) -> bool:
    """Upload a directory as a new version (prepare, start, upload, complete); returns True.

    Symlinks into the cache become links (:func:`prepare_directory_upload`,
    ``links="auto"``). On any failure the session is aborted at the same URL
    (unless ``abort_failed`` is false); if the abort fails too, the error
    says that the project stays locked until an administrator unlocks it.
    """
    base = base_url(url)
    listing = prepare_directory_upload(directory, links="auto", cache_dir=cache_dir)
    init = start_upload(project, asset, version, files=listing["files"], links=listing["links"],
                        deduplicate=deduplicate, probation=probation, url=base, token=token,
                        directory=directory)
    try:
        upload_files(init, directory=directory, url=base, concurrent=concurrent)
        complete_upload(init, url=base)
    except BaseException as exc:
        if not abort_failed:
            raise
        try:
            abort_upload(init, url=base)
        except (GypsumError, DownloadError) as abort_exc:
            raise GypsumError(
                f"{exc}; then aborting the upload at {base} failed too ({abort_exc}): project "
                f"{project!r} stays locked until an administrator unlocks it (unlock_project, "
                f"or DELETE {route(base, 'unlock', project)}) and removes the partial version "
                f"{project}/{asset}/{version}", url=base) from exc
        raise
    return True
