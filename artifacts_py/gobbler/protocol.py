"""The Gobbler protocol's rules, shared by the client, the sources and publishing.

Name rules, the ``[name.gobbler]`` table of an Artifacts.toml, ``/fetch``
URLs, the ``..manifest`` type and its checks, which names an upload skips,
and the error that says which of project/asset/version is missing. Nothing
here does I/O beyond reading a manifest file; it is imported on the warm
path (by the Artifacts.toml model), so it imports only the standard library.
"""

from __future__ import annotations

import re
from itertools import repeat
from typing import (Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Set, Tuple,
                    TypedDict)

from ..errors import GobblerError, GobblerNotFoundError
from ..tomlmodel import url_problem

TABLE_KEYS = ("project", "asset", "version", "url", "registry")


class GobblerSource(NamedTuple):
    """The ``[name.gobbler]`` table: a version in a Gobbler registry."""

    project: str
    asset: str
    version: str
    url: Optional[str] = None
    registry: Optional[str] = None

    @property
    def coordinates(self) -> str:
        return f"{self.project}/{self.asset}/{self.version}"


class _ManifestEntryBase(TypedDict):
    size: int
    md5sum: str


class ManifestEntry(_ManifestEntryBase, total=False):
    """One ``..manifest`` value; ``link`` when the file is a link to another version."""

    link: Dict[str, str]


Manifest = Dict[str, ManifestEntry]


class FileEntry(NamedTuple):
    """A manifest file after checking: its path, and the size and md5 it must have."""

    path: str
    size: int
    md5: str


def check_name(value: object, what: str) -> Optional[str]:
    """Why ``value`` is not a valid Gobbler project/asset/version name, or None."""
    if not isinstance(value, str) or not value:
        return f"{what} must be a non-empty string"
    if "/" in value or "\\" in value:
        return f"{what} {value!r} must not contain '/' or '\\'"
    if value == "." or value.startswith(".."):
        return f"{what} {value!r} must not be '.' or start with '..'"
    if "\0" in value:
        return f"{what} {value!r} must not contain a NUL character"
    return None


def parse_table(table: object, bad: Callable[[str, str], Exception]) -> GobblerSource:
    """Validate an Artifacts.toml ``gobbler`` table; ``bad(message, key)`` builds the error."""
    if not isinstance(table, Mapping):
        raise bad("must be a table with project, asset and version", "gobbler")
    unknown = sorted(set(table) - set(TABLE_KEYS))
    if unknown:
        raise bad(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(TABLE_KEYS)}",
                  "gobbler")
    for k in ("project", "asset", "version"):
        problem = check_name(table.get(k), k)
        if problem:
            raise bad(problem, f"gobbler.{k}")
    for k in ("url", "registry"):
        v = table.get(k)
        if v is not None and (not isinstance(v, str) or not v):
            raise bad("must be a non-empty string", f"gobbler.{k}")
    url = table.get("url")
    if url is not None:
        problem = url_problem(url)
        if problem:
            raise bad(problem, "gobbler.url")
    return GobblerSource(table["project"], table["asset"], table["version"], url,
                         table.get("registry"))


def fetch_url(url: str, path: str) -> str:
    """``{url}/fetch/<path>`` with every segment percent-encoded."""
    from urllib.parse import quote

    # Every segment percent-encoded on its own is the whole path with "/" kept: one call.
    return url.rstrip("/") + "/fetch/" + quote(path.strip("/"), safe="/")


_MD5 = re.compile(r"[0-9a-f]{32}")
# What makes a manifest path not plain: absolute, empty, an empty, "." or ".." segment,
# a trailing slash, a NUL or a backslash. One regex search per path: manifests list
# 100,000s of files.
_NOT_PLAIN = re.compile(r"\A/|\A\Z|//|/\Z|(?:\A|/)\.\.?(?:/|\Z)|[\0\\]")
_MAX_SIZE = 1 << 62


def check_path(rel: object, where: str) -> str:
    """A manifest path that is plain and relative, or a GobblerError."""
    if not isinstance(rel, str) or _NOT_PLAIN.search(rel):
        raise GobblerError(f"{where}: manifest path {rel!r} is not a plain relative path; refused")
    return rel


def check_manifest(manifest: object, where: str) -> Tuple[List[FileEntry], List[str]]:
    """Check a whole manifest before touching anything; return its files and empty dirs.

    Files are sorted; a link counts as its target's content. A malformed
    entry, a path that could leave the tree, or a path that is both a file
    and a directory refuses the version as a whole.
    """
    if not isinstance(manifest, dict):
        raise GobblerError(f"{where}: ..manifest is not a JSON object; the version is damaged")
    items = sorted(manifest.items())
    checked = _check_all_at_once(items)
    files, empty = checked if checked is not None else _check_each(items, where)
    _check_no_prefix(files, empty, where)
    return files, empty


_HEX = b"0123456789abcdef"


