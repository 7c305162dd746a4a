"""The ``artifacts`` command line, run as a real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cli_helpers import run, served_tarball, tarball_entry

from artifacts_py import create_artifact, depot

COMMANDS = ["add", "create", "bind", "unbind", "publish", "fetch", "path", "status", "verify",
            "rm", "ls", "depot", "gc", "gobbler", "help", "completion"]


@pytest.fixture
def served(tmp_path, http_server):
    """Two tarballs on a real HTTP server: (url, create_artifact result) each."""
    out = {}
    for name, files in {"one": {"a.txt": "one"}, "two": {"b.txt": "two", "c.txt": "2"}}.items():
        made = served_tarball(http_server, tmp_path, name, files)
        out[name] = (made["url"], made)
    work = tmp_path / "work"
    work.mkdir()
    return work, out


def test_help_for_every_command(tmp_path):
    top = run(["--help"], tmp_path)
    for cmd in COMMANDS + ["serve"]:
        assert cmd in top.stdout
    for cmd in COMMANDS + ["serve"]:
        out = run([cmd, "--help"], tmp_path)
        assert out.stdout.startswith(f"usage: artifacts {cmd}")
        if cmd not in ("gobbler", "help", "completion", "serve"):
            assert "--json" in out.stdout


def test_console_script_is_installed(tmp_path):
    exe = shutil.which("artifacts")
    if exe is None:
        pytest.skip("the artifacts console script is not on PATH")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "artifacts-py" in out.stdout


def test_create_prints_hashes(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    out = json.loads(run(["create", "d", "--archive", "d.tar.xz", "--compression", "xz", "--json"],
                         tmp_path).stdout)
    assert out == create_artifact(tmp_path / "d", tmp_path / "again.tar.xz", "xz") | {
        "archive_path": "d.tar.xz", "size": 1,  # the tree's bytes, as everywhere
        "archive_size": (tmp_path / "d.tar.xz").stat().st_size}
    text = run(["create", "d"], tmp_path).stdout
    assert text.strip() == f"git-tree-sha1 = {out['git_tree_sha1']}"


def test_add_path_status_ls_verify(served):
    work, srv = served
    url, made = srv["one"]
    out = run(["add", "One", url, "-q"], work)
    assert made["git_tree_sha1"] in out.stdout
    data = tomllib.loads((work / "Artifacts.toml").read_text())
    assert data["One"] == {"git-tree-sha1": made["git_tree_sha1"],
                           "download": [{"url": url, "sha256": made["sha256"]}]}

    path = Path(run(["path", "One"], work).stdout.strip())
    assert (path / "a.txt").read_text() == "one"
    assert run(["path", "One/a.txt", "--no-install"], work).stdout.strip() == str(path / "a.txt")

    status = json.loads(run(["status", "--json"], work).stdout)
    assert status["artifacts"] == [{
        "name": "One", "git_tree_sha1": made["git_tree_sha1"], "installed": True,
        "path": str(path), "size": 3, "lazy": False, "source": url}]
    assert "installed" in run(["status"], work).stdout

    ls = json.loads(run(["ls", "--json"], work).stdout)
    assert [r["hash"] for r in ls] == [made["git_tree_sha1"]]
    assert json.loads(run(["verify", "One", "--json"], work).stdout) == {"One": "ok"}


def test_verify_detects_corruption(served):
    work, srv = served
    url, made = srv["one"]
    run(["add", "One", url, "-q"], work)
    f = depot.artifacts_dir() / made["git_tree_sha1"] / "a.txt"
    f.chmod(0o644)
    f.write_text("tampered")
    out = run(["verify", "One"], work, ok=False)
    assert "One" in out.stderr and "do not match" in out.stderr
    out = run(["verify", "--all", "--json"], work, ok=False)
    assert json.loads(out.stdout) == {str(f.parent): "CORRUPT"}


def test_add_again_needs_force_and_says_what_would_change(served):
    work, srv = served
    (url1, made1), (url2, made2) = srv["one"], srv["two"]
    run(["add", "Data", url1, "-q"], work)
    assert "nothing to change" in run(["add", "Data", url1, "-q"], work).stdout
    before = (work / "Artifacts.toml").read_bytes()
    err = run(["add", "Data", url2, "-q"], work, ok=False).stderr
    assert made1["git_tree_sha1"] in err and made2["git_tree_sha1"] in err and "--force" in err
    assert (work / "Artifacts.toml").read_bytes() == before
    run(["add", "Data", url2, "--force", "-q"], work)
    assert tomllib.loads((work / "Artifacts.toml").read_text())["Data"]["git-tree-sha1"] == \
        made2["git_tree_sha1"]


def test_bind_unbind_fetch_lazy(served):
    work, srv = served
    (url1, made1), (url2, made2) = srv["one"], srv["two"]
    run(["bind", "Eager", made1["git_tree_sha1"], "--download-url", url1, "--sha256", made1["sha256"]], work)
    run(["bind", "Lazy", made2["git_tree_sha1"], "--download-url", url2, "--sha256", made2["sha256"],
         "--lazy"], work)
    fetched = json.loads(run(["fetch", "--json", "-q"], work).stdout)
    assert list(fetched["installed"]) == ["Eager"] and fetched["failed"] == {}  # lazy: on request
    assert not (depot.artifacts_dir() / made2["git_tree_sha1"]).exists()
    assert "Lazy" in run(["fetch", "Lazy", "-q"], work).stdout
    assert (depot.artifacts_dir() / made2["git_tree_sha1"] / "b.txt").is_file()
    assert set(json.loads(run(["fetch", "--include-lazy", "--json"], work).stdout)["installed"]) \
        == {"Eager", "Lazy"}

    run(["unbind", "Lazy"], work)
    assert list(tomllib.loads((work / "Artifacts.toml").read_text())) == ["Eager"]
    err = run(["unbind", "Lazy"], work, ok=False).stderr
    assert "'Lazy'" in err


def test_fetch_continues_past_a_bad_name(served, http_server):
    work, srv = served
    url, made = srv["one"]
    missing = http_server.add("/missing.tar.gz", b"", status=404)
    (work / "Artifacts.toml").write_text(f"""
