"""Help, JSON output, depots, completion, file:// URLs and error wording of ``artifacts``."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import tomllib
from pathlib import Path

import pytest
from cli_helpers import CLI, run, served_tarball

from artifacts_py import create_artifact, depot
from artifacts_py.cli import build_parser


def _parsers(p: argparse.ArgumentParser, path: str = ""):
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}".strip())


def test_every_option_and_positional_has_help_and_every_command_examples():
    for path, p in _parsers(build_parser()):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"`artifacts {path}`: {action.dest} has no help"
        if path:
            assert p.epilog and p.epilog.startswith("examples:\n  ") and \
                f"artifacts {path}" in p.epilog, path
            assert p.format_help().rstrip().endswith(p.epilog.rstrip().splitlines()[-1])


def test_bare_artifacts_and_help_print_help(tmp_path):
    bare = run([], tmp_path)
    assert bare.stdout.startswith("usage: artifacts") and "ARTIFACTS_PY_RETRIES" in bare.stdout
    assert "ARTIFACTS_PY_TIMEOUT" in bare.stdout
    assert run(["help"], tmp_path).stdout == bare.stdout
    publish = run(["help", "publish"], tmp_path).stdout
    assert publish == run(["publish", "--help"], tmp_path).stdout
    assert "--archive-url" in publish and "examples:" in publish
    assert "create-project" in run(["help", "gobbler"], tmp_path).stdout
    assert run(["gobbler", "create-project", "--help"], tmp_path).stdout.startswith(
        "usage: artifacts gobbler create-project")


def test_json_on_bind_unbind_path(tmp_path, http_server):
    made = served_tarball(http_server, tmp_path, "a", {"a.txt": "a"})
    url, tree = made["url"], made["git_tree_sha1"]
    bound = json.loads(run(["bind", "A", tree, "--download-url", url, "--sha256", made["sha256"],
                            "--json"], tmp_path).stdout)
    assert bound == {"name": "A", "git_tree_sha1": tree, "toml": "Artifacts.toml",
                     "platform": None, "lazy": False, "gobbler": None,
                     "download": [{"url": url, "sha256": made["sha256"]}]}
    path = json.loads(run(["path", "A/a.txt", "--json"], tmp_path).stdout)
    root = depot.artifacts_dir() / tree
    assert path == {"name": "A", "path": str(root / "a.txt"), "root": str(root)}
    err = run(["path", "A/missing.csv"], tmp_path, ok=False).stderr
    assert "'missing.csv' is not in artifact 'A'" in err
    assert "missing.csv" in run(["path", "A/missing.csv", "--no-install"], tmp_path,
                                ok=False).stderr
    assert json.loads(run(["unbind", "A", "--json"], tmp_path).stdout) == {
        "name": "A", "toml": str(tmp_path / "Artifacts.toml"), "platform": None}


def test_add_json_sizes_the_tree_and_the_archive(tmp_path, http_server):
    made = served_tarball(http_server, tmp_path, "a", {"a.txt": "12345"})
    out = json.loads(run(["add", "A", made["url"], "--json", "-q"], tmp_path).stdout)
    assert out["size"] == 5 and out["archive_size"] == (tmp_path / "a.tar.gz").stat().st_size


def test_ls_names_the_empty_depot_and_depot_prints_the_stack(tmp_path):
    first = depot.depot_stack()[0]
    assert run(["ls"], tmp_path).stdout.strip() == f"no artifacts installed in {first}"
    shared = tmp_path / "shared"
    env = {**os.environ, "ARTIFACTS_PY_DEPOT_PATH": os.pathsep.join([str(first), str(shared)])}
    assert f"nor in {shared}" in run(["ls"], tmp_path, env=env).stdout
    stack = json.loads(run(["depot", "--json"], tmp_path, env=env).stdout)
    assert stack["from"] == "$ARTIFACTS_PY_DEPOT_PATH"
    assert [(d["path"], d["role"]) for d in stack["depots"]] == [
        (str(first), "first (installs and removals)"), (str(shared), "read-only")]
    lines = run(["depot"], tmp_path, env=env).stdout.splitlines()
    assert lines[1].startswith(f"{first}  first") and "not created yet" in lines[2]


def _complete(tmp_path: Path, words: str) -> list[str]:
    """What bash offers for the last word of ``words`` (completion from our script)."""
    script = run(["completion", "bash"], tmp_path).stdout
    (tmp_path / "c.bash").write_text(script)
    cword = len(words.split()) - 1
    shell = (f'source {tmp_path / "c.bash"}; COMP_WORDS=({words}); COMP_CWORD={cword}; '
             '_artifacts; printf "%s\\n" "${COMPREPLY[@]}"')
    out = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=30,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_bash_completion_follows_the_command_tree(tmp_path):
    assert _complete(tmp_path, "artifacts gob") == ["gobbler"]
    assert _complete(tmp_path, "artifacts gobbler create-project --o") == ["--owner"]
    assert _complete(tmp_path, "artifacts --toml x.toml st") == ["status"]
    assert _complete(tmp_path, "artifacts create d --compression x") == ["xz"]
    assert "--repair" in _complete(tmp_path, "artifacts verify --")
    assert _complete(tmp_path, "artifacts completion f") == ["fish"]


# Completion as each shell computes it: fish's `complete -C`; zsh's bashcompinit calls our
# function through its `compgen -F` (zsh itself then keeps the words matching the prefix).
_ASK = {
    "fish": 'source {script}; complete -C"{words}"',
    "zsh": """autoload -U compinit && compinit -u -D; source {script}
