"""Authoring edits of Artifacts.toml: formatting kept byte for byte, atomic, validated."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest

from artifacts_py import depot, overrides, store, usage
from artifacts_py.binding import (BindingExistsError, add_download_source, bind_artifact,
                                  unbind_artifact)
from artifacts_py.errors import ArtifactNotFoundError, ArtifactsTomlError
from artifacts_py.tomlmodel import ArtifactsFile

H1, H2, H3, H4 = ("1" * 40, "2" * 40, "3" * 40, "4" * 40)
SA, SB, SC = ("a" * 64, "b" * 64, "c" * 64)

# A hand-written file: comments everywhere, odd spacing, a platform array, a tail.
HEAD = f"""# Artifacts of the analysis -- keep sorted by hand!
# second header line

[Alpha]   # the first one
git-tree-sha1   =   "{H1}"
description = "Alpha data"     # shown in reports
   version="1.0"

"""
BETA = f"""# Beta comes from Zenodo
[Beta]
git-tree-sha1 = "{H2}"
lazy = true
    # mirrors, most reliable first

    [[Beta.download]]
    url = "https://zenodo.example/beta.tgz"
    sha256 = "{SA}"

"""
GAMMA = f"""# platform specific
[[Gamma]]
os = "linux"
arch = "x86_64"
git-tree-sha1 = "{H3}"

[[Gamma]]
os = "macos"
arch = "aarch64"
git-tree-sha1 = "{H4}"
"""
TAIL = """
# end of file: nothing below
"""
ORIGINAL = HEAD + BETA + GAMMA + TAIL


@pytest.fixture
def toml(tmp_path: Path) -> Path:
    p = tmp_path / "Artifacts.toml"
    p.write_text(ORIGINAL, encoding="utf-8")
    return p


def text(p: Path) -> str:
    return p.read_bytes().decode("utf-8")


def assert_readable(p: Path) -> dict:
    data = tomllib.loads(text(p))
    f = ArtifactsFile(p)
    for name in f.names():
        f.variants(name)
    return data


# ------------------------------------------------------------ formatting kept

def test_bind_new_name_appends_and_keeps_every_byte(toml):
    bind_artifact(toml, "Delta", H1, "https://x.example/d.tgz", SB)
    out = text(toml)
    assert out == ORIGINAL + f"""
[Delta]
git-tree-sha1 = "{H1}"

    [[Delta.download]]
    url = "https://x.example/d.tgz"
    sha256 = "{SB}"
