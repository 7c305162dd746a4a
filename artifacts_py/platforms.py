"""Julia's platform matching for platform-specific ``[[name]]`` entries.

This re-implements the parts of Julia's ``Base.BinaryPlatforms`` and
``Artifacts.unpack_platform`` that decide which element of a ``[[name]]``
array applies to the running machine (``julia-artifacts.md`` §1.3-§1.5):

* a :class:`Platform` is a mapping of lower-cased tags (always ``os`` and
  ``arch``; ``libc`` defaults to ``glibc`` on Linux and ``call_abi`` to
  ``eabihf`` on 32-bit ARM Linux) plus per-tag *compare strategies*;
* :func:`platforms_match` treats a tag missing on either side as a wildcard
  and compares the rest with the tag's strategy (``==``; ``julia_version`` on
  major.minor; on a host, ``os_version``/``libstdcxx_version`` as a cap);
* :func:`select_platform` keeps the matches and picks the smallest loss (the
  size of the symmetric difference of the two tag *key* sets), breaking ties
  by the lexicographically larger :meth:`Platform.triplet`.

Where we knowingly differ from Julia (all documented where they happen):

* the host carries no ``julia_version``, ``libgfortran_version``,
  ``cxxstring_abi`` or ``libstdcxx_version`` values: we are not a Julia
  process and have no Fortran or C++ runtime of our own to be compatible
  with, so those tags match anything. The first three still count as
  *present* for the loss (:attr:`Platform.wildcards`), as on Julia's real
  host, which always has them. Without that, an entry with an extension tag
  (``sanitize = "memory"`` in OpenBLAS_jll) would tie with the
  ``libgfortran5`` entry and win the triplet tie-break: every x86_64 Linux
  user would get the MemorySanitizer build. ``libstdcxx_version`` is left
  out, so an entry built against a newer libstdc++ gains no preference;
* the host ``os_version`` cap is the *running* Darwin/FreeBSD release, not the
  OS that Julia itself was built for;
* extension tags are written into :meth:`Platform.triplet` sorted by name
  (as Julia's development branch now does) instead of in ``Dict`` order;
* a version comparison on a value that is not a version number is a
  non-match instead of an ``ArgumentError``.

Import cost: only ``os``, ``re``, ``sys`` and ``functools`` at import time;
regular expressions are compiled and the host is detected on first use,
without subprocesses.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from typing import (Any, Callable, Dict, FrozenSet, Iterable, Mapping, Optional, Sequence, Tuple,
                    TypeVar, Union)

from . import settings
from .errors import ArtifactsTomlError, PlatformError

__all__ = [
    "Platform", "CompareStrategy", "PLATFORM_ENV", "compare_default",
    "compare_version_cap", "compare_julia_version", "normalize_arch",
    "parse_triplet", "platform_from_entry", "pack_platform", "as_host_platform",
    "host_platform", "platforms_match", "match_loss", "select_platform",
    "HOST_WILDCARD_TAGS",
]

T = TypeVar("T")

#: ``(a_value, b_value, a_requested, b_requested) -> bool``; the two flags say
#: which side(s) asked for this strategy (it matters for asymmetric caps).
CompareStrategy = Callable[[str, str, bool, bool], bool]

#: Environment variable holding a triplet that replaces host detection.
PLATFORM_ENV = settings.PLATFORM

#: Characters Julia forbids in tag names and values (``add_tag!``).
_BAD_TAG_CHARS = "+- /<>:\"'\\|?*"

#: Tags rendered by the fixed part of a triplet (everything else is ``-k+v``).
_TRIPLET_CORE_TAGS = frozenset((
    "os", "arch", "libc", "call_abi", "libgfortran_version",
    "libstdcxx_version", "cxxstring_abi", "os_version",
))

#: Tags a Julia host always has but we cannot know: they match any value yet
#: count as present for :func:`match_loss` (see the module docstring).
HOST_WILDCARD_TAGS = ("libgfortran_version", "cxxstring_abi", "julia_version")

#: Tags whose values Julia normalises through ``VersionNumber`` when they parse.
_VERSION_TAGS = ("libgfortran_version", "libstdcxx_version", "os_version")

# Arch spellings (mostly ``uname -m``) mapped to Julia's names
# (``CPUID.normalize_arch``).
_ARCH_ALIASES = {
    "amd64": "x86_64",
    "i386": "i686", "i486": "i686", "i586": "i686",
    "armv6": "armv6l",
    "arm": "armv7l", "armv7": "armv7l", "armv8": "armv7l", "armv8l": "armv7l",
    "arm64": "aarch64",
    "ppc64le": "powerpc64le",
}

# Host-only spellings (Windows' PROCESSOR_ARCHITECTURE, Solaris) Julia never sees.
_HOST_ARCH_ALIASES = {"x86": "i686", "i86pc": "i686"}

# 64-bit machines running a 32-bit Python: the process's arch is what counts.
_ARCH_32BIT_OF = {"x86_64": "i686", "aarch64": "armv7l"}


# --------------------------------------------------------------------------
# Julia's VersionNumber, just enough of it: parse, print, compare.
# --------------------------------------------------------------------------

_Ident = Union[int, str]


@functools.lru_cache(maxsize=None)
def _version_regex() -> "re.Pattern[str]":
    # Julia's VERSION_REGEX (base/version.jl), case-insensitive, ASCII digits.
    return re.compile(r"""
        v?
        (\d+)(?:\.(\d+))?(?:\.(\d+))?
        (?:(-)|
           ([a-z][0-9a-z-]*(?:\.[0-9a-z-]+)*|-(?:[0-9a-z-]+\.)*[0-9a-z-]+)?
           (?:(\+)|(?:\+((?:[0-9a-z-]+\.)*[0-9a-z-]+))?))
        """, re.X | re.I | re.A)


class _Version:
    """A Julia ``VersionNumber``: ``major.minor.patch[-pre][+build]``."""

    __slots__ = ("major", "minor", "patch", "pre", "build")

    def __init__(self, major: int, minor: int, patch: int,
                 pre: Tuple[_Ident, ...] = (), build: Tuple[_Ident, ...] = ()) -> None:
        self.major, self.minor, self.patch = major, minor, patch
        self.pre, self.build = pre, build

    @classmethod
    def parse(cls, text: str) -> Optional["_Version"]:
        """Julia's ``tryparse(VersionNumber, text)``; ``None`` if it does not parse."""
        m = _version_regex().fullmatch(text)
        if m is None:
            return None
        major, minor, patch, minus, pre, plus, build = m.groups()
        if pre is not None and pre.startswith("-"):
            pre = pre[1:]
        pre_t = _split_idents(pre) if pre is not None else ("",) if minus else ()
        build_t = _split_idents(build) if build is not None else ("",) if plus else ()
        return cls(int(major), int(minor or 0), int(patch or 0), pre_t, build_t)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.pre:
            text += "-" + ".".join(map(str, self.pre))
        if self.build:
            text += "+" + ".".join(map(str, self.build))
        return text

    def _triple(self) -> Tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Version):
            return NotImplemented
        return (self._triple() == other._triple()
                and _idents_cmp(self.pre, other.pre) == 0
                and _idents_cmp(self.build, other.build) == 0)

    __hash__ = None  # type: ignore[assignment]  # equality is not tuple equality

    def __lt__(self, other: "_Version") -> bool:
        # Julia's isless: a pre-release sorts before its release, a plain
        # release before one with build metadata.
        if self._triple() != other._triple():
            return self._triple() < other._triple()
        if bool(self.pre) != bool(other.pre):
            return bool(self.pre)
        c = _idents_cmp(self.pre, other.pre)
        if c:
            return c < 0
        a_sup, b_sup = _is_sup_build(self), _is_sup_build(other)
        if a_sup != b_sup:
            return b_sup
        return _idents_cmp(self.build, other.build) < 0

    def __le__(self, other: "_Version") -> bool:
        return self < other or self == other


