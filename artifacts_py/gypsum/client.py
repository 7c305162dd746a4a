"""A client of the gypsum service (``gypsum-protocol.md``), compatible with gypsum_client 0.2.0.

This module reads (listing, bookkeeping files, verified saves into the
cache); :mod:`.upload` publishes, :mod:`.admin` administers, :mod:`.auth`
handles tokens and :mod:`.metadata` the search index.

Same function names and parameters as gypsum_client, so its users switch by
changing the import. Differences, all fixes:

* Every downloaded file is checked against its version's ``..manifest``
  (size and md5) before it appears in the cache; a mismatch raises
  :class:`~artifacts_py.errors.HashMismatchError` and leaves nothing behind.
  Manifests are checked as untrusted input (no absolute or ``..`` paths, no
  backslashes, no duplicate keys, sane sizes, md5 format).
* Names and keys are percent-encoded per segment (``quote(safe="")``), never
  with ``quote_plus``: files with spaces, ``#``, ``%`` or non-ASCII names work.
* ``deduplicate=True`` sends ``"dedup"`` (gypsum_client inverts the flag).
* A failed :func:`upload_directory` aborts against the same URL it started
  on; if even the abort fails, the error says the project stays locked until
  an administrator unlocks it. :func:`start_upload` refuses locally an
  existing version (the worker would delete it) and bad names or paths.
* ``url`` and ``cache_dir`` defaults are read at call time (:mod:`.config`);
  the cache lives under the depot stack. Saves run on threads, not processes.
* Every request goes through artifacts-py's one transport (retries of reads,
  timeouts, proxies, ``ARTIFACTS_PY_OFFLINE`` refused before any socket).
* Errors are :class:`~artifacts_py.errors.GypsumError` (``status``,
  ``reason``, ``url``; :class:`~artifacts_py.errors.GypsumNotFoundError` for
  a 404) and never contain a token. Times are timezone-aware UTC datetimes.
* Extras: :func:`unlock_project`; :func:`refresh_latest` returns None when the
  asset has no non-probational version.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from urllib.parse import urlencode
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .. import transport
from ..errors import DownloadError, GypsumError, GypsumNotFoundError, OfflineError, hash_mismatch
from . import config
from .auth import scrub, send
from .config import BUCKET_CACHE_NAME, DEFAULT, CacheDir, base_url
from .protocol import (FileEntry, check_manifest, check_name, file_url, is_complete,
                       loads_unique, path_problem, version_key)

log = logging.getLogger(__name__)

# Files up to this size go through the transport's lean GET (one buffer, no urllib3).
SMALL_FILE = 1 << 20
SAVE_WORKERS = 8
_S3_WEEK = 7 * 24 * 3600.0
_CREDS: Dict[Tuple[str, Optional[str]], Dict[str, Any]] = {}


# --------------------------------------------------------------------------
# HTTP: one call through the transport
# --------------------------------------------------------------------------

def _reason_of(res: transport.Response) -> str:
    try:
        body = res.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("reason") is not None:
        return str(body["reason"])
    return res.text.strip()[:300] or res.reason


def _error(res: transport.Response, what: str, token: Optional[str]) -> GypsumError:
    reason = scrub(_reason_of(res), token)
    cls = GypsumNotFoundError if res.status == 404 else GypsumError
    return cls(f"gypsum {what} failed (HTTP {res.status}): {reason}", status=res.status,
               reason=reason, url=res.url)


def _call(method: str, url: str, what: str, *, token: Optional[str] = None,
          body: Any = None) -> transport.Response:
    """One API request; GypsumError on failure, including a 200 carrying an error body."""
    res = send(method, url, f"gypsum {what}", token=token, body=body)
    if res.status >= 300:
        raise _error(res, what, token)
    if res.data[:1] == b"{" and b'"error"' in res.data:  # the worker's HTTP-200 errors (§4.0.3)
        try:
            doc = res.json()
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc.get("status") == "error":
            reason = scrub(str(doc.get("reason")), token)
            raise GypsumError(f"gypsum {what} failed: {reason}", status=400, reason=reason,
                              url=url)
    return res


def _names(*names: str) -> None:
    """Check project, asset and version names (in that order) before they make a key."""
    for kind, value in zip(("project", "asset", "version"), names):
        check_name(value, kind)


def _json(res: transport.Response, what: str) -> Any:
    try:
        return res.json()
    except ValueError:
        raise GypsumError(f"gypsum {what}: {res.url} did not return JSON", status=res.status,
                          url=res.url) from None


def _get_json(base: str, key: str, what: str) -> Any:
    return _json(_call("GET", file_url(base, key), what), what)


# --------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------

def _list(base: str, prefix: Optional[str], recursive: bool, what: str) -> List[str]:
    fields = {"recursive": "true" if recursive else "false"}
    if prefix is not None:
        fields["prefix"] = prefix
    listing = _json(_call("GET", f"{base}/list?{urlencode(fields)}", what), what)
    if not isinstance(listing, list):
        raise GypsumError(f"gypsum {what}: {base}/list did not return a JSON array")
    return [str(x) for x in listing]


def _children(base: str, prefix: Optional[str], what: str) -> List[str]:
    """The "subdirectory" names directly under ``prefix``, minus ``..`` names."""
    lead = prefix or ""
    names = [k[len(lead):-1] for k in _list(base, prefix, False, what)
             if k.endswith("/") and k.startswith(lead)]
    return sorted(n for n in names if n and not n.startswith(".."))


def list_projects(url: Optional[str] = None) -> List[str]:
    """Names of all projects."""
    return _children(base_url(url), None, "list_projects")


def list_assets(project: str, url: Optional[str] = None) -> List[str]:
    """Names of the assets of ``project``."""
    _names(project)
    return _children(base_url(url), f"{project}/", f"list_assets {project}")


def list_versions(project: str, asset: str, url: Optional[str] = None) -> List[str]:
    """Names of the versions of ``project/asset`` (probational and unfinished ones included)."""
    _names(project, asset)
    return _children(base_url(url), f"{project}/{asset}/", f"list_versions {project}/{asset}")


def list_files(project: str, asset: str, version: str, prefix: Optional[str] = None,
               include_dot: bool = True, url: Optional[str] = None) -> List[str]:
    """Paths of the objects in a version (``..summary``, ``..manifest``, ``..links`` included).

    ``prefix`` keeps paths starting with it; ``include_dot=False`` drops every
    path with a ``..``-prefixed component. Linked-from files have no object
    and are not listed: :func:`fetch_manifest` lists every file.
    """
    _names(project, asset, version)
    top = version_key(project, asset, version)
    keys = _list(base_url(url), top + (prefix or ""), True,
                 f"list_files {project}/{asset}/{version}")
    out = [k[len(top):] for k in keys if k.startswith(top)]
    if not include_dot:
        out = [p for p in out if not any(s.startswith("..") for s in p.split("/"))]
    return sorted(out)


# --------------------------------------------------------------------------
# The cache: temp files, atomic placement, locks
# --------------------------------------------------------------------------

def _cache_for_save(cache_dir: CacheDir) -> str:
    root = config.cache_root(cache_dir)
    return root if root is not None else config.cache_directory()


def _local(root: str, key: str) -> str:
    return os.path.join(root, BUCKET_CACHE_NAME, *key.split("/"))


def _new_temp(root: str) -> Tuple[int, str]:
    """A new file in ``<cache>/tmp`` (same file system as the cache), mode 0666 minus umask."""
    from ..files import create_exclusive

    tmpdir = os.path.join(root, "tmp")
    os.makedirs(tmpdir, exist_ok=True)
    return create_exclusive(tmpdir, "part-")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _place(root: str, dest: str, write: Callable[[str], None]) -> None:
    """Run ``write(temp)`` and rename the result to ``dest``; nothing is left on failure."""
    fd, temp = _new_temp(root)
    os.close(fd)
    try:
        write(temp)
        _makedirs_for(dest)
        os.replace(temp, dest)
    finally:
        _unlink(temp)


def _makedirs_for(dest: str) -> None:
    try:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise GypsumError(f"cannot create {dest}: a file in the cache has the name of one of "
                          "its directories (the bucket holds both 'x' and 'x/...'); use "
                          "another cache_dir") from None


def _link_or_copy(src: str, dest: str, root: str) -> None:
    """Make ``dest`` hold ``src``'s content: a hard link, else a symlink, else a copy."""
    def write(temp: str) -> None:
        os.unlink(temp)
        try:
            os.link(src, temp)
            return
        except OSError:
            pass
        try:
            os.symlink(os.path.abspath(src), temp)
        except OSError:
            shutil.copyfile(src, temp)
    _place(root, dest, write)


