"""Julia's platform rules for ``[[name]]`` entries (julia-artifacts.md §1.3-§1.5).

Most expectations are taken from Julia's own ``test/binaryplatforms.jl``;
``P(...)`` below plays the role of Julia's ``Platform(arch, os; kwargs...)``.
"""

from __future__ import annotations

import itertools
import os
import sys
import tomllib

import pytest
import tomlkit

from artifacts_py.errors import ArtifactError, ArtifactsTomlError, PlatformError
from artifacts_py.platforms import (
    HOST_WILDCARD_TAGS, PLATFORM_ENV, Platform, as_host_platform, compare_version_cap,
    host_platform, match_loss, normalize_arch, pack_platform, parse_triplet,
    platform_from_entry, platforms_match, select_platform,
)


@pytest.fixture(autouse=True)
def _no_platform_override(monkeypatch: pytest.MonkeyPatch) -> None:
    # conftest does not know this variable; a developer's shell might set it.
    monkeypatch.delenv(PLATFORM_ENV, raising=False)


def P(arch: str, os_name: str, **tags: str) -> Platform:
    return Platform(arch, os_name, tags)


# --------------------------------------------------------------------------
# Construction: normalisation and defaults
# --------------------------------------------------------------------------

@pytest.mark.parametrize("given, expected", [
    ("x86_64", "x86_64"), ("amd64", "x86_64"), ("AMD64", "x86_64"),
    ("arm64", "aarch64"), ("aarch64", "aarch64"),
    ("i386", "i686"), ("i586", "i686"), ("I686", "i686"),
    ("ARM", "armv7l"), ("armv7", "armv7l"), ("armv8l", "armv7l"), ("ARMv7l", "armv7l"),
    ("armv6", "armv6l"), ("ppc64le", "powerpc64le"), ("pOWerpc64le", "powerpc64le"),
    ("riscv64", "riscv64"),
    ("jpu", "jpu"),  # not strict: unknown arches are kept and simply never match
])
def test_arch_normalisation(given: str, expected: str) -> None:
    assert normalize_arch(given) == expected
    assert P(given, "linux").arch == expected


@pytest.mark.parametrize("os_name", ["Linux", "linux", "FREEBSD", "wiNDows", "MacOS"])
def test_os_is_lowercased(os_name: str) -> None:
    assert P("x86_64", os_name).os == os_name.lower()
    assert P("x86_64", os_name)["os"] == os_name.lower()


def test_libc_defaults_to_glibc_on_linux_only() -> None:
    assert P("x86_64", "linux")["libc"] == "glibc"
    assert P("aarch64", "linux", libc="musl")["libc"] == "musl"
    assert P("aarch64", "linux", libc="MUSL")["libc"] == "musl"
    for os_name in ("windows", "macos", "freebsd"):
        assert "libc" not in P("x86_64", os_name)
        assert P("x86_64", os_name).get("libc") is None


def test_call_abi_defaults_to_eabihf_on_32bit_arm_linux() -> None:
    assert P("armv7l", "linux")["call_abi"] == "eabihf"
    assert P("armv6l", "linux")["call_abi"] == "eabihf"
    assert P("armv7l", "linux", call_abi="eabi")["call_abi"] == "eabi"
    assert "call_abi" not in P("aarch64", "linux")
    assert "call_abi" not in P("armv7l", "windows")


def test_tags_and_values_are_lowercased_and_versions_normalised() -> None:
    p = P("x86_64", "linux", CUDA="11.8", Sanitize="Memory", libgfortran_version="5",
          libstdcxx_version="3.4.26", julia_version="1.10")
    assert p.tags == {"arch": "x86_64", "os": "linux", "libc": "glibc", "cuda": "11.8",
                      "sanitize": "memory", "libgfortran_version": "5.0.0",
                      "libstdcxx_version": "3.4.26", "julia_version": "1.10"}
    # Not a version: kept as given (lower-cased), like Julia's non-strict mode.
    assert P("x86_64", "linux", libgfortran_version="Lel")["libgfortran_version"] == "lel"
    assert P("x86_64", "macos", os_version="v10.15")["os_version"] == "10.15.0"


def test_none_values_are_dropped() -> None:
    assert "cuda" not in Platform("x86_64", "linux", {"cuda": None})


@pytest.mark.parametrize("bad", list("+- /<>:\"'\\|?*"))
def test_invalid_characters_in_tag_names_and_values(bad: str) -> None:
    with pytest.raises(PlatformError, match="tag name") as err:
        P("x86_64", "linux", **{f"my{bad}tag": "x"})
    assert err.value.char == bad
    with pytest.raises(PlatformError, match="tag value") as err:
        P("x86_64", "linux", cuda=f"11{bad}8")
    assert err.value.char == bad and err.value.tag == "cuda"
    assert isinstance(err.value, ValueError) and isinstance(err.value, ArtifactError)