def _split_idents(text: str) -> Tuple[_Ident, ...]:
    return tuple(int(p) if p.isdigit() else p for p in text.split("."))


def _is_sup_build(v: _Version) -> bool:
    return len(v.build) == 1 and v.build[0] == ""


def _ident_cmp(a: _Ident, b: _Ident) -> int:
    if isinstance(a, int) and isinstance(b, int):
        return (a > b) - (a < b)
    if isinstance(a, int):  # b is a string: "" sorts first, words after numbers
        return 1 if b == "" else -1
    if isinstance(b, int):
        return -1 if a == "" else 1
    return (a > b) - (a < b)


def _idents_cmp(a: Tuple[_Ident, ...], b: Tuple[_Ident, ...]) -> int:
    for x, y in zip(a, b):
        c = _ident_cmp(x, y)
        if c:
            return c
    return (len(a) > len(b)) - (len(a) < len(b))


def _normalise_version(value: str) -> str:
    """``string(VersionNumber(value))`` when it parses (``"5"`` -> ``"5.0.0"``), else ``value``."""
    v = _Version.parse(value)
    return str(v) if v is not None else value


# --------------------------------------------------------------------------
# Compare strategies
# --------------------------------------------------------------------------

def compare_default(a: str, b: str, a_requested: bool, b_requested: bool) -> bool:
    """The default strategy: plain string equality."""
    return a == b


