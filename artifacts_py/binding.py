"""Editing an Artifacts.toml: bind, unbind, add a download mirror.

Edits go through tomlkit so the user's comments, order and formatting
survive, are validated before anything is written, and land atomically (a
temp file in the same directory, then ``os.replace``). A failed edit leaves
the file exactly as it was.

tomlkit keeps the comments and blank lines *after* a table's last key in
that table, although they introduce the next one (``# about B`` above
``[B]``). Every edit therefore first detaches that tail and gives it back
afterwards (to the edited entry, or to a neighbour when the entry goes), so
an edit never moves or drops text outside the entry it changes.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path
from collections.abc import MutableMapping
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, TypeVar, Union

from ._toml import parse_toml
from .errors import ArtifactNotFoundError, ArtifactsTomlError, BindingExistsError
from .gobbler.protocol import TABLE_KEYS as GOBBLER_KEYS
from .gobbler.protocol import GobblerSource
from .tomlmodel import ArtifactsFile, hex_problem

PathLike = Union[str, "os.PathLike[str]"]
Mirror = Union[Tuple[str, str], Tuple[str, str, Optional[int]], Mapping[str, Any]]
PlatformLike = Any  # a Mapping of tags (os, arch, libc, ...) or a platforms.Platform
F = TypeVar("F", bound=Callable[..., Any])


_BOM = "\ufeff"


# ------------------------------------------------------------- file handling

def _load(path: Path) -> Tuple[Any, str]:
    """The tomlkit document of ``path`` (empty when missing) and its text."""
    import tomlkit

    if not path.exists():
        return tomlkit.document(), ""
    data = path.read_bytes()
    parse_toml(data, path)  # a clear error for broken files
    text = data.decode("utf-8")  # not read_text(): keep \r\n as is
    return tomlkit.parse(text.lstrip(_BOM)), text


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename, keeping the file's mode.

    A symlink is followed, so the file it points to is the one edited.
    """
    path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


def _save(path: Path, doc: Any, original: str, *names: str) -> None:
    """Write ``doc`` if it changed, after checking it reads back and ``names`` are valid."""
    import tomlkit

    text = (_BOM if original.startswith(_BOM) else "") + tomlkit.dumps(doc)
    if "\r\n" in original and "\n" not in original.replace("\r\n", ""):
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")  # new lines as the file's
    if text == original:
        return
    parsed = ArtifactsFile(path, parse_toml(text.encode("utf-8"), path))
    for name in names:
        if name in parsed:
            parsed.variants(name)  # the same validation as reading: never write what fails
    write_atomic(path, text)


# ------------------------------------------------- tomlkit trivia bookkeeping

def _tail(item: Any) -> Any:
    """The tomlkit container whose end is the end of ``item``'s text, or None."""
    from tomlkit.items import AoT, Table

    if isinstance(item, AoT):
        item = item.body[-1] if item.body else None
    if not isinstance(item, Table):
        return None
    container = item.value
    while container.body:
        key, last = container.body[-1]
        if key is None:
            break
        if isinstance(last, AoT) and last.body:
            container = last.body[-1].value
        elif isinstance(last, Table):
            container = last.value
        else:
            break
    return container


def _take_trivia(item: Any) -> List[Any]:
    """Detach the comments and blank lines that end ``item``."""
    from tomlkit.items import Comment, Whitespace

    container = _tail(item)
    out: List[Any] = []
    while container is not None and container.body and container.body[-1][0] is None \
            and isinstance(container.body[-1][1], (Comment, Whitespace)):
        out.insert(0, container.body.pop()[1])
    return out


def _give_trivia(item: Any, trivia: List[Any]) -> bool:
    """Append ``trivia`` at the end of ``item``; False if it is not a table."""
    container = _tail(item)
    if container is None:
        return not trivia
    container.body.extend((None, t) for t in trivia)
    return True


def _lead(item: Any, trivia: List[Any]) -> bool:
    """Put ``trivia`` before ``item``'s header line; False if it has none."""
    from tomlkit.items import AoT, Table

    if isinstance(item, AoT) and item.body:
        item = item.body[0]
    if not isinstance(item, Table) or item.is_super_table():
        return False
    item.trivia.indent = "".join(t.as_string() for t in trivia) + item.trivia.indent
    return True


