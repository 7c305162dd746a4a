"""The whole artifacts-py story on the embedded Gobbler server, in one run.

1. start the Gobbler-compatible server (temporary registry and staging),
2. create a project, 3. publish a folder and bind it in an Artifacts.toml,
4. pin the latest version of the same asset under a second name,
5. resolve it with ``artifact()`` from a fresh depot over the REST API,
6. and again from the mounted registry, then print the verified path.

Run: ``python examples/quickstart.py`` (after ``pip install .``).
"""

import os
import tempfile
from pathlib import Path

import artifacts_py
from artifacts_py import gobbler


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="artifacts-quickstart-"))
    _, staging, registry, url = gobbler.start_gobbler()
    print(f"1. Gobbler server at {url} (registry {registry})")

    gobbler.create_project("demo", staging=staging, url=url)
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
    os.environ["ARTIFACTS_PY_GOBBLER_REGISTRY"] = registry
    os.environ["ARTIFACTS_PY_GOBBLER_URL"] = "http://127.0.0.1:9"  # unreachable: proves no HTTP
    path = artifacts_py.artifact("Counts", toml)
    assert artifacts_py.verify_artifact(pub["git_tree_sha1"])
    assert (path / "matrix.csv").read_text() == (rest_path / "matrix.csv").read_text()
    print(f"6. resolved from the mounted registry into {path}")
    print(f"verified: {path}")
    gobbler.stop_gobbler()


if __name__ == "__main__":
    main()