@contextmanager
def _version_lock(root: str, project: str, asset: str, version: str) -> Iterator[None]:
    """Serialise saves of one version (duplicate work only; renames keep the cache sound)."""
    import filelock

    path = os.path.join(root, "status", project, asset, version + ".LOCK")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with filelock.FileLock(path):
        yield


# --------------------------------------------------------------------------
# Verified downloads
# --------------------------------------------------------------------------

_DAMAGED = ("it does not match the version's ..manifest; nothing was cached; the stored "
            "copy is damaged, tell the gypsum administrator")


def _check(size: int, md5: str, want: FileEntry, where: str) -> None:
    if size != want.size:
        raise hash_mismatch("size", f"{want.size} bytes", f"{size} bytes", what=where,
                            advice=_DAMAGED)
    if md5 != want.md5:
        raise hash_mismatch("md5", want.md5, md5, what=where, advice=_DAMAGED)


def _download(base: str, root: str, entry: FileEntry, dest: str, where: str) -> None:
    """Fetch ``entry.key`` to ``dest`` through a temp file, verified against ``entry``."""
    url = file_url(base, entry.key)

    def write(temp: str) -> None:
        if entry.size <= SMALL_FILE:
            data = transport.default().get_small(url, entry.size)
            if data is not None:
                _check(len(data), hashlib.md5(data).hexdigest(), entry, where)
                with open(temp, "wb") as handle:
                    handle.write(data)
                return
        try:
            got = transport.download(url, temp, hashers=(hashlib.md5,), compute_sha256=False,
                                     label=where)
        except OfflineError:
            raise
        except DownloadError as exc:
            cls = GypsumNotFoundError if exc.status == 404 else GypsumError
            raise cls(f"gypsum: cannot download {where}: {exc}", status=exc.status,
                      url=url) from None
        _check(got.size, got.digests[0].hexdigest(), entry, where)

    _place(root, dest, write)