def test_os_and_arch_cannot_be_passed_twice() -> None:
    for key in ("arch", "ARCH", "os"):
        with pytest.raises(PlatformError, match="twice"):
            Platform("x86_64", "linux", {key: "i686"})


# --------------------------------------------------------------------------
# Triplets (Julia's "Platform properties" and "Triplet parsing" testsets)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("platform, triplet", [
    (P("i686", "Windows"), "i686-w64-mingw32"),
    (P("x86_64", "linux", libc="musl"), "x86_64-linux-musl"),
    (P("armv7l", "linux", libc="musl"), "armv7l-linux-musleabihf"),
    (P("armv6l", "linux", libc="musl", call_abi="eabihf"), "armv6l-linux-musleabihf"),
    (P("armv6l", "linux", call_abi="eabi"), "armv6l-linux-gnueabi"),
    (P("x86_64", "linux"), "x86_64-linux-gnu"),
    (P("armv6l", "linux"), "armv6l-linux-gnueabihf"),
    (P("x86_64", "macos"), "x86_64-apple-darwin"),
    (P("x86_64", "macos", os_version="16"), "x86_64-apple-darwin16"),
    (P("x86_64", "freebsd"), "x86_64-unknown-freebsd"),
    (P("x86_64", "freebsd", os_version="11.1"), "x86_64-unknown-freebsd11.1"),
    (P("i686", "freebsd"), "i686-unknown-freebsd"),
    (P("x86_64", "openbsd"), "x86_64-unknown-openbsd"),
    (P("x86_64", "haiku"), "x86_64-unknown"),
    (P("armv7l", "Linux", libgfortran_version="3"), "armv7l-linux-gnueabihf-libgfortran3"),
    (P("x86_64", "linux", libgfortran_version="3", cxxstring_abi="cxx11"),
     "x86_64-linux-gnu-libgfortran3-cxx11"),
    (P("armv7l", "linux", libc="musl", cxxstring_abi="cxx03"), "armv7l-linux-musleabihf-cxx03"),
    (P("x86_64", "linux", libstdcxx_version="3.4.26"), "x86_64-linux-gnu-libstdcxx26"),
    (P("x86_64", "linux", julia_version="1.10.0"), "x86_64-linux-gnu-julia_version+1.10.0"),
])
def test_triplet(platform: Platform, triplet: str) -> None:
    assert platform.triplet() == triplet
    assert str(platform) == triplet


def test_triplet_extension_tags_are_sorted_whatever_the_insertion_order() -> None:
    # Julia's "Deterministic serialization" testset.
    base = [("libgfortran_version", "5.0.0"), ("cxxstring_abi", "cxx11"), ("os_version", "20")]
    extra = [("tag1", "a"), ("tag2", "b"), ("tag8", "c"), ("tag9", "d"), ("cuda", "10.1")]
    reference = Platform("aarch64", "macos", dict(base + extra))
    assert reference.triplet() == \
        "aarch64-apple-darwin20-libgfortran5-cxx11-cuda+10.1-tag1+a-tag2+b-tag8+c-tag9+d"
    for order in itertools.permutations(extra):
        p = Platform("aarch64", "macos", dict(base + list(order)))
        assert p == reference
        assert p.triplet() == reference.triplet()
        assert repr(p) == repr(reference)


