"""Editing an Artifacts.toml: bind, unbind, add a download mirror.

Edits go through tomlkit so the user's comments, order and formatting
survive, are validated before anything is written, and land atomically (a
temp file in the same directory, then ``os.replace``). A failed edit leaves
the file exactly as it was.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

from ._toml import parse_toml
from .errors import ArtifactError, ArtifactNotFoundError, ArtifactsTomlError
from .tomlmodel import GOBBLER_KEYS, GobblerSource, check_gobbler_name, parse_binding
from .treehash import is_sha1_hex, is_sha256_hex

PathLike = Union[str, "os.PathLike[str]"]
Mirror = Union[Tuple[str, str], Tuple[str, str, Optional[int]], Mapping[str, Any]]


class BindingExistsError(ArtifactError, ValueError):
    """The name is already bound and ``force`` was not given."""


def _load(path: Path):
    import tomlkit

    if not path.exists():
        return tomlkit.document()
    text = path.read_text(encoding="utf-8")
    parse_toml(text.encode("utf-8"), path)  # a clear error for broken files
    return tomlkit.parse(text)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename, keeping the file's mode."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _save(path: Path, doc) -> None:
    import tomlkit

    text = tomlkit.dumps(doc)
    parse_toml(text.encode("utf-8"), path)  # never write a file we could not read back
    write_atomic(path, text)


def _mirrors(download_url: Optional[str], sha256: Optional[str], size: Optional[int],
             download: Optional[Iterable[Mirror]], name: str, path: Path) -> list:
    items: list = []
    if download_url is not None or sha256 is not None:
        items.append((download_url, sha256, size))
    for m in download or ():
        if isinstance(m, Mapping):
            items.append((m.get("url"), m.get("sha256"), m.get("size")))
        else:
            items.append((m[0], m[1], m[2] if len(m) > 2 else None))
    out = []
    for url, sha, sz in items:
        if not isinstance(url, str) or not url:
            raise ArtifactsTomlError("a download mirror needs a URL", path=str(path), name=name,
                                     key="download.url")
        if not is_sha256_hex(sha):
            raise ArtifactsTomlError(f"{sha!r} is not a 64-digit hex sha256 of the tarball",
                                     path=str(path), name=name, key="download.sha256")
        out.append((url, sha.lower(), sz))
    return out


def _gobbler_table(gobbler: Union[GobblerSource, Mapping[str, Any]], name: str, path: Path) -> dict:
    if isinstance(gobbler, GobblerSource):
        g = {k: getattr(gobbler, k) for k in GOBBLER_KEYS}
    else:
        g = dict(gobbler)
    g = {k: v for k, v in g.items() if v is not None}
    for k in ("project", "asset", "version"):
        problem = check_gobbler_name(g.get(k), k)
        if problem:
            raise ArtifactsTomlError(problem, path=str(path), name=name, key=f"gobbler.{k}")
    return g


def bind_artifact(toml_path: PathLike, name: str, git_tree_sha1: str,
                  download_url: Optional[str] = None, sha256: Optional[str] = None,
                  lazy: bool = False, force: bool = False, *, size: Optional[int] = None,
                  download: Optional[Iterable[Mirror]] = None,
                  gobbler: Union[GobblerSource, Mapping[str, Any], None] = None,
                  platform: Optional[Mapping[str, str]] = None,
                  metadata: Optional[Mapping[str, Any]] = None) -> None:
    """Bind ``name`` to a tree hash and its sources in an Artifacts.toml.

    Sources: ``download_url`` + ``sha256`` (fetch-artifacts' form) and/or
    ``download`` (several mirrors), and/or ``gobbler`` (project, asset,
    version, url, registry). An existing binding needs ``force=True``; its
    free metadata keys (``description`` ...) are kept. ``platform`` (os, arch,
    libc, ...) binds one variant of a platform-specific ``[[name]]`` array.
    ``lazy`` defaults to False as in Julia (fetch-artifacts defaulted to True).
    """
    import tomlkit

    path = Path(toml_path)
    if not isinstance(name, str) or not name or "/" in name or "\\" in name:
        raise ArtifactsTomlError("an artifact name must be a non-empty string without '/'",
                                 path=str(path), name=str(name))
    if not is_sha1_hex(git_tree_sha1):
        raise ArtifactsTomlError(f"{git_tree_sha1!r} is not a 40-digit hex git tree hash",
                                 path=str(path), name=name, key="git-tree-sha1")
    mirrors = _mirrors(download_url, sha256, size, download, name, path)
    gtable = _gobbler_table(gobbler, name, path) if gobbler is not None else None

    doc = _load(path)
    existing = doc.get(name)
    if existing is not None and platform is None and not force:
        raise BindingExistsError(
            f"{path}: artifact {name!r} is already bound (to {_describe(existing)}); "
            "pass force=True (or --force) to re-bind it")

    table = tomlkit.table()
    table.add("git-tree-sha1", git_tree_sha1.lower())
    if platform:
        for k, v in platform.items():
            table.add(k, v)
    if lazy:
        table.add("lazy", True)
    keep = existing if isinstance(existing, Mapping) and platform is None else {}
    for k, v in (metadata or {}).items():
        table.add(k, v)
    for k, v in keep.items():
        if k not in ("git-tree-sha1", "lazy", "download", "gobbler") and k not in table:
            table.add(k, v)
    if gtable:
        sub = tomlkit.table()
        for k in GOBBLER_KEYS:
            if k in gtable:
                sub.add(k, gtable[k])
        sub.indent(4)
        table.add("gobbler", sub)
    if mirrors:
        aot = tomlkit.aot()
        for url, sha, sz in mirrors:
            t = tomlkit.table()
            t.add("url", url)
            t.add("sha256", sha)
            if sz:
                t.add("size", sz)
            t.indent(4)
            aot.append(t)
        table.add("download", aot)
    parse_binding(table.unwrap(), name, str(path))  # validate before writing

    if platform is None:
        if existing is not None:
            doc[name] = table
        else:
            doc.add(name, table)
    else:
        arr = existing if isinstance(existing, list) else None
        if existing is not None and arr is None:
            raise BindingExistsError(f"{path}: {name!r} is bound platform-independently; "
                                     "unbind it first to add platform variants")
        if arr is None:
            arr = tomlkit.aot()
            doc.add(name, arr)
        same = [i for i, e in enumerate(arr) if all(e.get(k) == v for k, v in platform.items())
                and set(k for k in e if isinstance(e[k], str)) - {"git-tree-sha1"} == set(platform)]
        if same and not force:
            raise BindingExistsError(f"{path}: {name!r} already has a binding for {dict(platform)}; "
                                     "pass force=True to replace it")
        for i in reversed(same):
            del arr[i]
        arr.append(table)
    _save(path, doc)
    from .depot import record_usage

    record_usage(path)


def _describe(existing: Any) -> str:
    if isinstance(existing, Mapping):
        return str(existing.get("git-tree-sha1", "?"))
    return f"{len(existing)} platform variants" if isinstance(existing, list) else repr(existing)


def unbind_artifact(toml_path: PathLike, name: str,
                    platform: Optional[Mapping[str, str]] = None) -> bool:
    """Remove ``name`` (or one platform variant). Returns False if it was not bound."""
    path = Path(toml_path)
    if not path.exists():
        return False
    doc = _load(path)
    if name not in doc:
        return False
    if platform is None:
        del doc[name]
    else:
        arr = doc[name]
        keep = [e for e in arr if not all(e.get(k) == v for k, v in platform.items())]
        if len(keep) == len(arr):
            return False
        if keep:
            for i in reversed(range(len(arr))):
                if arr[i] not in keep:
                    del arr[i]
        else:
            del doc[name]
    _save(path, doc)
    return True


def add_download_source(toml_path: PathLike, name: str, download_url: str, sha256: str,
                        size: Optional[int] = None,
                        platform: Optional[Mapping[str, str]] = None) -> None:
    """Append a ``[[name.download]]`` mirror to an existing binding.

    For a platform-specific name, ``platform`` picks the variant (every key
    given must match).
    """
    import tomlkit

    path = Path(toml_path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such Artifacts.toml")
    ((url, sha, sz),) = _mirrors(download_url, sha256, size, None, name, path)
    doc = _load(path)
    if name not in doc:
        raise ArtifactNotFoundError(f"{path}: no artifact named {name!r}; bind it first")
    value = doc[name]
    if isinstance(value, list):
        if not platform:
            raise ArtifactsTomlError("is platform-specific; pass platform={'os': ..., 'arch': ...} "
                                     "to choose the variant", path=str(path), name=name)
        targets = [e for e in value if all(e.get(k) == v for k, v in platform.items())]
        if len(targets) != 1:
            raise ArtifactsTomlError(f"{len(targets)} variants match {dict(platform)}; need exactly one",
                                     path=str(path), name=name)
        value = targets[0]
    existing = value.get("download")
    if existing is not None and any(d.get("url") == url for d in existing):
        return
    t = tomlkit.table()
    t.add("url", url)
    t.add("sha256", sha)
    if sz:
        t.add("size", sz)
    t.indent(4)
    if existing is None:
        aot = tomlkit.aot()
        aot.append(t)
        value.add("download", aot)
    else:
        existing.append(t)
    _save(path, doc)
