"""The gypsum story in one run, on the embedded gypsum service with its local store.

1. start ``artifacts-gypsum`` on a local store, with a local GitHub API stand-in
   for identities (an administrator and a project owner, each with a token),
2. create a project, 3. publish a folder to it and bind it in an Artifacts.toml,
4. pin the latest version under a second name,
5. resolve it with ``artifact()`` from a fresh depot,
6. publish a second version, 7. show ``outdated``, 8. ``update`` the pins.

Everything lives in one temporary folder, depots included (the user's own
cache is never touched), and is removed at the end, also on error.

Run: ``python -m artifacts_py.examples.gypsum_quickstart`` (after ``pip install
artifacts-py``), or ``python examples/gypsum_quickstart.py`` in a clone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Tuple

import artifacts_py
from artifacts_py import gypsum, updates
from artifacts_py.servers.gypsum.github_local import GitHubStandIn

ADMIN_TOKEN, OWNER_TOKEN = "demo-admin-token", "demo-owner-token"
# Our variables, set for the run and restored afterwards.
_ENV = ("ARTIFACTS_PY_DEPOT_PATH", "ARTIFACTS_PY_GYPSUM_URL", "GYPSUM_TOKEN")


@contextlib.contextmanager
def _scratch() -> Iterator[Tuple[Path, str]]:
    """A temporary work folder and the identity service's URL; on exit the services
    stop, the folder and our env go."""
    saved = {var: os.environ.get(var) for var in _ENV}
    work = Path(tempfile.mkdtemp(prefix="artifacts-gypsum-quickstart-"))
    github = GitHubStandIn()
    try:
        github.add_user(ADMIN_TOKEN, "demo-admin")
        github.add_user(OWNER_TOKEN, "demo-owner")
        os.environ["ARTIFACTS_PY_DEPOT_PATH"] = str(work / "depot")
        yield work, github.url
    finally:
        gypsum.stop_gypsum()
        github.close()
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        shutil.rmtree(work, ignore_errors=True)


def _folder(root: Path, rows: str) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "matrix.csv").write_text("gene,cell1,cell2\n" + rows)
    (root / "sub" / "README.txt").write_text("Toy counts for the gypsum quick start.\n")
    return root


def run(work: Path, github_api: str) -> Path:
    """Run the quick start inside ``work``; returns the verified artifact path."""
    store = work / "store"
    store.mkdir()
    url = gypsum.start_gypsum(store=str(store), admin="demo-admin", github_api=github_api)
    print(f"1. gypsum service at {url} (local store {store})")

    gypsum.create_project("demo", owners=["demo-owner"], url=url, token=ADMIN_TOKEN)
    print("2. created project 'demo', owned by demo-owner")

    os.environ["GYPSUM_TOKEN"] = OWNER_TOKEN  # the owner publishes from here on
    toml = work / "Artifacts.toml"
    v1 = _folder(work / "counts-v1", "A,1,0\nB,3,7\n")
    pub = artifacts_py.publish_artifact(toml, "Counts", v1, project="demo", asset="counts",
                                        version="v1", url=url, gypsum=True)
    print(f"3. published demo/counts/v1, git-tree-sha1 {pub['git_tree_sha1']}")

    pinned = artifacts_py.add_artifact(toml, "CountsLatest", project="demo", asset="counts",
                                       url=url, gypsum=True, verbose=False)
    print(f"4. pinned the latest version ({pinned['version']}) as CountsLatest")
    print("   Artifacts.toml:\n" + "".join("     " + line
                                           for line in toml.read_text().splitlines(True)))

    os.environ["ARTIFACTS_PY_DEPOT_PATH"] = str(work / "depot-fresh")
    path = artifacts_py.artifact("Counts", toml)
    assert artifacts_py.verify_artifact(pub["git_tree_sha1"])
    print(f"5. resolved from gypsum into {path}")

    v2 = _folder(work / "counts-v2", "A,1,0\nB,3,7\nC,2,2\n")
    artifacts_py.publish_artifact(work / "v2.toml", "Counts", v2, project="demo",
                                  asset="counts", version="v2", url=url, gypsum=True)
    print("6. published demo/counts/v2 (sub/README.txt deduplicated into a link to v1)")

    behind = updates.outdated(toml)
    print("7. artifacts outdated:")
    for pin in behind:
        print(f"     {pin.name}: {pin.backend} {pin.pinned} -> {pin.latest}")

    for done in updates.update(toml):
        print(f"8. updated {done.name}: {done.old_version} -> {done.new_version} "
              f"({done.old_tree[:12]} -> {(done.new_tree or '')[:12]})")
    path = artifacts_py.artifact("Counts", toml)
    assert (path / "matrix.csv").read_text().endswith("C,2,2\n")
    assert updates.outdated(toml) == []
    print(f"verified: {path}")
    return path


def main() -> int:
    """Run the quick start in a temporary folder and remove it afterwards; the exit status."""
    try:
        with _scratch() as (work, github_api):
            run(work, github_api)
    except artifacts_py.ArtifactError as e:
        print(f"gypsum quick start failed: {e}", file=sys.stderr)
        return 1
    print("cleaned up: services stopped, temporary store and depots removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