@pytest.mark.parametrize("triplet, expected", [
    ("x86_64-linux-gnu", P("x86_64", "linux")),
    ("x86_64-linux-musl", P("x86_64", "linux", libc="musl")),
    ("i686-unknown-linux-gnu", P("i686", "linux")),
    ("x86_64-apple-darwin", P("x86_64", "macos")),
    ("x86_64-apple-darwin14", P("x86_64", "macos", os_version="14")),
    ("x86_64-apple-darwin17.0.0", P("x86_64", "macos", os_version="17")),
    ("armv7l-pc-linux-gnueabihf", P("armv7l", "linux")),
    ("armv7l-linux-musleabihf", P("armv7l", "linux", libc="musl")),
    ("armv6l-linux-gnueabi", P("armv6l", "linux", call_abi="eabi")),
    ("arm-linux-gnueabihf", P("armv7l", "linux")),  # bare "arm" is armv7l
    ("aarch64-unknown-linux-gnu", P("aarch64", "linux")),
    ("powerpc64le-linux-gnu", P("powerpc64le", "linux")),
    ("ppc64le-linux-gnu", P("powerpc64le", "linux")),
    ("x86_64-w64-mingw32", P("x86_64", "windows")),
    ("i686-w64-mingw32", P("i686", "windows")),
    ("x86_64-unknown-freebsd11.1", P("x86_64", "freebsd", os_version="11.1")),
    ("i686-unknown-freebsd11.1", P("i686", "freebsd", os_version="11.1")),
    ("amd64-unknown-freebsd12.0", P("x86_64", "freebsd", os_version="12.0")),
    ("i386-unknown-freebsd10.3", P("i686", "freebsd", os_version="10.3")),
    ("aarch64-apple-darwin18.7", P("aarch64", "macos", os_version="18.7")),
    ("arm64-apple-darwin20", P("aarch64", "macos", os_version="20")),
    # Compiler ABI, old style (gccN) and new style
    ("x86_64-linux-gnu-gcc7", P("x86_64", "linux", libgfortran_version="4")),
    ("x86_64-linux-gnu-gcc4-cxx11", P("x86_64", "linux", libgfortran_version="3", cxxstring_abi="cxx11")),
    ("x86_64-linux-gnu-cxx11", P("x86_64", "linux", cxxstring_abi="cxx11")),
    ("x86_64-linux-gnu-libgfortran3-cxx03",
     P("x86_64", "linux", libgfortran_version="3", cxxstring_abi="cxx03")),
    ("x86_64-linux-gnu-libgfortran5", P("x86_64", "linux", libgfortran_version="5")),
    ("x86_64-linux-gnu-libstdcxx26", P("x86_64", "linux", libstdcxx_version="3.4.26")),
    # Extension tags
    ("x86_64-linux-gnu-march+avx2", P("x86_64", "linux", march="avx2")),
    ("x86_64-linux-gnu-march+x86_64-cuda+10.1", P("x86_64", "linux", march="x86_64", cuda="10.1")),
    ("x86_64-linux-gnu-julia_version+1.10.0", P("x86_64", "linux", julia_version="1.10.0")),
    ("x86_64-linux-gnu-sanitize+memory", P("x86_64", "linux", sanitize="memory")),
    ("x86_64-linux-gnu-libgfortran5-cxx11-julia_version+1.10.0",
     P("x86_64", "linux", libgfortran_version="5", cxxstring_abi="cxx11", julia_version="1.10.0")),
    # Not strict: an odd combination parses
    ("aarch64-linux-gnueabihf", P("aarch64", "linux", call_abi="eabihf")),
])
def test_parse_triplet(triplet: str, expected: Platform) -> None:
    parsed = parse_triplet(triplet)
    assert parsed == expected
    # ... and round-trips through triplet() (canonical spelling may differ),
    # except that a macOS triplet only carries the Darwin major version.
    again = parse_triplet(parsed.triplet())
    if parsed.os == "macos" and "os_version" in parsed:
        assert again["os_version"].split(".")[0] == parsed["os_version"].split(".")[0]
        again.tags["os_version"] = parsed["os_version"]
    assert again == parsed


@pytest.mark.parametrize("canonical", [
    "x86_64-linux-gnu", "x86_64-linux-musl", "aarch64-linux-gnu", "armv7l-linux-gnueabihf",
    "armv6l-linux-musleabihf", "powerpc64le-linux-gnu", "i686-w64-mingw32",
    "x86_64-w64-mingw32", "x86_64-apple-darwin", "aarch64-apple-darwin20",
    "x86_64-unknown-freebsd13.2", "x86_64-linux-gnu-libgfortran4-cxx03",
    "x86_64-linux-gnu-libgfortran5-cxx11-libstdcxx30-julia_version+1.10.0",
    "x86_64-linux-gnu-cuda+11.8-sanitize+memory",
])
def test_canonical_triplets_round_trip_exactly(canonical: str) -> None:
    assert parse_triplet(canonical).triplet() == canonical


@pytest.mark.parametrize("bad", [
    "totally FREEFORM text!!1!!!1!", "invalid-triplet-here", "x86_64-w32-mingw64", "",
    "x86_64", "X86_64-linux-gnu", "x86_64-linux-gnu-", "x86_64-linux-gnu-libgfortran9",
])
def test_parse_triplet_rejects_nonsense(bad: str) -> None:
    with pytest.raises(PlatformError, match="not an officially supported platform"):
        parse_triplet(bad)


def test_parse_triplet_rejects_os_and_arch_extension_tags() -> None:
    with pytest.raises(PlatformError, match="twice"):
        parse_triplet("x86_64-linux-gnu-os+windows")


# --------------------------------------------------------------------------
# platforms_match
# --------------------------------------------------------------------------