def compare_version_cap(a: str, b: str, a_requested: bool, b_requested: bool) -> bool:
    """A host's version cap: the side that requested it is the upper bound.

    If both sides requested it (two hosts) the versions must be equal. A value
    that is not a version number never matches (Julia would throw).
    """
    va, vb = _Version.parse(a), _Version.parse(b)
    if va is None or vb is None:
        return False
    if a_requested and b_requested:
        return va == vb
    return vb <= va if a_requested else va <= vb


def compare_julia_version(a: str, b: str, a_requested: bool, b_requested: bool) -> bool:
    """``julia_version`` matches on major.minor only (Julia's default for that tag)."""
    va, vb = _Version.parse(a), _Version.parse(b)
    if va is None or vb is None:
        return False
    return (va.major, va.minor) == (vb.major, vb.minor)


# --------------------------------------------------------------------------
# Platform
# --------------------------------------------------------------------------

def normalize_arch(arch: str) -> str:
    """Julia's arch normalisation: lower-case, ``amd64`` -> ``x86_64``, ``arm64`` -> ``aarch64``, ..."""
    arch = arch.lower()
    return _ARCH_ALIASES.get(arch, arch)


def _bad_char(text: str) -> Optional[str]:
    """The first character Julia forbids in a tag name/value, or ``None``."""
    for ch in text:
        if ch in _BAD_TAG_CHARS:
            return ch
    return None


def _check_tag(tag: str, value: str) -> None:
    for kind, text in (("name", tag), ("value", value)):
        ch = _bad_char(text)
        if ch is not None:
            raise PlatformError(
                f"invalid character {ch!r} in platform tag {kind} {text!r}: tag names "
                f"and values may not contain any of + - space / < > : \" ' \\ | ? *",
                tag=tag, char=ch)


