"""The ``upload`` action (``gobbler-protocol.md`` §3.5.1, §6).

Pre-flight checks on the request and its ``source`` directory, authorisation
(creating the asset when needed), then three passes over the source: walk
and deduplicate, copy (or move), resolve local links.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import stat
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Optional

from artifacts_py.servers.gobbler.access import enter_project, hold_asset, load_manifest, load_permissions
from artifacts_py.servers.gobbler.auth import (
    merge_asset_permissions, spoofed_identity, upload_trust, user_name,
)
from artifacts_py.servers.gobbler.config import Config
from artifacts_py.servers.gobbler.registry import (
    NOFOLLOW_DIR, NOFOLLOW_FILE, ActionError, add_usage, make_summary, manifest_usage,
    md5_file, now_rfc3339, open_beneath, read_latest, write_json, write_latest, write_links,
    write_log, write_manifest,
)
from artifacts_py.servers.gobbler.request import Request, names, optional_bool, stop_if_cancelled
from artifacts_py.servers.gobbler.shapes import Manifest, Permissions
from artifacts_py.servers.gobbler.walker import DedupIndex, VersionWalker


def _dedup_index(asset_dir: str) -> Optional[DedupIndex]:
    """``"size-md5" -> (latest version, path, entry)`` over the ``..latest`` manifest (§6.5)."""
    latest = read_latest(asset_dir)
    if latest is None:
        return None
    manifest = load_manifest(os.path.join(asset_dir, latest))
    index: DedupIndex = {}
    for path in sorted(manifest, reverse=True):  # the lexically first path wins
        entry = manifest[path]
        if entry.get("md5sum"):
            index[f"{entry['size']}-{entry['md5sum']}"] = (latest, path, entry)
    return index


def _copy_into(root_fd: int, rel: str, dest: str, md5: str, consume: bool,
               cancelled: Callable[[], bool]) -> None:
    """Second pass for one file: move or copy, then check the checksum (§6.6).

    The source is re-opened under ``root_fd`` without following symlinks and
    the destination's MD5 must match the first pass, so a file swapped in
    the meantime is refused rather than published.
    """
    stop_if_cancelled(cancelled)
    parent_fd = open_beneath(root_fd, os.path.dirname(rel), directory=True)
    base = os.path.basename(rel)
    try:
        src_fd = os.open(base, NOFOLLOW_FILE, dir_fd=parent_fd)
        try:
            info = os.fstat(src_fd)
            if not stat.S_ISREG(info.st_mode):
                raise ActionError(500, f"{rel!r} changed while it was being uploaded")
            if consume and info.st_uid == os.geteuid() and \
                    _move_into(parent_fd, base, src_fd, info, dest):
                return
            out_fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            with os.fdopen(out_fd, "wb") as out, os.fdopen(os.dup(src_fd), "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
        finally:
            os.close(src_fd)
        if md5_file(dest) != md5:
            raise ActionError(500, f"mismatch in checksums between source and destination files "
                                   f"({rel!r} -> {dest!r})")
        if consume:
            with contextlib.suppress(OSError):
                os.unlink(base, dir_fd=parent_fd)
    finally:
        os.close(parent_fd)


def _move_into(parent_fd: int, base: str, src_fd: int, info: os.stat_result,
               dest: str) -> bool:
    """Rename a service-owned source file into place; False to fall back to copying."""
    try:
        os.fchmod(src_fd, 0o644)
    except OSError:
        return False
    try:
        os.rename(base, dest, src_dir_fd=parent_fd)
    except OSError:
        return False
    moved = os.lstat(dest)
    if (moved.st_dev, moved.st_ino) != (info.st_dev, info.st_ino):
        os.unlink(dest)  # something else was swapped in: do not publish it
        return False
    return True


def _transfer(cfg: Config, root_fd: int, source_dir: str, version_dir: str, project: str,
              asset: str, version: str, ignore_dot: bool, consume: bool,
              asset_dir: str, cancelled: Callable[[], bool]) -> Manifest:
    """The three passes of an upload (§6.3-6.8); returns the manifest."""
    walker = VersionWalker(cfg, project, asset, version, source_dir, ignore_dot,
                           dedup=_dedup_index(asset_dir), cancelled=cancelled)
    walker.walk(root_fd)
    for directory in walker.dirs:
        os.mkdir(os.path.join(version_dir, directory), 0o755)
    walker.place_links(version_dir, sorted(walker.registry_links))
    for rel, target in walker.whitelisted.items():
        os.symlink(target, os.path.join(version_dir, rel))
    jobs = [(root_fd, rel, os.path.join(version_dir, rel), md5, consume, cancelled)
            for rel, md5 in walker.copies]
    workers = max(1, min(cfg.concurrency, 4, len(jobs)))
    if workers == 1:
        for job in jobs:
            _copy_into(*job)
    else:
        with ThreadPoolExecutor(workers) as pool:
            for future in [pool.submit(_copy_into, *job) for job in jobs]:
                future.result()
    walker.resolve_local_links()
    walker.place_links(version_dir, sorted(walker.local_links))
    walker.add_empty_dirs()
    return walker.manifest


def upload(cfg: Config, req: Request) -> Dict[str, Any]:
    """Action ``upload`` (§3.5.1, §6)."""
    start = now_rfc3339()
    body = req.body()
    user = spoofed_identity(cfg, req.user(), body)

    source = body.get("source")
    if not isinstance(source, str) or source == "":
        raise ActionError(400, "expected a 'source' string property in the request details")
    if os.path.basename(source) != source or source in (".", ".."):
        raise ActionError(400, f"'source' ({source!r}) should be the name of a directory "
                               "directly inside the staging directory")
    source_dir = os.path.join(os.path.dirname(req.path), source)
    try:
        info = os.lstat(source_dir)
    except OSError as exc:
        raise ActionError(400, f"failed to stat the 'source' directory {source_dir!r}; {exc}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise ActionError(400, f"'source' ({source_dir!r}) should be a directory")
    try:
        root_fd = os.open(source_dir, NOFOLLOW_DIR)
    except OSError as exc:
        raise ActionError(400, f"failed to open the 'source' directory {source_dir!r}; {exc}") from exc
    try:
        return _upload_from(cfg, req, user, start, source_dir, root_fd)
    finally:
        os.close(root_fd)


def _upload_from(cfg: Config, req: Request, user: str, start: str, source_dir: str,
                 root_fd: int) -> Dict[str, Any]:
    body = req.body()
    owner = spoofed_identity(cfg, user_name(os.fstat(root_fd).st_uid,
                                            f"directory {source_dir!r}"), body)
    if owner != user:
        raise ActionError(403, "requesting user must be the same as the owner of the 'source' directory")

    project, asset, version = names(body, "project", "asset", "version")
    probation = optional_bool(body, "on_probation")
    ignore_dot = optional_bool(body, "ignore_dot")
    consume = optional_bool(body, "consume")

    with enter_project(cfg, project) as project_dir:
        asset_dir = os.path.join(project_dir, asset)
        prepare = functools.partial(_authorise_upload, cfg, project_dir, asset_dir, user,
                                    project, asset, version, probation)
        with hold_asset(project_dir, asset_dir, prepare) as probation:
            version_dir = os.path.join(asset_dir, version)
            if os.path.lexists(version_dir):
                raise ActionError(400, f'version "{version}" already exists in {asset_dir!r}')
            os.mkdir(version_dir, 0o755)
            try:
                manifest = _transfer(cfg, root_fd, source_dir, version_dir, project, asset,
                                     version, ignore_dot, consume, asset_dir, req.cancelled)
                write_manifest(version_dir, manifest)
                write_links(version_dir, manifest)
                write_json(os.path.join(version_dir, "..summary"),
                           make_summary(user, start, now_rfc3339(), probation))
                add_usage(project_dir, manifest_usage(manifest))
                if not probation:
                    write_latest(asset_dir, version)
                    write_log(cfg.registry, {"type": "add-version", "project": project,
                                             "asset": asset, "version": version, "latest": True})
            except BaseException:
                shutil.rmtree(version_dir, ignore_errors=True)
                raise
    return {}


def _authorise_upload(cfg: Config, project_dir: str, asset_dir: str, user: str, project: str,
                      asset: str, version: str, probation: bool) -> bool:
    """Check ``user`` may upload, creating the asset if needed (§6.2); returns the probation.

    Runs under the project's exclusive newdir lock (see :func:`hold_asset`).
    """
    perms = load_permissions(os.path.join(project_dir, "..permissions"))
    if os.path.isdir(asset_dir):
        asset_perms_path = os.path.join(asset_dir, "..permissions")
        if os.path.exists(asset_perms_path):
            perms = merge_asset_permissions(perms, load_permissions(asset_perms_path), asset)
        return _upload_probation(cfg, perms, user, asset, version, probation,
                                 f'asset "{asset}" of project "{project}"')
    if not perms.get("global_write"):
        probation = _upload_probation(cfg, perms, user, asset, version, probation,
                                      f'project "{project}"')
    os.mkdir(asset_dir, 0o755)
    if perms.get("global_write"):
        write_json(os.path.join(asset_dir, "..permissions"),
                   {"owners": [user], "uploaders": None})
    return probation


def _upload_probation(cfg: Config, perms: Permissions, user: str, asset: str, version: str,
                      probation: bool, where: str) -> bool:
    """Whether the upload goes on probation: as asked, or forced for untrusted uploaders (§5.5).

    403 naming ``where`` when ``user`` may not upload at all.
    """
    trust = upload_trust(cfg, perms, user, asset, version)
    if trust is None:
        raise ActionError(403, f'user "{user}" is not authorized to upload to {where}')
    return probation or not trust