def test_missing_keys_are_wildcards() -> None:
    # Julia's combinatorial sweep: a bare linux matches every compiler ABI.
    linux = P("x86_64", "linux")
    for gfortran, stdcxx, cxxabi in itertools.product(
            (None, "3", "5"), (None, "3.4.18", "3.4.26"), (None, "cxx03", "cxx11")):
        p = Platform("x86_64", "linux", {"libgfortran_version": gfortran,
                                         "libstdcxx_version": stdcxx, "cxxstring_abi": cxxabi})
        assert platforms_match(linux, p) and platforms_match(p, linux)
        assert platforms_match(parse_triplet(linux.triplet()), p)
        assert platforms_match(linux, parse_triplet(p.triplet()))
    # An unknown extension tag on one side only still matches.
    assert platforms_match(P("x86_64", "linux", sanitize="memory"), linux)


def test_present_keys_must_agree() -> None:
    linux = P("x86_64", "linux")
    assert not platforms_match(linux, P("i686", "linux"))
    assert not platforms_match(linux, P("x86_64", "windows"))
    assert not platforms_match(linux, P("x86_64", "macos"))
    assert not platforms_match(linux, P("x86_64", "linux", libc="musl"))  # libc defaulted
    assert not platforms_match(P("armv7l", "linux"), P("armv7l", "linux", call_abi="eabi"))
    for arch in ("x86_64", "i686", "aarch64", "armv6l", "armv7l", "powerpc64le"):
        a = P(arch, "linux", libgfortran_version="5", cxxstring_abi="cxx11")
        for kwargs in ({"libgfortran_version": "3"}, {"cxxstring_abi": "cxx03"},
                       {"libgfortran_version": "4", "cxxstring_abi": "cxx11"},
                       {"libgfortran_version": "3", "cxxstring_abi": "cxx03"}):
            assert not platforms_match(a, P(arch, "linux", **kwargs))


def test_julia_version_matches_on_major_minor_only() -> None:
    assert platforms_match(P("x86_64", "linux", julia_version="1.5.0"),
                           P("x86_64", "linux", julia_version="1.5.1"))
    assert not platforms_match(P("x86_64", "linux", julia_version="1.5.0"),
                               P("x86_64", "linux", julia_version="1.6.0"))
    # Julia 1.10 vs 1.1: a string comparison of major.minor would get this wrong.
    assert not platforms_match(P("x86_64", "linux", julia_version="1.10.0"),
                               P("x86_64", "linux", julia_version="1.1.0"))
    assert platforms_match(P("x86_64", "linux", julia_version="1.10"),
                           P("x86_64", "linux", julia_version="1.10.4"))


def test_version_caps_on_a_host_platform() -> None:
    # Julia's "version bounds with HostPlatform()" checks, verbatim.
    host = as_host_platform(P("x86_64", "macos", os_version="14", libstdcxx_version="3.4.26"))
    assert platforms_match(host, P("x86_64", "macos"))
    assert platforms_match(host, P("x86_64", "macos", os_version="14"))
    assert platforms_match(host, P("x86_64", "macos", os_version="13"))
    assert not platforms_match(host, P("x86_64", "macos", os_version="15"))
    assert platforms_match(host, P("x86_64", "macos", libstdcxx_version="3.4.18"))
    assert platforms_match(host, P("x86_64", "macos", os_version="10", libstdcxx_version="3.4.18"))
    assert not platforms_match(host, P("x86_64", "macos", os_version="10", libstdcxx_version="3.4.27"))
    assert not platforms_match(host, P("x86_64", "macos", os_version="14", libstdcxx_version="4"))
    # The cap is the host's, whichever argument it is.
    assert platforms_match(P("x86_64", "macos", os_version="13"), host)
    assert not platforms_match(P("x86_64", "macos", os_version="15"), host)
    # Version order, not string order: 10.15 < 14, and 9 < 14.
    assert platforms_match(host, P("x86_64", "macos", os_version="10.15"))
    assert platforms_match(host, P("x86_64", "macos", os_version="9"))
    # Without HostPlatform the same tags are compared for equality.
    plain = P("x86_64", "macos", os_version="14")
    assert not platforms_match(plain, P("x86_64", "macos", os_version="13"))
    # Two hosts: caps must be equal.
    assert platforms_match(host, host)
    assert not platforms_match(host, as_host_platform(P("x86_64", "macos", os_version="13")))
    # An artifact os_version that is not a version never satisfies a cap.
    assert not platforms_match(host, P("x86_64", "macos", os_version="sonoma"))