def _run(tasks: Sequence[Callable[[], None]], workers: int) -> None:
    """Run tasks on up to ``workers`` threads; the first failure is raised, the rest cancelled."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            task()
        return
    pool = ThreadPoolExecutor(max_workers=min(workers, len(tasks)))
    try:
        for future in as_completed([pool.submit(t) for t in tasks]):
            future.result()
    finally:
        pool.shutdown(cancel_futures=True)


# --------------------------------------------------------------------------
# Bookkeeping files
# --------------------------------------------------------------------------

def _parse_time(value: Any) -> Any:
    """An ISO 8601 time as an aware UTC datetime (``Z`` or any offset; none means UTC)."""
    if not isinstance(value, str):
        return value
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return (stamp.replace(tzinfo=timezone.utc) if stamp.tzinfo is None
            else stamp.astimezone(timezone.utc))


def _version_doc(base: str, cache: Optional[str], project: str, asset: str, version: str,
                 name: str, overwrite: bool, keep: Callable[[Any], bool]) -> Any:
    """A version's ``..`` document, through the cache when ``keep(doc)`` allows caching it."""
    _names(project, asset, version)
    key = version_key(project, asset, version, name)
    what = f"fetch {name} of {project}/{asset}/{version}"
    local = _local(cache, key) if cache is not None else None
    if local is not None and not overwrite and os.path.isfile(local):
        with open(local, "rb") as handle:
            doc = loads_unique(handle.read(), f"cached {key}")
        if keep(doc):
            return doc
        _unlink(local)
    res = _call("GET", file_url(base, key), what)
    doc = loads_unique(res.data, f"{base}: {key}")
    if cache is not None and local is not None and keep(doc):
        def write(temp: str) -> None:
            with open(temp, "wb") as handle:
                handle.write(res.data)
        _place(cache, local, write)
    return doc