[Broken]
git-tree-sha1 = "{'0' * 40}"
    [[Broken.download]]
    url = "{missing}"
    sha256 = "{'0' * 64}"

""" + tarball_entry("Good", made))
    with open(work / "Artifacts.toml", "a") as f:  # only for another platform: skipped
        f.write(f'[[Elsewhere]]\nos = "windows"\narch = "i686"\ngit-tree-sha1 = "{"9" * 40}"\n')
    out = run(["fetch", "-q"], work, ok=False)
    assert "Broken" in out.stderr and "404" in out.stderr and "1 of 2" in out.stderr
    assert "Good" in out.stdout
    assert (depot.artifacts_dir() / made["git_tree_sha1"]).is_dir()


def test_gc_dry_run_and_real(served):
    work, srv = served
    (url1, made1), (url2, made2) = srv["one"], srv["two"]
    run(["add", "A", url1, "-q"], work)
    run(["add", "B", url2, "-q"], work)
    run(["unbind", "B"], work)
    dry = json.loads(run(["gc", "--dry-run", "--json"], work).stdout)
    assert dry["dry_run"] and [r["hash"] for r in dry["removed"]] == [made2["git_tree_sha1"]]
    assert (depot.artifacts_dir() / made2["git_tree_sha1"]).is_dir()
    out = run(["gc"], work).stdout
    assert "removed 1 artifact(s)" in out
    assert not (depot.artifacts_dir() / made2["git_tree_sha1"]).exists()
    assert (depot.artifacts_dir() / made1["git_tree_sha1"]).is_dir()
    run(["gc", "--max-size", "0"], work)
    assert depot.installed_hashes() == []


def test_toml_from_env_and_option(served):
    work, srv = served
    url, made = srv["one"]
    other = work / "elsewhere" / "My.toml"
    err = run(["add", "One", url, "-q", "--toml", str(other)], work, ok=False).stderr
    assert "elsewhere does not exist" in err and not other.parent.exists()  # no new folders
    other.parent.mkdir()
    run(["add", "One", url, "-q", "--toml", str(other)], work)
    assert other.is_file() and not (work / "Artifacts.toml").exists()
    env_run = subprocess.run([sys.executable, "-m", "artifacts_py.cli", "status", "--json"], cwd=work,
                             env={**os.environ, "ARTIFACTS_PY_TOML": str(other)},
                             capture_output=True, text=True, timeout=60)
    assert env_run.returncode == 0 and json.loads(env_run.stdout)["toml"] == str(other)


BAD_HASH = "1" * 39


@pytest.mark.parametrize("args, needle", [
    (["add", "X", "not-a-url"], "PROJECT/ASSET"),
    (["add", "a/b", "http://127.0.0.1:9/never-fetched.tgz"], "name"),
    (["create", "no/such/dir"], "no/such/dir"),
    (["create", "d", "--compression", "lz4"], "invalid choice"),
    (["bind", "X", BAD_HASH], "39 characters"),
    (["bind", "X", "1" * 40, "--download-url", "http://x/y"], "--sha256"),
    (["bind", "X", "1" * 40, "--download-url", "http://x/y", "--sha256", "abc"], "sha256"),
    (["bind", "X", "1" * 40, "--project", "p"], "asset"),
    (["bind", "Known", "2" * 40], "--force"),
    (["unbind", "Nope"], "'Nope'"),
    (["fetch", "Nope"], "Known"),
    (["fetch", "Known"], "no source"),
    (["path", "Nope"], "Known"),
    (["path", "Known", "--no-install"], "not installed"),
    (["verify", "Known"], "not installed"),
    (["verify", "--all", "Known"], "not both"),
    (["verify", "Nope"], "'Nope'"),
    (["gc", "--max-size", "ten"], "size"),
    (["ls", "--bogus"], "unrecognized"),
    (["status", "--toml", "missing.toml"], "missing.toml"),
    (["publish", "X", "d"], "required"),
    (["publish", "X", "nodir", "--project", "p", "--asset", "a", "--version", "v", "--url",
      "http://127.0.0.1:9"], "nodir"),
    (["serve", "-port", "notanumber"], "notanumber"),
    (["gobbler"], "ACTION"),
    (["help", "nope"], "invalid choice"),
])
def test_bad_input_gives_one_line_and_nonzero(tmp_path, args, needle):
    (tmp_path / "d").mkdir()
    (tmp_path / "Artifacts.toml").write_text(f'[Known]\ngit-tree-sha1 = "{"1" * 40}"\n')
    out = run(args, tmp_path, ok=False)
    assert needle in out.stderr


@pytest.mark.parametrize("cmd", [["status"], ["fetch"], ["path", "X"], ["verify"], ["unbind", "X"],
                                 ["bind", "X", "1" * 40], ["add", "X", "http://127.0.0.1:9/x.tgz"]])
def test_malformed_toml_is_one_line_naming_the_file(tmp_path, cmd):
    (tmp_path / "Artifacts.toml").write_text("[X\n")
    out = run(cmd, tmp_path, ok=False)
    assert "Artifacts.toml" in out.stderr and "invalid TOML" in out.stderr


def test_no_toml_anywhere(tmp_path):
    for cmd in (["status"], ["fetch"], ["path", "X"], ["unbind", "X"]):
        assert "no Artifacts.toml" in run(cmd, tmp_path, ok=False).stderr


def test_status_shows_bad_entries_and_fails(tmp_path):
    (tmp_path / "Artifacts.toml").write_text(
        f'[Bad]\ngit-tree-sha1 = "xyz"\n[Good]\ngit-tree-sha1 = "{"1" * 40}"\n')
    out = run(["status", "--json"], tmp_path, ok=False)
    assert "1 malformed entry (Bad)" in out.stderr
    rows = json.loads(out.stdout)["artifacts"]
    assert "error" in rows[0] and "git-tree-sha1" in rows[0]["error"]
    assert rows[1]["installed"] is False


def test_toml_option_may_name_a_directory(tmp_path):
    (tmp_path / "proj").mkdir()
    run(["bind", "X", "1" * 40, "--toml", "proj"], tmp_path)
    assert (tmp_path / "proj" / "Artifacts.toml").is_file()
    rows = json.loads(run(["status", "--json", "--toml", "proj"], tmp_path).stdout)["artifacts"]
    assert [r["name"] for r in rows] == ["X"]


def test_bind_and_unbind_platform_variants(tmp_path, monkeypatch):
    run(["bind", "L", "1" * 40, "--platform", "x86_64-linux-gnu"], tmp_path)
    run(["bind", "L", "2" * 40, "--platform", "aarch64-apple-darwin"], tmp_path)
    assert len(tomllib.loads((tmp_path / "Artifacts.toml").read_text())["L"]) == 2
    monkeypatch.setenv("ARTIFACTS_PY_PLATFORM", "aarch64-apple-darwin")
    rows = json.loads(run(["status", "--json"], tmp_path).stdout)["artifacts"]
    assert rows[0]["git_tree_sha1"] == "2" * 40
    run(["unbind", "L", "--platform", "x86_64-linux-gnu"], tmp_path)
    assert [e["os"] for e in tomllib.loads((tmp_path / "Artifacts.toml").read_text())["L"]] == ["macos"]
    assert "triplet" in run(["bind", "L", "3" * 40, "--platform", "nonsense"], tmp_path, ok=False).stderr
