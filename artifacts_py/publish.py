"""Publishing to Gobbler: upload a folder as a version and bind it in an Artifacts.toml.

The tree hash is that of the folder's *Gobbler view* (what a registry client
sees: regular files, mode 0644, links resolved, dot names skipped), so the
published version installs with the hash it was bound with. After the upload
the version's manifest is checked against the local sizes and md5s; any
failure leaves the Artifacts.toml byte-identical and says whether the
version now exists in the registry.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import stat
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from . import settings
from .errors import (ArtifactError, BindingExistsError, GobblerError, GobblerNotFoundError, HashMismatchError,
                     InvalidArgumentError)
from .fill import run_pool
from .gobbler.protocol import GobblerSource, check_manifest, check_name, skipped
from .sources.gobbler_registry import read_manifest
from .sources.gobbler_rest import fetch_manifest
from .files import remove_tree
from .treehash import MODE_FILE, TreeBuilder, blob_hasher, hash_file


def upload_view(directory: Path, registry: str, *, skip: Callable[[str], bool] = lambda n: False,
                name_problem: Callable[[str], Optional[str]] = lambda rel: None
                ) -> Dict[str, Tuple[Path, int]]:
    """The files an upload of ``directory`` to ``registry`` holds: relative path ->
    (real file, size). Symlinks count as their target's content; names for which
    ``skip`` is true are left out (folders too); a name ``name_problem`` objects to,
    a symlink to a folder, a broken symlink or a special file is refused with a
    message naming it. The walk does not depend on Python's recursion limit.
    """
    from .files import walk

    class _Skipped:  # walk()'s prune: skipped folders are not entered
        def __contains__(self, name: object) -> bool:
            return isinstance(name, str) and skip(name)

    out: Dict[str, Tuple[Path, int]] = {}
    for e in walk(directory, sort=True, prune=_Skipped()):
        if skip(e.name) or stat.S_ISDIR(e.st.st_mode):
            continue
        p = Path(directory, e.rel)
        try:
            st = p.stat() if stat.S_ISLNK(e.st.st_mode) else e.st
        except FileNotFoundError:
            raise InvalidArgumentError(f"{p}: broken symlink; {registry} cannot upload it (fix "
                                       "or remove it)") from None
        if stat.S_ISDIR(st.st_mode):
            raise InvalidArgumentError(f"{p}: a symlink to a directory cannot be uploaded to "
                                       f"{registry}; replace it with a real folder")
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgumentError(f"{p}: not a regular file; {registry} uploads only "
                                       "files and links to files")
        problem = name_problem(e.rel)
        if problem:
            raise InvalidArgumentError(f"{p}: {registry} cannot store this name ({problem}); "
                                       "rename or remove it")
        out[e.rel] = (p, st.st_size)
    return out


def gobbler_view(directory: Path, ignore_dot: bool = True) -> Dict[str, Tuple[Path, int]]:
    """Files a Gobbler upload of ``directory`` holds (the server's walk: names starting
    with ``..``, and ``.`` when ``ignore_dot``, are skipped)."""
    return upload_view(directory, "Gobbler", skip=lambda name: skipped(name, ignore_dot))


def hash_view(view: Dict[str, Tuple[Path, int]]) -> Tuple[str, Dict[str, Tuple[int, str]]]:
    """Tree hash of a Gobbler view, plus (size, md5) per path for checking the manifest."""
    def one(rel: str) -> Tuple[str, bytes]:
        path, _size = view[rel]
        md5, sha = hashlib.md5(), blob_hasher(os.path.getsize(path))
        sums[rel] = (hash_file(path, md5, sha), md5.hexdigest())
        return rel, sha.digest()

    sums: Dict[str, Tuple[int, str]] = {}
    digests = run_pool([functools.partial(one, r) for r in view])
    builder = TreeBuilder()
    for rel, sha in digests.items():
        builder.add(rel, MODE_FILE, sha)
    return builder.hexdigest(), sums


def publish(toml_path: "str | os.PathLike[str]", name: str, directory: "str | os.PathLike[str]", *,
            project: str, asset: str, version: str, url: Optional[str] = None,
            staging: Optional[str] = None, registry: Optional[str] = None,
            probation: bool = False, archive: Optional[str] = None, allow_file_url: bool = False,
            archive_url: Optional[str] = None, force: bool = False,
            progress: Optional[bool] = None, gypsum: bool = False,
            token: Optional[str] = None) -> Dict[str, Any]:
    """Upload ``directory`` as project/asset/version and bind it as ``name``.

    The tree hash is that of the Gobbler view of the folder; after the upload
    the version's manifest is checked against the local sizes and md5s. With
    ``archive`` a deterministic tarball of the same view is written and added
    as a ``[[download]]`` mirror (``archive_url``, default a ``file://`` URL,
    refused in an Artifacts.toml that looks committed unless ``allow_file_url``).
    A failure leaves the Artifacts.toml untouched and says whether the
    version now exists in the registry. ``progress`` is accepted for symmetry
    with ``add``; uploads are local file operations with no bar. With
    ``gypsum=True`` the folder goes to a gypsum service instead
    (:func:`artifacts_py.publish_gypsum.publish_gypsum`; ``url`` is then the
    gypsum service and ``token`` a GitHub token).
    """
    from . import binding
    from .gobbler import client

    if gypsum:  # the same command for the other registry (publish_gypsum.py)
        from .publish_gypsum import publish_gypsum

        if staging or registry or archive or archive_url:
            raise InvalidArgumentError("staging, registry and archive are Gobbler options; "
                                       "gypsum publishing takes url, probation and token")
        return publish_gypsum(toml_path, name, directory, project=project, asset=asset,
                              version=version, url=url, probation=probation, token=token,
                              force=force)
    toml_path = Path(toml_path)
    url = url or settings.gobbler_url()
    if not url:
        raise GobblerError("publish needs the Gobbler REST URL: pass --url or set "
                           f"{settings.GOBBLER_URL}")
    directory = preflight(toml_path, name, directory, force,
                          [check_name(v, w) for w, v in (("project", project), ("asset", asset),
                                                         ("version", version))])
    view = gobbler_view(directory)
    tree_hash, sums = hash_view(view)

    if archive and not allow_file_url:  # before the upload: a refusal leaves nothing behind
        refuse_file_url(archive_url or Path(archive).absolute().as_uri(), toml_path)
    if staging is None or registry is None:
        info = client.service_info(url)
        staging = staging or info["staging"]
        registry = registry or info["registry"]
    g = GobblerSource(project, asset, version, url, registry)
    try:
        client.upload_directory(project, asset, version, str(directory), staging, url,
                                probation=probation)
    except OSError as e:  # GobblerError, or the staging copy failed
        raise GobblerError(f"publishing {directory} as {g.coordinates} failed: {e}. "
                           f"{_exists_note(g)} {toml_path} was not changed",
                           status=getattr(e, "status", None), reason=getattr(e, "reason", None),
                           url=url) from None
    try:
        _check_uploaded(g, sums, directory)
        mirrors = []
        if archive:
            sha256 = _archive_view(directory, view, Path(archive))
            mirrors.append({"url": archive_url or Path(archive).absolute().as_uri(),
                            "sha256": sha256})
        table = {"project": project, "asset": asset, "version": version, "url": url,
                 "registry": registry}
        binding.bind_artifact(toml_path, name, tree_hash, gobbler=table, download=mirrors,
                              force=force)
    except (ArtifactError, OSError, ValueError) as e:
        note = (f"{g.coordinates} was uploaded and exists in the registry, but {e}; "
                f"{toml_path} was not changed")
        if isinstance(e, HashMismatchError):
            raise HashMismatchError(note, e.expected, e.actual, e.kind) from None
        raise GobblerError(note, url=url) from None
    return {"git_tree_sha1": tree_hash, "project": project, "asset": asset, "version": version,
            "url": url, "registry": registry, "files": len(view),
            "archive": str(archive) if archive else None}


def preflight(toml_path: Path, name: str, directory: "str | os.PathLike[str]", force: bool,
              problems: "list[Optional[str]]") -> Path:
    """What every publish checks before reading a file: the name is free (or ``force``),
    the registry names are valid (``problems`` from the protocol's name rule), and the
    folder exists. Returns the folder as a Path."""
    from .tomlmodel import load_file

    if toml_path.exists() and name in load_file(toml_path) and not force:
        raise BindingExistsError(f"{toml_path}: {name!r} is already bound; pass force=True "
                                 "(or --force) to re-bind it to the published version")
    for problem in problems:
        if problem:
            raise InvalidArgumentError(problem)
    folder = Path(directory)
    if not folder.is_dir():
        raise InvalidArgumentError(f"{folder}: not a directory; publish uploads a folder")
    return folder


def _check_uploaded(g: GobblerSource, sums: Dict[str, Tuple[int, str]], directory: Path) -> None:
    """The fresh manifest (read uncached) must list exactly our files with our sizes/md5s."""
    if g.registry and os.path.isdir(g.registry):
        manifest = read_manifest(g.registry, g)
    else:
        assert g.url is not None
        manifest = fetch_manifest(g.url, g)
    files, _empty = check_manifest(manifest, g.coordinates)
    compare_manifest({f.path: (f.size, f.md5) for f in files}, sums, directory)


def compare_manifest(listed: Dict[str, Tuple[int, str]], sums: Dict[str, Tuple[int, str]],
                     directory: Path) -> None:
    """The stored manifest (path -> size, md5) must list exactly the local files' sums."""
    problems = [rel for rel, size_md5 in sums.items() if listed.get(rel) != size_md5]
    extra = [rel for rel in listed if rel not in sums]
    if problems or extra:
        raise HashMismatchError(
            f"its manifest does not match {directory}: {len(problems)} file(s) differ or are "
            f"missing ({', '.join(sorted(problems)[:5])}), {len(extra)} unexpected "
            f"({', '.join(sorted(extra)[:5])})", kind="manifest")


def _exists_note(g: GobblerSource) -> str:
    """Whether ``g``'s version is in the registry after a failed upload, as a sentence."""
    from .gobbler import client

    try:
        versions = client.list_versions(g.project, g.asset, registry=g.registry, url=g.url)
    except (GobblerNotFoundError, FileNotFoundError):  # no such project or asset
        versions = []
    except GobblerError:
        return f"Whether {g.coordinates} exists in the registry could not be checked."
    if g.version in versions:
        return f"The version {g.coordinates} exists in the registry."
    return f"The version {g.coordinates} does not exist in the registry."


def _archive_view(directory: Path, view: Dict[str, Tuple[Path, int]], archive: Path) -> str:
    """A deterministic tarball of the Gobbler view (so with its tree hash); its sha256."""
    import tempfile

    from .archives import create_archive

    if _packs_as_view(directory):
        return create_archive(directory, archive)
    tmp = Path(tempfile.mkdtemp(prefix=".view-", dir=archive.parent))
    try:
        for rel, (src, _size) in view.items():
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o644)
        return create_archive(tmp, archive)
    finally:
        remove_tree(tmp)