def _place(trivia: List[Any], before: Any, after: Any, text_before: str) -> bool:
    """Give the tail of a removed item to its predecessor, else its successor.

    ``text_before`` is what precedes the removed item when ``before`` is not
    a table; blank lines are not doubled, nor put at the start of the file.
    """
    from tomlkit.items import Whitespace

    tail = _tail(before)
    prev = tail.as_string() if tail is not None else text_before
    if prev == "" or prev.endswith("\n\n"):
        while trivia and isinstance(trivia[0], Whitespace):
            trivia.pop(0)
    return (not trivia or (tail is not None and _give_trivia(before, trivia))
            or (after is not None and _lead(after, trivia)))


def _text_before(doc: Any, name: str) -> str:
    """The text (or the last table's tail) just before top-level ``name``."""
    text = ""
    for key, item in doc.body:
        if key is not None and key.key == name:
            break
        tail = _tail(item) if key is not None else None
        text = tail.as_string() if tail is not None else text + item.as_string()
    return text


def _delete_name(doc: Any, name: str) -> None:
    """Remove a top-level name, keeping the text that followed it."""
    items = [(k.key, v) for k, v in doc.body if k is not None]
    i = [k for k, _ in items].index(name)
    trivia = _take_trivia(items[i][1])
    text_before = _text_before(doc, name)
    del doc[name]
    before = items[i - 1][1] if i > 0 else None
    after = items[i + 1][1] if i + 1 < len(items) else None
    if not _place(trivia, before, after, text_before):
        doc.body.extend((None, t) for t in trivia)
    if after is None:  # blank lines that separated the last entry would now end the file
        _strip_blank_tail(before)


def _strip_blank_tail(item: Any) -> None:
    from tomlkit.items import Whitespace

    container = _tail(item)
    while container is not None and container.body and container.body[-1][0] is None \
            and isinstance(container.body[-1][1], Whitespace):
        container.body.pop()


def _delete_variant(doc: Any, name: str, i: int) -> None:
    """Remove element ``i`` of the ``[[name]]`` array (not the last one left)."""
    arr = doc[name]
    trivia = _take_trivia(arr.body[i])
    before = arr.body[i - 1] if i > 0 else None
    after = arr.body[i + 1] if i + 1 < len(arr.body) else None
    text_before = _text_before(doc, name)
    del arr[i]
    _place(trivia, before, after, text_before)


# ------------------------------------------------------------------ building

def _mirrors(download_url: Optional[str], sha256: Optional[str], size: Optional[int],
             download: Optional[Iterable[Mirror]], name: str, path: Path) -> List[Any]:
    items: List[Any] = []
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
            raise ArtifactsTomlError("a download mirror needs a URL (download_url)",
                                     path=str(path), name=name, key="download.url")
        problem = hex_problem(sha, 64)
        if problem:
            raise ArtifactsTomlError(f"{problem}; a mirror needs the sha256 of its tarball",
                                     path=str(path), name=name, key="download.sha256")
        out.append((url, sha.lower(), sz))
    return out


def _mirror_table(url: str, sha: str, size: Optional[int]) -> Any:
    import tomlkit

    t = tomlkit.table()
    t.add("url", url)
    t.add("sha256", sha)
    if size:
        t.add("size", size)
    t.indent(4)
    t.trivia.indent = "\n    "  # a blank line before each sub-table, as Julia writes them
    return t


def _registry_table(source: Any, keys: Tuple[str, ...]) -> Any:
    """A ``[name.gobbler]`` or ``[name.gypsum]`` sub-table (validated later with the entry).

    ``source`` is a mapping or the protocol's NamedTuple; keys come out in
    ``keys`` order, and None (or a false ``probation``) is left out.
    """
    import tomlkit

    g = source._asdict() if hasattr(source, "_asdict") else dict(source)
    sub = tomlkit.table()
    for k in sorted(g, key=lambda k: keys.index(k) if k in keys else 99):
        if g[k] is not None and not (k == "probation" and g[k] is False):
            sub.add(k, g[k])
    sub.indent(4)
    sub.trivia.indent = "\n    "
    return sub


def _platform_tags(platform: PlatformLike) -> Dict[str, str]:
    tags = getattr(platform, "tags", platform)
    return {str(k): v for k, v in dict(tags or {}).items()}


