"""A client of the Gobbler protocol (``gobbler-protocol.md``), compatible with pygobbler.

Function and argument names follow pygobbler 0.1.11. Differences, all fixes:

* Remote reads are verified: every file fetched from ``/fetch`` is checked
  against its version's ``..manifest`` (size and md5) before it appears in
  the cache; a mismatch raises :class:`~artifacts_py.errors.HashMismatchError`.
* ``/fetch`` paths are percent-encoded segment by segment.
* ``fetch_directory`` is driven by the manifest, downloads in parallel threads
  and recreates empty directories.
* Every request goes through artifacts-py's one transport
  (:mod:`artifacts_py.transport`): keep-alive pools, retries of reads,
  timeouts, proxies, and ``ARTIFACTS_PY_OFFLINE`` (refused before any socket).
* ``list_files`` always returns a list and filters by ``prefix`` correctly.
* ``set_permissions(append=True)`` copes with ``"uploaders": null``.
* ``clone_version`` makes real empty directories for empty-directory entries.
* ``upload_directory`` uploads in place only for an immediate child of the
  staging directory; otherwise it hard-links (or copies) into a fresh staging
  directory and rewrites links that leave the tree as absolute paths.
* Every failure is a :class:`~artifacts_py.errors.GobblerError` carrying the
  HTTP ``status`` and the service's ``reason``.

Local mode: when ``registry`` exists on this machine and ``force_remote`` is
false, reads go straight to the registry files and never over HTTP.

Cache layout (remote mode)::

    <cache>/<quote_plus(url)>/REGISTRY/<project>/<asset>/<version>/<path>
    <cache>/<quote_plus(url)>/SUCCESS/<directory path>/..complete
    <cache>/<quote_plus(url)>/TEMP/            in-flight downloads

A file appears under ``REGISTRY`` only after it has been verified (it is
written under ``TEMP`` and renamed into place), so presence means verified.
``..complete`` marks a directory fetched in full by :func:`fetch_directory`.
The default ``cache`` is ``<first depot>/gobbler``, inside the depot stack
(``artifacts ls`` and ``gc`` see it).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import secrets
import shutil
import stat
import urllib.parse
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from .. import transport
from ..errors import (DownloadError, GobblerError, GobblerNotFoundError, OfflineError,
                      hash_mismatch)
from ..transport import Response
from ..files import create_exclusive
from .protocol import fetch_url
from .protocol import skipped as _skipped

CHUNK_SIZE = 1 << 20
_COMPLETE = "..complete"


# --------------------------------------------------------------------------
# HTTP plumbing: the one transport
# --------------------------------------------------------------------------

def _base(url: Optional[str]) -> str:
    if not url:
        raise GobblerError("no Gobbler service URL given; pass url='http://host:port' "
                           "(including any -prefix)")
    return url.rstrip("/")


def _fetch_url(url: str, path: str) -> str:
    """``{url}/fetch/<path>`` with every segment percent-encoded."""
    return fetch_url(_base(url), path)


def _reason_of(res: Response) -> str:
    """The service's explanation: JSON ``reason`` whatever the content type, else the text."""
    try:
        body = res.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("reason") is not None:
        return str(body["reason"])
    return res.text.strip() or res.reason


def _error_from(res: Response, what: str) -> GobblerError:
    reason = _reason_of(res)
    cls = GobblerNotFoundError if res.status == 404 else GobblerError
    return cls(f"gobbler {what} failed (HTTP {res.status}): {reason}",
               status=res.status, reason=reason, url=res.url)


def _call(method: str, url: str, what: str, *, fields: Optional[Dict[str, str]] = None,
          retry: bool = True, wait: bool = False) -> Response:
    """One request through the transport; GobblerError on status >= 300 or no answer.

    ``wait``: no read timeout (an action runs as long as it needs).
    """
    try:
        res = transport.default().request(method, url, fields=fields, retry=retry,
                                          read_timeout=None if wait else "default")
    except OfflineError:
        raise
    except DownloadError as exc:
        raise GobblerError(f"gobbler {what} failed: {exc}; check that the service is running "
                           "and the URL is right", url=url) from None
    if res.status >= 300:
        raise _error_from(res, what)
    return res


def _get_json(url: str, what: str, params: Optional[Dict[str, str]] = None) -> Any:
    res = _call("GET", url, what, fields=params)
    try:
        return res.json()
    except ValueError:
        raise GobblerError(f"gobbler {what}: {res.url} did not return JSON",
                           status=res.status, url=res.url) from None