def fetch_manifest(project: str, asset: str, version: str, cache_dir: CacheDir = DEFAULT,
                   overwrite: bool = False, url: Optional[str] = None) -> Dict[str, Any]:
    """The version's ``..manifest``: ``{path: {size, md5sum, link?}}``.

    Cached under ``<cache>/bucket/{p}/{a}/{v}/..manifest`` (``cache_dir=None``
    skips the cache); ``overwrite`` fetches it again.
    """
    doc = _version_doc(base_url(url), config.cache_root(cache_dir), project, asset, version,
                       "..manifest", overwrite, lambda _: True)
    if not isinstance(doc, dict):
        raise GypsumError(f"gypsum: the ..manifest of {project}/{asset}/{version} is not a "
                          "JSON object; the version is damaged")
    return doc


def _summary(base: str, cache: Optional[str], project: str, asset: str, version: str,
             overwrite: bool) -> Dict[str, Any]:
    doc = _version_doc(base, cache, project, asset, version, "..summary", overwrite,
                       lambda d: isinstance(d, dict) and is_complete(d))
    if not isinstance(doc, dict):
        raise GypsumError(f"gypsum: the ..summary of {project}/{asset}/{version} is not a "
                          "JSON object; the version is damaged")
    return doc


def fetch_summary(project: str, asset: str, version: str, cache_dir: CacheDir = DEFAULT,
                  overwrite: bool = False, url: Optional[str] = None) -> Dict[str, Any]:
    """The version's ``..summary``, with ``upload_start``/``upload_finish`` as UTC datetimes.

    Only a finished, non-probational summary is cached (it can no longer
    change); ``upload_finish`` is absent while the upload is in progress.
    """
    doc = dict(_summary(base_url(url), config.cache_root(cache_dir), project, asset, version,
                        overwrite))
    for field in ("upload_start", "upload_finish"):
        if field in doc:
            doc[field] = _parse_time(doc[field])
    return doc


def fetch_latest(project: str, asset: str, url: Optional[str] = None) -> str:
    """The latest non-probational version of ``project/asset`` (GypsumNotFoundError if none)."""
    _names(project, asset)
    doc = _get_json(base_url(url), f"{project}/{asset}/..latest", f"fetch_latest {project}/{asset}")
    if not isinstance(doc, dict) or not isinstance(doc.get("version"), str):
        raise GypsumError(f"gypsum: {project}/{asset}/..latest is malformed")
    return str(doc["version"])


def fetch_permissions(project: str, url: Optional[str] = None) -> Dict[str, Any]:
    """``owners`` and ``uploaders`` of a project; each ``until`` as a UTC datetime."""
    _names(project)
    doc = _get_json(base_url(url), f"{project}/..permissions", f"fetch_permissions {project}")
    if not isinstance(doc, dict):
        raise GypsumError(f"gypsum: {project}/..permissions is not a JSON object")
    doc["owners"] = list(doc.get("owners") or [])
    doc["uploaders"] = [dict(u) for u in doc.get("uploaders") or [] if isinstance(u, dict)]
    for uploader in doc["uploaders"]:
        if "until" in uploader:
            uploader["until"] = _parse_time(uploader["until"])
    return doc


def fetch_quota(project: str, url: Optional[str] = None) -> Dict[str, Any]:
    """``baseline``, ``growth_rate`` and ``year`` of a project's quota."""
    _names(project)
    doc = _get_json(base_url(url), f"{project}/..quota", f"fetch_quota {project}")
    if not isinstance(doc, dict):
        raise GypsumError(f"gypsum: {project}/..quota is not a JSON object")
    return doc