class Platform:
    """A set of platform tags, as Julia's ``Base.BinaryPlatforms.Platform``.

    ``tags`` maps lower-cased tag names to lower-cased values and always has
    ``os`` and ``arch``. ``compare_strategies`` maps a tag to the function
    :func:`platforms_match` uses for it (default: string equality).
    ``wildcards`` (not in Julia) names tags this platform lacks a value for
    but which count as present in :func:`match_loss`; only hosts use it.
    Treat all three as read-only once built; :func:`host_platform` hands out
    a shared object.
    """

    __slots__ = ("tags", "compare_strategies", "wildcards")

    def __init__(self, arch: str, os_name: str,
                 tags: Optional[Mapping[str, Optional[str]]] = None,
                 compare_strategies: Optional[Mapping[str, CompareStrategy]] = None,
                 wildcards: Iterable[str] = ()) -> None:
        """Build a platform; raises :class:`PlatformError` on a bad tag.

        ``None`` values are dropped. ``libgfortran_version``,
        ``libstdcxx_version`` and ``os_version`` are normalised as versions
        when they parse. Like Julia, ``os`` and ``arch`` are not checked for
        odd characters: an unusual value is kept and simply never matches.
        """
        os_name = os_name.lower()
        arch = normalize_arch(arch)
        self.tags: Dict[str, str] = {"arch": arch, "os": os_name}
        for tag, value in (tags or {}).items():
            tag = tag.lower()
            if tag in ("arch", "os"):
                raise PlatformError(f"cannot pass {tag!r} twice (once as a tag)", tag=tag)
            if value is None:
                continue
            if tag in _VERSION_TAGS:
                value = _normalise_version(value)
            value = value.lower()
            _check_tag(tag, value)
            self.tags[tag] = value
        if os_name == "linux":
            self.tags.setdefault("libc", "glibc")
            if arch in ("armv7l", "armv6l"):
                self.tags.setdefault("call_abi", "eabihf")
        self.compare_strategies: Dict[str, CompareStrategy] = dict(compare_strategies or {})
        if "julia_version" in self.tags:
            self.compare_strategies.setdefault("julia_version", compare_julia_version)
        self.wildcards: FrozenSet[str] = frozenset(w.lower() for w in wildcards) - self.tags.keys()

    # -- dict-like access ------------------------------------------------
    def __getitem__(self, key: str) -> str:
        return self.tags[key]

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """The tag's value, or ``default`` when the platform lacks it."""
        return self.tags.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.tags

    @property
    def arch(self) -> str:
        """The normalised architecture (``x86_64``, ``aarch64``, ...)."""
        return self.tags["arch"]

    @property
    def os(self) -> str:
        """The operating system (``linux``, ``macos``, ``windows``, ``freebsd``, ...)."""
        return self.tags["os"]

    def compare_strategy(self, key: str) -> CompareStrategy:
        """The strategy this platform asks for on ``key`` (default: equality)."""
        return self.compare_strategies.get(key, compare_default)

    # -- identity ----------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Platform):
            return NotImplemented
        return (self.tags == other.tags and self.compare_strategies == other.compare_strategies
                and self.wildcards == other.wildcards)

    def __hash__(self) -> int:
        return hash((frozenset(self.tags.items()), frozenset(self.compare_strategies.items()),
                     self.wildcards))

    def __repr__(self) -> str:
        extra = {k: v for k, v in sorted(self.tags.items()) if k not in ("arch", "os")}
        wild = f", wildcards={sorted(self.wildcards)!r}" if self.wildcards else ""
        return f"Platform({self.arch!r}, {self.os!r}, {extra!r}{wild})"

    def __str__(self) -> str:
        """The triplet, for error messages ("no entry for x86_64-linux-gnu")."""
        return self.triplet()

    # -- triplet -----------------------------------------------------------
    def triplet(self) -> str:
        """Julia's ``triplet(p)``, e.g. ``x86_64-linux-gnu-libgfortran5-cxx11-sanitize+memory``.

        Extension tags come last, sorted by name. A version tag whose value is
        not a version number is written as an extension tag instead of failing.
        """
        tags = self.tags
        parts = [self.arch, self._os_str()]
        libc = tags.get("libc")
        if libc is not None:
            parts.append("-gnu" if libc == "glibc" else "-" + libc)
        parts.append(tags.get("call_abi", ""))
        extra = {k: v for k, v in tags.items() if k not in _TRIPLET_CORE_TAGS}
        gfortran = self._version_tag("libgfortran_version", extra)
        if gfortran is not None:
            parts.append(f"-libgfortran{gfortran.major}")
        if "cxxstring_abi" in tags:
            parts.append("-" + tags["cxxstring_abi"])
        stdcxx = self._version_tag("libstdcxx_version", extra)
        if stdcxx is not None:
            parts.append(f"-libstdcxx{stdcxx.patch}")
        parts.extend(f"-{k}+{v}" for k, v in sorted(extra.items()))
        return "".join(parts)

    def _version_tag(self, key: str, fallback: Dict[str, str]) -> Optional[_Version]:
        # Parse a version tag; an unparsable one goes to the extension tags.
        value = self.tags.get(key)
        if value is None:
            return None
        version = _Version.parse(value)
        if version is None:
            fallback[key] = value
        return version

    def _os_str(self) -> str:
        name = self.os
        version = _Version.parse(self.tags.get("os_version", ""))
        if name == "linux":
            return "-linux"
        if name == "macos":
            return f"-apple-darwin{version.major}" if version else "-apple-darwin"
        if name == "windows":
            return "-w64-mingw32"
        if name == "freebsd":
            return f"-unknown-freebsd{version.major}.{version.minor}" if version else "-unknown-freebsd"
        if name == "openbsd":
            return "-unknown-openbsd"
        return "-unknown"