def test_custom_compare_strategies() -> None:
    # Julia's "Custom comparators" testset.
    def matches_oddness(a: str, b: str, a_req: bool, b_req: bool) -> bool:
        return int(a) % 2 == int(b) % 2

    odd = {"vally": matches_oddness}
    a, b = P("x86_64", "linux", vally="2"), P("x86_64", "linux", vally="4")
    ac = Platform("x86_64", "linux", {"vally": "2"}, odd)
    bc = Platform("x86_64", "linux", {"vally": "4"}, odd)
    assert not platforms_match(a, b)
    assert platforms_match(ac, b) and platforms_match(a, bc) and platforms_match(ac, bc)
    assert not platforms_match(ac, Platform("x86_64", "linux", {"vally": "3"}, odd))

    def less_than(a: str, b: str, a_req: bool, b_req: bool) -> bool:
        x, y = int(a), int(b)
        if a_req and not b_req:
            return y < x
        if b_req and not a_req:
            return x < y
        return x == y

    lt = {"vally": less_than}
    ac = Platform("x86_64", "linux", {"vally": "2"}, lt)
    bc = Platform("x86_64", "linux", {"vally": "4"}, lt)
    assert platforms_match(a, bc) and platforms_match(bc, a)
    assert not platforms_match(ac, b) and not platforms_match(b, ac)
    assert not platforms_match(ac, bc)
    assert platforms_match(ac, ac) and platforms_match(bc, bc)

    # Two different custom strategies for one tag cannot be reconciled.
    with pytest.raises(PlatformError, match="vally"):
        platforms_match(Platform("x86_64", "linux", {"vally": "2"}, odd), bc)


# --------------------------------------------------------------------------
# select_platform
# --------------------------------------------------------------------------

def _candidates() -> list[tuple[Platform, str]]:
    return [
        # Typical binning test
        (P("x86_64", "linux", libgfortran_version="3"), "linux4"),
        (P("x86_64", "linux", libgfortran_version="4"), "linux7"),
        (P("x86_64", "linux", libgfortran_version="5"), "linux8"),
        # Ambiguity test
        (P("aarch64", "linux", libgfortran_version="3"), "linux3"),
        (P("aarch64", "linux", libgfortran_version="3", libstdcxx_version="3.4.18"), "linux5"),
        (P("aarch64", "linux", libgfortran_version="3", libstdcxx_version="3.4.18", foo="bar"), "linux9"),
        # OS test
        (P("x86_64", "macos", libgfortran_version="3"), "mac4"),
        (P("x86_64", "windows", cxxstring_abi="cxx11"), "win"),
    ]


@pytest.mark.parametrize("host, expected", [
    (P("x86_64", "linux"), "linux8"),  # all three tie on loss; "libgfortran5" sorts last
    (P("x86_64", "linux", libgfortran_version="4"), "linux7"),
    (P("aarch64", "linux"), "linux3"),  # fewest extra keys
    (P("aarch64", "linux", libgfortran_version="3"), "linux3"),
    (P("aarch64", "linux", libgfortran_version="3", libstdcxx_version="3.4.18"), "linux5"),
    (P("aarch64", "linux", libgfortran_version="4"), None),
    (P("x86_64", "macos"), "mac4"),
    (P("x86_64", "macos", libgfortran_version="4"), None),
    (P("x86_64", "windows", cxxstring_abi="cxx11"), "win"),
    (P("x86_64", "windows", cxxstring_abi="cxx03"), None),
    (P("x86_64", "freebsd"), None),
])
def test_select_platform_julia_cases(host: Platform, expected: str | None) -> None:
    # Julia's "select_platform" testset, candidate order permuted to show it does not matter.
    cands = _candidates()
    assert select_platform(cands, host) == expected
    assert select_platform(cands[::-1], host) == expected


def test_select_prefers_the_most_complete_match_then_the_larger_triplet() -> None:
    sanitized = [(P("x86_64", "linux"), "normal"), (P("x86_64", "linux", sanitize="memory"), "sanitized")]
    assert select_platform(sanitized, P("x86_64", "linux")) == "normal"
    assert select_platform(sanitized, P("x86_64", "linux", sanitize="memory")) == "sanitized"
    ties = [(P("x86_64", "linux", libgfortran_version="3"), "libgfortran3"),
            (P("x86_64", "linux", libgfortran_version="4"), "libgfortran4")]
    assert select_platform(ties, P("x86_64", "linux")) == "libgfortran4"
    assert select_platform(ties[::-1], P("x86_64", "linux")) == "libgfortran4"
    assert select_platform(ties, P("x86_64", "linux", libgfortran_version="3")) == "libgfortran3"
    assert match_loss(P("x86_64", "linux", sanitize="memory"), P("x86_64", "linux", cuda="11")) == 2
    assert select_platform([], P("x86_64", "linux")) is None