def _post_new(url: str, name: str, what: str) -> Dict[str, Any]:
    """``POST {url}/new/<name>``: never retried, no read timeout (actions are synchronous)."""
    target = _base(url) + "/new/" + urllib.parse.quote(name, safe="")
    res = _call("POST", target, what, retry=False, wait=True)
    try:
        body = res.json()
    except ValueError:
        body = {}
    return body if isinstance(body, dict) else {}


def service_info(url: str) -> Dict[str, Any]:
    """``GET {url}/info``: the service's ``staging`` and ``registry`` paths."""
    return _object(_get_json(_base(url) + "/info", "info"), url)


def _object(value: Any, where: str) -> Dict[str, Any]:
    """A JSON answer that must be an object."""
    if not isinstance(value, dict):
        raise GobblerError(f"gobbler: {where} did not return a JSON object")
    return value


# --------------------------------------------------------------------------
# Paths, local mode, cache
# --------------------------------------------------------------------------

def unpack_path(path: str) -> Dict[str, Optional[str]]:
    """Split ``"project/asset/version[/rest]"`` into its parts.

    Returns a dict with ``project``, ``asset``, ``version`` and ``path``
    (``None`` when the path names the version itself).
    """
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) < 3:
        raise ValueError(f"registry path {path!r} should look like project/asset/version[/file]")
    rest = "/".join(parts[3:]) or None
    return {"project": parts[0], "asset": parts[1], "version": parts[2], "path": rest}


def _is_local(registry: Optional[str], force_remote: bool) -> bool:
    return registry is not None and not force_remote and os.path.exists(registry)


def _remote_base(url: Optional[str], registry: Optional[str]) -> str:
    """The service URL for a remote read, or an error saying what is missing."""
    if not url and registry is not None and not os.path.exists(registry):
        raise GobblerError(f"registry {registry} does not exist on this machine and no "
                           "url was given; pass url='http://host:port' to read through "
                           "the Gobbler REST API")
    return _base(url)


def _cache_root(cache: Optional[str], url: str) -> str:
    if cache is None:
        from ..depot import get_cache_dir

        cache = os.path.join(get_cache_dir(), "gobbler")
    return os.path.join(cache, urllib.parse.quote(_base(url), safe=""))


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _download(url: str, path: str, root: str, expected: Optional[Dict[str, Any]],
              what: str) -> str:
    """Stream ``/fetch/<path>`` into ``root/REGISTRY/<path>``, verifying ``expected``.

    ``expected`` is the manifest entry (``size``, ``md5sum``) or ``None`` for
    metadata files that no manifest describes. The bytes land under ``TEMP``
    and are renamed into place only once they match.
    """
    target = os.path.join(root, "REGISTRY", *path.split("/"))
    tempdir = os.path.join(root, "TEMP")
    os.makedirs(tempdir, exist_ok=True)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    source = _fetch_url(url, path)
    fd, temp = create_exclusive(tempdir, "part-")
    os.close(fd)
    try:
        try:
            got = transport.download(source, temp, hashers=(hashlib.md5,), compute_sha256=False)
        except OfflineError:
            raise
        except DownloadError as exc:
            cls = GobblerNotFoundError if exc.status == 404 else GobblerError
            raise cls(f"gobbler {what} failed: {exc}", status=exc.status, url=source) from None
        if expected is not None:
            _check_digest(path, expected, got.size, got.digests[0].hexdigest())
        os.replace(temp, target)
    finally:
        _remove_quietly(temp)
    return target


def _check_digest(path: str, expected: Dict[str, Any], size: int, md5: str) -> None:
    want_size, want_md5 = int(expected.get("size", -1)), str(expected.get("md5sum", ""))
    if size == want_size and md5 == want_md5:
        return
    parts = unpack_path(path)
    kind, want, got = (("size", f"{want_size} bytes", f"{size} bytes") if size != want_size
                       else ("md5", want_md5, md5))
    raise hash_mismatch(kind, want, got,
                        what=f"{parts['project']}/{parts['asset']}/{parts['version']}: file "
                             f"{parts['path']!r}",
                        advice="it does not match the version's ..manifest; the registry copy "
                               "is damaged, ask the Gobbler administrator to run "
                               "validate_version")


def _read_json(path: str, what: str) -> Any:
    try:
        with open(path, "rb") as handle:
            return json.load(handle)
    except FileNotFoundError as exc:
        raise GobblerNotFoundError(f"gobbler {what}: {path} does not exist; check the "
                                   "project/asset/version names", reason=str(exc)) from exc
    except ValueError as exc:
        raise GobblerError(f"gobbler {what}: {path} is not valid JSON ({exc})") from exc


# --------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------

def _list_remote(url: str, path: Optional[str], recursive: bool, what: str) -> List[str]:
    params: Dict[str, str] = {}
    if path:
        params["path"] = path
    if recursive:
        params["recursive"] = "true"
    listing = _get_json(_base(url) + "/list", what, params=params)
    return [str(x) for x in listing]