def fetch_usage(project: str, url: Optional[str] = None) -> int:
    """Bytes used by ``project``."""
    _names(project)
    doc = _get_json(base_url(url), f"{project}/..usage", f"fetch_usage {project}")
    if not isinstance(doc, dict) or not isinstance(doc.get("total"), (int, float)):
        raise GypsumError(f"gypsum: {project}/..usage is malformed")
    return int(doc["total"])


def public_s3_config(refresh: bool = False, url: Optional[str] = None,
                     cache_dir: Optional[str] = None) -> Dict[str, Any]:
    """Read-only S3 credentials of the bucket: ``endpoint``, ``bucket``, ``key``, ``secret``.

    Kept in memory, and with a ``cache_dir`` in ``<cache_dir>/credentials/s3.json``
    for a week; ``refresh`` asks the service again.
    """
    base = base_url(url)
    memo_key = (base, cache_dir)
    path = os.path.join(cache_dir, "credentials", "s3.json") if cache_dir else None
    if not refresh:
        if memo_key in _CREDS:
            return dict(_CREDS[memo_key])
        if path and os.path.isfile(path) and time.time() - os.path.getmtime(path) <= _S3_WEEK:
            with open(path, "rb") as handle:
                creds = loads_unique(handle.read(), path)
            if isinstance(creds, dict):
                _CREDS[memo_key] = creds
                return dict(creds)
    creds = _json(_call("GET", f"{base}/credentials/s3-api", "public_s3_config"),
                  "public_s3_config")
    if not isinstance(creds, dict):
        raise GypsumError(f"gypsum: {base}/credentials/s3-api did not return a JSON object")
    if path and cache_dir:
        import json

        def write(temp: str) -> None:
            with open(temp, "w", encoding="utf-8") as handle:
                json.dump(creds, handle)
        _place(cache_dir, path, write)
    _CREDS[memo_key] = creds
    return dict(creds)


# --------------------------------------------------------------------------
# Saving files and versions
# --------------------------------------------------------------------------

def _entries(base: str, root: str, project: str, asset: str, version: str,
             overwrite: bool) -> List[FileEntry]:
    manifest = fetch_manifest(project, asset, version, cache_dir=root, overwrite=overwrite,
                              url=base)
    return check_manifest(manifest, f"{base}: {project}/{asset}/{version}", project, asset,
                          version)


def _fetch_tasks(base: str, root: str, entries: Sequence[FileEntry], overwrite: bool,
                 where: str) -> List[Callable[[], None]]:
    """One verified download per distinct object key not yet in the cache."""
    tasks: List[Callable[[], None]] = []
    seen = set()
    for entry in entries:
        local = _local(root, entry.key)
        if entry.key in seen or (not overwrite and os.path.isfile(local)):
            continue  # presence in the cache means it was verified on arrival
        seen.add(entry.key)
        label = f"{where} file {entry.path!r}"

        def task(entry: FileEntry = entry, local: str = local, label: str = label) -> None:
            _download(base, root, entry, local, label)
        tasks.append(task)
    return tasks


def save_file(project: str, asset: str, version: str, path: str, cache_dir: CacheDir = DEFAULT,
              overwrite: bool = False, url: Optional[str] = None) -> str:
    """Download one file of a version into the cache (verified) and return its local path.

    A linked file is fetched at its target's own cache location and hard
    linked (else symlinked, else copied) to the requested one.
    """
    base, root = base_url(url), _cache_for_save(cache_dir)
    problem = path_problem(path)
    if problem:
        raise GypsumError(f"gypsum save_file: {problem}")
    dest = _local(root, version_key(project, asset, version, path))
    if not overwrite and os.path.isfile(dest):
        return dest
    where = f"{project}/{asset}/{version}"
    found = [e for e in _entries(base, root, project, asset, version, False) if e.path == path]
    if not found:
        raise GypsumNotFoundError(f"gypsum save_file: {path!r} does not exist in {where} (it "
                                  "is not in the version's ..manifest); check it with "
                                  "fetch_manifest()", status=404, url=base)
    _run(_fetch_tasks(base, root, found, overwrite, where), 1)
    if found[0].linked:
        _link_or_copy(_local(root, found[0].key), dest, root)
    return dest


