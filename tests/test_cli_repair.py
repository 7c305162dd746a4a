"""Repairing a depot from the command line: rm, fetch --force, verify --repair, exit codes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from cli_helpers import run, served_tarball, tarball_entry

from artifacts_py import create_artifact, depot


@pytest.fixture
def project(tmp_path, http_server):
    """An Artifacts.toml binding One (eager, served over HTTP) and Lazy (lazy); One installed."""
    made = {name: served_tarball(http_server, tmp_path, name, {"a.txt": name})
            for name in ("one", "lazy")}
    work = tmp_path / "work"
    work.mkdir()
    (work / "Artifacts.toml").write_text(tarball_entry("One", made["one"]) + "\n"
                                         + tarball_entry("Lazy", made["lazy"], lazy=True))
    run(["fetch", "-q"], work)
    return work, made


def _tamper(tree_hash: str) -> Path:
    f = depot.artifacts_dir() / tree_hash / "a.txt"
    f.chmod(0o644)
    f.write_text("tampered")
    return f


def test_verify_advice_names_the_repair_commands_and_repair_fixes(project):
    work, made = project
    f = _tamper(made["one"]["git_tree_sha1"])
    err = run(["verify"], work, ok=False).stderr
    assert "One" in err and "artifacts verify --repair" in err and "artifacts fetch --force" in err
    out = json.loads(run(["verify", "--repair", "--json", "-q"], work).stdout)
    assert out == {"One": "repaired", "Lazy": "lazy"}
    assert f.read_text() == "one"
    assert json.loads(run(["verify", "--json"], work).stdout) == {"One": "ok", "Lazy": "lazy"}


def test_verify_repair_installs_a_missing_named_artifact(project):
    work, made = project
    out = json.loads(run(["verify", "Lazy", "--repair", "--json", "-q"], work).stdout)
    assert out == {"Lazy": "installed"}
    assert (depot.artifacts_dir() / made["lazy"]["git_tree_sha1"] / "a.txt").read_text() == "lazy"


def test_verify_all_repair_removes_corrupt_trees_of_the_first_depot(project):
    work, made = project
    f = _tamper(made["one"]["git_tree_sha1"])
    assert "verify --all --repair" in run(["verify", "--all"], work, ok=False).stderr
    out = json.loads(run(["verify", "--all", "--repair", "--json"], work).stdout)
    assert out == {str(f.parent): "removed"}
    assert not f.parent.exists()


def test_fetch_force_replaces_a_corrupt_tree(project, http_server):
    work, made = project
    f = _tamper(made["one"]["git_tree_sha1"])
    assert "One" in run(["fetch"], work).stdout and f.read_text() == "tampered"  # a hit
    gets = http_server.count("/one.tar.gz", "GET")
    out = json.loads(run(["fetch", "One", "--force", "--json", "-q"], work).stdout)
    assert out["installed"] == {"One": str(f.parent)} and out["failed"] == {}
    assert f.read_text() == "one" and http_server.count("/one.tar.gz", "GET") == gets + 1


def test_fetch_force_keeps_a_tree_it_cannot_reinstall(tmp_path):
    src = tmp_path / "s"
    src.mkdir()
    (src / "x").write_text("x")
    tree = create_artifact(src)["git_tree_sha1"]
    run(["bind", "X", tree], tmp_path)  # no source at all
    installed = depot.artifacts_dir() / tree  # put there by hand: the only copy
    shutil.copytree(src, installed)
    err = run(["fetch", "X", "--force"], tmp_path, ok=False).stderr
    assert "no source to re-install from" in err and installed.is_dir()


def test_rm_by_name_and_hash_first_depot_only(project, tmp_path, monkeypatch):
    work, made = project
    one, lazy = made["one"]["git_tree_sha1"], made["lazy"]["git_tree_sha1"]
    out = run(["rm", "One"], work).stdout
    assert out.strip() == f"removed One ({one}) from {depot.depot_stack()[0]}"
    assert depot.find_installed(one) is None

    run(["fetch", "--include-lazy", "-q"], work)
    out = json.loads(run(["rm", lazy, "--json"], work).stdout)
    assert out["removed"] == [{"target": lazy, "git_tree_sha1": lazy,
                               "path": str(depot.artifacts_dir() / lazy)}]
    assert out["not_removed"] == [] and out["depot"] == str(depot.depot_stack()[0])

    err = run(["rm", "Lazy"], work, ok=False).stderr
    assert "Lazy: not installed in" in err

    # A shared (read-only) depot further down the stack is never touched.
    shared = depot.depot_stack()[0]
    first = tmp_path / "first"
    env = {**os.environ, "ARTIFACTS_PY_DEPOT_PATH": os.pathsep.join([str(first), str(shared)])}
    err = run(["rm", "One"], work, ok=False, env=env).stderr
    assert "read-only depot" in err and (shared / "artifacts" / one).is_dir()
    err = run(["rm", "Nope"], work, ok=False).stderr
    assert "Nope" in err


def test_verify_and_status_exit_codes(project):
    work, made = project
    run(["verify"], work)  # the lazy one is not installed: fine
    err = run(["verify", "Lazy"], work, ok=False).stderr
    assert "not installed" in err
    run(["rm", "One"], work)
    assert "not installed, so not verified: One" in run(["verify"], work, ok=False).stderr

    with open(work / "Artifacts.toml", "a") as f:
        f.write('\n[Bad]\ngit-tree-sha1 = "xyz"\n')
    run(["fetch", "-q"], work, ok=False)  # Bad cannot be fetched; One is re-installed
    out = run(["verify", "--json"], work, ok=False)
    assert json.loads(out.stdout)["Bad"].startswith("invalid") and "Bad" in out.stderr
    out = run(["status"], work, ok=False)
    assert "Bad" in out.stdout and "malformed" in out.stderr