def _subdirectories(registry: Optional[str], url: Optional[str], force_remote: bool,
                    parts: List[str], what: str) -> List[str]:
    """Names of the subdirectories of ``parts`` (registry root if empty), minus ``..`` names."""
    if _is_local(registry, force_remote):
        assert registry is not None
        where = os.path.join(registry, *parts)
        try:
            names = [e.name for e in os.scandir(where) if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError as exc:
            raise GobblerNotFoundError(f"gobbler {what}: {where} does not exist",
                                       reason=str(exc)) from exc
    else:
        entries = _list_remote(_remote_base(url, registry), "/".join(parts), False, what)
        names = [e[:-1] for e in entries if e.endswith("/")]
    return sorted(n for n in names if not n.startswith(".."))


def list_projects(registry: Optional[str] = None, url: Optional[str] = None,
                  force_remote: bool = False) -> List[str]:
    """Names of all projects in the registry."""
    return _subdirectories(registry, url, force_remote, [], "list_projects")


def list_assets(project: str, registry: Optional[str] = None, url: Optional[str] = None,
                force_remote: bool = False) -> List[str]:
    """Names of the assets of ``project``."""
    return _subdirectories(registry, url, force_remote, [project], f"list_assets {project}")


def list_versions(project: str, asset: str, registry: Optional[str] = None,
                  url: Optional[str] = None, force_remote: bool = False) -> List[str]:
    """Names of the versions of ``project/asset`` (including unfinished or probational ones)."""
    return _subdirectories(registry, url, force_remote, [project, asset],
                           f"list_versions {project}/{asset}")


def _walk_local(top: str) -> List[str]:
    """Like recursive ``/list``: files and symlinks, plus leaf empty directories with ``/``."""
    out: List[str] = []
    for root, dirs, files in os.walk(top):
        rel = os.path.relpath(root, top)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        linked = [d for d in dirs if os.path.islink(os.path.join(root, d))]
        dirs[:] = [d for d in dirs if d not in linked]
        out.extend(prefix + f for f in files + linked)
        if not dirs and not files and not linked and rel != ".":
            out.append(prefix)
    return out


def list_files(project: str, asset: str, version: str, registry: Optional[str] = None,
               url: Optional[str] = None, prefix: Optional[str] = None,
               include_dotdot: bool = True, force_remote: bool = False) -> List[str]:
    """Paths inside a version: files, plus leaf empty directories ending in ``/``.

    ``prefix`` keeps only paths starting with that string (``"sub/"`` lists
    a subdirectory, ``"sub/da"`` also matches ``sub/data.csv``).
    ``include_dotdot=False`` drops ``..manifest`` and other ``..`` files.
    """
    what = f"list_files {project}/{asset}/{version}"
    if _is_local(registry, force_remote):
        assert registry is not None
        top = os.path.join(registry, project, asset, version)
        if not os.path.isdir(top):
            raise GobblerNotFoundError(f"gobbler {what}: {top} is not a version directory")
        # Walk only the directory the prefix lives in; filtering follows.
        subdir = prefix.rsplit("/", 1)[0] if prefix and "/" in prefix else ""
        start = os.path.join(top, *subdir.split("/")) if subdir else top
        lead = subdir + "/" if subdir else ""
        listing = [lead + p for p in _walk_local(start)] if os.path.isdir(start) else []
    else:
        listing = _list_remote(_remote_base(url, registry), f"{project}/{asset}/{version}", True, what)
    if not include_dotdot:
        listing = [p for p in listing if not any(s.startswith("..") for s in p.split("/"))]
    if prefix:
        listing = [p for p in listing if p.startswith(prefix)]
    return sorted(listing)


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------

def _metadata_remote(url: str, path: str, what: str, missing: Any = None,
                     allow_missing: bool = False) -> Any:
    """GET a ``..`` JSON file without caching; 404 gives ``missing`` if allowed."""
    try:
        return _get_json(_fetch_url(url, path), what)
    except GobblerNotFoundError:
        if allow_missing:
            return missing
        raise


def _version_metadata(name: str, project: str, asset: str, version: str,
                      registry: Optional[str], url: Optional[str], cache: Optional[str],
                      force_remote: bool, overwrite: bool,
                      stale: Callable[[Dict[str, Any]], bool] = lambda _: False
                      ) -> Dict[str, Any]:
    """A version's ``..`` JSON file, read in place or through the cache.

    A cached copy for which ``stale`` is true is downloaded again.
    """
    what = f"fetch {name} {project}/{asset}/{version}"
    if _is_local(registry, force_remote):
        assert registry is not None
        return _object(_read_json(os.path.join(registry, project, asset, version, name), what),
                       what)
    base = _remote_base(url, registry)
    root = _cache_root(cache, base)
    path = f"{project}/{asset}/{version}/{name}"
    target = os.path.join(root, "REGISTRY", project, asset, version, name)
    if not overwrite and os.path.exists(target):
        data = _object(_read_json(target, what), what)
        if not stale(data):
            return data
    _download(base, path, root, None, what)
    return _object(_read_json(target, what), what)


def fetch_manifest(project: str, asset: str, version: str, registry: Optional[str] = None,
                   url: Optional[str] = None, cache: Optional[str] = None,
                   force_remote: bool = False, overwrite: bool = False) -> Dict[str, Any]:
    """The version's ``..manifest``: ``{path: {size, md5sum, link?}}`` (cached remotely)."""
    return _version_metadata("..manifest", project, asset, version, registry, url, cache,
                             force_remote, overwrite)


def fetch_summary(project: str, asset: str, version: str, registry: Optional[str] = None,
                  url: Optional[str] = None, cache: Optional[str] = None,
                  force_remote: bool = False, overwrite: bool = False) -> Dict[str, Any]:
    """The version's ``..summary`` (uploader, times, ``on_probation``).

    Cached remotely, except that a probational summary is always re-fetched
    because approval rewrites it.
    """
    return _version_metadata("..summary", project, asset, version, registry, url, cache,
                             force_remote, overwrite,
                             stale=lambda summary: bool(summary.get("on_probation")))


def fetch_latest(project: str, asset: str, registry: Optional[str] = None,
                 url: Optional[str] = None, force_remote: bool = False) -> Optional[str]:
    """Name of the latest non-probational version of ``project/asset``, or ``None``."""
    what = f"fetch_latest {project}/{asset}"
    if _is_local(registry, force_remote):
        assert registry is not None
        path = os.path.join(registry, project, asset, "..latest")
        if not os.path.exists(path):
            return None
        latest = _read_json(path, what)
    else:
        latest = _metadata_remote(_remote_base(url, registry), f"{project}/{asset}/..latest", what,
                                  allow_missing=True)
    return None if latest is None else latest.get("version")


def fetch_usage(project: str, registry: Optional[str] = None, url: Optional[str] = None,
                force_remote: bool = False) -> int:
    """Bytes used by ``project`` (its ``..usage`` total)."""
    what = f"fetch_usage {project}"
    if _is_local(registry, force_remote):
        assert registry is not None
        usage = _read_json(os.path.join(registry, project, "..usage"), what)
    else:
        usage = _metadata_remote(_remote_base(url, registry), f"{project}/..usage", what)
    return int(usage["total"])


def fetch_permissions(project: str, registry: Optional[str] = None, url: Optional[str] = None,
                      asset: Optional[str] = None,
                      force_remote: bool = False) -> Dict[str, Any]:
    """Permissions of a project (or of ``asset``): ``owners``, ``uploaders``, ``global_write?``.

    ``null`` lists come back as ``[]``; an asset without its own file gives
    empty lists.
    """
    parts = [project] if asset is None else [project, asset]
    what = "fetch_permissions " + "/".join(parts)
    empty: Dict[str, Any] = {"owners": [], "uploaders": []}
    if _is_local(registry, force_remote):
        assert registry is not None
        path = os.path.join(registry, *parts, "..permissions")
        perms = empty if asset is not None and not os.path.exists(path) else _read_json(path, what)
    else:
        perms = _metadata_remote(_remote_base(url, registry), "/".join(parts + ["..permissions"]), what,
                                 missing=empty, allow_missing=asset is not None)
    perms = dict(_object(perms, what))
    perms["owners"] = list(perms.get("owners") or [])
    perms["uploaders"] = list(perms.get("uploaders") or [])
    return perms


def _manifest_entry(manifest: Dict[str, Any], parts: Dict[str, Optional[str]],
                    path: str) -> Dict[str, Any]:
    entry = manifest.get(parts["path"] or "")
    if entry is None:
        raise GobblerNotFoundError(f"gobbler fetch_file: {path} is not in the ..manifest of "
                                   f"{parts['project']}/{parts['asset']}/{parts['version']}; "
                                   "check the path with list_files()")
    if entry.get("md5sum") == "":
        raise GobblerError(f"gobbler fetch_file: {path} is an empty directory; "
                           "use fetch_directory()")
    return _object(entry, path)


def _in_registry(registry: Optional[str], path: str, check: Callable[[str], bool],
                 what: str, problem: str) -> str:
    """``registry/path`` in local mode, after ``check``; else GobblerNotFoundError."""
    assert registry is not None
    local = os.path.join(registry, *path.split("/"))
    if not check(local):
        raise GobblerNotFoundError(f"gobbler {what}: {local} {problem}")
    return local


def fetch_file(path: str, registry: Optional[str] = None, url: Optional[str] = None,
               cache: Optional[str] = None, force_remote: bool = False,
               overwrite: bool = False, verify: bool = True) -> str:
    """Local path of the registry file ``path`` (``project/asset/version/...``).

    In local mode this is the file in the registry. Otherwise the file is
    downloaded into the cache once and, with ``verify``, checked against the
    version's ``..manifest``. ``..`` metadata files are never verified.
    """
    path = path.strip("/")
    if _is_local(registry, force_remote):
        return _in_registry(registry, path, os.path.exists, "fetch_file", "does not exist")
    base = _remote_base(url, registry)
    root = _cache_root(cache, base)
    target = os.path.join(root, "REGISTRY", *path.split("/"))
    if os.path.exists(target) and not overwrite:
        return target
    expected = None
    if verify and not os.path.basename(path).startswith(".."):
        parts = unpack_path(path)
        manifest = fetch_manifest(parts["project"] or "", parts["asset"] or "",
                                  parts["version"] or "", url=base, cache=cache,
                                  force_remote=True)
        expected = _manifest_entry(manifest, parts, path)
    return _download(base, path, root, expected, f"fetch_file {path}")


def _run_parallel(tasks: Iterable[Callable[[], Any]], concurrent: int) -> None:
    """Run callables on a bounded thread pool; the first failure cancels the rest and is raised."""
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    tasks = list(tasks)
    if not tasks:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(concurrent, len(tasks)))) as pool:
        futures = [pool.submit(t) for t in tasks]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for f in pending:
            f.cancel()
        for f in futures:
            if f.done() and not f.cancelled() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]