# --------------------------------------------------------------------------
# Triplets
# --------------------------------------------------------------------------

# (group name, regex, value) per alternative, as Julia's *_mapping dicts.
_ARCH_ALTS = (
    ("a_x86_64", r"(?:x86_|amd)64", "x86_64"),
    ("a_i686", r"i\d86", "i686"),
    ("a_aarch64", r"(?:aarch64|arm64)", "aarch64"),
    ("a_armv7l", r"arm(?:v7l)?", "armv7l"),  # a bare "arm" is armv7l
    ("a_armv6l", r"armv6l", "armv6l"),
    ("a_powerpc64le", r"p(?:ower)?pc64le", "powerpc64le"),
    ("a_riscv64", r"(?:rv64|riscv64)", "riscv64"),
)
_OS_ALTS = (
    ("o_macos", r"-apple-darwin[\d.]*", "macos"),
    ("o_freebsd", r"-(?:.*-)?freebsd[\d.]*", "freebsd"),
    ("o_openbsd", r"-(?:.*-)?openbsd[\d.]*", "openbsd"),
    ("o_windows", r"-w64-mingw32", "windows"),
    ("o_linux", r"-(?:.*-)?linux", "linux"),
)
_LIBC_ALTS = (("l_glibc", r"-gnu", "glibc"), ("l_musl", r"-musl", "musl"), ("l_none", "", None))
_ABI_ALTS = (("c_eabihf", "eabihf", "eabihf"), ("c_eabi", "eabi", "eabi"), ("c_none", "", None))
_GFORTRAN_ALTS = (  # old-style gccN spellings too
    ("g_3", r"-libgfortran3|-gcc4", "3.0.0"),
    ("g_4", r"-libgfortran4|-gcc7", "4.0.0"),
    ("g_5", r"-libgfortran5|-gcc8", "5.0.0"),
    ("g_none", "", None),
)
_CXXABI_ALTS = (("x_cxx03", r"-cxx03", "cxx03"), ("x_cxx11", r"-cxx11", "cxx11"), ("x_none", "", None))
_STDCXX_ALTS = (("s_some", r"-libstdcxx(?P<s_minor>\d+)", "3.4.{}"), ("s_none", "", None))
_ALL_ALTS = (_ARCH_ALTS, _OS_ALTS, _LIBC_ALTS, _ABI_ALTS, _GFORTRAN_ALTS, _CXXABI_ALTS, _STDCXX_ALTS)


@functools.lru_cache(maxsize=None)
def _triplet_regex() -> "re.Pattern[str]":
    groups = ("(?:" + "|".join(f"(?P<{g}>{rx})" for g, rx, _ in alts) + ")" for alts in _ALL_ALTS)
    return re.compile("".join(groups) + r"(?P<tags>(?:-[^-]+\+[^-]+)*)", re.A)


def _pick(m: "re.Match[str]", alts: Iterable[Tuple[str, str, Optional[str]]]) -> Optional[str]:
    for group, _, value in alts:
        if m.group(group) is not None:
            return value
    return None  # unreachable: one alternative always matched