def test_select_identical_platforms_last_wins() -> None:
    # Julia builds a Dict: a repeated platform overwrites the earlier entry.
    same = [(P("x86_64", "linux"), "first"), (P("x86_64", "linux"), "second")]
    assert select_platform(same, P("x86_64", "linux")) == "second"


OPENBLAS_TOML = '''
# Shaped like OpenBLAS_jll's Artifacts.toml (hashes shortened to stand-ins).
[[OpenBLAS]]
arch = "x86_64"
git-tree-sha1 = "0000000000000000000000000000000000000003"
libc = "glibc"
libgfortran_version = "3.0.0"
os = "linux"
    [[OpenBLAS.download]]
    sha256 = "ab"
    url = "https://example.org/OpenBLAS.v0.3.27.x86_64-linux-gnu-libgfortran3.tar.gz"

[[OpenBLAS]]
arch = "x86_64"
git-tree-sha1 = "0000000000000000000000000000000000000004"
libc = "glibc"
libgfortran_version = "4.0.0"
os = "linux"

[[OpenBLAS]]
arch = "x86_64"
git-tree-sha1 = "0000000000000000000000000000000000000005"
libc = "glibc"
libgfortran_version = "5.0.0"
os = "linux"

[[OpenBLAS]]
arch = "x86_64"
git-tree-sha1 = "749a12881adc0f7b8ab604e09c4a3b32b0e52b23"
libc = "glibc"
os = "linux"
sanitize = "memory"
lazy = true
    [[OpenBLAS.download]]
    sha256 = "33a76bc0"
    url = "https://example.org/OpenBLAS.v0.3.27.x86_64-linux-gnu-sanitize+memory.tar.gz"

[[OpenBLAS]]
arch = "x86_64"
git-tree-sha1 = "1000000000000000000000000000000000000004"
libc = "musl"
libgfortran_version = "4.0.0"
os = "linux"

[[OpenBLAS]]
arch = "x86_64"
git-tree-sha1 = "1000000000000000000000000000000000000005"
libc = "musl"
libgfortran_version = "5.0.0"
os = "linux"

[[OpenBLAS]]
arch = "armv7l"
call_abi = "eabihf"
git-tree-sha1 = "2000000000000000000000000000000000000005"
libc = "glibc"
libgfortran_version = "5.0.0"
os = "linux"

[[OpenBLAS]]
arch = "aarch64"
git-tree-sha1 = "3000000000000000000000000000000000000005"
libgfortran_version = "5.0.0"
os = "macos"

[[OpenBLAS]]
arch = "x86_64"
git-tree-sha1 = "4000000000000000000000000000000000000005"
libgfortran_version = "5.0.0"
os = "windows"

[[OpenBLAS]]
arch = "x86_64"
git-tree-sha1 = "5000000000000000000000000000000000000005"
libgfortran_version = "5.0.0"
os = "freebsd"
'''


def _openblas(parse=tomllib.loads) -> list[tuple[Platform, str]]:
    doc = parse(OPENBLAS_TOML)
    return [(platform_from_entry(e, "OpenBLAS", "/pkg/Artifacts.toml"), str(e["git-tree-sha1"]))
            for e in doc["OpenBLAS"]]


@pytest.mark.parametrize("host_triplet, expected", [
    # Our host (no libgfortran value; it is a wildcard that counts as present):
    # glibc libgfortran3/4/5 each have loss 2 (cxxstring_abi, julia_version),
    # sanitize=memory has loss 4, musl does not match; the tie goes to the
    # larger triplet, "...-libgfortran5".
    ("x86_64-linux-gnu", "0000000000000000000000000000000000000005"),
    ("x86_64-linux-musl", "1000000000000000000000000000000000000005"),
    # An explicit libgfortran narrows the match, as on a Julia host.
    ("x86_64-linux-gnu-libgfortran4", "0000000000000000000000000000000000000004"),
    ("x86_64-linux-gnu-libgfortran3-cxx11-julia_version+1.10.0", "0000000000000000000000000000000000000003"),
    ("x86_64-linux-musl-libgfortran3", None),
    # Asking for the sanitizer: it ties with libgfortran5 on loss (3 each) and
    # "-sanitize+memory" > "-libgfortran5"; a Julia host gets the same answer.
    ("x86_64-linux-gnu-sanitize+memory", "749a12881adc0f7b8ab604e09c4a3b32b0e52b23"),
    ("armv7l-linux-gnueabihf", "2000000000000000000000000000000000000005"),
    ("armv7l-linux-gnueabi", None),  # call_abi differs
    ("aarch64-linux-gnu", None),
    ("aarch64-apple-darwin20", "3000000000000000000000000000000000000005"),  # entry has no os_version
    ("x86_64-apple-darwin", None),
    ("x86_64-w64-mingw32", "4000000000000000000000000000000000000005"),
    ("i686-w64-mingw32", None),
    ("x86_64-unknown-freebsd13.2", "5000000000000000000000000000000000000005"),
])
def test_select_from_openblas_like_artifacts_toml(monkeypatch: pytest.MonkeyPatch,
                                                   host_triplet: str, expected: str | None) -> None:
    monkeypatch.setenv(PLATFORM_ENV, host_triplet)
    assert select_platform(_openblas()) == expected
    assert select_platform(_openblas(tomlkit.parse)) == expected