def _relink(root: str, project: str, asset: str, version: str,
            entries: Sequence[FileEntry], overwrite: bool) -> None:
    for entry in entries:
        dest = _local(root, version_key(project, asset, version, entry.path))
        if entry.linked and (overwrite or not os.path.isfile(dest)):
            _link_or_copy(_local(root, entry.key), dest, root)


def save_version(project: str, asset: str, version: str, cache_dir: CacheDir = DEFAULT,
                 overwrite: bool = False, relink: bool = True, concurrent: int = SAVE_WORKERS,
                 url: Optional[str] = None) -> str:
    """Download a whole version into the cache, verified, on ``concurrent`` threads.

    Returns ``<cache>/bucket/{p}/{a}/{v}``. The manifest says what to fetch.
    With ``relink``, linked files are fetched at their targets' locations and
    hard linked into place (:func:`resolve_links`). A finished,
    non-probational version is marked ``status/{p}/{a}/{v}/COMPLETE`` and
    later calls return at once (``overwrite`` downloads everything again);
    a probational or unfinished one is re-checked every time.
    """
    base, root = base_url(url), _cache_for_save(cache_dir)
    _names(project, asset, version)
    dest = _local(root, version_key(project, asset, version)).rstrip(os.sep)
    marker = os.path.join(root, "status", project, asset, version, "COMPLETE")
    if not overwrite and os.path.exists(marker):
        return dest
    with _version_lock(root, project, asset, version):
        if not overwrite and os.path.exists(marker):
            return dest  # another process finished it while we waited
        immutable = is_complete(_summary(base, root, project, asset, version, overwrite))
        entries = _entries(base, root, project, asset, version, overwrite or not immutable)
        wanted = [e for e in entries if relink or not e.linked]
        where = f"{project}/{asset}/{version}"
        _run(_fetch_tasks(base, root, wanted, overwrite, where), concurrent)
        os.makedirs(dest, exist_ok=True)
        if relink:
            _relink(root, project, asset, version, entries, overwrite)
        if immutable:
            os.makedirs(os.path.dirname(marker), exist_ok=True)
            with open(marker, "w"):
                pass
    return dest


def resolve_links(project: str, asset: str, version: str, cache_dir: CacheDir = DEFAULT,
                  overwrite: bool = False, url: Optional[str] = None) -> bool:
    """Materialise a version's linked files in the cache (hard links to their targets).

    Targets are downloaded (verified) into their own cache locations first;
    files already in place are left alone unless ``overwrite``.
    """
    base, root = base_url(url), _cache_for_save(cache_dir)
    entries = [e for e in _entries(base, root, project, asset, version, False) if e.linked]
    todo = [e for e in entries
            if overwrite or not os.path.isfile(_local(root, version_key(project, asset, version,
                                                                        e.path)))]
    _run(_fetch_tasks(base, root, todo, overwrite, f"{project}/{asset}/{version}"), SAVE_WORKERS)
    _relink(root, project, asset, version, todo, overwrite)
    return True


def clone_version(project: str, asset: str, version: str, destination: str,
                  download: bool = True, cache_dir: CacheDir = DEFAULT,
                  url: Optional[str] = None, **kwargs: Any) -> None:
    """Recreate a version at ``destination`` as symlinks into the cache.

    Uploading the clone with :func:`upload_directory` (after replacing some
    symlinks by real files) turns the untouched files into links. With
    ``download=False`` the symlinks may dangle. ``kwargs`` go to
    :func:`save_version`.
    """
    base, root = base_url(url), _cache_for_save(cache_dir)
    if download:
        save_version(project, asset, version, cache_dir=root, url=base, **kwargs)
    entries = _entries(base, root, project, asset, version, False)
    top = os.path.abspath(_local(root, version_key(project, asset, version)))
    os.makedirs(destination, exist_ok=True)
    for entry in entries:
        link = os.path.join(destination, *entry.path.split("/"))
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(os.path.join(top, *entry.path.split("/")), link)