def fetch_directory(path: str, registry: Optional[str] = None, url: Optional[str] = None,
                    cache: Optional[str] = None, force_remote: bool = False,
                    overwrite: bool = False, concurrent: int = 8) -> str:
    """Local path of the registry directory ``path`` (a version or a directory inside one).

    Remotely, the version's manifest says what to fetch: files (links too,
    by their own path; the server follows them) are downloaded on
    ``concurrent`` threads and verified; empty-directory entries become
    directories. A ``..complete`` marker makes later calls free.
    """
    path = path.strip("/")
    if _is_local(registry, force_remote):
        return _in_registry(registry, path, os.path.isdir, "fetch_directory", "is not a directory")
    base = _remote_base(url, registry)
    root = _cache_root(cache, base)
    final = os.path.join(root, "REGISTRY", *path.split("/"))
    marker = os.path.join(root, "SUCCESS", *path.split("/"), _COMPLETE)
    if not overwrite and os.path.exists(marker) and os.path.isdir(final):
        return final

    parts = unpack_path(path)
    version_path_ = f"{parts['project']}/{parts['asset']}/{parts['version']}"
    manifest = fetch_manifest(parts["project"] or "", parts["asset"] or "",
                              parts["version"] or "", url=base, cache=cache,
                              force_remote=True, overwrite=overwrite)
    sub = parts["path"]
    entries = {k: v for k, v in manifest.items()
               if sub is None or k == sub or k.startswith(sub + "/")}
    if sub is not None and not entries:
        raise GobblerNotFoundError(f"gobbler fetch_directory: {path} holds nothing in the "
                                   f"..manifest of {version_path_}; check the path")
    if sub is not None and sub in entries and entries[sub].get("md5sum") != "":
        raise GobblerError(f"gobbler fetch_directory: {path} is a file; use fetch_file()")

    what = f"fetch_directory {path}"
    os.makedirs(final, exist_ok=True)
    tasks: List[Callable[[], Any]] = []
    for rel, entry in sorted(entries.items()):
        local = os.path.join(root, "REGISTRY", *version_path_.split("/"), *rel.split("/"))
        if entry.get("md5sum") == "":
            os.makedirs(local, exist_ok=True)
            continue
        if (not overwrite and os.path.isfile(local)
                and os.path.getsize(local) == int(entry.get("size", -1))):
            continue  # presence in the cache means it was verified on arrival
        tasks.append(functools.partial(_download, base, f"{version_path_}/{rel}", root, entry,
                                       what))
    _run_parallel(tasks, concurrent)

    os.makedirs(os.path.dirname(marker), exist_ok=True)
    with open(marker, "w"):
        pass
    return final