def test_without_host_wildcards_the_sanitizer_build_would_win() -> None:
    # Why HOST_WILDCARD_TAGS exist: with bare {os, arch, libc} host keys,
    # libgfortran5 and sanitize=memory both have loss 1 and the triplet
    # tie-break ("s" > "l") hands every x86_64 Linux user the MSan build.
    bare = as_host_platform(parse_triplet("x86_64-linux-gnu"))
    assert select_platform(_openblas(), bare) == "749a12881adc0f7b8ab604e09c4a3b32b0e52b23"
    julia_like = as_host_platform(parse_triplet("x86_64-linux-gnu"), HOST_WILDCARD_TAGS)
    assert select_platform(_openblas(), julia_like) == "0000000000000000000000000000000000000005"
    # ... and a real Julia host triplet agrees with the wildcard host.
    julia = as_host_platform(parse_triplet(
        "x86_64-linux-gnu-libgfortran5-cxx11-libstdcxx30-julia_version+1.10.4"))
    assert select_platform(_openblas(), julia) == "0000000000000000000000000000000000000005"


# --------------------------------------------------------------------------
# platform_from_entry (Julia's unpack_platform)
# --------------------------------------------------------------------------

def test_entry_string_keys_become_tags_and_other_types_are_ignored() -> None:
    entry = {
        "os": "Linux", "arch": "AMD64", "libc": "MUSL", "git-tree-sha1": "A" * 40,
        "libgfortran_version": "5", "os_version": "5.10", "cuda": "11.8",
        "lazy": True, "size": 3, "download": [{"url": "https://x/y.tar.gz", "sha256": "0" * 64}],
        "gobbler": {"project": "p", "asset": "a", "version": "v"},
    }
    p = platform_from_entry(entry, "Counts", "/pkg/Artifacts.toml")
    assert p.tags == {"os": "linux", "arch": "x86_64", "libc": "musl",
                      "libgfortran_version": "5.0.0", "os_version": "5.10.0", "cuda": "11.8"}
    assert pack_platform(p) == p.tags


def test_entry_from_tomlkit_gives_plain_strings() -> None:
    doc = tomlkit.parse('[[x]]\nos = "linux"\narch = "x86_64"\ncuda = "12.2"\n'
                        'git-tree-sha1 = "' + "a" * 40 + '"\n')
    p = platform_from_entry(doc["x"][0], "x", "A.toml")
    assert p.tags["cuda"] == "12.2" and type(p.tags["cuda"]) is str
    assert type(p.arch) is str and type(p.os) is str


@pytest.mark.parametrize("missing", ["os", "arch"])
def test_entry_missing_os_or_arch(missing: str) -> None:
    entry = {"os": "linux", "arch": "x86_64", "git-tree-sha1": "a" * 40}
    del entry[missing]
    with pytest.raises(ArtifactsTomlError) as err:
        platform_from_entry(entry, "OpenBLAS", "/pkg/Artifacts.toml")
    assert err.value.key == missing
    assert err.value.name == "OpenBLAS" and err.value.path == "/pkg/Artifacts.toml"
    text = str(err.value)
    assert "/pkg/Artifacts.toml" in text and "'OpenBLAS'" in text
    assert f"missing the {missing!r} key" in text and "platform-specific" in text


def test_entry_os_must_be_a_string() -> None:
    with pytest.raises(ArtifactsTomlError, match="must be a string") as err:
        platform_from_entry({"os": 1, "arch": "x86_64"}, "n", "/A.toml")
    assert err.value.key == "os"