words=({words}); CURRENT=$#words; COMP_WORDS=("${{words[@]}}"); COMP_CWORD=$((CURRENT - 1))
compgen -F _artifacts -- "${{words[CURRENT]}}" """,
}


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_completion(tmp_path, shell):
    script = run(["completion", shell], tmp_path).stdout
    if shell == "zsh":
        assert script.startswith("#compdef artifacts") and "bashcompinit" in script
    else:
        assert ("complete -c artifacts -n '__fish_seen_subcommand_from gobbler; and not "
                "__fish_seen_subcommand_from create-project") in script
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    (tmp_path / f"c.{shell}").write_text(script)

    def offers(words: str) -> list[str]:
        ask = _ASK[shell].format(script=tmp_path / f"c.{shell}", words=words)
        out = subprocess.run([shell, "-f", "-c", ask] if shell == "zsh" else [shell, "-c", ask],
                             capture_output=True, text=True, timeout=30, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        last = words.split()[-1]
        return sorted({w.split("\t")[0] for w in out.stdout.split("\n") if w.startswith(last)})

    assert offers("artifacts gob") == ["gobbler"]
    assert offers("artifacts gobbler create-project --o") == ["--owner"]
    assert "--repair" in offers("artifacts verify --re")
    assert offers("artifacts completion f") == ["fish"]


def test_file_urls_are_refused_in_a_committed_looking_file(tmp_path, http_server):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    made = create_artifact(src, tmp_path / "a.tar.gz")
    file_url = Path(made["archive_path"]).as_uri()
    for args in (["bind", "A", made["git_tree_sha1"], "--download-url", file_url,
                  "--sha256", made["sha256"]], ["add", "A", file_url, "-q"]):
        before = (repo / "Artifacts.toml").read_text() if args[0] == "add" else None
        err = run(args, repo, ok=False).stderr
        assert "looks committed" in err and "--allow-file-url" in err and "=True" not in err
        if before is None:
            assert not (repo / "Artifacts.toml").exists()
        else:
            assert (repo / "Artifacts.toml").read_text() == before
        run(args + ["--allow-file-url", "--force"], repo)
    assert tomllib.loads((repo / "Artifacts.toml").read_text())["A"]["download"][0]["url"] == \
        file_url
    run(["bind", "B", made["git_tree_sha1"], "--download-url", file_url, "--sha256",
         made["sha256"]], tmp_path)  # not in a work tree: a file:// URL is fine


def test_publish_archive_url_and_its_file_url_refusal(tmp_path, gobbler_factory):
    import artifacts_py.gobbler as gobbler

    gob = gobbler_factory()
    gobbler.create_project("pub", gob.staging, gob.url)
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "d").mkdir()
    (repo / "d" / "x.txt").write_text("x")
    args = ["publish", "X", "d", "--project", "pub", "--asset", "a", "--url", gob.url,
            "--archive", str(tmp_path / "x.tar.gz")]
    err = run(args + ["--version", "v1"], repo, ok=False).stderr
    assert "looks committed" in err and "--allow-file-url" in err
    assert gobbler.list_assets("pub", url=gob.url) == []  # refused before uploading
    public = "https://zenodo.org/records/1/files/x.tar.gz"
    err = run(["publish", "X", "d", "--project", "pub", "--asset", "a", "--version", "v1",
               "--url", gob.url, "--archive-url", public], repo, ok=False).stderr
    assert "--archive PATH" in err
    run(args + ["--version", "v1", "--archive-url", public, "-q"], repo)
    mirror = tomllib.loads((repo / "Artifacts.toml").read_text())["X"]["download"][0]
    assert mirror["url"] == public
    err = run(args + ["--version", "v1"], repo, ok=False).stderr
    assert "--force" in err and "force=True" not in err


def test_a_failing_tarball_mirror_reads_well(tmp_path, http_server):
    url = http_server.add("/gone.tar.gz", b"", status=404)
    (tmp_path / "Artifacts.toml").write_text(
        f'[X]\ngit-tree-sha1 = "{"1" * 40}"\n    [[X.download]]\n    url = "{url}"\n'
        f'    sha256 = "{"0" * 64}"\n')
    err = run(["fetch", "-q"], tmp_path, ok=False).stderr
    assert err.count(url) == 1 and "Sources tried: (1) " + url + ": HTTP 404" in err
    assert "could not fetch" not in err  # one name: its own error, not a summary of one


def test_publish_to_a_down_server_is_one_plain_line(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("x")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = run(["publish", "X", "d", "--project", "p", "--asset", "a", "--version", "v",
               "--url", f"http://127.0.0.1:{port}"], tmp_path, ok=False).stderr
    assert "Connection refused" in err and "check that the service is running" in err
    assert "Pool" not in err and "Max retries" not in err and "object at" not in err


def test_bind_refuses_a_missing_folder_and_speaks_cli(tmp_path):
    missing = tmp_path / "missing" / "dir" / "Artifacts.toml"
    err = run(["bind", "X", "1" * 40, "--toml", str(missing)], tmp_path, ok=False).stderr
    assert "does not exist" in err and not (tmp_path / "missing").exists()
    run(["bind", "X", "1" * 40], tmp_path)
    err = run(["bind", "X", "2" * 40], tmp_path, ok=False).stderr
    assert "pass --force" in err and "force=True" not in err
    err = run(["create", "nodir"], tmp_path, ok=False).stderr
    assert "`artifacts create`" in err and "create_artifact" not in err


def test_version_flag(tmp_path):
    from artifacts_py._version import __version__

    out = subprocess.run([*CLI, "-V"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"artifacts-py {__version__}"


def test_serve_help_lists_the_server_flags_and_serve_is_still_a_name(tmp_path):
    out = run(["serve", "--help"], tmp_path).stdout
    assert out.startswith("usage: artifacts serve") and "flags of artifacts-gobbler" in out
    assert "-port PORT" in out and "-registry REGISTRY" in out
    assert run(["help", "serve"], tmp_path).stdout == out
    run(["bind", "serve", "1" * 40], tmp_path)  # a name, not the command
    assert "serve" in run(["--toml", "Artifacts.toml", "status", "--json"], tmp_path).stdout
