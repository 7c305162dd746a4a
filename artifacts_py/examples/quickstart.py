"""The whole artifacts-py story on the embedded Gobbler server, in one run.

1. start the Gobbler-compatible server (registry and staging in a temporary folder),
2. create a project, 3. publish a folder and bind it in an Artifacts.toml,
4. pin the latest version of the same asset under a second name,
5. resolve it with ``artifact()`` from a fresh depot over the REST API,
6. and again from the mounted registry, then print the verified path.

Everything lives in one temporary folder, depots included (the user's own
cache is never touched), and is removed at the end, also on error.

Run: ``python -m artifacts_py.examples.quickstart`` (after ``pip install artifacts-py``),
or ``python examples/quickstart.py`` in a clone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import artifacts_py
from artifacts_py import gobbler

# Our variables, set for the run and restored afterwards.
_ENV = ("ARTIFACTS_PY_DEPOT_PATH", "ARTIFACTS_PY_GOBBLER_REGISTRY", "ARTIFACTS_PY_GOBBLER_URL")


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    """A temporary work folder; on exit the server stops, the folder and our env go."""
    saved = {var: os.environ.get(var) for var in _ENV}
    work = Path(tempfile.mkdtemp(prefix="artifacts-quickstart-"))
    try:
        os.environ["ARTIFACTS_PY_DEPOT_PATH"] = str(work / "depot")
        yield work
    finally:
        gobbler.stop_gobbler()
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path) -> Path:
    """Run the quick start inside ``work``; returns the verified artifact path."""
    staging, registry = work / "staging", work / "registry"
    staging.mkdir()
    registry.mkdir()
    _, _, _, url = gobbler.start_gobbler(staging=str(staging), registry=str(registry))
    print(f"1. Gobbler server at {url} (registry {registry})")

    gobbler.create_project("demo", staging=str(staging), url=url)
    print("2. created project 'demo'")

    data = work / "counts"
    (data / "sub").mkdir(parents=True)
    (data / "matrix.csv").write_text("gene,cell1,cell2\nA,1,0\nB,3,7\n")
    (data / "sub" / "README.txt").write_text("Toy counts for the quick start.\n")
    toml = work / "Artifacts.toml"
    pub = artifacts_py.publish_artifact(toml, "Counts", data, project="demo", asset="counts",
                                        version="v1", url=url)
    print(f"3. published demo/counts/v1, git-tree-sha1 {pub['git_tree_sha1']}")

    pinned = artifacts_py.add_artifact(toml, "CountsLatest", project="demo", asset="counts",
                                       url=url, verbose=False)
    print(f"4. pinned the latest version ({pinned['version']}) as CountsLatest")
    print("   Artifacts.toml:\n" + "".join("     " + line for line in toml.read_text().splitlines(True)))

    # A fresh depot, and no registry path: the artifact comes over REST.
    os.environ["ARTIFACTS_PY_DEPOT_PATH"] = str(work / "depot-rest")
    os.environ["ARTIFACTS_PY_GOBBLER_REGISTRY"] = str(work / "not-mounted-here")
    rest_path = artifacts_py.artifact("Counts", toml)
    print(f"5. resolved over REST into {rest_path}")

    # Another fresh depot with the registry mounted: files are copied in place.
    os.environ["ARTIFACTS_PY_DEPOT_PATH"] = str(work / "depot-mounted")
    os.environ["ARTIFACTS_PY_GOBBLER_REGISTRY"] = str(registry)
    os.environ["ARTIFACTS_PY_GOBBLER_URL"] = "http://127.0.0.1:9"  # unreachable: proves no HTTP
    path = artifacts_py.artifact("Counts", toml)
    assert artifacts_py.verify_artifact(pub["git_tree_sha1"])
    assert (path / "matrix.csv").read_text() == (rest_path / "matrix.csv").read_text()
    print(f"6. resolved from the mounted registry into {path}")
    print(f"verified: {path}")
    return path


def main() -> int:
    """Run the quick start in a temporary folder and remove it afterwards; the exit status."""
    try:
        with _scratch() as work:
            run(work)
    except artifacts_py.ArtifactError as e:
        print(f"quick start failed: {e}", file=sys.stderr)
        return 1
    print("cleaned up: server stopped, temporary registry, staging and depots removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