def version_path(project: str, asset: str, version: str, **kwargs: Any) -> str:
    """Local path of a whole version; ``kwargs`` go to :func:`fetch_directory`."""
    return fetch_directory(f"{project}/{asset}/{version}", **kwargs)


def clone_version(project: str, asset: str, version: str, destination: str,
                  registry: str) -> None:
    """Mirror a version at ``destination`` as symlinks into the registry (local only).

    Uploading the clone (after changing some files) makes the unchanged files
    Gobbler links instead of copies. Empty-directory entries become real
    empty directories.
    """
    registry = os.path.abspath(registry)  # lexical: the server matches links lexically
    manifest = fetch_manifest(project, asset, version, registry=registry)
    os.makedirs(destination, exist_ok=True)
    for rel, entry in sorted(manifest.items()):
        local = os.path.join(destination, *rel.split("/"))
        if entry.get("md5sum") == "":
            os.makedirs(local, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(local), exist_ok=True)
        os.symlink(os.path.join(registry, project, asset, version, *rel.split("/")), local)


# --------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------

def _staging_dir(staging: Optional[str], url: Optional[str], what: str) -> str:
    if staging is None:
        staging = str(service_info(_base(url))["staging"])
    if not os.path.isdir(staging):
        raise GobblerError(f"gobbler {what}: staging directory {staging} does not exist or "
                           "is not a directory; pass the 'staging' path reported by "
                           f"{_base(url) if url else 'the service'}/info, as seen from this "
                           "machine")
    return staging


