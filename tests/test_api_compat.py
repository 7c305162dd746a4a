"""Every call in fetch-artifacts' README works unchanged when imported from artifacts_py.

The calls below are copied from the README (same arguments, same keywords),
with URLs pointing at a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import artifacts_py
from artifacts_py import depot


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A working directory with a folder of data, as in the README's examples."""
    data = tmp_path / "path" / "to" / "data"
    (data / "sub").mkdir(parents=True)
    (data / "data.csv").write_text("a,b\n1,2\n")
    (data / "sub" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (data / "sub" / "run.sh").chmod(0o755)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    depot.set_cache_dir(None)  # set_cache_dir is process-wide


def test_readme_create_bind_artifact_exists_clear(project, http_server):
    from artifacts_py import artifact, artifact_exists, bind_artifact, clear_artifact_cache, create_artifact

    # 3. Create and publish artifacts
    result = create_artifact(
        directory="path/to/data",
        archive_path="output.tar.xz",
        compression="xz"
    )
    assert set(result) == {"git_tree_sha1", "sha256", "archive_path"}
    assert result["git_tree_sha1"] == artifacts_py.compute_git_tree_sha1("path/to/data")
    assert result["sha256"] == artifacts_py.compute_sha256("output.tar.xz")
    url = http_server.add("/artifact.tar.xz", Path("output.tar.xz").read_bytes())

    bind_artifact(
        toml_path="Artifacts.toml",
        name="MyArtifact",
        git_tree_sha1=result['git_tree_sha1'],
        download_url=url,
        sha256=result['sha256']
    )
    data = tomllib.loads(Path("Artifacts.toml").read_text())
    assert data["MyArtifact"]["download"] == [{"url": url, "sha256": result["sha256"]}]

    # 2. Load artifacts in Python (found in the working directory)
    assert not artifact_exists("MyArtifact")
    dataset_path = artifact("MyArtifact")
    assert isinstance(dataset_path, Path)
    assert (dataset_path / "data.csv").read_text() == "a,b\n1,2\n"
    assert (dataset_path / "sub" / "run.sh").stat().st_mode & 0o100
    assert artifact("MyArtifact") == dataset_path and http_server.count("/artifact.tar.xz", "GET") == 1

    # Check if artifact exists / Clear cache
    if artifact_exists("MyArtifact"):
        clear_artifact_cache("MyArtifact")  # Clear specific artifact
    assert not artifact_exists("MyArtifact") and not dataset_path.exists()
    artifact("MyArtifact")
    assert http_server.count("/artifact.tar.xz", "GET") == 2
    clear_artifact_cache()              # Clear all artifacts
    assert not artifact_exists("MyArtifact")


def test_readme_add_artifact(project, http_server):
    from artifacts_py import add_artifact, artifact, create_artifact

    made = create_artifact("path/to/data", "data.tar.xz", "xz")
    url = http_server.add("/records/12345/files/data.tar.xz", Path("data.tar.xz").read_bytes())

    # 4. Add existing remote files
    out = add_artifact(
        toml_path="Artifacts.toml",
        name="RemoteDataset",
        tarball_url=url
    )
    assert {"git_tree_sha1", "sha256", "url"} <= set(out)  # fetch-artifacts' keys
    assert (out["git_tree_sha1"], out["sha256"], out["url"]) == (made["git_tree_sha1"], made["sha256"], url)
    entry = tomllib.loads(Path("Artifacts.toml").read_text())["RemoteDataset"]
    assert entry["git-tree-sha1"] == made["git_tree_sha1"]
    assert entry["download"][0] == {"url": url, "sha256": made["sha256"]}
    # The tree is already in the depot: resolving does not download again.
    assert (artifact("RemoteDataset") / "data.csv").is_file()
    assert http_server.count("/records/12345/files/data.tar.xz", "GET") == 1


def test_readme_set_cache_dir(project, http_server, tmp_path):
    from artifacts_py import artifact, bind_artifact, create_artifact, set_cache_dir

    r = create_artifact("path/to/data", "d.tar.gz")
    bind_artifact("Artifacts.toml", "D", r["git_tree_sha1"],
                  http_server.add("/d.tar.gz", Path("d.tar.gz").read_bytes()), r["sha256"])
    set_cache_dir(str(tmp_path / "path" / "to" / "cache"))
    assert artifacts_py.get_cache_dir() == tmp_path / "path" / "to" / "cache"
    assert artifact("D").parent == tmp_path / "path" / "to" / "cache" / "artifacts"


def test_readme_custom_metadata(project):
    from artifacts_py import load_artifacts

    Path("Artifacts.toml").write_text(f"""
[MyEmulator]
git-tree-sha1 = "{'ab' * 20}"
description = "Neural network emulator for cosmology"
version = "2.0"

    [[MyEmulator.download]]
    url = "https://zenodo.org/records/12345/files/emulator.tar.xz"
    sha256 = "{'de' * 32}"
""")
    manager = load_artifacts("Artifacts.toml")
    metadata = manager.artifacts["MyEmulator"].metadata
    assert metadata["description"] == "Neural network emulator for cosmology"
    assert metadata["version"] == "2.0"
    assert "MyEmulator" in manager and not manager.exists("MyEmulator")


def test_readme_multiple_mirrors_fall_back(project, http_server):
    """The README's format section: a second [[download]] is a fallback mirror."""
    from artifacts_py import artifact, create_artifact

    r = create_artifact("path/to/data", "x.tar.xz", "xz")
    broken = http_server.add("/primary.tar.xz", b"", status=404)
    good = http_server.add("/mirror.tar.xz", Path("x.tar.xz").read_bytes())
    Path("Artifacts.toml").write_text(f"""
[ArtifactName]
git-tree-sha1 = "{r['git_tree_sha1']}"  # Content hash (required)

    [[ArtifactName.download]]
    url = "{broken}"
    sha256 = "{r['sha256']}"

    [[ArtifactName.download]]  # Optional fallback mirror
    url = "{good}"
    sha256 = "{r['sha256']}"
""")
    assert (artifact("ArtifactName") / "data.csv").is_file()


# fetch_artifacts.__all__ of fetch-artifacts 0.1.0, the release we are a drop-in for.
FETCH_ARTIFACTS_ALL = [
    "artifact", "artifact_exists", "load_artifacts", "ArtifactManager", "get_artifacts_toml",
    "set_cache_dir", "get_cache_dir", "clear_artifact_cache", "add_artifact", "bind_artifact",
    "unbind_artifact", "create_artifact", "add_download_source", "compute_sha256",
    "compute_git_tree_sha1", "query_artifact_info",
]


def test_public_names_match_fetch_artifacts():
    missing = [n for n in FETCH_ARTIFACTS_ALL if not callable(getattr(artifacts_py, n, None))]
    assert missing == []