def _same_platform(entry: Mapping[str, Any], tags: Mapping[str, str], name: str,
                   path: Path) -> bool:
    """Julia's equality of the platforms of two ``[[name]]`` elements."""
    from .platforms import platform_from_entry

    try:
        return platform_from_entry(entry, name, str(path)) == platform_from_entry(tags, name, str(path))
    except ArtifactsTomlError:
        return False


def _set_binding(table: Any, git_tree_sha1: str, lazy: bool, metadata: Mapping[str, Any],
                 gobbler: Any, mirrors: List[Any], gypsum: Any = None) -> None:
    """Make ``table`` bind the new tree: hash, lazy, metadata, fresh sources.

    Keys not named here (free metadata, platform tags) stay where they are.
    """
    import tomlkit

    table["git-tree-sha1"] = git_tree_sha1.lower()
    if lazy:
        table["lazy"] = True
    elif "lazy" in table:
        del table["lazy"]
    for k, v in metadata.items():
        table[k] = v
    for k in ("gobbler", "gypsum", "download"):  # the old tree's sources lack the new one
        if k in table:
            del table[k]
    if gobbler is not None:
        _add_sub(table, "gobbler", _registry_table(gobbler, GOBBLER_KEYS))
    if gypsum is not None:
        from .gypsum.protocol import TABLE_KEYS as GYPSUM_KEYS

        _add_sub(table, "gypsum", _registry_table(gypsum, GYPSUM_KEYS))
    if mirrors:
        aot = tomlkit.aot()
        for m in mirrors:
            aot.append(_mirror_table(*m))
        _add_sub(table, "download", aot)


def _add_sub(table: Any, key: str, item: Any) -> None:
    """Add a sub-table (or array of tables) after exactly one blank line."""
    first: Any = item.body[0] if isinstance(item, list) else item  # type: ignore[attr-defined]
    body: Any = getattr(table, "value", None)  # a table split over the file has no single body
    blank = hasattr(body, "as_string") and body.as_string().endswith("\n\n")
    first.trivia.indent = ("" if blank else "\n") + "    "
    table[key] = item


def _locked(fn: F) -> F:
    """Serialise edits of one Artifacts.toml across processes (``artifacts add`` under make -j).

    The lock lives in the depot, not beside the file, so it never shows up in
    the user's repository; where locking does not work, edits still land whole.
    """
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .depot import get_cache_dir
        from .store import depot_lock, named_lock

        path = kwargs["toml_path"] if "toml_path" in kwargs else args[0]
        key = hashlib.sha1(os.fsencode(os.path.realpath(path))).hexdigest()
        depot = get_cache_dir()
        with depot_lock(depot, exclusive=False), \
                named_lock(depot, f"toml-{key}", f"editing {path}"):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# -------------------------------------------------------------------- public