"""
    assert assert_readable(toml)["Delta"]["download"][0]["sha256"] == SB


def test_unbind_middle_entry_keeps_the_rest(toml):
    assert unbind_artifact(toml, "Beta") is True
    # Beta's own lines go; the comment above it and everything else stay.
    assert text(toml) == HEAD + "# Beta comes from Zenodo\n\n" + GAMMA + TAIL
    assert "Beta" not in assert_readable(toml)


def test_unbind_first_entry_keeps_the_comment_introducing_the_next(toml):
    unbind_artifact(toml, "Alpha")
    out = text(toml)
    assert out.startswith("# Artifacts of the analysis -- keep sorted by hand!\n# second header line\n\n")
    assert out.endswith(BETA + GAMMA + TAIL)
    assert list(assert_readable(toml)) == ["Beta", "Gamma"]


def test_unbind_last_entry_keeps_the_file_tail(toml):
    unbind_artifact(toml, "Gamma")
    assert text(toml) == HEAD + BETA + "# platform specific\n" + TAIL


def test_unbind_unknown_name_or_file_is_false_and_writes_nothing(toml, tmp_path):
    before = os.stat(toml)
    assert unbind_artifact(toml, "Nope") is False
    assert unbind_artifact(tmp_path / "missing.toml", "Alpha") is False
    assert text(toml) == ORIGINAL and os.stat(toml).st_ino == before.st_ino
    assert not (tmp_path / "missing.toml").exists()


def test_force_rebind_edits_in_place_keeping_metadata_and_comments(toml):
    bind_artifact(toml, "Alpha", H4, "https://new.example/a.tgz", SC, force=True)
    assert text(toml) == HEAD.replace(H1, H4).replace('   version="1.0"\n\n', f'''   version="1.0"

    [[Alpha.download]]
    url = "https://new.example/a.tgz"
    sha256 = "{SC}"

''') + BETA + GAMMA + TAIL
    meta = ArtifactsFile(toml).entry("Alpha").metadata
    assert meta == {"description": "Alpha data", "version": "1.0"}


def test_force_rebind_drops_the_old_sources_and_lazy(toml):
    bind_artifact(toml, "Beta", H4, gobbler={"project": "p", "asset": "a", "version": "v2"},
                  force=True)
    e = ArtifactsFile(toml).entry("Beta")
    assert e.git_tree_sha1 == H4 and e.downloads == [] and not e.lazy
    assert e.gobbler.coordinates == "p/a/v2"
    out = text(toml)
    assert out.startswith(HEAD) and out.endswith(GAMMA + TAIL)
    assert "    # mirrors, most reliable first\n\n    [Beta.gobbler]\n" in out


def test_add_download_source_appends_a_mirror(toml):
    add_download_source(toml, "Beta", "https://mirror.example/beta.tgz", SA)
    assert text(toml) == HEAD + BETA.replace(f'sha256 = "{SA}"\n', f'''sha256 = "{SA}"

    [[Beta.download]]
    url = "https://mirror.example/beta.tgz"
    sha256 = "{SA}"
''') + GAMMA + TAIL
    assert [d.url for d in ArtifactsFile(toml).entry("Beta").downloads] == [
        "https://zenodo.example/beta.tgz", "https://mirror.example/beta.tgz"]


def test_add_download_source_to_entry_without_mirrors(toml):
    add_download_source(toml, "Alpha", "https://m.example/a.tgz", SB, size=10)
    out = text(toml)
    assert out.endswith(BETA + GAMMA + TAIL)
    assert f'   version="1.0"\n\n    [[Alpha.download]]\n    url = "https://m.example/a.tgz"\n' \
           f'    sha256 = "{SB}"\n    size = 10\n\n# Beta' in out


def test_add_download_source_same_url(toml):
    add_download_source(toml, "Beta", "https://zenodo.example/beta.tgz", SA.upper())  # no-op
    assert text(toml) == ORIGINAL
    with pytest.raises(ArtifactsTomlError, match="already a mirror"):
        add_download_source(toml, "Beta", "https://zenodo.example/beta.tgz", SB)
    assert text(toml) == ORIGINAL


def test_add_download_source_errors(toml, tmp_path):
    with pytest.raises(ArtifactNotFoundError):
        add_download_source(toml, "Nope", "https://x/y", SA)
    with pytest.raises(ArtifactsTomlError, match="platform"):
        add_download_source(toml, "Gamma", "https://x/y", SA)
    with pytest.raises(ArtifactsTomlError, match="sha256"):
        add_download_source(toml, "Alpha", "https://x/y", "abc")
    with pytest.raises(FileNotFoundError):
        add_download_source(tmp_path / "none.toml", "A", "https://x/y", SA)
    assert text(toml) == ORIGINAL


def test_add_download_source_to_one_platform_variant(toml, monkeypatch):
    add_download_source(toml, "Gamma", "https://x/mac.tgz", SB,
                        platform={"os": "macos", "arch": "aarch64"})
    monkeypatch.setenv("ARTIFACTS_PY_PLATFORM", "aarch64-apple-darwin")
    assert [d.url for d in ArtifactsFile(toml).entry("Gamma").downloads] == ["https://x/mac.tgz"]
    monkeypatch.setenv("ARTIFACTS_PY_PLATFORM", "x86_64-linux-gnu")
    assert ArtifactsFile(toml).entry("Gamma").downloads == []
    assert text(toml).endswith("# end of file: nothing below\n")


def test_crlf_file_stays_crlf(tmp_path):
    p = tmp_path / "Artifacts.toml"
    original = ORIGINAL.replace("\n", "\r\n").encode()
    p.write_bytes(original)
    bind_artifact(p, "Delta", H1, "https://x.example/d.tgz", SB)
    out = p.read_bytes()
    assert out.startswith(original) and b"\n" not in out.replace(b"\r\n", b"")
    unbind_artifact(p, "Delta")
    assert p.read_bytes() == original


def test_file_without_final_newline(tmp_path):
    p = tmp_path / "Artifacts.toml"
    p.write_text(f'[A]\ngit-tree-sha1 = "{H1}"')
    bind_artifact(p, "B", H2)
    assert text(p).startswith(f'[A]\ngit-tree-sha1 = "{H1}"\n')
    assert list(assert_readable(p)) == ["A", "B"]


# ------------------------------------------------------------ layout of new files

def test_new_file_has_the_spec_layout(tmp_path):
    p = tmp_path / "sub" / "Artifacts.toml"
    bind_artifact(p, "Counts", H1, "https://zenodo.example/counts.tar.gz", SA,
                  gobbler={"project": "scrnaseq", "asset": "zeisel-brain",
                           "version": "2024-01-05", "url": "https://gobbler.example.org",
                           "registry": "/shared/gobbler/registry"},
                  metadata={"description": "Zeisel brain counts"})
    assert text(p) == f"""[Counts]
