"""The gypsum protocol's rules (``gypsum-protocol.md``), shared by the client, sources and server.

Name rules (§2.2), the bucket's key layout (§2.1) and the URLs that address
it (§4.0.1, §6.6: every name or key percent-encoded as one segment, never
``quote_plus``), the JSON documents as TypedDicts (``..manifest``,
``..summary``, ``..links``, ``..permissions``), and the checks a client makes
on an untrusted manifest before it writes anything to disk. Standard library
only, no I/O: it is cheap to import.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, TypedDict
from urllib.parse import quote

from ..errors import GypsumError

DEFAULT_URL = "https://gypsum.artifactdb.com"
# S3 and R2 refuse longer keys; a name that would make one is refused up front.
MAX_KEY_BYTES = 1024
# A file size no store holds (2**53: JSON numbers stay exact below it).
MAX_SIZE = 1 << 53
_MD5 = re.compile(r"[0-9a-f]{32}")


class LinkTarget(TypedDict):
    """Where a linked file's bytes live: a file of another version."""

    project: str
    asset: str
    version: str
    path: str


class Link(LinkTarget, total=False):
    """A manifest ``link``: the target named, and the final real object when that is a link."""

    ancestor: LinkTarget


class _EntryBase(TypedDict):
    size: int
    md5sum: str


class ManifestEntry(_EntryBase, total=False):
    """One ``..manifest`` value."""

    link: Link


Manifest = Dict[str, ManifestEntry]
Links = Dict[str, Link]  # a ``..links`` file: base name -> link


class _SummaryBase(TypedDict):
    upload_user_id: str
    upload_start: str


class Summary(_SummaryBase, total=False):
    """A ``..summary``; ``upload_finish`` is absent while the upload runs."""

    upload_finish: str
    on_probation: bool


class _UploaderBase(TypedDict):
    id: str


class Uploader(_UploaderBase, total=False):
    """One ``uploaders`` entry of ``..permissions``."""

    asset: str
    version: str
    until: str
    trusted: bool


class Permissions(TypedDict):
    """A project's ``..permissions``."""

    owners: List[str]
    uploaders: List[Uploader]


TABLE_KEYS = ("project", "asset", "version", "url", "probation")


class GypsumSource(NamedTuple):
    """The ``[name.gypsum]`` table of an Artifacts.toml: a version in a gypsum service.

    ``url`` defaults to the public service; ``probation = true`` opts in to a
    version that is still on probation (refused otherwise).
    """

    project: str
    asset: str
    version: str
    url: Optional[str] = None
    probation: bool = False

    @property
    def coordinates(self) -> str:
        return f"{self.project}/{self.asset}/{self.version}"


def parse_table(table: object, bad: Any) -> GypsumSource:
    """Validate an Artifacts.toml ``gypsum`` table; ``bad(message, key)`` builds the error."""
    if not isinstance(table, dict):
        raise bad("must be a table with project, asset and version", "gypsum")
    unknown = sorted(set(table) - set(TABLE_KEYS))
    if unknown:
        raise bad(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(TABLE_KEYS)}",
                  "gypsum")
    for k in ("project", "asset", "version"):
        problem = name_problem(table.get(k), k)
        if problem:
            raise bad(problem, f"gypsum.{k}")
    url = table.get("url")
    if url is not None:
        from ..tomlmodel import url_problem

        problem = url_problem(url) if isinstance(url, str) else "must be a string"
        if problem:
            raise bad(problem, "gypsum.url")
    probation = table.get("probation", False)
    if not isinstance(probation, bool):
        raise bad(f"must be true or false, not {probation!r}", "gypsum.probation")
    return GypsumSource(table["project"], table["asset"], table["version"], url, probation)


class FileEntry(NamedTuple):
    """A checked manifest entry: its path, size, md5, and the key holding its bytes."""

    path: str
    size: int
    md5: str
    key: str  # the object key of the bytes (the link's ancestor, else the link, else itself)
    linked: bool


# --------------------------------------------------------------------------
# Names, keys and URLs
# --------------------------------------------------------------------------

def name_problem(value: object, what: str) -> Optional[str]:
    """Why ``value`` is not a valid project/asset/version name (§2.2 plus the fixes), or None."""
    if not isinstance(value, str) or not value:
        return f"{what} name must be a non-empty string"
    if "/" in value or "\\" in value:
        return f"{what} name {value!r} must not contain '/' or '\\'"
    if value == "." or value.startswith(".."):
        return f"{what} name {value!r} must not be '.' or start with '..'"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return f"{what} name {value!r} must not contain control characters"
    return None


def check_name(value: object, what: str) -> str:
    """``value`` if it is a valid name, else a GypsumError saying why."""
    problem = name_problem(value, what)
    if problem:
        raise GypsumError(problem + "; use another name")
    assert isinstance(value, str)
    return value


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def path_problem(path: object) -> Optional[str]:
    """Why ``path`` is not a valid file path inside a version, or None.

    The worker's rules (no empty, ``..``-prefixed, leading/trailing or
    doubled ``/``, no ``\\``) plus: no ``.`` component, no control character.
    """
    if not isinstance(path, str) or not path:
        return "a file path must be a non-empty string"
    if "\\" in path:
        return f"file path {path!r} must not contain '\\' (use '/')"
    if path.startswith("/") or path.endswith("/") or "//" in path:
        return f"file path {path!r} must be relative, without leading, trailing or doubled '/'"
    for part in path.split("/"):
        if part == "." or part.startswith(".."):
            return f"file path {path!r} must not have '.' or '..'-prefixed components"
    if _CONTROL.search(path):
        return f"file path {path!r} must not contain control characters"
    return None


