"""Publishing to gypsum: upload a folder as a version and bind it in an Artifacts.toml.

The tree hash is that of the folder's *gypsum view*: every file as a regular
file of mode 0644 with its content (a symlink counts as its target's bytes,
as gypsum stores it); a name gypsum cannot store (``..``-prefixed or ``.``
components, backslashes, control characters), a symlink to a directory, a
broken symlink or anything but a regular file is refused before anything
is sent. The upload is one upload session (deduplicated against the latest
version, so a version made by cloning another uploads only what changed;
aborted at the same service on any failure); the stored manifest is then
checked against the local sizes and md5s, and only then is the name bound.
Any failure leaves the Artifacts.toml byte-identical.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from .errors import ArtifactError, GypsumError, HashMismatchError, InvalidArgumentError
from .gypsum.protocol import (GypsumSource, check_manifest, name_problem, path_problem,
                              version_key)
from .publish import compare_manifest, hash_view, preflight, upload_view
from .sources.gypsum import fetch_document, service_url

PathLike = Union[str, "os.PathLike[str]"]


def gypsum_view(directory: Path) -> Dict[str, Tuple[Path, int]]:
    """Files a gypsum upload of ``directory`` holds: relative path -> (real file, size)."""
    return upload_view(directory, "gypsum", name_problem=path_problem)


def publish_gypsum(toml_path: PathLike, name: str, directory: PathLike, *, project: str,
                   asset: str, version: str, url: Optional[str] = None,
                   probation: bool = False, token: Optional[str] = None,
                   force: bool = False) -> Dict[str, Any]:
    """Upload ``directory`` to gypsum as project/asset/version and bind it as ``name``.

    ``url`` is the gypsum service (default ``ARTIFACTS_PY_GYPSUM_URL``, else
    the public one); ``token`` a GitHub token (default ``GYPSUM_TOKEN``, then
    ``GITHUB_TOKEN``). A version published on probation is bound with
    ``probation = true``, so that it can be used before it is approved.
    """
    from . import binding, gypsum

    toml_path = Path(toml_path)
    directory = preflight(toml_path, name, directory, force,
                          [name_problem(v, w) for w, v in (("project", project),
                                                           ("asset", asset),
                                                           ("version", version))])
    view = gypsum_view(directory)
    if not view:
        raise InvalidArgumentError(f"{directory}: no files to publish (gypsum stores files, "
                                   "not empty folders)")
    tree_hash, sums = hash_view(view)
    g = GypsumSource(project, asset, version, url, probation)
    base = service_url(g)
    try:
        gypsum.upload_directory(str(directory), project, asset, version, probation=probation,
                                url=base, token=token)
    except (ArtifactError, OSError) as e:
        raise GypsumError(f"publishing {directory} as {g.coordinates} to {base} failed: {e}. "
                          f"{toml_path} was not changed", status=getattr(e, "status", None),
                          url=base) from None
    try:
        _check_uploaded(base, g, sums, directory)
        table: Dict[str, Any] = {"project": project, "asset": asset, "version": version}
        if url is not None:
            table["url"] = url
        if probation:
            table["probation"] = True
        binding.bind_artifact(toml_path, name, tree_hash, gypsum=table, force=force)
    except (ArtifactError, OSError, ValueError) as e:
        note = (f"{g.coordinates} was uploaded to {base} and exists there, but {e}; "
                f"{toml_path} was not changed")
        if isinstance(e, HashMismatchError):
            raise HashMismatchError(note, e.expected, e.actual, e.kind) from None
        raise GypsumError(note, url=base) from None
    return {"git_tree_sha1": tree_hash, "project": project, "asset": asset, "version": version,
            "url": base, "files": len(view), "probation": probation}


def _check_uploaded(base: str, g: GypsumSource, sums: Dict[str, Tuple[int, str]],
                    directory: Path) -> None:
    """The stored manifest must list exactly our files with our sizes and md5s."""
    where = f"{base} {g.coordinates}"
    manifest = fetch_document(base, version_key(g.project, g.asset, g.version, "..manifest"),
                              where)
    files = check_manifest(manifest, where, g.project, g.asset, g.version)
    compare_manifest({f.path: (f.size, f.md5) for f in files}, sums, directory)