def _packs_as_view(directory: Path) -> bool:
    """Would a tarball of the folder as is hold the Gobbler view?

    Only if nothing differs: no symlinks, no exec bits, no skipped dot names
    (metadata only; no file is read).
    """
    for dirpath, dirs, files in os.walk(directory):
        for name in dirs + files:
            st = os.lstat(os.path.join(dirpath, name))
            if name.startswith(".") or stat.S_ISLNK(st.st_mode) or \
                    (stat.S_ISREG(st.st_mode) and st.st_mode & 0o100):
                return False
    return True


def vcs_root(path: Path) -> Optional[Path]:
    """The git/hg/svn work tree that ``path`` is in, or None (a committed-looking file)."""
    here = Path(os.path.abspath(path)).parent
    for folder in (here, *here.parents):
        if any(os.path.lexists(folder / marker) for marker in (".git", ".hg", ".svn")):
            return folder
    return None


def refuse_file_url(url: str, toml_path: Path, allowed: bool = False) -> None:
    """Refuse a ``file://`` mirror in an Artifacts.toml inside a work tree.

    Such a URL names a path on this machine only; committed, it breaks every
    other clone. ``allowed`` (``allow_file_url=True``) binds it anyway.
    """
    if allowed or not url.lower().startswith("file:"):
        return
    root = vcs_root(toml_path)
    if root is not None:
        raise InvalidArgumentError(
            f"{toml_path} is in the work tree {root}, so it looks committed, and the mirror "
            f"URL {url} exists only on this machine; give a URL that others can reach "
            "(the tarball's public URL) or pass allow_file_url=True to bind it anyway")
