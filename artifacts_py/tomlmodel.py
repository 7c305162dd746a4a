"""The Artifacts.toml model: reading, validation, platform selection, discovery.

Read exactly as Julia reads it (``julia-artifacts.md`` §1): a name binds a
table, or an array of platform-specific tables selected by Julia's rules.
Unknown keys are kept as metadata. Our extensions are the ``gobbler`` and
``gypsum`` sub-tables (project/asset/version, optional url/registry or
url/probation), which Julia ignores.

A malformed entry makes only that name fail (as in Julia); its error names the
file, the artifact and the key.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

from ._toml import load_toml_file, parse_toml
from . import settings
from .errors import ArtifactNotFoundError, ArtifactsTomlError, TomlNotFoundError

if TYPE_CHECKING:
    from .gobbler.protocol import GobblerSource

TOML_NAMES = ("JuliaArtifacts.toml", "Artifacts.toml")
PROJECT_MARKERS = ("pyproject.toml", "setup.py", ".git")
SITE_DIRS = ("site-packages", "dist-packages")
TOML_ENV = settings.TOML
_RESERVED = ("git-tree-sha1", "lazy", "download", "gobbler", "gypsum")

PathLike = Union[str, "os.PathLike[str]"]


# Plain classes rather than dataclasses: ``dataclasses`` imports ``inspect``,
# about 5 ms that every fresh ``artifact()`` call would pay.
class DownloadInfo(NamedTuple):
    """One ``[[name.download]]`` mirror: a tarball URL and its sha256."""

    url: str
    sha256: str
    size: Optional[int] = None


class ArtifactEntry:
    """One binding of a name (for one platform when the name has several)."""

    __slots__ = ("name", "git_tree_sha1", "lazy", "downloads", "gobbler", "metadata",
                 "platform", "toml_path", "gypsum")

    def __init__(self, name: str, git_tree_sha1: str, lazy: bool = False,
                 downloads: Optional[List[DownloadInfo]] = None,
                 gobbler: Optional[GobblerSource] = None,
                 metadata: Optional[Dict[str, Any]] = None, platform: Any = None,
                 toml_path: Optional[Path] = None, gypsum: Any = None) -> None:
        self.name = name
        self.git_tree_sha1 = git_tree_sha1
        self.lazy = lazy
        self.downloads: List[DownloadInfo] = downloads if downloads is not None else []
        self.gobbler = gobbler
        self.metadata: Dict[str, Any] = metadata if metadata is not None else {}
        self.platform = platform  # platforms.Platform for array entries
        self.toml_path = toml_path
        self.gypsum = gypsum  # gypsum.protocol.GypsumSource (imported only when used)

    def _fields(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, k) for k in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArtifactEntry) and self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"ArtifactEntry({args})"

    @property
    def os(self) -> Optional[str]:
        return self.metadata.get("os")

    @property
    def arch(self) -> Optional[str]:
        return self.metadata.get("arch")

    @property
    def installable(self) -> bool:
        """True when the entry names at least one source."""
        return bool(self.downloads or self.gobbler or self.gypsum)


def hex_problem(value: object, digits: int) -> Optional[str]:
    """What keeps ``value`` from being a ``digits``-long hex string, or None."""
    if value is None:
        return "is missing"
    if not isinstance(value, str):
        return f"must be a string of {digits} hex digits, not {type(value).__name__} {value!r}"
    if len(value) != digits:
        return f"{value!r} has {len(value)} characters; it must have {digits} hex digits"
    bad_chars = sorted({c for c in value if c not in "0123456789abcdefABCDEF"})
    if bad_chars:
        return f"{value!r} contains non-hex character(s) {''.join(bad_chars)!r}"
    return None


def url_problem(url: str) -> Optional[str]:
    """Why ``url`` is not a usable http(s) service URL, or None."""
    if not url.startswith(("http://", "https://")):
        return f"{url!r} must be an http:// or https:// URL of the service"
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that does not parse
    except ValueError as e:
        return f"{url!r} is not a valid URL ({e})"
    if not parts.hostname:
        return f"{url!r} has no host name"
    return None


def parse_binding(raw: Mapping[str, Any], name: str, path: str, where: str = "") -> ArtifactEntry:
    """Validate one binding table and build an :class:`ArtifactEntry`.

    ``where`` prefixes the keys in error messages (``"[2]."`` for the second
    element of a ``[[name]]`` array).
    """
    def bad(msg: str, key: str) -> ArtifactsTomlError:
        return ArtifactsTomlError(msg, path=path, name=name, key=where + key)

    sha = raw.get("git-tree-sha1")
    problem = hex_problem(sha, 40)
    if problem:
        hint = ("; a 64-digit value is a sha256 and belongs in [[name.download]]"
                if isinstance(sha, str) and len(sha) == 64 else "")
        raise bad(f"{problem}; every artifact needs the 40-hex git tree hash of its content "
                  f"(compute it with `artifacts create DIR`){hint}", "git-tree-sha1")
    lazy = raw.get("lazy", False)
    if not isinstance(lazy, bool):
        raise bad(f"must be true or false, not {lazy!r}", "lazy")

    downloads = []
    dl = raw.get("download", [])
    if isinstance(dl, Mapping):
        dl = [dl]
    if not isinstance(dl, list):
        raise bad("must be an array of tables ([[name.download]]) with url and sha256", "download")
    for i, item in enumerate(dl, 1):
        key = f"download[{i}]"
        if not isinstance(item, Mapping):
            raise bad("must be a table with url and sha256", key)
        url, sha256, size = item.get("url"), item.get("sha256"), item.get("size")
        if not isinstance(url, str) or not url:
            raise bad("needs a url string", f"{key}.url")
        if url.startswith(("http://", "https://")):
            problem = url_problem(url)
            if problem:
                raise bad(f"{problem}; fix the mirror's URL", f"{key}.url")
        problem = hex_problem(sha256, 64)
        if problem:
            raise bad(f"{problem}; each mirror needs the sha256 of its tarball (compute it "
                      "with `artifacts create DIR --archive FILE`)", f"{key}.sha256")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise bad(f"must be a non-negative integer, not {size!r}", f"{key}.size")
        downloads.append(DownloadInfo(url, str(sha256).lower(), size))

    gobbler = None
    if raw.get("gobbler") is not None:  # the protocol module only for entries that use it
        from .gobbler.protocol import parse_table as parse_gobbler_table

        gobbler = parse_gobbler_table(raw["gobbler"], bad)
    gypsum = None
    if raw.get("gypsum") is not None:
        from .gypsum.protocol import parse_table as parse_gypsum_table

        gypsum = parse_gypsum_table(raw["gypsum"], bad)

    metadata = {k: v for k, v in raw.items() if k not in _RESERVED}
    return ArtifactEntry(name=name, git_tree_sha1=str(sha).lower(), lazy=lazy, downloads=downloads,
                         gobbler=gobbler, metadata=metadata, toml_path=Path(path),
                         gypsum=gypsum)


class ArtifactsFile:
    """A parsed Artifacts.toml: names to (selected) entries, errors kept per name."""

    def __init__(self, path: PathLike, data: Optional[Mapping[str, Any]] = None,
                 platform: Any = None, signature: Optional[Tuple[int, int, int]] = None) -> None:
        self.path = Path(path)
        self.platform = platform
        if data is None:
            try:
                if signature is None:
                    data = parse_toml(self.path.read_bytes(), self.path)
                else:
                    data = load_toml_file(os.fspath(path), signature)
            except FileNotFoundError:
                raise TomlNotFoundError(f"{self.path}: no such Artifacts.toml") from None
        self.data = data
        self._selected: Dict[Tuple[str, int], ArtifactEntry] = {}
        self._plain: Dict[str, ArtifactEntry] = {}

    def names(self) -> List[str]:
        """Every name bound in the file, in file order."""
        return list(self.data)

    def __contains__(self, name: object) -> bool:
        return name in self.data

    def variants(self, name: str) -> List[ArtifactEntry]:
        """Every binding of ``name`` (all platforms)."""
        value = self._raw(name)
        if isinstance(value, Mapping):
            return [parse_binding(value, name, str(self.path))]
        return [self._platform_entry(item, name, i) for i, item in enumerate(value, 1)]

    def entry(self, name: str) -> ArtifactEntry:
        """The binding of ``name`` for this platform (Julia's ``artifact_meta``).

        The host is ``self.platform``, else :func:`~artifacts_py.platforms.host_platform`
        (which follows ``ARTIFACTS_PY_PLATFORM``); selections are cached per host.
        """
        plain = self._plain.get(name)
        if plain is not None:  # the warm path: no isinstance, no parsing
            return plain
        value = self._raw(name)
        if isinstance(value, Mapping):
            plain = self._plain[name] = parse_binding(value, name, str(self.path))
            return plain
        from .platforms import host_platform, select_platform

        host = self.platform or host_platform()
        hit = self._selected.get((name, id(host)))  # hosts are long-lived, shared objects
        if hit is not None:
            return hit
        candidates = [(e.platform, e) for e in
                      (self._platform_entry(item, name, i) for i, item in enumerate(value, 1))]
        entry = select_platform(candidates, host)
        if entry is None:
            raise ArtifactNotFoundError(
                f"{self.path}: artifact {name!r} has no binding for this platform "
                f"({host.triplet()}); add one, or set ARTIFACTS_PY_PLATFORM to pick another")
        self._selected[(name, id(host))] = entry
        return entry

    def _raw(self, name: str) -> Any:
        try:
            value = self.data[name]
        except KeyError:
            from shlex import quote

            known = ", ".join(sorted(self.data)) or "none"
            raise ArtifactNotFoundError(
                f"{self.path}: no artifact named {name!r} (known: {known}); "
                f"bind it with `artifacts add {quote(name)} ...` or check the spelling") from None
        if isinstance(value, Mapping):
            return value
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            return value
        raise ArtifactsTomlError(
            f"malformed: bound to {type(value).__name__} {value!r}; an artifact must be a table "
            "([name]) or an array of tables ([[name]]) with a git-tree-sha1",
            path=str(self.path), name=name)

    def _platform_entry(self, item: Mapping[str, Any], name: str, index: int) -> ArtifactEntry:
        from .platforms import platform_from_entry

        entry = parse_binding(item, name, str(self.path), where=f"[{index}].")
        entry.platform = platform_from_entry(item, name, str(self.path))
        return entry


# ------------------------------------------------------------ parsed-file cache

_files: Dict[str, Tuple[Tuple[int, int, int], ArtifactsFile]] = {}


def load_file(path: PathLike) -> ArtifactsFile:
    """A parsed Artifacts.toml, re-read only when its (mtime, size, inode) changes."""
    key = os.fspath(path)
    try:
        st = os.stat(key)
    except FileNotFoundError:
        raise TomlNotFoundError(
            f"{key}: no such Artifacts.toml; pass the right path or set {TOML_ENV}") from None
    sig = (st.st_mtime_ns, st.st_size, st.st_ino)
    hit = _files.get(key)
    if hit is not None and hit[0] == sig:
        return hit[1]
    if stat.S_ISDIR(st.st_mode):
        found = toml_in_dir(key)
        if found is None:
            raise TomlNotFoundError(f"{key}: no JuliaArtifacts.toml or Artifacts.toml in this directory")
        return load_file(found)
    parsed = ArtifactsFile(key, signature=sig)
    _files[key] = (sig, parsed)
    return parsed


# ------------------------------------------------------------------ discovery

_discovered: Dict[str, str] = {}


def toml_in_dir(directory: PathLike) -> Optional[str]:
    """``JuliaArtifacts.toml`` or else ``Artifacts.toml`` in ``directory``, if either exists."""
    for name in TOML_NAMES:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def find_artifacts_toml(start: PathLike) -> Optional[Path]:
    """Search ``start`` (a directory or file) and its parents for an Artifacts.toml.

    ``JuliaArtifacts.toml`` wins over ``Artifacts.toml`` in one directory. The
    search stops at a directory holding pyproject.toml, setup.py or .git, and
    below ``site-packages`` (an installed package's own folder is its root).
    """
    d = os.path.abspath(start)
    if not os.path.isdir(d):
        d = os.path.dirname(d)
    while True:
        if os.path.basename(d) in SITE_DIRS:  # an installed package never uses files above it
            return None
        found = toml_in_dir(d)
        if found:
            return Path(found)
        if any(os.path.exists(os.path.join(d, m)) for m in PROJECT_MARKERS):
            return None
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


def resolve_toml(toml: Optional[PathLike], caller_file: Optional[str]) -> str:
    """The Artifacts.toml to use: explicit, env var, near the caller, or cwd."""
    if toml is not None:
        return os.fspath(toml)  # load_file() looks inside a directory
    env = settings.toml_path()
    if env:
        return env
    if caller_file:
        hit = _discovered.get(caller_file)
        if hit is not None and os.path.isfile(hit):
            return hit
        found = find_artifacts_toml(caller_file)
        if found is not None:
            _discovered[caller_file] = str(found)
            return str(found)
    found_cwd = toml_in_dir(os.getcwd())
    if found_cwd:
        return found_cwd
    where = f" near {caller_file} or" if caller_file else ""
    raise TomlNotFoundError(
        f"no Artifacts.toml found{where} in {os.getcwd()}; pass toml=PATH, "
        f"set {TOML_ENV}, or create one with `artifacts add`")


def caller_file(depth: int = 2) -> Optional[str]:
    """``__file__`` of the module ``depth`` frames up, skipping our own package."""
    try:
        frame = sys._getframe(depth)
    except ValueError:
        return None
    here = os.path.dirname(__file__) + os.sep
    current: Optional[FrameType] = frame
    while current is not None:
        f = current.f_globals.get("__file__")
        if not f or not f.startswith(here):
            return f
        current = current.f_back
    return None


def get_artifacts_toml(search_path: Optional[PathLike] = None) -> Optional[Path]:
    """Find the Artifacts.toml to use (fetch-artifacts' name), or ``None``.

    ``search_path`` may be a file, or a directory searched upward.
    """
    if search_path is not None:
        p = Path(search_path)
        if p.is_file():
            return p
        if p.is_dir():
            return find_artifacts_toml(p)
        return None
    try:
        return Path(resolve_toml(None, caller_file()))
    except TomlNotFoundError:
        return None