def parse_triplet(triplet: str) -> Platform:
    """Julia's ``parse(Platform, triplet)``.

    Understands ``arch-os[-libc][abi]``, then optional ``-libgfortranN`` (or
    ``-gcc4/7/8``), ``-cxx03|-cxx11``, ``-libstdcxxNN`` and ``-tag+value``
    extension tags (``-julia_version+1.10.0``, ``-sanitize+memory``). A Darwin
    or FreeBSD version in the os part becomes ``os_version``. Raises
    :class:`PlatformError` for anything else.
    """
    m = _triplet_regex().fullmatch(triplet)
    if m is None:
        raise PlatformError(
            f"platform triplet {triplet!r} is not an officially supported platform "
            f"(expected e.g. 'x86_64-linux-gnu', 'aarch64-apple-darwin', 'x86_64-w64-mingw32')")
    arch, os_name = _pick(m, _ARCH_ALTS), _pick(m, _OS_ALTS)
    assert arch is not None and os_name is not None
    stdcxx = _pick(m, _STDCXX_ALTS)
    tags: Dict[str, Optional[str]] = {
        "libc": _pick(m, _LIBC_ALTS),
        "call_abi": _pick(m, _ABI_ALTS),
        "libgfortran_version": _pick(m, _GFORTRAN_ALTS),
        "libstdcxx_version": stdcxx.format(int(m.group("s_minor"))) if stdcxx else None,
        "cxxstring_abi": _pick(m, _CXXABI_ALTS),
    }
    for field in m.group("tags").split("-"):
        if field:
            # Like Julia, "a+b+c" keeps "a" => "b".
            key, value = field.split("+")[:2]
            tags[key] = value
    # Set last, so (as in Julia) it wins over an "-os_version+..." extension tag.
    tags["os_version"] = _triplet_os_version(m.group(f"o_{os_name}"), triplet)
    return Platform(arch, os_name, tags)


def _triplet_os_version(os_part: str, triplet: str) -> Optional[str]:
    vm = re.search(r"(?:darwin|freebsd|openbsd)([\d.]+)$", os_part, re.A)
    if vm is None:
        return None
    version = _Version.parse(vm.group(1))
    if version is None:
        raise PlatformError(f"invalid OS version {vm.group(1)!r} in platform triplet {triplet!r}")
    return str(version)


# --------------------------------------------------------------------------
# Artifacts.toml entries
# --------------------------------------------------------------------------

def platform_from_entry(entry: Mapping[str, Any], name: str, toml_path: str) -> Platform:
    """Julia's ``unpack_platform``: the platform of one ``[[name]]`` element.

    ``os`` and ``arch`` are required strings. Every other string-valued key
    except ``git-tree-sha1`` becomes a tag (lower-cased); other value types
    (``lazy``, ``download``, sub-tables) are ignored. Raises
    :class:`ArtifactsTomlError` naming the file, the artifact and the key.
    """
    for required in ("os", "arch"):
        if required not in entry:
            raise ArtifactsTomlError(
                f"platform-specific artifact entry (an element of [[{name}]]) is missing "
                f"the {required!r} key; add e.g. {_EXAMPLE[required]} to that element",
                path=toml_path, name=name, key=required)
        if not isinstance(entry[required], str):
            raise ArtifactsTomlError(
                f"{required!r} of a platform-specific artifact entry must be a string, "
                f"not {type(entry[required]).__name__}",
                path=toml_path, name=name, key=required)
    tags: Dict[str, Optional[str]] = {}
    for key, value in entry.items():
        if key in ("os", "arch", "git-tree-sha1") or not isinstance(value, str):
            continue
        _check_entry_tag(str(key), str(value), name, toml_path)
        tags[str(key)] = str(value)
    try:
        return Platform(str(entry["arch"]), str(entry["os"]), tags)
    except PlatformError as err:
        raise ArtifactsTomlError(str(err), path=toml_path, name=name, key=err.tag) from err


_EXAMPLE = {"os": 'os = "linux"', "arch": 'arch = "x86_64"'}