git-tree-sha1 = "{H1}"
description = "Zeisel brain counts"

    [Counts.gobbler]
    project = "scrnaseq"
    asset = "zeisel-brain"
    version = "2024-01-05"
    url = "https://gobbler.example.org"
    registry = "/shared/gobbler/registry"

    [[Counts.download]]
    url = "https://zenodo.example/counts.tar.gz"
    sha256 = "{SA}"
"""
    data = assert_readable(p)
    assert data["Counts"]["gobbler"]["project"] == "scrnaseq"


def test_several_mirrors_and_lazy(tmp_path):
    p = tmp_path / "Artifacts.toml"
    bind_artifact(p, "M", H1.upper(), lazy=True,
                  download=[("https://a/x.tgz", SA), {"url": "https://b/x.tgz", "sha256": SB.upper(),
                                                       "size": 5}])
    e = ArtifactsFile(p).entry("M")
    assert e.lazy and e.git_tree_sha1 == H1
    assert [(d.url, d.sha256, d.size) for d in e.downloads] == [
        ("https://a/x.tgz", SA, None), ("https://b/x.tgz", SB, 5)]
    assert "\n\n    [[M.download]]\n    url = \"https://b/x.tgz\"" in text(p)


def test_bind_records_usage_for_gc(tmp_path):
    p = tmp_path / "Artifacts.toml"
    bind_artifact(p, "A", H1)
    assert str(p.resolve()) in [str(t.resolve()) for _, t, _ in usage.recorded_tomls()]


# ------------------------------------------------------------ platform variants

def test_platform_variants_bind_select_replace_unbind(tmp_path, monkeypatch):
    p = tmp_path / "Artifacts.toml"
    linux = {"os": "linux", "arch": "x86_64"}
    bind_artifact(p, "Lib", H1, "https://x/linux.tgz", SA, platform=linux)
    bind_artifact(p, "Lib", H2, "https://x/mac.tgz", SB, platform={"os": "macos", "arch": "aarch64"})
    assert [e.git_tree_sha1 for e in ArtifactsFile(p).variants("Lib")] == [H1, H2]
    monkeypatch.setenv("ARTIFACTS_PY_PLATFORM", "aarch64-apple-darwin")
    assert ArtifactsFile(p).entry("Lib").git_tree_sha1 == H2

    before = text(p)
    with pytest.raises(BindingExistsError):  # same platform (libc defaults to glibc)
        bind_artifact(p, "Lib", H3, platform={**linux, "libc": "glibc"})
    assert text(p) == before
    bind_artifact(p, "Lib", H3, "https://x/linux2.tgz", SC, platform=linux, force=True)
    variants = ArtifactsFile(p).variants("Lib")
    assert [(e.git_tree_sha1, [d.url for d in e.downloads]) for e in variants] == [
        (H3, ["https://x/linux2.tgz"]), (H2, ["https://x/mac.tgz"])]

    assert unbind_artifact(p, "Lib", platform={"os": "windows", "arch": "x86_64"}) is False
    assert unbind_artifact(p, "Lib", platform=linux) is True
    assert [e.git_tree_sha1 for e in ArtifactsFile(p).variants("Lib")] == [H2]
    assert unbind_artifact(p, "Lib", platform={"os": "macos", "arch": "aarch64"}) is True
    assert "Lib" not in assert_readable(p)


def test_new_variant_goes_into_a_handwritten_array(toml):
    bind_artifact(toml, "Gamma", H1, platform={"os": "windows", "arch": "x86_64"})
    out = text(toml)
    assert out.startswith(HEAD + BETA + GAMMA)
    assert out.endswith(f'\n[[Gamma]]\ngit-tree-sha1 = "{H1}"\nos = "windows"\narch = "x86_64"\n' + TAIL)
    assert len(assert_readable(toml)["Gamma"]) == 3


def test_platform_accepts_a_platform_object(tmp_path, monkeypatch):
    from artifacts_py.platforms import parse_triplet

    p = tmp_path / "Artifacts.toml"
    bind_artifact(p, "Lib", H1, platform=parse_triplet("x86_64-linux-musl"))
    assert assert_readable(p)["Lib"][0]["libc"] == "musl"
    monkeypatch.setenv("ARTIFACTS_PY_PLATFORM", "x86_64-linux-musl")
    assert ArtifactsFile(p).entry("Lib").git_tree_sha1 == H1


def test_platform_variant_on_a_plain_binding_needs_force(toml):
    with pytest.raises(BindingExistsError, match="platform-independently"):
        bind_artifact(toml, "Alpha", H3, platform={"os": "linux", "arch": "x86_64"})
    assert text(toml) == ORIGINAL
    with pytest.raises(ArtifactsTomlError):
        unbind_artifact(toml, "Alpha", platform={"os": "linux", "arch": "x86_64"})


def test_bad_platform_tag_is_refused_before_writing(toml):
    with pytest.raises(ArtifactsTomlError, match="invalid character"):
        bind_artifact(toml, "Gamma", H1, platform={"os": "linux", "arch": "x86_64",
                                                   "flavour": "has space"})
    assert text(toml) == ORIGINAL


# ------------------------------------------------------------ bad input, atomicity

@pytest.mark.parametrize("kwargs, match", [
    ({"git_tree_sha1": "1" * 39}, "39 characters"),
    ({"git_tree_sha1": SA}, "it must have 40 hex digits; give the git-tree-sha1"),
    ({"git_tree_sha1": H1, "metadata": {"lazy": True}}, "metadata"),
    ({"git_tree_sha1": H1, "download_url": "https://x/y"}, "sha256"),
    ({"git_tree_sha1": H1, "download_url": "https://x/y", "sha256": "xyz"}, "sha256"),
    ({"git_tree_sha1": H1, "sha256": SA}, "URL"),
    ({"git_tree_sha1": H1, "gobbler": {"project": "p", "asset": "a"}}, "version"),
    ({"git_tree_sha1": H1, "gobbler": {"project": ".", "asset": "a", "version": "v"}}, "'.'"),
    ({"git_tree_sha1": H1, "gobbler": {"project": "p", "asset": "a", "version": "v",
                                       "colour": "red"}}, "colour"),
    ({"git_tree_sha1": H1, "gobbler": {"project": "p", "asset": "a", "version": "v",
                                       "url": "gobbler.example"}}, "http"),
])
def test_bad_input_leaves_the_file_byte_identical(toml, kwargs, match):
    before = os.stat(toml)
    with pytest.raises(ArtifactsTomlError, match=match):
        bind_artifact(toml, "Delta", **kwargs)
    assert text(toml) == ORIGINAL
    assert os.stat(toml).st_ino == before.st_ino
    assert sorted(os.listdir(toml.parent)) == ["Artifacts.toml"]  # no temp file left


def test_existing_name_without_force(toml):
    with pytest.raises(BindingExistsError) as info:
        bind_artifact(toml, "Beta", H4, "https://x/y", SA)
    assert isinstance(info.value, ValueError)
    assert "force" in str(info.value) and H2 in str(info.value)
    assert text(toml) == ORIGINAL


@pytest.mark.parametrize("name", ["", "a/b", "a\\b"])
def test_bad_names(toml, name):
    with pytest.raises(ArtifactsTomlError):
        bind_artifact(toml, name, H1)
    assert text(toml) == ORIGINAL


def test_broken_file_is_not_touched(tmp_path):
    p = tmp_path / "Artifacts.toml"
    p.write_text("[Broken\n")
    with pytest.raises(ArtifactsTomlError, match="invalid TOML"):
        bind_artifact(p, "A", H1)
    assert p.read_text() == "[Broken\n"


def test_write_is_a_rename_keeping_the_mode(toml):
    os.chmod(toml, 0o640)
    ino = os.stat(toml).st_ino
    bind_artifact(toml, "Delta", H1)
    st = os.stat(toml)
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_ino != ino  # replaced by rename, never rewritten in place
    assert sorted(os.listdir(toml.parent)) == ["Artifacts.toml"]


def test_new_file_gets_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        bind_artifact(tmp_path / "Artifacts.toml", "A", H1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "Artifacts.toml").st_mode) == 0o640


def test_symlinked_file_is_edited_through_the_link(toml, tmp_path):
    link = tmp_path / "link" / "Artifacts.toml"
    link.parent.mkdir()
    link.symlink_to(toml)
    bind_artifact(link, "Delta", H1)
    assert link.is_symlink()
    assert "Delta" in tomllib.loads(text(toml))


def test_add_download_source_to_an_inline_array(tmp_path):
    p = tmp_path / "Artifacts.toml"
    p.write_text(f'[A]\ngit-tree-sha1 = "{H1}"\ndownload = [{{url = "https://x/1", sha256 = "{SA}"}}]\n')
    add_download_source(p, "A", "https://x/2", SB)
    assert [(d.url, d.sha256) for d in ArtifactsFile(p).entry("A").downloads] == [
        ("https://x/1", SA), ("https://x/2", SB)]


def test_force_rebind_of_a_table_split_over_the_file(tmp_path):
    p = tmp_path / "Artifacts.toml"
    p.write_text(f'[A]\ngit-tree-sha1 = "{H1}"\n\n[B]\ngit-tree-sha1 = "{H2}"\n\n'
                 '[A.gobbler]\nproject = "p"\nasset = "a"\nversion = "v"\n')
    bind_artifact(p, "A", H3, "https://x/a.tgz", SC, force=True)
    f = ArtifactsFile(p)
    a = f.entry("A")
    assert (a.git_tree_sha1, a.gobbler, [d.url for d in a.downloads]) == (H3, None, ["https://x/a.tgz"])
    assert f.entry("B").git_tree_sha1 == H2
    assert unbind_artifact(p, "A") and list(assert_readable(p)) == ["B"]


def test_unbind_first_variant_at_file_start_leaves_no_blank_line(tmp_path):
    p = tmp_path / "Artifacts.toml"
    bind_artifact(p, "L", H1, platform={"os": "linux", "arch": "x86_64"})
    bind_artifact(p, "L", H2, platform={"os": "macos", "arch": "aarch64"})
    unbind_artifact(p, "L", platform={"os": "linux", "arch": "x86_64"})
    assert text(p) == f'[[L]]\ngit-tree-sha1 = "{H2}"\nos = "macos"\narch = "aarch64"\n'


def test_utf8_bom_is_kept(tmp_path):
    p = tmp_path / "Artifacts.toml"
    original = b"\xef\xbb\xbf" + ORIGINAL.encode()
    p.write_bytes(original)
    bind_artifact(p, "Delta", H1)
    assert p.read_bytes().startswith(original)
    unbind_artifact(p, "Delta")
    assert p.read_bytes() == original


def test_parallel_binds_from_several_processes_all_land(tmp_path):
    import subprocess
    import sys

    p = tmp_path / "Artifacts.toml"
    p.write_text(ORIGINAL)
    code = ("import sys; from artifacts_py.binding import bind_artifact; "
            "bind_artifact(sys.argv[1], sys.argv[2], sys.argv[3])")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(p), f"P{i}", f"{i:x}" * 40])
             for i in range(6)]
    assert [proc.wait(timeout=120) for proc in procs] == [0] * 6
    assert sorted(n for n in assert_readable(p) if n.startswith("P")) == [f"P{i}" for i in range(6)]
    assert text(p).startswith(ORIGINAL)