def check_name(name: object, path: PathLike) -> None:
    """Refuse a name that ``artifact("Name/sub/path")`` could not address."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name:
        raise ArtifactsTomlError("an artifact name must be a non-empty string without '/' "
                                 "or '\\'", path=str(path), name=str(name))


@_locked
def bind_artifact(toml_path: PathLike, name: str, git_tree_sha1: str,
                  download_url: Optional[str] = None, sha256: Optional[str] = None,
                  lazy: bool = False, force: bool = False, *, size: Optional[int] = None,
                  download: Optional[Iterable[Mirror]] = None,
                  gobbler: Union[GobblerSource, Mapping[str, Any], None] = None,
                  platform: Optional[PlatformLike] = None,
                  metadata: Optional[Mapping[str, Any]] = None,
                  gypsum: Optional[Mapping[str, Any]] = None) -> None:
    """Bind ``name`` to a tree hash and its sources in an Artifacts.toml.

    Sources: ``download_url`` + ``sha256`` (fetch-artifacts' form) and/or
    ``download`` (several mirrors), and/or ``gobbler`` (project, asset,
    version, url, registry), and/or ``gypsum`` (project, asset, version, url,
    probation). An existing binding needs ``force=True``; it is
    edited in place: its free metadata keys (``description`` ...) and
    comments stay, its old sources go. ``platform`` (a mapping of os, arch,
    libc, ... or a :class:`~artifacts_py.platforms.Platform`) binds one
    variant of a platform-specific ``[[name]]`` array. ``lazy`` defaults to
    False as in Julia (fetch-artifacts defaulted to True).
    """
    path = Path(toml_path)
    check_name(name, path)
    problem = hex_problem(git_tree_sha1, 40)
    if problem:
        raise ArtifactsTomlError(f"{problem}; give the git-tree-sha1 that `artifacts create DIR` prints",
                                 path=str(path), name=name, key="git-tree-sha1")
    reserved = sorted(set(metadata or ()) & {"git-tree-sha1", "lazy", "download", "gobbler",
                                              "gypsum"})
    if reserved:
        raise ArtifactsTomlError(f"metadata may not set {', '.join(reserved)}; use the "
                                 "arguments of bind_artifact", path=str(path), name=name)
    mirrors = _mirrors(download_url, sha256, size, download, name, path)
    doc, original = _load(path)
    if platform is None:
        target, attach = _plain_target(doc, path, name, force)
    else:
        target, attach = _variant_target(doc, path, name, _platform_tags(platform),
                                         git_tree_sha1, force)
    trivia = _take_trivia(target)
    _set_binding(target, git_tree_sha1, lazy, metadata or {}, gobbler, mirrors, gypsum)
    _give_trivia(target, trivia)
    attach()
    _save(path, doc, original, name)
    from .usage import record_usage

    record_usage(path)


Target = Tuple[Any, Callable[[], None]]


def _plain_target(doc: Any, path: Path, name: str, force: bool) -> Target:
    """The table to (re)bind ``name`` in, and how to put it into ``doc``."""
    import tomlkit

    existing = doc.get(name)
    if existing is None:
        table = tomlkit.table()
        return table, lambda: doc.add(name, table)
    if not force:
        raise BindingExistsError(
            f"{path}: artifact {name!r} is already bound (to {_describe(existing)}); "
            "pass force=True to re-bind it")
    if isinstance(existing, Mapping):
        return existing, lambda: None  # edited in place
    table = tomlkit.table()  # a [[name]] array (or junk) becomes one table
    return table, lambda: _replace_name(doc, name, table)


def _variant_target(doc: Any, path: Path, name: str, tags: Dict[str, str],
                    git_tree_sha1: str, force: bool) -> Target:
    """The ``[[name]]`` element for ``tags`` to (re)bind, and how to put it into ``doc``."""
    import tomlkit

    existing = doc.get(name)
    arr = existing if isinstance(existing, list) else None
    if existing is not None and arr is None and not force:
        raise BindingExistsError(
            f"{path}: {name!r} is bound platform-independently; pass force=True to "
            "replace it with platform variants, or unbind it first")
    same = [i for i, e in enumerate(arr or []) if _same_platform(e, tags, name, path)]
    if same:
        if not force:
            raise BindingExistsError(f"{path}: {name!r} already has a binding for {tags}; "
                                     "pass force=True to replace it")
        for i in reversed(same[1:]):
            _delete_variant(doc, name, i)
        return arr.body[same[0]], lambda: None  # type: ignore[union-attr]  # edited in place
    element = tomlkit.table()
    element.add("git-tree-sha1", git_tree_sha1.lower())
    for k, v in tags.items():
        element.add(k, v)
    if arr is None:
        new = tomlkit.aot()
        new.append(element)
        return element, lambda: (doc.add(name, new) if existing is None
                                 else _replace_name(doc, name, new))

    def append() -> None:  # a new variant goes last; the array's tail text stays after it
        trivia = _take_trivia(arr)
        element.trivia.indent = "\n"
        arr.append(element)
        _give_trivia(element, trivia)

    return element, append


def _replace_name(doc: Any, name: str, new: Any) -> None:
    """Swap a top-level item for another kind, keeping the text after it."""
    trivia = _take_trivia(doc[name])
    doc[name] = new
    _give_trivia(doc[name], trivia)


def _describe(existing: Any) -> str:
    if isinstance(existing, Mapping):
        return str(existing.get("git-tree-sha1", "?"))
    return f"{len(existing)} platform variants" if isinstance(existing, list) else repr(existing)


@_locked
def unbind_artifact(toml_path: PathLike, name: str,
                    platform: Optional[PlatformLike] = None) -> bool:
    """Remove ``name`` (or its variant for ``platform``). False if it was not bound."""
    path = Path(toml_path)
    if not path.exists():
        return False
    doc, original = _load(path)
    if name not in doc:
        return False
    if platform is None:
        _delete_name(doc, name)
    else:
        arr = doc[name]
        if not isinstance(arr, list):
            raise ArtifactsTomlError("is bound platform-independently; unbind it without a "
                                     "platform", path=str(path), name=name)
        tags = _platform_tags(platform)
        doomed = [i for i, e in enumerate(arr) if _same_platform(e, tags, name, path)]
        if not doomed:
            return False
        if len(doomed) == len(arr):
            _delete_name(doc, name)
        else:
            for i in reversed(doomed):
                _delete_variant(doc, name, i)
    _save(path, doc, original, name)
    return True


@_locked
def add_download_source(toml_path: PathLike, name: str, download_url: str, sha256: str,
                        size: Optional[int] = None,
                        platform: Optional[PlatformLike] = None) -> None:
    """Append a ``[[name.download]]`` mirror to an existing binding.

    For a platform-specific name, ``platform`` picks the variant. A URL that
    is already listed with the same sha256 is a no-op; with another sha256
    it is an error (one URL cannot serve two tarballs).
    """
    path = Path(toml_path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such Artifacts.toml; bind {name!r} first")
    ((url, sha, sz),) = _mirrors(download_url, sha256, size, None, name, path)
    doc, original = _load(path)
    if name not in doc:
        raise ArtifactNotFoundError(f"{path}: no artifact named {name!r}; bind it first")
    value = doc[name]
    if isinstance(value, list):
        if platform is None:
            raise ArtifactsTomlError("is platform-specific; pass platform={'os': ..., 'arch': ...} "
                                     "to choose the variant", path=str(path), name=name)
        tags = _platform_tags(platform)
        targets = [e for e in value if _same_platform(e, tags, name, path)]
        if not targets:
            raise ArtifactsTomlError(f"no variant for platform {tags}", path=str(path), name=name)
        value = targets[0]
    existing = value.get("download")
    for d in existing or ():
        if d.get("url") == url:
            if str(d.get("sha256", "")).lower() == sha:
                return
            raise ArtifactsTomlError(f"{url} is already a mirror, with sha256 {d.get('sha256')}; "
                                     "remove it first to change its hash",
                                     path=str(path), name=name, key="download")
    trivia = _take_trivia(value)
    if existing is None:
        import tomlkit

        existing = tomlkit.aot()
        value.add("download", existing)
    from tomlkit.items import AoT

    if isinstance(existing, AoT):  # [[name.download]]
        existing.append(_mirror_table(url, sha, sz))
    else:  # download = [{...}]: an inline array
        existing.append({"url": url, "sha256": sha, **({"size": sz} if sz else {})})
    _give_trivia(value, trivia)
    _save(path, doc, original, name)


@_locked
def repin_versions(toml_path: PathLike, changes: Mapping[str, Tuple[str, str, str]]) -> List[str]:
    """Re-pin several names to new registry versions in one atomic write.

    ``changes`` maps a name to ``(backend, version, git_tree_sha1)`` with
    backend ``"gobbler"`` or ``"gypsum"``. Each entry is edited in place:
    its hash and its table's ``version`` change, comments, order and free
    keys stay. Its ``[[download]]`` mirrors are dropped (they hold the old
    tree); the names that lost mirrors are returned.
    """
    path = Path(toml_path)
    doc, original = _load(path)
    dropped: List[str] = []
    for name, (backend, version, tree) in changes.items():
        table: Any = doc.get(name)
        if not isinstance(table, MutableMapping) or \
                not isinstance(table.get(backend), MutableMapping):
            raise ArtifactsTomlError(f"has no plain [{name}.{backend}] table to update; "
                                     f"re-pin it with `artifacts add {name} ... --force`",
                                     path=str(path), name=name)
        table["git-tree-sha1"] = tree.lower()
        table[backend]["version"] = version
        if "download" in table:
            del table["download"]
            dropped.append(name)
    _save(path, doc, original, *changes)
    return dropped