def _check_all_at_once(items: List[Tuple[Any, Any]]) -> Optional[Tuple[List[FileEntry], List[str]]]:
    """The common case at C speed: what :func:`_check_each` returns when every entry is
    good, or None when any might not be (then :func:`_check_each` names it).

    A manifest lists up to 100,000s of files, so the rules are checked on all
    of them together with substring searches: with every path between
    slashes, a path that is empty, absolute or ends in a slash, or has an
    empty segment, shows as ``//``, and a ``.`` or ``..`` segment as ``/./``
    or ``/../``.
    """
    entries = [e for _, e in items]
    if not entries:
        return [], []
    if set(map(type, entries)) != {dict}:
        return None
    try:
        sizes = [e["size"] for e in entries]
        md5s = [e["md5sum"] for e in entries]
    except KeyError:
        return None
    rels = [rel for rel, _ in items]
    if set(map(type, rels)) != {str} or set(map(type, sizes)) != {int} or \
            set(map(type, md5s)) != {str}:
        return None
    paths = "/" + "\0".join(rels) + "/"
    if paths.count("\0") != len(rels) - 1 or "\\" in paths:  # a NUL or backslash in a path
        return None
    paths = paths.replace("\0", "/")
    if "//" in paths or "/./" in paths or "/../" in paths or min(sizes) < 0 or \
            max(sizes) >= _MAX_SIZE or not set(map(len, md5s)) <= {0, 32} or \
            "".join(md5s).encode("utf-8", "surrogatepass").translate(None, _HEX):
        return None
    if "" not in md5s:
        return list(map(tuple.__new__, repeat(FileEntry), zip(rels, sizes, md5s))), []
    files: List[FileEntry] = []
    empty: List[str] = []
    for rel, size, md5, e in zip(rels, sizes, md5s, entries):
        if md5 == "" and "link" not in e:
            empty.append(rel)
        else:
            files.append(FileEntry(rel, size, md5))
    return files, empty


def _check_each(items: List[Tuple[Any, Any]], where: str) -> Tuple[List[FileEntry], List[str]]:
    """Check entry by entry; the first bad one raises a GobblerError that names it."""
    files: List[FileEntry] = []
    empty: List[str] = []
    for rel, e in items:
        check_path(rel, where)
        size = e.get("size") if isinstance(e, dict) else None
        md5 = e.get("md5sum") if isinstance(e, dict) else None
        if type(size) is not int or not 0 <= size < _MAX_SIZE or not isinstance(md5, str) or \
                (md5 and not _MD5.fullmatch(md5)):
            shown = repr(e)
            raise GobblerError(f"{where}: ..manifest entry {rel!r} is malformed "
                               f"({shown[:100]}{'...' if len(shown) > 100 else ''}); expected "
                               "{\"size\": N, \"md5sum\": \"<32 hex>\"}")
        if md5 == "" and "link" not in e:
            empty.append(rel)
        else:
            files.append(FileEntry(rel, size, md5))
    return files, empty


def _check_no_prefix(files: List[FileEntry], empty: List[str], where: str) -> None:
    """No path may be both a file and a directory (``a`` and ``a/b``).

    Every directory above a path is collected once (the walk up stops at a
    folder already seen), so this is linear in the number of paths.
    """
    names = {f.path for f in files}
    dirs: Set[str] = set()
    for rel in [f.path for f in files] + empty:
        parent, sep, _ = rel.rpartition("/")
        while sep and parent not in dirs:
            dirs.add(parent)
            parent, sep, _ = parent.rpartition("/")
    both = names & dirs
    if both:
        name = min(both)
        inside = min(r for r in [f.path for f in files] + empty if r.startswith(name + "/"))
        raise GobblerError(f"{where}: ..manifest lists {name!r} as a file and also {inside!r} "
                           "inside it; the version is damaged")


def parse_manifest(data: bytes, where: str) -> Any:
    """A manifest's JSON; any failure (also absurd nesting) is a GobblerError naming ``where``."""
    import json

    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise GobblerError(f"{where}: ..manifest is not valid JSON; the version is damaged "
                           "(ask the registry's administrator to reindex it)") from None


def skipped(name: str, ignore_dot: bool = True) -> bool:
    """Does an upload skip this file or folder name? (``..`` always, ``.`` unless asked.)"""
    return name.startswith("..") or (ignore_dot and name.startswith("."))


def which_missing(where: str, project: str, asset: str, version: Optional[str],
                  exists: Callable[..., bool]) -> Optional[GobblerNotFoundError]:
    """The error naming the first of project, asset, version that does not exist.

    ``exists(project[, asset[, version]])`` answers for one level; ``None``
    when all exist, or when a lookup itself fails (we cannot tell which).
    """
    coords = "/".join(x for x in (project, asset, version) if x is not None)
    levels = [("project", project), ("asset", asset)] + ([("version", version)] if version else [])
    for depth, (what, value) in enumerate(levels, 1):
        try:
            found = exists(*[v for _, v in levels[:depth]])
        except GobblerError:
            return None
        if not found:
            return GobblerNotFoundError(f"{where}: {what} {value!r} does not exist (looking "
                                        f"for {coords})", status=404, url=where)
    return None
