"""Authoring: create an artifact from a folder, add a remote tarball, publish.

These are the write-side counterparts of :mod:`artifacts_py.core`; their
names and return shapes follow fetch-artifacts so that switching is a
one-line import change.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

from .errors import ArtifactError, BindingExistsError, InvalidArgumentError
from .publish import publish as publish_artifact  # upload a folder to Gobbler and bind it
from .treehash import compute_git_tree_sha1

PathLike = Union[str, "os.PathLike[str]"]

# None is fetch-artifacts' spelling of "no compression"; "auto" (the default) lets
# the archive's name decide (.tar.gz, .tar.xz, ...; gzip for a name that says nothing).
_COMPRESSIONS = ("auto", "gz", "gzip", "bz2", "bzip2", "xz", "zst", "zstd", "none", "tar", None)


def create_artifact(directory: PathLike, archive_path: Optional[PathLike] = None,
                    compression: Optional[str] = "auto") -> Dict[str, str]:
    """Hash a folder as an artifact and, with ``archive_path``, pack it.

    Returns ``{"git_tree_sha1": ...}`` plus, with an archive, ``"sha256"`` and
    ``"archive_path"``. The archive is deterministic: the same folder always
    gives the same bytes, and it holds the folder's content (no wrapper dir).
    The archive's name decides its compression unless ``compression`` says
    (a contradiction, e.g. ``"gz"`` for ``x.tar.xz``, is an error).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InvalidArgumentError(f"{directory}: not a directory; create_artifact packs a "
                                   "folder")
    if compression not in _COMPRESSIONS:
        raise InvalidArgumentError(f"unknown compression {compression!r}; use one of gz, bz2, xz, zst, none")
    result = {"git_tree_sha1": compute_git_tree_sha1(directory)}
    if archive_path is not None:
        from .archives import create_archive

        result["sha256"] = create_archive(directory, archive_path,
                                          None if compression == "auto" else compression or "none")
        result["archive_path"] = str(archive_path)
    return result


def query_artifact_info(url: str, compute_tree_hash: bool = True) -> Dict[str, Any]:
    """Download a tarball and report ``sha256``, ``url`` and ``git_tree_sha1``.

    The unpacked tree is kept in the depot, so a later ``artifact()`` is a hit.
    """
    from .pin import pin_tarball

    info = pin_tarball(url, progress=None)
    out = {"sha256": info["sha256"], "url": url}
    if compute_tree_hash:
        out["git_tree_sha1"] = info["git_tree_sha1"]
    return out


def _check_not_bound(toml_path: Path, name: str, force: bool) -> None:
    if force or not toml_path.exists():
        return
    from .tomlmodel import load_file

    f = load_file(toml_path)
    if name in f:
        raise BindingExistsError(f"{toml_path}: artifact {name!r} is already bound; "
                                 "pass force=True to re-bind it")


def resolve_source(tarball_url: Optional[str] = None, *, project: Optional[str] = None,
                   asset: Optional[str] = None, version: Optional[str] = None,
                   url: Optional[str] = None, registry: Optional[str] = None,
                   progress: Optional[bool] = None, gypsum: bool = False,
                   probation: bool = False) -> Dict[str, Any]:
    """Install a tarball URL, a Gobbler or a gypsum version and describe it for binding.

    Returns ``git_tree_sha1`` and ``path``, plus ``sha256``/``url`` for a
    tarball, or ``gobbler``/``gypsum`` (the table to bind) for a version.
    """
    if tarball_url is not None:
        if project is not None:
            raise InvalidArgumentError("give either a tarball URL or project/asset/version, "
                                       "not both")
        from .pin import pin_tarball

        return pin_tarball(tarball_url, progress=progress)
    if project is None or asset is None:
        raise InvalidArgumentError("need a tarball URL, or a Gobbler or gypsum project and asset")
    if gypsum:
        from .pin import pin_gypsum

        return pin_gypsum(project, asset, version, url=url, probation=probation,
                          progress=progress)
    from .pin import pin_gobbler

    return pin_gobbler(project, asset, version, url=url, registry=registry, progress=progress)


def bind_resolved(toml_path: PathLike, name: str, info: Dict[str, Any], *, lazy: bool = False,
                  force: bool = False) -> None:
    """Bind what :func:`resolve_source` returned."""
    from .binding import bind_artifact

    if "gobbler" in info or "gypsum" in info:
        bind_artifact(toml_path, name, info["git_tree_sha1"], lazy=lazy, force=force,
                      gobbler=info.get("gobbler"), gypsum=info.get("gypsum"))
    else:
        bind_artifact(toml_path, name, info["git_tree_sha1"], info["url"], info["sha256"],
                      lazy=lazy, force=force)


def add_artifact(toml_path: PathLike, name: str, tarball_url: Optional[str] = None,
                 lazy: bool = False, force: bool = False, clear: bool = True,
                 verbose: bool = True, *, project: Optional[str] = None,
                 asset: Optional[str] = None, version: Optional[str] = None,
                 url: Optional[str] = None, registry: Optional[str] = None,
                 gypsum: bool = False, probation: bool = False) -> Dict[str, Any]:
    """Pin a source in an Artifacts.toml: download/install it, hash it, bind it.

    Tarball form: ``add_artifact(toml, name, tarball_url)`` returns
    ``{"git_tree_sha1", "sha256", "url", "path"}``. Gobbler form:
    ``add_artifact(toml, name, project=..., asset=..., version=None, url=...,
    registry=...)`` pins ``version`` (the latest when None) and returns
    ``{"git_tree_sha1", "project", "asset", "version", "path"}``. gypsum form:
    the same with ``gypsum=True`` (``url`` is the gypsum service, default the
    public one; ``probation=True`` accepts a version still on probation). ``clear`` is
    accepted for compatibility: the download is always removed and the tree
    always kept in the depot. An existing name needs ``force``.
    """
    from . import depot, store

    toml_path = Path(toml_path)
    _check_not_bound(toml_path, name, force)
    # Held from install to bind, so a concurrent gc cannot take the new tree away.
    with store.depot_lock(depot.get_cache_dir(), exclusive=False):
        info = resolve_source(tarball_url, project=project, asset=asset, version=version,
                              url=url, registry=registry,
                              progress=None if verbose else False, gypsum=gypsum,
                              probation=probation)
        bind_resolved(toml_path, name, info, lazy=lazy, force=force)
    if "gobbler" in info or "gypsum" in info:
        g = info.get("gobbler") or info["gypsum"]
        return {"git_tree_sha1": info["git_tree_sha1"], "project": g["project"],
                "asset": g["asset"], "version": g["version"], "path": info["path"]}
    return {k: info[k] for k in ("git_tree_sha1", "sha256", "url", "path")}


__all__ = ["create_artifact", "add_artifact", "query_artifact_info", "publish_artifact",
           "ArtifactError"]
