"""The Artifacts.toml model: every form Julia reads, validation, platforms, discovery."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from artifacts_py.errors import ArtifactNotFoundError, ArtifactsTomlError, TomlNotFoundError
from artifacts_py.tomlmodel import (ArtifactsFile, find_artifacts_toml, get_artifacts_toml,
                                    load_file, resolve_toml)

H1 = "1" * 40
H2 = "2" * 40
H3 = "3" * 40
S1 = "a" * 64


def write(tmp_path: Path, text: str, name: str = "Artifacts.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def toml_error(path: Path, name: str) -> ArtifactsTomlError:
    with pytest.raises(ArtifactsTomlError) as info:
        ArtifactsFile(path).entry(name)
    return info.value


# ------------------------------------------------------------------ plain entries

def test_plain_entry_with_downloads_lazy_and_metadata(tmp_path):
    p = write(tmp_path, f"""
        [Data]
        git-tree-sha1 = "{H1.upper()}"
        lazy = true
        description = "Neural network emulator for cosmology"
        version = "2.0"
        tags = ["a", "b"]
        extra = {{ k = 1 }}

            [[Data.download]]
            url = "https://a.example/d.tar.gz"
            sha256 = "{S1.upper()}"
            size = 12

            [[Data.download]]
            url = "https://b.example/d.tar.gz"
            sha256 = "{'b' * 64}"
        """)
    e = ArtifactsFile(p).entry("Data")
    assert e.git_tree_sha1 == H1  # lower-cased, as Julia's SHA1 parse accepts either case
    assert e.lazy is True
    assert [(d.url, d.sha256, d.size) for d in e.downloads] == [
        ("https://a.example/d.tar.gz", S1, 12), ("https://b.example/d.tar.gz", "b" * 64, None)]
    assert e.metadata == {"description": "Neural network emulator for cosmology", "version": "2.0",
                          "tags": ["a", "b"], "extra": {"k": 1}}
    assert e.installable and e.gobbler is None and e.toml_path == p


def test_gobbler_table_is_read(tmp_path):
    p = write(tmp_path, f"""
        [Counts]
        git-tree-sha1 = "{H1}"
            [Counts.gobbler]
            project = "scrnaseq"
            asset = "zeisel-brain"
            version = "2024-01-05"
            url = "https://gobbler.example.org"
            registry = "/shared/gobbler/registry"
        """)
    e = ArtifactsFile(p).entry("Counts")
    g = e.gobbler
    assert (g.project, g.asset, g.version, g.url, g.registry) == (
        "scrnaseq", "zeisel-brain", "2024-01-05", "https://gobbler.example.org",
        "/shared/gobbler/registry")
    assert g.coordinates == "scrnaseq/zeisel-brain/2024-01-05"
    assert "gobbler" not in e.metadata and e.installable


def test_entry_without_source_is_readable_but_not_installable(tmp_path):
    p = write(tmp_path, f'[Local]\ngit-tree-sha1 = "{H1}"\n')
    e = ArtifactsFile(p).entry("Local")
    assert e.git_tree_sha1 == H1 and not e.installable and not e.lazy


def test_names_keep_file_order(tmp_path):
    p = write(tmp_path, "".join(f'[{n}]\ngit-tree-sha1 = "{H1}"\n' for n in ("Zeta", "Alpha", "Mid")))
    f = ArtifactsFile(p)
    assert f.names() == ["Zeta", "Alpha", "Mid"]
    assert "Alpha" in f and "alpha" not in f


# ------------------------------------------------------------------ malformed input

def test_toml_syntax_error_names_the_file(tmp_path):
    p = write(tmp_path, '[Data\ngit-tree-sha1 = "x"\n')
    with pytest.raises(ArtifactsTomlError) as info:
        ArtifactsFile(p)
    assert str(p) in str(info.value) and "invalid TOML" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_non_utf8_file_is_a_clear_error(tmp_path):
    p = tmp_path / "Artifacts.toml"
    p.write_bytes(b'[D]\ngit-tree-sha1 = "\xff\xfe"\n')
    with pytest.raises(ArtifactsTomlError, match="UTF-8"):
        ArtifactsFile(p)


@pytest.mark.parametrize("value, what", [
    ("1" * 39, "39 characters"),
    ("1" * 41, "41 characters"),
    ("a" * 64, "64 characters"),
    ("g" + "1" * 39, "non-hex"),
    ("", "0 characters"),
])
def test_bad_git_tree_sha1(tmp_path, value, what):
    p = write(tmp_path, f'[Data]\ngit-tree-sha1 = "{value}"\n')
    err = toml_error(p, "Data")
    msg = str(err)
    assert str(p) in msg and "'Data'" in msg and "git-tree-sha1" in msg and what in msg
    assert (err.path, err.name, err.key) == (str(p), "Data", "git-tree-sha1")
    if len(value) == 64:
        assert "sha256" in msg  # says where a 64-digit value belongs


def test_git_tree_sha1_of_wrong_type(tmp_path):
    p = write(tmp_path, "[Data]\ngit-tree-sha1 = 12\n")
    assert "not int" in str(toml_error(p, "Data"))


def test_missing_git_tree_sha1(tmp_path):
    p = write(tmp_path, '[Data]\ndescription = "x"\n')
    err = toml_error(p, "Data")
    assert err.key == "git-tree-sha1" and "missing" in str(err)


def test_name_bound_to_a_string_fails_only_that_name(tmp_path):
    p = write(tmp_path, f'Broken = "oops"\nEmpty = []\n[Good]\ngit-tree-sha1 = "{H1}"\n')
    f = ArtifactsFile(p)
    for name in ("Broken", "Empty"):
        with pytest.raises(ArtifactsTomlError) as info:
            f.entry(name)
        assert f"'{name}'" in str(info.value) and "table" in str(info.value)
    assert f.entry("Good").git_tree_sha1 == H1


@pytest.mark.parametrize("download, key, what", [
    ('url = "https://x/y.tgz"', "download[1].sha256", "missing"),
    (f'url = "https://x/y.tgz"\nsha256 = "{"a" * 63}"', "download[1].sha256", "63 characters"),
    (f'url = "https://x/y.tgz"\nsha256 = "{"z" * 64}"', "download[1].sha256", "non-hex"),
    (f'sha256 = "{S1}"', "download[1].url", "url"),
    (f'url = "https://x/y.tgz"\nsha256 = "{S1}"\nsize = -1', "download[1].size", "non-negative"),
])
def test_bad_download(tmp_path, download, key, what):
    p = write(tmp_path, f'[Data]\ngit-tree-sha1 = "{H1}"\n[[Data.download]]\n{download}\n')
    err = toml_error(p, "Data")
    assert err.key == key and what in str(err) and str(p) in str(err)


def test_second_download_error_names_its_index(tmp_path):
    p = write(tmp_path, f"""
        [Data]
        git-tree-sha1 = "{H1}"
        [[Data.download]]
        url = "https://x/1"
        sha256 = "{S1}"
        [[Data.download]]
        url = "https://x/2"
        sha256 = "nope"
        """)
    assert toml_error(p, "Data").key == "download[2].sha256"


def test_download_must_be_tables(tmp_path):
    p = write(tmp_path, f'[Data]\ngit-tree-sha1 = "{H1}"\ndownload = "https://x"\n')
    assert toml_error(p, "Data").key == "download"


def test_lazy_must_be_bool(tmp_path):
    p = write(tmp_path, f'[Data]\ngit-tree-sha1 = "{H1}"\nlazy = "yes"\n')
    assert toml_error(p, "Data").key == "lazy"


GOOD_G = 'project = "p"\nasset = "a"\nversion = "v1"\n'


@pytest.mark.parametrize("body, key, what", [
    ('project = "p"\nasset = "a"\n', "gobbler.version", "non-empty"),
    ('project = "."\nasset = "a"\nversion = "v"\n', "gobbler.project", "'.'"),
    ('project = "..x"\nasset = "a"\nversion = "v"\n', "gobbler.project", ".."),
    ('project = "p"\nasset = "a/b"\nversion = "v"\n', "gobbler.asset", "'/'"),
    ('project = "p"\nasset = "a"\nversion = 3\n', "gobbler.version", "non-empty string"),
    (GOOD_G + 'colour = "red"\n', "gobbler", "colour"),
    (GOOD_G + 'url = "ftp://g.example"\n', "gobbler.url", "http"),
    (GOOD_G + 'url = "gobbler.example.org"\n', "gobbler.url", "http"),
    (GOOD_G + 'registry = ""\n', "gobbler.registry", "non-empty"),
])
def test_bad_gobbler_table(tmp_path, body, key, what):
    p = write(tmp_path, f'[Data]\ngit-tree-sha1 = "{H1}"\n[Data.gobbler]\n{body}')
    err = toml_error(p, "Data")
    assert err.key == key and what in str(err), str(err)
    assert str(p) in str(err) and "'Data'" in str(err)


def test_gobbler_must_be_a_table(tmp_path):
    p = write(tmp_path, f'[Data]\ngit-tree-sha1 = "{H1}"\ngobbler = "p/a/v"\n')
    assert toml_error(p, "Data").key == "gobbler"


def test_inline_gobbler_table_is_accepted(tmp_path):
    p = write(tmp_path, f'[Data]\ngit-tree-sha1 = "{H1}"\n'
                        'gobbler = {project = "p", asset = "a", version = "v"}\n')
    assert ArtifactsFile(p).entry("Data").gobbler.coordinates == "p/a/v"


def test_one_bad_entry_does_not_break_other_names(tmp_path):
    p = write(tmp_path, f"""
        [Bad]
        git-tree-sha1 = "xyz"
        [Good]
        git-tree-sha1 = "{H1}"
        [Bad2.gobbler]
        project = "p"
        """)
    f = load_file(p)
    assert f.entry("Good").git_tree_sha1 == H1
    with pytest.raises(ArtifactsTomlError):
        f.entry("Bad")
    with pytest.raises(ArtifactsTomlError):
        f.entry("Bad2")


# ------------------------------------------------------------------ unknown names

def test_unknown_name_is_a_keyerror_listing_known_names(tmp_path):
    p = write(tmp_path, f'[Beta]\ngit-tree-sha1 = "{H1}"\n[Alpha]\ngit-tree-sha1 = "{H2}"\n')
    with pytest.raises(KeyError) as info:
        ArtifactsFile(p).entry("Gamma")
    assert isinstance(info.value, ArtifactNotFoundError)
    msg = str(info.value)
    assert "'Gamma'" in msg and "Alpha, Beta" in msg and str(p) in msg
    assert not msg.startswith(("'", '"'))  # not KeyError's repr


# ------------------------------------------------------------------ platforms

PLATFORM_TOML = f"""
    [[Lib]]
    arch = "x86_64"
    os = "linux"
    libc = "glibc"
    git-tree-sha1 = "{H1}"
        [[Lib.download]]
        url = "https://x/linux-gnu.tgz"
        sha256 = "{S1}"

    [[Lib]]
    arch = "x86_64"
    os = "linux"
    libc = "musl"
    git-tree-sha1 = "{H2}"

    [[Lib]]
    arch = "aarch64"
    os = "macos"
    lazy = true
    git-tree-sha1 = "{H3}"
        [Lib.gobbler]
        project = "p"
        asset = "a"
        version = "v"
    """


@pytest.mark.parametrize("triplet, want", [
    ("x86_64-linux-gnu", H1), ("x86_64-linux-musl", H2), ("aarch64-apple-darwin20", H3)])
def test_platform_array_selects_against_the_env_host(tmp_path, monkeypatch, triplet, want):
    p = write(tmp_path, PLATFORM_TOML)
    monkeypatch.setenv("ARTIFACTS_PY_PLATFORM", triplet)
    e = load_file(p).entry("Lib")
    assert e.git_tree_sha1 == want
    assert e.platform is not None and e.os == e.platform.os


def test_selection_follows_a_change_of_host_in_one_process(tmp_path, monkeypatch):
    p = write(tmp_path, PLATFORM_TOML)
    f = load_file(p)
    monkeypatch.setenv("ARTIFACTS_PY_PLATFORM", "x86_64-linux-gnu")
    assert f.entry("Lib").git_tree_sha1 == H1
    monkeypatch.setenv("ARTIFACTS_PY_PLATFORM", "x86_64-linux-musl")
    assert f.entry("Lib").git_tree_sha1 == H2


def test_platform_variant_keeps_lazy_sources_and_tags(tmp_path, monkeypatch):
    p = write(tmp_path, PLATFORM_TOML)
    monkeypatch.setenv("ARTIFACTS_PY_PLATFORM", "aarch64-apple-darwin")
    e = load_file(p).entry("Lib")
    assert e.lazy and e.gobbler.coordinates == "p/a/v" and e.metadata["os"] == "macos"
    assert [v.git_tree_sha1 for v in load_file(p).variants("Lib")] == [H1, H2, H3]


def test_no_variant_for_the_host_is_a_keyerror(tmp_path, monkeypatch):
    p = write(tmp_path, PLATFORM_TOML)
    monkeypatch.setenv("ARTIFACTS_PY_PLATFORM", "i686-w64-mingw32")
    with pytest.raises(ArtifactNotFoundError, match="no binding for this platform"):
        load_file(p).entry("Lib")


@pytest.mark.parametrize("missing", ["os", "arch"])
def test_platform_entry_without_os_or_arch(tmp_path, missing):
    keys = {"os": 'os = "linux"', "arch": 'arch = "x86_64"'}
    del keys[missing]
    p = write(tmp_path, f'[[Lib]]\n{list(keys.values())[0]}\ngit-tree-sha1 = "{H1}"\n'
                        f'[Other]\ngit-tree-sha1 = "{H2}"\n')
    err = toml_error(p, "Lib")
    assert err.key == missing and str(p) in str(err) and "'Lib'" in str(err)
    assert ArtifactsFile(p).entry("Other").git_tree_sha1 == H2


def test_bad_hash_in_second_variant_names_the_element(tmp_path):
    p = write(tmp_path, f'[[Lib]]\nos = "linux"\narch = "x86_64"\ngit-tree-sha1 = "{H1}"\n'
                        '[[Lib]]\nos = "macos"\narch = "x86_64"\ngit-tree-sha1 = "short"\n')
    assert toml_error(p, "Lib").key == "[2].git-tree-sha1"


def test_free_text_string_in_a_variant_is_refused_like_julia(tmp_path, monkeypatch):
    p = write(tmp_path, f'[[Lib]]\nos = "linux"\narch = "x86_64"\ngit-tree-sha1 = "{H1}"\n'
                        'description = "has spaces"\n')
    monkeypatch.setenv("ARTIFACTS_PY_PLATFORM", "x86_64-linux-gnu")
    err = toml_error(p, "Lib")
    assert err.key == "description" and "sub-table" in str(err)


# ------------------------------------------------------------------ file cache

def test_load_file_rereads_after_an_edit(tmp_path):
    p = write(tmp_path, f'[D]\ngit-tree-sha1 = "{H1}"\n')
    assert load_file(p).entry("D").git_tree_sha1 == H1
    tmp = tmp_path / "new.toml"
    tmp.write_text(f'[D]\ngit-tree-sha1 = "{H2}"\n')
    os.replace(tmp, p)
    assert load_file(p).entry("D").git_tree_sha1 == H2


def test_missing_file(tmp_path):
    with pytest.raises(TomlNotFoundError) as info:
        load_file(tmp_path / "nope.toml")
    assert isinstance(info.value, FileNotFoundError) and "nope.toml" in str(info.value)


# ------------------------------------------------------------------ discovery

def test_julia_artifacts_toml_wins(tmp_path):
    write(tmp_path, f'[D]\ngit-tree-sha1 = "{H1}"\n')
    jp = write(tmp_path, f'[D]\ngit-tree-sha1 = "{H2}"\n', "JuliaArtifacts.toml")
    assert find_artifacts_toml(tmp_path) == jp
    assert load_file(tmp_path).path == jp  # a directory means the file in it


def test_find_walks_up_and_stops_at_a_project_root(tmp_path):
    top = write(tmp_path, f'[D]\ngit-tree-sha1 = "{H1}"\n')
    deep = tmp_path / "pkg" / "sub" / "mod"
    deep.mkdir(parents=True)
    assert find_artifacts_toml(deep / "x.py") == top
    (tmp_path / "pkg" / "pyproject.toml").write_text("")
    assert find_artifacts_toml(deep / "x.py") is None
    own = write(tmp_path / "pkg", f'[D]\ngit-tree-sha1 = "{H2}"\n')
    assert find_artifacts_toml(deep) == own  # the root's own file still counts


@pytest.mark.parametrize("marker", ["setup.py", ".git"])
def test_other_project_markers_stop_the_search(tmp_path, marker):
    write(tmp_path, f'[D]\ngit-tree-sha1 = "{H1}"\n')
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / marker).mkdir() if marker == ".git" else (tmp_path / "pkg" / marker).write_text("")
    assert find_artifacts_toml(tmp_path / "pkg") is None


def test_resolve_order_env_then_caller_then_cwd(tmp_path, monkeypatch):
    caller_dir = tmp_path / "proj" / "src"
    caller_dir.mkdir(parents=True)
    (tmp_path / "proj" / "pyproject.toml").write_text("")
    near = write(tmp_path / "proj", f'[D]\ngit-tree-sha1 = "{H1}"\n')
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    in_cwd = write(cwd, f'[D]\ngit-tree-sha1 = "{H2}"\n')
    monkeypatch.chdir(cwd)
    assert resolve_toml(None, str(caller_dir / "mod.py")) == str(near)
    assert resolve_toml(None, str(tmp_path / "elsewhere.py")) == str(in_cwd)
    env = write(tmp_path, f'[D]\ngit-tree-sha1 = "{H3}"\n', "Named.toml")
    monkeypatch.setenv("ARTIFACTS_PY_TOML", str(env))
    assert resolve_toml(None, str(caller_dir / "mod.py")) == str(env)
    assert resolve_toml(in_cwd, None) == str(in_cwd)  # an explicit path beats all


def test_nothing_found_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TomlNotFoundError, match="ARTIFACTS_PY_TOML"):
        resolve_toml(None, None)
    with pytest.raises(TomlNotFoundError):
        load_file(tmp_path)  # a directory without a file
    assert get_artifacts_toml() is None


def test_get_artifacts_toml_forms(tmp_path, monkeypatch):
    p = write(tmp_path, f'[D]\ngit-tree-sha1 = "{H1}"\n')
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert get_artifacts_toml(p) == p
    assert get_artifacts_toml(tmp_path / "a" / "b") == p
    assert get_artifacts_toml(tmp_path / "missing") is None
    monkeypatch.chdir(tmp_path)
    assert get_artifacts_toml() == p


def test_discovery_from_the_calling_module(tmp_path):
    """A module in a package finds the package's Artifacts.toml, whatever the cwd."""
    pkg = tmp_path / "proj" / "mypkg"
    pkg.mkdir(parents=True)
    (tmp_path / "proj" / "pyproject.toml").write_text("")
    write(tmp_path / "proj", f'[D]\ngit-tree-sha1 = "{H1}"\n')
    (pkg / "__init__.py").write_text(
        "import artifacts_py\nfrom artifacts_py import artifact_hash\n"
        "def h():\n    return artifact_hash('D')\n")
    other = tmp_path / "elsewhere"
    other.mkdir()
    write(other, f'[D]\ngit-tree-sha1 = "{H2}"\n')
    out = subprocess.run([sys.executable, "-c", "import mypkg; print(mypkg.h())"],
                         cwd=other, env={**os.environ, "PYTHONPATH": str(tmp_path / "proj")},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == H1


def test_installed_package_does_not_see_files_above_site_packages(tmp_path):
    """A library in a venv inside a project must not pick up the project's file."""
    write(tmp_path, f'[D]\ngit-tree-sha1 = "{H1}"\n')  # the user's project
    pkg = tmp_path / ".venv" / "lib" / "python3.11" / "site-packages" / "lib_a" / "sub"
    pkg.mkdir(parents=True)
    assert find_artifacts_toml(pkg / "mod.py") is None
    own = write(pkg.parent, f'[D]\ngit-tree-sha1 = "{H2}"\n')
    assert find_artifacts_toml(pkg / "mod.py") == own


def test_utf8_bom_is_accepted(tmp_path):
    p = tmp_path / "Artifacts.toml"
    p.write_bytes(b"\xef\xbb\xbf" + f'[D]\ngit-tree-sha1 = "{H1}"\n'.encode())
    assert ArtifactsFile(p).entry("D").git_tree_sha1 == H1


def _big_toml(path, n=400, extra=""):
    lines = []
    for i in range(n):
        lines.append(f'[Art{i}]\ngit-tree-sha1 = "{i:040x}"\ndescription = "artifact {i}{extra}"\n')
    path.write_text("\n".join(lines))
    return path


def test_a_file_is_parsed_once_then_read_from_the_depot_cache(tmp_path, isolated_depot):
    import os

    from artifacts_py import tomlmodel

    toml = _big_toml(tmp_path / "Artifacts.toml")
    old = toml.stat().st_mtime - 60  # not written just now (see _toml.RACY_SECONDS)
    os.utime(toml, (old, old))
    assert tomlmodel.ArtifactsFile(toml, signature=_sig(toml)).entry("Art7").git_tree_sha1 == f"{7:040x}"
    cached = list((isolated_depot / "cache" / "toml").iterdir())
    assert len(cached) == 1
    # A fresh process reads the cache and never imports the TOML parser.
    code = ("import sys, artifacts_py.tomlmodel as m, os; f = sys.argv[1]; st = os.stat(f); "
            "e = m.ArtifactsFile(f, signature=(st.st_mtime_ns, st.st_size, st.st_ino))"
            ".entry('Art7'); print(e.git_tree_sha1, 'tomllib' in sys.modules)")
    import subprocess, sys
    out = subprocess.run([sys.executable, "-c", code, str(toml)], capture_output=True,
                         text=True, check=True, timeout=60).stdout.split()
    assert out == [f"{7:040x}", "False"]
    # An edit (new size and mtime) is seen at once; the cache is rewritten.
    _big_toml(toml, extra=" changed")
    entry = tomlmodel.ArtifactsFile(toml, signature=_sig(toml)).entry("Art7")
    assert entry.metadata["description"] == "artifact 7 changed"


def test_values_marshal_cannot_hold_skip_the_cache(tmp_path, isolated_depot):
    from artifacts_py import tomlmodel

    toml = _big_toml(tmp_path / "Artifacts.toml")
    with open(toml, "a") as f:
        f.write("\n[Dated]\ngit-tree-sha1 = \"" + "d" * 40 + "\"\nwhen = 2024-01-05T10:00:00Z\n")
    entry = tomlmodel.ArtifactsFile(toml, signature=_sig(toml)).entry("Dated")
    assert str(entry.metadata["when"]).startswith("2024-01-05")
    assert not (isolated_depot / "cache" / "toml").exists() or \
        not list((isolated_depot / "cache" / "toml").glob("*.marshal"))


@pytest.mark.parametrize("stale", [
    b"not marshal at all",
    "old",  # the first format: (signature, whole dict)
    "not-bytes",  # tables that are not marshalled bytes
])
def test_a_stale_or_damaged_parse_cache_is_ignored_and_rewritten(tmp_path, isolated_depot,
                                                                  stale):
    import marshal
    import os

    from artifacts_py import _toml, tomlmodel

    toml = _big_toml(tmp_path / "Artifacts.toml", n=5)
    old = toml.stat().st_mtime - 60
    os.utime(toml, (old, old))
    cache = _toml._cache_file(str(toml))
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    data = {f"Art{i}": {"git-tree-sha1": f"{i:040x}"} for i in range(5)}
    blob = {"old": lambda: marshal.dumps((_sig(toml), data)),
            "not-bytes": lambda: marshal.dumps((_toml.CACHE_FORMAT, _sig(toml), data))}
    with open(cache, "wb") as f:
        f.write(blob[stale]() if isinstance(stale, str) else stale)
    f = tomlmodel.ArtifactsFile(toml, signature=_sig(toml))
    assert f.entry("Art3").git_tree_sha1 == f"{3:040x}" and f.names()[0] == "Art0"
    again = tomlmodel.ArtifactsFile(toml, signature=_sig(toml))  # from the rewritten cache
    assert isinstance(again.data, _toml.Tables) and again.entry("Art4").metadata == {
        "description": "artifact 4"}
    assert "Art9" not in again and sorted(again.names()) == [f"Art{i}" for i in range(5)]


def _sig(path):
    st = path.stat()
    return (st.st_mtime_ns, st.st_size, st.st_ino)
