"""serve -> create project -> publish -> add -> fetch with ``artifacts`` commands only."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from pathlib import Path
from typing import Dict, Iterator, Tuple

import pytest
from cli_helpers import CLI, run

from artifacts_py import depot


@pytest.fixture
def served(tmp_path) -> Iterator[Tuple[Dict[str, object], Dict[str, str], Path]]:
    """``artifacts serve -port 0 --json`` with user data in tmp_path: (announcement, env, work)."""
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    proc = subprocess.Popen([*CLI, "serve", "-port", "0", "--json"], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=env, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line, "serve printed nothing"
        work = tmp_path / "work"
        work.mkdir()
        yield json.loads(line), env, work
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]


def test_serve_create_project_publish_add_fetch(served, tmp_path):
    shown, env, work = served
    data = tmp_path / "data" / "artifacts-py" / "gobbler-server"
    assert shown["registry"] == str(data / "registry") and shown["staging"] == str(data / "staging")
    assert str(depot.get_cache_dir()) not in str(shown["registry"])  # user data, not cache
    url = str(shown["url"])
    env["ARTIFACTS_PY_GOBBLER_URL"] = url

    (work / "d").mkdir()
    (work / "d" / "counts.csv").write_text("a,b\n1,2\n")
    publish = ["publish", "Counts", "d", "--project", "demo", "--asset", "counts",
               "--version", "v1", "-q"]
    err = run(publish, work, ok=False, env=env).stderr
    assert "`artifacts gobbler create-project demo`" in err  # no project yet: how to make it

    made = json.loads(run(["gobbler", "create-project", "demo", "--uploader", "bob", "carol", "--json"],
                          work, env=env).stdout)
    assert made == {"action": "create-project", "project": "demo"}
    assert run(["gobbler", "list"], work, env=env).stdout.split() == ["demo"]
    published = json.loads(run(publish + ["--json"], work, env=env).stdout)
    assert published["project"] == "demo" and published["files"] == 1
    bound = tomllib.loads((work / "Artifacts.toml").read_text())["Counts"]
    assert bound["git-tree-sha1"] == published["git_tree_sha1"]

    added = json.loads(run(["add", "Again", "demo/counts", "--url", url, "--json", "-q"], work,
                           env=env).stdout)
    assert added["git_tree_sha1"] == published["git_tree_sha1"] and added["version"] == "v1"
    run(["rm", "Counts"], work, env=env)
    fetched = json.loads(run(["fetch", "--json", "-q"], work, env=env).stdout)
    path = Path(fetched["installed"]["Counts"])
    assert (path / "counts.csv").read_text() == "a,b\n1,2\n"

    # Probation, permissions and removal, all as admin subcommands.
    run(["publish", "Trial", "d", "--project", "demo", "--asset", "counts", "--version", "v2",
         "--probation", "-q"], work, env=env)
    assert "approved" in run(["gobbler", "approve", "demo/counts/v2"], work, env=env).stdout
    err = run(["gobbler", "reject", "demo/counts/v2"], work, ok=False, env=env).stderr
    assert "not on probation" in err and "artifacts gobbler reject demo/counts/v2 failed" in err
    perms = json.loads(run(["gobbler", "set-permissions", "demo", "--owner", "alice", "--json"],
                           work, env=env).stdout)["permissions"]
    assert "alice" in perms["owners"] and perms["uploaders"] == [{"id": "bob"}, {"id": "carol"}]
    versions = json.loads(run(["gobbler", "list", "demo/counts", "--json"], work, env=env).stdout)
    assert versions["versions"] == ["v1", "v2"]
    run(["gobbler", "remove-version", "demo/counts/v2"], work, env=env)
    run(["gobbler", "remove-project", "demo"], work, env=env)
    assert run(["gobbler", "list"], work, env=env).stdout.split() == []


def test_serve_says_where_it_keeps_its_registry(tmp_path):
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    proc = subprocess.Popen([*CLI, "serve", "-port", "0"], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=env, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(5)]  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]
    text = "".join(lines)
    assert lines[0].startswith("artifacts serve: Gobbler service listening on http://127.0.0.1:")
    home = tmp_path / "data" / "artifacts-py" / "gobbler-server"
    assert f"registry  {home / 'registry'}" in text and f"staging   {home / 'staging'}" in text
    assert "artifacts gobbler create-project" in text


def test_admin_commands_need_a_url_and_say_so(tmp_path):
    err = run(["gobbler", "create-project", "demo"], tmp_path, ok=False).stderr
    assert "--url" in err and "ARTIFACTS_PY_GOBBLER_URL" in err and "artifacts serve" in err
    err = run(["gobbler", "approve", "demo/counts", "--url", "http://127.0.0.1:9"], tmp_path,
              ok=False).stderr
    assert "PROJECT/ASSET/VERSION" in err
