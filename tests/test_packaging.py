"""Packaging: what the sdist and wheel carry, the wheel's metadata, that the
sdist's own tests are collected, and that the quick start cleans up.

The sdist and wheel are built once per module with ``python -m build`` (the
wheel from the sdist, as pip would) in a temporary folder.
"""

from __future__ import annotations

import email.message
import email.parser
import os
import re
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

import artifacts_py

ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT = 300  # seconds; the build installs setuptools into an isolated venv
COLLECT_TIMEOUT = 120
QUICKSTART_TIMEOUT = 120

@dataclass
class Dists:
    sdist: Path
    wheel: Path
    log: str  # python -m build's stdout and stderr


def _run(cmd: List[str], timeout: float, cwd: Optional[Path] = None,
         env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("not a source tree (no pyproject.toml next to tests/)")
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    done = _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], BUILD_TIMEOUT)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    return Dists(next(out.glob("*.tar.gz")), next(out.glob("*.whl")), log)


def _sdist_names(dists: Dists) -> Set[str]:
    with tarfile.open(dists.sdist) as tar:
        # Strip the top folder "artifacts_py-X.Y.Z/".
        return {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}


def _wheel_names(dists: Dists) -> Set[str]:
    with zipfile.ZipFile(dists.wheel) as whl:
        return set(whl.namelist())


def _metadata(dists: Dists) -> email.message.Message:
    with zipfile.ZipFile(dists.wheel) as whl:
        name = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(whl.read(name).decode("utf-8"))


def _repo_test_files() -> Set[str]:
    """Every file of tests/ a checkout has, caches aside."""
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".json")}


@pytest.mark.slow
def test_build_gives_no_deprecation_warning(dists: Dists) -> None:
    assert not re.search(r"deprecat", dists.log, re.IGNORECASE), dists.log


@pytest.mark.slow
def test_sdist_carries_tests_examples_and_license(dists: Dists) -> None:
    names = _sdist_names(dists)
    missing = _repo_test_files() - names
    assert not missing, f"tests/ files missing from the sdist: {sorted(missing)}"
    assert {"tests/conftest.py", "tests/data/treehash-vectors.json", "examples/quickstart.py",
            "artifacts_py/examples/quickstart.py", "artifacts_py/py.typed", "LICENSE",
            "scripts/pygobbler-conformance", "pyproject.toml"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


@pytest.mark.slow
def test_wheel_carries_package_examples_typing_and_license(dists: Dists) -> None:
    names = _wheel_names(dists)
    assert {"artifacts_py/py.typed", "artifacts_py/_version.py",
            "artifacts_py/examples/quickstart.py", "artifacts_py/examples/__init__.py"} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not [n for n in names if n.startswith(("tests/", "examples/"))]


@pytest.mark.slow
def test_wheel_metadata(dists: Dists) -> None:
    meta = _metadata(dists)
    assert meta["Version"] == artifacts_py.__version__  # one version string
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["License-Expression"] == "MIT"
    assert meta["License-File"] == "LICENSE"
    classifiers = meta.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # SPDX expression instead
    pythons = sorted((int(m.group(1)) for c in classifiers
                      if (m := re.fullmatch(r"Programming Language :: Python :: 3\.(\d+)", c))))
    assert pythons[0] == 11, "the oldest classifier must match Requires-Python"
    assert pythons == list(range(pythons[0], pythons[-1] + 1)), pythons
    # The interpreter running the tests is one the package claims.
    assert sys.version_info[1] in pythons, f"add a classifier for Python 3.{sys.version_info[1]}"
    urls: Dict[str, str] = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert urls and all(u.startswith("https://") for u in urls.values())


@pytest.mark.slow
def test_pytest_collects_from_the_unpacked_sdist(dists: Dists, tmp_path: Path) -> None:
    with tarfile.open(dists.sdist) as tar:
        if hasattr(tarfile, "data_filter"):  # 3.11.4+; without it 3.12+ warn
            tar.extractall(tmp_path, filter="data")
        else:
            tar.extractall(tmp_path)
    (src,) = tmp_path.iterdir()
    env = {**os.environ, "PYTHONPATH": str(src)}  # the sdist's package, not the checkout's
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    done = _run(cmd, COLLECT_TIMEOUT, cwd=src, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    collected = re.search(r"^(\d+) tests? collected", done.stdout, re.MULTILINE)
    assert collected, done.stdout
    here = _run(cmd, COLLECT_TIMEOUT, cwd=ROOT)
    assert here.returncode == 0, here.stdout + here.stderr
    assert collected.group(0) in here.stdout, "the sdist collects fewer tests than the checkout"


# --- The quick start (README): own depot, nothing left behind --------------


@pytest.fixture
def bare_env(tmp_path: Path) -> Dict[str, str]:
    """An environment with an empty TMPDIR and HOME and none of our variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ARTIFACTS_PY_") and k != "XDG_CACHE_HOME"}
    env.update(TMPDIR=str(tmp_path / "tmp"), HOME=str(tmp_path / "home"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    (tmp_path / "tmp").mkdir()
    (tmp_path / "home").mkdir()
    return env


def _assert_nothing_left(env: Dict[str, str]) -> None:
    assert not os.listdir(env["TMPDIR"]), "the quick start left files in TMPDIR"
    assert not os.listdir(env["HOME"]), "the quick start wrote into HOME (the user's cache)"


def _server_url(stdout: str) -> str:
    match = re.search(r"Gobbler server at (http://\S+)", stdout)
    assert match, stdout
    return match.group(1)


def _refused(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/info", timeout=5)
    except urllib.error.URLError as e:
        return isinstance(e.reason, ConnectionRefusedError)
    return False


def test_quickstart_module_runs_and_leaves_nothing(bare_env: Dict[str, str]) -> None:
    done = _run([sys.executable, "-m", "artifacts_py.examples.quickstart"], QUICKSTART_TIMEOUT,
                env=bare_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verified: " in done.stdout and "cleaned up" in done.stdout
    assert _refused(_server_url(done.stdout))
    _assert_nothing_left(bare_env)


@pytest.mark.skipif(not (ROOT / "examples" / "quickstart.py").is_file(), reason="no examples/")
def test_quickstart_script_cleans_up_on_error(bare_env: Dict[str, str]) -> None:
    # Offline mode makes the first REST call fail after the server started
    # (every HTTP request is refused offline, even to loopback): the folder,
    # the depots and the server must go.
    env = {**bare_env, "ARTIFACTS_PY_OFFLINE": "1"}
    done = _run([sys.executable, str(ROOT / "examples" / "quickstart.py")], QUICKSTART_TIMEOUT,
                env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1. Gobbler server at" in done.stdout
    assert done.stderr.startswith("quick start failed: ") and "ARTIFACTS_PY_OFFLINE" in done.stderr
    assert "Traceback" not in done.stderr
    assert _refused(_server_url(done.stdout))
    _assert_nothing_left(env)