@pytest.mark.parametrize("key, value, bad", [
    ("description", "Neural network emulator", " "),  # spec §1.4: breaks Julia too
    ("content-type", "x", "-"),
    ("cuda", "11+8", "+"),
    ("source", "https://example.org", ":"),
    ("note", "a/b", "/"),
    ("libgfortran_version", "5.0.0+build", "+"),
    ("path", "C:\\x", ":"),
])
def test_entry_invalid_tag_characters(key: str, value: str, bad: str) -> None:
    entry = {"os": "linux", "arch": "x86_64", "git-tree-sha1": "a" * 40, key: value}
    with pytest.raises(ArtifactsTomlError) as err:
        platform_from_entry(entry, "Model", "/proj/Artifacts.toml")
    assert err.value.key == key
    text = str(err.value)
    assert "/proj/Artifacts.toml" in text and "'Model'" in text
    assert f"invalid character {bad!r}" in text
    assert "sub-table" in text


def test_entry_uppercase_os_key_is_a_second_os_tag() -> None:
    with pytest.raises(ArtifactsTomlError, match="second 'os' tag") as err:
        platform_from_entry({"os": "linux", "arch": "x86_64", "OS": "linux"}, "n", "/A.toml")
    assert err.value.key == "OS"


# --------------------------------------------------------------------------
# The host platform
# --------------------------------------------------------------------------

def test_host_platform_detects_this_machine() -> None:
    host = host_platform()
    assert host is host_platform()  # cached
    expected_os = {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(
        sys.platform, host.os)
    assert host.os == expected_os
    if hasattr(os, "uname") and sys.maxsize > 2**32:
        assert host.arch == normalize_arch(os.uname().machine)
    assert host.arch in ("x86_64", "aarch64", "i686", "armv7l", "armv6l", "powerpc64le", "riscv64")
    for tag in ("julia_version", "libgfortran_version", "cxxstring_abi", "libstdcxx_version"):
        assert tag not in host  # we are not Julia: no such runtime to describe
    assert set(HOST_WILDCARD_TAGS) == host.wildcards
    if host.os == "linux":
        glibc = bool(getattr(os, "confstr", lambda _: None)("CS_GNU_LIBC_VERSION"))
        assert host["libc"] == ("glibc" if glibc else "musl")
    if host.os in ("macos", "freebsd"):
        assert host.compare_strategy("os_version") is compare_version_cap
    # It matches a bare platform of itself, and not another OS.
    assert platforms_match(host, Platform(host.arch, host.os))
    assert not platforms_match(host, Platform(host.arch, "plan9"))


def test_platform_override_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PLATFORM_ENV, "aarch64-apple-darwin20-libstdcxx26")
    host = host_platform()
    assert (host.arch, host.os, host["os_version"]) == ("aarch64", "macos", "20.0.0")
    # Caps apply to the override too.
    assert platforms_match(host, P("aarch64", "macos", os_version="19"))
    assert not platforms_match(host, P("aarch64", "macos", os_version="21"))
    assert not platforms_match(host, P("aarch64", "macos", libstdcxx_version="3.4.30"))
    assert host.wildcards == set(HOST_WILDCARD_TAGS)
    # Tags given in the triplet are real tags, not wildcards.
    monkeypatch.setenv(PLATFORM_ENV, " x86_64-linux-musl-libgfortran4 ")
    host = host_platform()
    assert host.triplet() == "x86_64-linux-musl-libgfortran4"
    assert host.wildcards == {"cxxstring_abi", "julia_version"}
    assert not platforms_match(host, P("x86_64", "linux", libc="musl", libgfortran_version="5"))
    # Unset again: back to detection.
    monkeypatch.delenv(PLATFORM_ENV)
    assert host_platform().triplet() != "x86_64-linux-musl-libgfortran4"


def test_platform_override_must_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PLATFORM_ENV, "linux-x86_64")
    with pytest.raises(PlatformError, match=PLATFORM_ENV):
        host_platform()


def test_select_platform_defaults_to_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    cands = [(P("x86_64", "windows"), "win"), (P("aarch64", "macos"), "mac"),
             (P("x86_64", "linux", libc="musl"), "musl")]
    monkeypatch.setenv(PLATFORM_ENV, "aarch64-apple-darwin")
    assert select_platform(cands) == "mac"
    monkeypatch.setenv(PLATFORM_ENV, "x86_64-linux-musl")
    assert select_platform(cands) == "musl"
    monkeypatch.setenv(PLATFORM_ENV, "x86_64-linux-gnu")
    assert select_platform(cands) is None


def test_import_is_light() -> None:
    # No subprocess/platform/glob at import time; host detection is lazy.
    # Modules the interpreter's own pathlib loads (glob on 3.13+) don't count.
    import subprocess
    code = ("import sys, pathlib; base = set(sys.modules); "
            "import artifacts_py.platforms as p; "
            "print(sorted(m for m in ('subprocess', 'platform', 'glob', 'tomlkit', 'requests') "
            "if m in sys.modules and m not in base)); print(p._HOST_CACHE)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "{}"]