def version_key(project: str, asset: str, version: str, path: str = "") -> str:
    """``{p}/{a}/{v}/`` or ``{p}/{a}/{v}/<path>``."""
    return f"{project}/{asset}/{version}/{path}"


def links_key(project: str, asset: str, version: str, path: str) -> str:
    """The ``..links`` file describing ``path``'s directory."""
    folder = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
    return version_key(project, asset, version, folder + "..links")


def file_url(base: str, key: str) -> str:
    """``{base}/file/<key>``: the key percent-encoded as one segment (``/`` as ``%2F``)."""
    return f"{base}/file/{quote(key, safe='')}"


def route(base: str, endpoint: str, *names: str) -> str:
    """``{base}/{endpoint}/<n1>/<n2>...``, each name percent-encoded on its own."""
    return "/".join([f"{base}/{endpoint}", *(quote(n, safe="") for n in names)])


def target_key(link: Link) -> str:
    """The object key holding a link's bytes (its ``ancestor`` when it has one)."""
    final = link.get("ancestor") or link
    return version_key(final["project"], final["asset"], final["version"], final["path"])


# --------------------------------------------------------------------------
# Untrusted documents
# --------------------------------------------------------------------------

def loads_unique(data: bytes, where: str) -> Any:
    """JSON whose objects may not repeat a key; a GypsumError naming ``where`` otherwise."""
    def pairs(items: List[Tuple[str, Any]]) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise ValueError(f"duplicate key {key!r}")
            out[key] = value
        return out

    try:
        return json.loads(data, object_pairs_hook=pairs)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise GypsumError(f"{where} is not valid JSON ({reason[:200]}); the version is "
                          "damaged, ask the gypsum administrator") from None


def _target(value: object, where: str, rel: str) -> LinkTarget:
    if not isinstance(value, dict):
        raise GypsumError(f"{where}: link of {rel!r} is not an object; the version is damaged")
    for what in ("project", "asset", "version"):
        problem = name_problem(value.get(what), what)
        if problem:
            raise GypsumError(f"{where}: link of {rel!r}: {problem}; refused")
    problem = path_problem(value.get("path"))
    if problem:
        raise GypsumError(f"{where}: link of {rel!r}: {problem}; refused")
    return LinkTarget(project=value["project"], asset=value["asset"],
                      version=value["version"], path=value["path"])


def check_manifest(manifest: object, where: str, project: str, asset: str,
                   version: str) -> List[FileEntry]:
    """Check a whole ``..manifest`` before anything is written; return its files, sorted.

    Refused as a whole: a non-object, a path that is absolute, has ``..`` or
    ``.`` components, a backslash, or a control character; a size that is
    not an integer in ``[0, 2**53)``; an md5 that is not 32 lowercase hex
    digits; a malformed link; and a path that is both a file and a
    directory (``a`` and ``a/b``), which no local file system can hold.
    Duplicate keys are refused when parsing (:func:`loads_unique`).
    """
    if not isinstance(manifest, dict):
        raise GypsumError(f"{where}: ..manifest is not a JSON object; the version is damaged")
    files: List[FileEntry] = []
    for rel, entry in sorted(manifest.items()):
        problem = path_problem(rel)
        if problem:
            raise GypsumError(f"{where}: ..manifest lists an unsafe path: {problem}; refused")
        size = entry.get("size") if isinstance(entry, dict) else None
        md5 = entry.get("md5sum") if isinstance(entry, dict) else None
        if type(size) is not int or not 0 <= size < MAX_SIZE or not isinstance(md5, str) \
                or not _MD5.fullmatch(md5):
            shown = repr(entry)
            raise GypsumError(f"{where}: ..manifest entry {rel!r} is malformed "
                              f"({shown[:100]}{'...' if len(shown) > 100 else ''}); expected "
                              '{"size": N, "md5sum": "<32 lowercase hex>"}')
        assert isinstance(entry, dict)
        link = entry.get("link")
        if link is None:
            files.append(FileEntry(rel, size, md5, version_key(project, asset, version, rel),
                                   False))
            continue
        named = _target(link, where, rel)
        checked = Link(project=named["project"], asset=named["asset"],
                       version=named["version"], path=named["path"])
        if isinstance(link, dict) and link.get("ancestor") is not None:
            checked["ancestor"] = _target(link["ancestor"], where, rel)
        files.append(FileEntry(rel, size, md5, target_key(checked), True))
    _check_no_prefix([f.path for f in files], where)
    return files


def _check_no_prefix(paths: List[str], where: str) -> None:
    names = set(paths)
    for rel in paths:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in names:
                raise GypsumError(f"{where}: ..manifest lists {'/'.join(parts[:i])!r} as a file "
                                  f"and also {rel!r} inside it; a local directory cannot hold "
                                  "both")


def is_complete(summary: Dict[str, Any]) -> bool:
    """A finished, non-probational version: immutable, safe to cache forever (§2.6)."""
    return bool(summary.get("upload_finish")) and summary.get("on_probation") is not True