def _check_entry_tag(key: str, value: str, name: str, toml_path: str) -> None:
    # Validate against the key as written, so the error names it exactly.
    if key.lower() in ("os", "arch"):
        raise ArtifactsTomlError(
            f"{key!r} would be a second {key.lower()!r} tag (tag names are lower-cased); "
            f"keep only the lower-case {key.lower()!r} key",
            path=toml_path, name=name, key=key)
    lowered = value.lower()
    if key.lower() in _VERSION_TAGS:
        lowered = _normalise_version(value).lower()
    for kind, text in (("name", key), ("value", lowered)):
        ch = _bad_char(text)
        if ch is not None:
            raise ArtifactsTomlError(
                f"string keys in a platform-specific entry are platform tags, and the tag "
                f"{kind} {text!r} contains the invalid character {ch!r} (none of "
                f"+ - space / < > : \" ' \\ | ? * is allowed; Julia rejects this entry too). "
                f"Put free-form metadata in a sub-table instead (e.g. meta = {{ ... }}), "
                f"which platform matching ignores",
                path=toml_path, name=name, key=key)


def pack_platform(p: Platform) -> Dict[str, str]:
    """Julia's ``pack_platform!``: the tags to write into a ``[[name]]`` element."""
    return dict(p.tags)


# --------------------------------------------------------------------------
# Matching and selection
# --------------------------------------------------------------------------

def platforms_match(a: Platform, b: Platform) -> bool:
    """True if every tag present on *both* sides compares equal under its strategy.

    A tag missing on either side is a wildcard. If only one side sets a
    custom strategy for a tag it is used (told which side asked for it);
    two different custom strategies for one tag raise :class:`PlatformError`.
    """
    for key in sorted(a.tags.keys() & b.tags.keys()):
        a_comp, b_comp = a.compare_strategy(key), b.compare_strategy(key)
        if a_comp is not compare_default and b_comp is not compare_default and a_comp is not b_comp:
            raise PlatformError(
                f"cannot compare platforms with two different custom comparison "
                f"strategies for the tag {key!r}", tag=key)
        comparator = b_comp if b_comp is not compare_default else a_comp
        if not comparator(a.tags[key], b.tags[key], a_comp is comparator, b_comp is comparator):
            return False
    return True


def match_loss(a: Platform, b: Platform) -> int:
    """Size of the symmetric difference of the two tag key sets (0 = same keys).

    A platform's :attr:`~Platform.wildcards` count as keys it has.
    """
    return len((a.tags.keys() | a.wildcards) ^ (b.tags.keys() | b.wildcards))


def select_platform(candidates: Sequence[Tuple[Platform, T]],
                    host: Optional[Platform] = None) -> Optional[T]:
    """Julia's ``select_platform``: the value of the best candidate matching ``host``.

    Among matches, the smallest :func:`match_loss` wins; ties go to the
    lexicographically larger triplet (the "newest", e.g. ``libgfortran5``
    over ``libgfortran3``). On a complete tie the later candidate wins, as in
    Julia where a repeated platform overwrites the earlier ``Dict`` entry.
    ``host`` defaults to :func:`host_platform`. ``None`` if nothing matches.
    """
    if host is None:
        host = host_platform()
    best: Optional[Tuple[int, str, T]] = None
    for platform, value in candidates:
        if not platforms_match(platform, host):
            continue
        loss, trip = match_loss(platform, host), platform.triplet()
        if best is None or loss < best[0] or (loss == best[0] and trip >= best[1]):
            best = (loss, trip, value)
    return None if best is None else best[2]


# --------------------------------------------------------------------------
# The host
# --------------------------------------------------------------------------

def as_host_platform(p: Platform, wildcards: Iterable[str] = ()) -> Platform:
    """Julia's ``HostPlatform(p)``: a copy whose ``os_version`` and
    ``libstdcxx_version`` are caps (an artifact's value must be <= ours).

    ``wildcards`` are added to :attr:`Platform.wildcards` (tags already set
    on ``p`` are not wildcards).
    """
    strategies = dict(p.compare_strategies)
    for key in ("os_version", "libstdcxx_version"):
        if key in p.tags:
            strategies[key] = compare_version_cap
    host = Platform.__new__(Platform)
    host.tags, host.compare_strategies = dict(p.tags), strategies
    host.wildcards = frozenset((p.wildcards | frozenset(wildcards)) - p.tags.keys())
    return host


_HOST_CACHE: Dict[str, Platform] = {}


