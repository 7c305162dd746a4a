"""What a terminal shows: progress that moves per chunk, stage labels, retries.

Each test runs the real command with stderr on a pseudo-terminal and reads
it while the command runs; the same commands off a terminal show no bar.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from cli_helpers import CLI, Terminal, run, served_tarball

from artifacts_py import create_artifact

BIG = 4 << 20
# One drawing of a tqdm bar partway: percent, bytes done/total, elapsed<ETA, rate.
PARTWAY = (r"Big: +([1-9]\d?)%\|[^|]*\| *[\d.]+[kM]?/4\.00M "
           r"\[\d\d:\d\d<\d\d:\d\d, *[\d.]+[kM]?B/s\]")


def _gobbler_version_over_rest(http_server, tmp_path: Path) -> Path:
    """One version with one 4 MiB file, served with Gobbler's REST layout by a server that
    first answers 503 (Retry-After), then stalls after 1 MiB until released."""
    data = os.urandom(BIG)
    src = tmp_path / "big"
    src.mkdir()
    (src / "big.bin").write_bytes(data)
    tree = create_artifact(src)["git_tree_sha1"]
    base = "/fetch/demo/big/v1"
    http_server.add(f"{base}/..manifest", json.dumps(
        {"big.bin": {"size": BIG, "md5sum": hashlib.md5(data).hexdigest()}}).encode())
    http_server.add(f"{base}/big.bin", data, fail_first=1, status=503, retry_after=1,
                    stall_after=1 << 20, stall_first=2)
    toml = tmp_path / "Artifacts.toml"
    toml.write_text(f'[Big]\ngit-tree-sha1 = "{tree}"\n    [Big.gobbler]\n    project = "demo"\n'
                    f'    asset = "big"\n    version = "v1"\n    url = "{http_server.base_url}"\n')
    return toml


def test_one_large_file_moves_per_chunk_with_rate_and_eta(http_server, tmp_path):
    toml = _gobbler_version_over_rest(http_server, tmp_path)
    term = Terminal([*CLI, "fetch", "--toml", str(toml)], dict(os.environ))
    term.expect(r"retrying \(1/5\): HTTP 503")  # shown without -v, on a terminal
    partway = term.expect(PARTWAY)  # drawn while the file is still arriving
    assert 1 <= int(partway.group(1)) < 100
    http_server.released.set()  # the stalled body ends; the download resumes with Range
    rc, shown, out = term.finish()
    assert rc == 0, shown
    assert "Big\t" in out and http_server.requests[-1].headers.get("Range") == "bytes=1048576-"

    # Not a terminal: no bar, no retry line.
    quiet = subprocess.run([*CLI, "fetch", "--force", "--toml", str(toml)], capture_output=True,
                           text=True, timeout=60)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_a_tarball_shows_its_unpacking_stage(http_server, tmp_path):
    url = served_tarball(http_server, tmp_path, "s", {"f.bin": os.urandom(1 << 20)})["url"]
    term = Terminal([*CLI, "add", "S", url, "--toml", str(tmp_path / "Artifacts.toml")],
                    dict(os.environ))
    rc, shown, _out = term.finish()
    assert rc == 0, shown
    assert "unpacking s.tar.gz" in shown  # it streams: downloading and unpacking at once


def _refused_url() -> str:
    with socket.socket() as s:  # a port nothing listens on (bound, then freed)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/x.tar.gz"


def test_a_refused_connection_fails_fast_and_says_it_retries(tmp_path):
    url = _refused_url()
    started = time.monotonic()
    term = Terminal([*CLI, "add", "X", url, "--toml", str(tmp_path / "Artifacts.toml")],
                    dict(os.environ))
    rc, shown, _out = term.finish()
    elapsed = time.monotonic() - started
    assert rc == 1
    assert "retrying (1/2): connection refused" in shown and "retrying (2/2)" in shown
    assert "retrying (3/" not in shown
    assert elapsed < 15, f"{elapsed:.1f} s"  # was 15 s of silent retries
    err = run(["add", "X", url], tmp_path, ok=False).stderr  # off a terminal: just the error
    assert "Connection refused" in err and err.count(url) == 1
    rc, shown, _out = Terminal([*CLI, "-q", "add", "X", url], dict(os.environ),
                               cwd=tmp_path).finish()
    assert rc == 1 and "retrying" not in shown and "Connection refused" in shown


def test_add_artifact_in_python_draws_a_bar_only_on_a_terminal(http_server, tmp_path):
    url = served_tarball(http_server, tmp_path, "s", {"f.bin": os.urandom(1 << 20)})["url"]
    code = ("import sys; from artifacts_py import add_artifact; "
            "add_artifact(sys.argv[1], 'S', sys.argv[2])")
    piped = subprocess.run([sys.executable, "-c", code, str(tmp_path / "A.toml"), url],
                           capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and piped.stderr == ""
    (tmp_path / "depot2").mkdir()
    env = {**os.environ, "ARTIFACTS_PY_DEPOT_PATH": str(tmp_path / "depot2")}
    rc, shown, _out = Terminal([sys.executable, "-c", code, str(tmp_path / "B.toml"), url],
                               env).finish()
    assert rc == 0 and "unpacking s.tar.gz" in shown