def _request(action: str, payload: Dict[str, Any], staging: Optional[str],
             url: Optional[str], what: str, spoof: Optional[str] = None) -> Dict[str, Any]:
    """Write ``request-<action>-<random>`` in staging, POST it, always remove it."""
    base = _base(url)
    staging = _staging_dir(staging, base, what)
    if spoof is not None:
        payload = {**payload, "spoof": spoof}
    body = json.dumps(payload, indent=4).encode("utf-8")
    fd, path = create_exclusive(staging, f"request-{action}-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
        return _post_new(base, os.path.basename(path), what)
    finally:
        _remove_quietly(path)


def create_project(project: str, staging: Optional[str], url: str,
                   owners: Optional[List[str]] = None,
                   uploaders: Optional[List[Dict[str, Any]]] = None,
                   global_write: Optional[bool] = None) -> None:
    """Create ``project`` (admin only). Owners default (server side) to the requester."""
    permissions: Dict[str, Any] = {}
    if owners is not None:
        permissions["owners"] = list(owners)
    if uploaders is not None:
        permissions["uploaders"] = list(uploaders)
    if global_write is not None:
        permissions["global_write"] = bool(global_write)
    payload: Dict[str, Any] = {"project": project}
    if permissions:
        payload["permissions"] = permissions
    _request("create_project", payload, staging, url, f"create_project {project}")


def set_permissions(project: str, registry: Optional[str], staging: Optional[str], url: str,
                    asset: Optional[str] = None, owners: Optional[List[str]] = None,
                    uploaders: Optional[List[Dict[str, Any]]] = None,
                    global_write: Optional[bool] = None, append: bool = True,
                    spoof: Optional[str] = None,
                    dry_run: bool = False) -> Optional[Dict[str, Any]]:
    """Change the owners/uploaders (and, project-level, ``global_write``).

    With ``append`` the given owners (new ones only) and uploaders are added
    to the current ones (read locally or remotely). ``dry_run`` returns the
    ``permissions`` object that would be sent, and sends nothing.
    """
    perms: Dict[str, Any] = {}
    if append and (owners is not None or uploaders is not None):
        old = fetch_permissions(project, registry=registry, url=url, asset=asset)
        if owners is not None:
            perms["owners"] = old["owners"] + [o for o in owners if o not in old["owners"]]
        if uploaders is not None:
            perms["uploaders"] = old["uploaders"] + list(uploaders)
    else:
        if owners is not None:
            perms["owners"] = list(owners)
        if uploaders is not None:
            perms["uploaders"] = list(uploaders)
    payload: Dict[str, Any] = {"project": project}
    if asset is not None:
        payload["asset"] = asset
    elif global_write is not None:
        perms["global_write"] = bool(global_write)
    if dry_run:
        return perms
    payload["permissions"] = perms
    where = project if asset is None else f"{project}/{asset}"
    _request("set_permissions", payload, staging, url, f"set_permissions {where}", spoof)
    return None


def approve_probation(project: str, asset: str, version: str, staging: Optional[str],
                      url: str, spoof: Optional[str] = None) -> None:
    """Approve a probational version (admins and project owners)."""
    _request("approve_probation", {"project": project, "asset": asset, "version": version},
             staging, url, f"approve_probation {project}/{asset}/{version}", spoof)


def reject_probation(project: str, asset: str, version: str, staging: Optional[str],
                     url: str, force: bool = False, spoof: Optional[str] = None) -> None:
    """Reject (delete) a probational version (admins and project owners)."""
    _request("reject_probation",
             {"project": project, "asset": asset, "version": version, "force": force},
             staging, url, f"reject_probation {project}/{asset}/{version}", spoof)


def remove_project(project: str, staging: Optional[str], url: str) -> None:
    """Delete a whole project (admin only; a missing project is not an error)."""
    _request("delete_project", {"project": project}, staging, url,
             f"remove_project {project}")


def remove_asset(project: str, asset: str, staging: Optional[str], url: str,
                 force: bool = False) -> None:
    """Delete an asset (admin only); ``force`` ignores unreadable manifests."""
    _request("delete_asset", {"project": project, "asset": asset, "force": force},
             staging, url, f"remove_asset {project}/{asset}")


def remove_version(project: str, asset: str, version: str, staging: Optional[str], url: str,
                   force: bool = False) -> None:
    """Delete a version (admin only); ``..latest`` is recomputed."""
    _request("delete_version",
             {"project": project, "asset": asset, "version": version, "force": force},
             staging, url, f"remove_version {project}/{asset}/{version}")


def refresh_latest(project: str, asset: str, staging: Optional[str],
                   url: str) -> Optional[str]:
    """Recompute ``..latest`` (admin only); returns the latest version or ``None``."""
    res = _request("refresh_latest", {"project": project, "asset": asset}, staging, url,
                   f"refresh_latest {project}/{asset}")
    return res.get("version")


def refresh_usage(project: str, staging: Optional[str], url: str) -> int:
    """Recompute ``..usage`` (admin only); returns the total in bytes."""
    res = _request("refresh_usage", {"project": project}, staging, url,
                   f"refresh_usage {project}")
    return int(res["total"])


def reindex_version(project: str, asset: str, version: str, staging: Optional[str],
                    url: str) -> None:
    """Regenerate a version's ``..manifest`` and ``..links`` from disk (admin only)."""
    _request("reindex_version", {"project": project, "asset": asset, "version": version},
             staging, url, f"reindex_version {project}/{asset}/{version}")


def validate_version(project: str, asset: str, version: str, staging: Optional[str],
                     url: str) -> None:
    """Check a version against its manifest (admin only); raises GobblerError (500) if bad."""
    _request("validate_version", {"project": project, "asset": asset, "version": version},
             staging, url, f"validate_version {project}/{asset}/{version}")


def reroute_links(to_delete: List[Dict[str, str]], staging: Optional[str], url: str,
                  dry_run: bool = False) -> List[Dict[str, Any]]:
    """Re-point links away from what ``to_delete`` names (admin only); returns the changes."""
    res = _request("reroute_links", {"to_delete": list(to_delete), "dry_run": dry_run},
                   staging, url, "reroute_links")
    return list(res.get("changes") or [])


# --------------------------------------------------------------------------
# Uploads
# --------------------------------------------------------------------------

def allocate_upload_directory(staging: str, create: bool = True) -> str:
    """A new ``upload-<random>`` directory directly inside ``staging``.

    Created with ``os.mkdir`` so its mode follows the umask (and default
    ACLs apply); with ``create=False`` only a free name is returned.
    """
    if not os.path.isdir(staging):
        raise GobblerError(f"staging directory {staging} does not exist; pass the 'staging' "
                           "path reported by the service's /info")
    while True:
        path = os.path.join(staging, "upload-" + secrets.token_hex(6))
        if not create:
            if not os.path.lexists(path):
                return path
            continue
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


class _LinkRewriter:
    """Decides the text of a symlink recreated in the staging copy."""

    def __init__(self, source_root: str, url: str) -> None:
        self.source_root = os.path.normpath(os.path.abspath(source_root))
        self.url = url
        self._registry: Optional[str] = None

    def registry(self) -> str:
        if self._registry is None:  # only asked for when a link leaves the tree
            self._registry = os.path.normpath(str(service_info(self.url)["registry"]))
        return self._registry

    def text(self, link: str) -> str:
        target = os.readlink(link)
        here = os.path.dirname(os.path.abspath(link))
        lexical = os.path.normpath(os.path.join(here, target))
        if _inside(lexical, self.source_root):
            # Relative within the tree means the same in the copy (a local link).
            return target if not os.path.isabs(target) else os.path.relpath(lexical, here)
        registry = self.registry()
        if _inside(lexical, registry):
            return lexical  # keep it lexical: the server matches the registry path as text
        real = os.path.realpath(lexical)
        real_registry = os.path.realpath(registry)
        if _inside(real, real_registry):
            return os.path.join(registry, os.path.relpath(real, real_registry))
        return real


def _raise(exc: OSError) -> None:
    raise GobblerError(f"cannot read the upload source: {exc}") from exc


def _place_file(src: str, dest: str, try_link: bool) -> bool:
    """Hard-link ``src`` to ``dest`` if allowed, else copy; True if linked."""
    if try_link:
        try:
            os.link(src, dest)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK,
                                 errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
    shutil.copyfile(src, dest)
    return False


def _place_and_note(f: Tuple[str, str, bool], linked: List[bool]) -> None:
    linked.append(_place_file(*f))


def _populate(source: str, target: str, url: str, ignore_dot: bool,
              concurrent: int) -> bool:
    """Mirror ``source`` into ``target`` (a fresh staging directory); True if any hard link."""
    rewriter = _LinkRewriter(source, url)
    same_fs = os.stat(source).st_dev == os.stat(target).st_dev
    files: List[Tuple[str, str, bool]] = []
    for root, dirs, names in os.walk(source, onerror=_raise):
        rel = os.path.relpath(root, source)
        out_root = target if rel == "." else os.path.join(target, rel)
        dirs[:] = sorted(d for d in dirs if not _skipped(d, ignore_dot))
        for d in list(dirs):
            src = os.path.join(root, d)
            if os.path.islink(src):
                raise GobblerError(f"cannot upload {src}: it is a symlink to a directory, "
                                   "which Gobbler refuses; replace it by the directory or "
                                   "by links to its files")
            os.mkdir(os.path.join(out_root, d))  # umask mode, no chmod (ACLs)
        for name in sorted(n for n in names if not _skipped(n, ignore_dot)):
            src, dest = os.path.join(root, name), os.path.join(out_root, name)
            if os.path.islink(src):
                if not os.path.exists(src):
                    raise GobblerError(f"cannot upload {src}: broken symlink to "
                                       f"{os.readlink(src)!r}; remove or fix it")
                os.symlink(rewriter.text(src), dest)
                continue
            st = os.stat(src)
            if not stat.S_ISREG(st.st_mode):
                raise GobblerError(f"cannot upload {src}: only regular files, directories "
                                   "and symlinks can be uploaded")
            # A hard link shares the source's mode: only worth it if the service can read it.
            files.append((src, dest, same_fs and bool(st.st_mode & stat.S_IROTH)))
    linked: List[bool] = []
    _run_parallel([functools.partial(_place_and_note, f, linked) for f in files], concurrent)
    return any(linked)


def upload_directory(project: str, asset: str, version: str, directory: str,
                     staging: Optional[str], url: str, probation: bool = False,
                     consume: Optional[bool] = None, ignore_dot: bool = True,
                     spoof: Optional[str] = None, concurrent: int = 8) -> None:
    """Upload ``directory`` as ``project/asset/version``.

    An immediate child of ``staging`` is uploaded in place (``consume``
    defaults to False). Anything else is mirrored into a fresh staging
    directory, which is removed afterwards whatever happens: files are hard
    links when on the same filesystem (falling back to copies), symlinks keep
    pointing where they pointed (relative ones inside the tree keep their
    text; others become absolute, lexical under the registry). ``consume``
    then defaults to True for copies, but is always False when hard links were
    made: a consuming server could move the user's own inode into the
    registry and chmod it.
    """
    what = f"upload {project}/{asset}/{version}"
    base = _base(url)
    staging = _staging_dir(staging, base, what)
    directory = os.path.abspath(directory)
    if not os.path.isdir(directory):
        raise GobblerError(f"gobbler {what}: {directory} is not a directory")
    if os.path.samefile(os.path.dirname(directory), staging):
        if os.path.basename(directory).startswith("."):
            raise GobblerError(f"gobbler {what}: the upload directory {directory} starts "
                               "with '.', which the service skips; rename it")
        _request("upload", _upload_payload(os.path.basename(directory), project, asset,
                                           version, probation, bool(consume), ignore_dot),
                 staging, base, what, spoof)
        return
    newdir = allocate_upload_directory(staging)
    try:
        linked = _populate(directory, newdir, base, ignore_dot, concurrent)
        if consume is None or linked:
            consume = not linked
        _request("upload", _upload_payload(os.path.basename(newdir), project, asset, version,
                                           probation, consume, ignore_dot),
                 staging, base, what, spoof)
    finally:
        shutil.rmtree(newdir, ignore_errors=True)


def _upload_payload(source: str, project: str, asset: str, version: str, probation: bool,
                    consume: bool, ignore_dot: bool) -> Dict[str, Any]:
    return {"source": source, "project": project, "asset": asset, "version": version,
            "on_probation": bool(probation), "consume": bool(consume),
            "ignore_dot": bool(ignore_dot)}