def host_platform() -> Platform:
    """The running machine as a (shared, read-only) host :class:`Platform`.

    ``ARTIFACTS_PY_PLATFORM`` (a triplet such as ``x86_64-linux-musl`` or
    ``aarch64-apple-darwin20``) replaces detection, for cross-platform
    fetches and tests. Otherwise: ``os`` from ``sys.platform``, ``arch`` from
    the process (``uname``/``PROCESSOR_ARCHITECTURE``, 32-bit Pythons on
    64-bit machines reported as 32-bit), ``libc`` on Linux (``glibc`` unless
    musl is found), and ``os_version`` on macOS (Darwin release) and FreeBSD.
    No ``julia_version``/``libgfortran_version``/``cxxstring_abi``/
    ``libstdcxx_version`` values: those describe a Julia process's runtime,
    which we do not have, so they match anything; the first three are
    :data:`HOST_WILDCARD_TAGS` unless the override triplet sets them.
    ``os_version`` and ``libstdcxx_version`` act as caps. Cached per value
    of the variable.
    """
    override = settings.platform() or ""
    host = _HOST_CACHE.get(override)
    if host is None:
        host = _HOST_CACHE[override] = as_host_platform(
            _parse_override(override) if override else _detect_host(), HOST_WILDCARD_TAGS)
    return host


def _parse_override(triplet: str) -> Platform:
    try:
        return parse_triplet(triplet)
    except PlatformError as err:
        raise PlatformError(f"{PLATFORM_ENV}={triplet!r} is not usable: {err}") from err


def _detect_host() -> Platform:
    os_name = _detect_os(sys.platform)
    tags: Dict[str, Optional[str]] = {}
    arch = _detect_arch(os_name)
    if os_name == "linux":
        tags["libc"], tags["call_abi"] = _detect_linux_abi(arch)
    elif os_name in ("macos", "freebsd") and hasattr(os, "uname"):
        tags["os_version"] = _leading_version(os.uname().release)
    return Platform(arch, os_name, tags)


def _detect_os(sys_platform: str) -> str:
    for prefix, name in (("linux", "linux"), ("darwin", "macos"), ("win32", "windows"),
                         ("cygwin", "windows"), ("freebsd", "freebsd"), ("openbsd", "openbsd")):
        if sys_platform.startswith(prefix):
            return name
    return sys_platform.rstrip("0123456789")  # e.g. sunos5: kept, and never matches


def _detect_arch(os_name: str) -> str:
    machine = ""
    if os_name == "windows":
        # The emulated/WOW64 process sees its own arch here.
        machine = os.environ.get("PROCESSOR_ARCHITECTURE", "")
    elif hasattr(os, "uname"):
        machine = os.uname().machine
    if not machine:
        import platform  # lazy: only when the cheap sources are silent
        machine = platform.machine()
    lowered = machine.lower()
    arch = normalize_arch(_HOST_ARCH_ALIASES.get(lowered, lowered))
    if sys.maxsize <= 2**32:
        arch = _ARCH_32BIT_OF.get(arch, arch)
    return arch


def _detect_linux_abi(arch: str) -> Tuple[str, Optional[str]]:
    """(libc, call_abi) of this Linux process, without subprocesses."""
    multiarch = getattr(sys.implementation, "_multiarch", "") or ""
    call_abi = "eabi" if arch in ("armv7l", "armv6l") and multiarch.endswith("eabi") else None
    try:
        if os.confstr("CS_GNU_LIBC_VERSION"):
            return "glibc", call_abi
    except (AttributeError, OSError, ValueError):
        pass
    if "musl" in multiarch:
        return "musl", call_abi
    import glob  # lazy: only reached off glibc
    if glob.glob("/lib/ld-musl-*.so.1"):
        return "musl", call_abi
    return "glibc", call_abi  # Julia's default for Linux


def _leading_version(release: str) -> Optional[str]:
    """``"23.1.0"`` -> ``"23.1.0"``, ``"13.2-RELEASE-p4"`` -> ``"13.2.0"``; ``None`` if no digits."""
    m = re.match(r"\d+(?:\.\d+){0,2}", release, re.A)
    return _normalise_version(m.group(0)) if m else None
