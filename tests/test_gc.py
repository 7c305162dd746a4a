"""Garbage collection of the first depot, driven by recorded Artifacts.toml usage."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from artifacts_py import depot, overrides, store, usage
from core_helpers import persist
from artifacts_py.binding import bind_artifact
from artifacts_py.core import artifact
from artifacts_py.errors import ArtifactsTomlError
from artifacts_py.gc import collect_garbage, parse_size, used_hashes


def install(content: bytes) -> str:
    """Install a one-file tree in the first depot; return its hash."""
    return persist(lambda tmp: (tmp / "data.bin").write_bytes(content) and None).name


def installed() -> set:
    return set(depot.installed_hashes())


def age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_removes_unused_keeps_bound_and_resolved(tmp_path):
    bound, resolved, unused = install(b"bound"), install(b"resolved"), install(b"unused" * 100)
    bind_artifact(tmp_path / "a" / "Artifacts.toml", "Bound", bound)  # bind records usage
    other = tmp_path / "b" / "Artifacts.toml"
    other.parent.mkdir()
    other.write_text(f'[R]\ngit-tree-sha1 = "{resolved}"\n')
    assert artifact("R", other) == depot.artifacts_dir() / resolved  # resolution records usage

    report = collect_garbage()
    assert [r["hash"] for r in report.removed] == [unused]
    assert report.freed_bytes == 600
    assert installed() == {bound, resolved}
    assert sorted(k["hash"] for k in report.kept) == sorted([bound, resolved])
    assert not any(n.startswith(".tmp-") for n in os.listdir(depot.artifacts_dir()))


def test_dry_run_removes_nothing(tmp_path):
    unused = install(b"x")
    report = collect_garbage(dry_run=True)
    assert report.dry_run and [r["hash"] for r in report.removed] == [unused]
    assert installed() == {unused}
    assert report.as_dict()["freed_bytes"] == 1


def test_every_platform_variant_of_a_used_name_is_kept(tmp_path, monkeypatch):
    linux, mac, stale = install(b"linux"), install(b"mac"), install(b"stale")
    p = tmp_path / "Artifacts.toml"
    bind_artifact(p, "Lib", linux, platform={"os": "linux", "arch": "x86_64"})
    bind_artifact(p, "Lib", mac, platform={"os": "macos", "arch": "aarch64"})
    monkeypatch.setenv("ARTIFACTS_PY_PLATFORM", "x86_64-linux-gnu")
    collect_garbage()
    assert installed() == {linux, mac}
    assert stale not in installed()


def test_malformed_entry_still_protects_its_tree(tmp_path):
    kept = install(b"kept")
    p = tmp_path / "Artifacts.toml"
    bind_artifact(p, "Good", install(b"good"))
    with open(p, "a") as f:  # an entry that does not validate (bad gobbler table)
        f.write(f'\n[Odd]\ngit-tree-sha1 = "{kept.upper()}"\n[Odd.gobbler]\nproject = "."\n')
    collect_garbage()
    assert kept in installed()


def test_deleted_toml_is_forgotten_and_its_trees_go(tmp_path):
    h = install(b"gone")
    p = tmp_path / "Artifacts.toml"
    bind_artifact(p, "G", h)
    p.unlink()
    report = collect_garbage()
    assert report.forgotten_tomls == [str(p)]
    assert h not in installed()
    assert usage.recorded_tomls() == []


def test_unreadable_toml_aborts_without_removing(tmp_path):
    h = install(b"x")
    p = tmp_path / "Artifacts.toml"
    bind_artifact(p, "X", install(b"y"))
    p.write_text("[broken\n")
    with pytest.raises(ArtifactsTomlError) as info:
        collect_garbage()
    assert str(p) in str(info.value) and "nothing was removed" in str(info.value)
    assert h in installed()


def test_read_only_depots_later_in_the_stack_are_never_touched(tmp_path, monkeypatch, isolated_depot):
    shared = tmp_path / "shared"
    (shared / "artifacts").mkdir(parents=True)
    foreign = "f" * 40
    (shared / "artifacts" / foreign).mkdir()
    (shared / "artifacts" / foreign / "f").write_text("x")
    old_tmp = shared / "artifacts" / ".tmp-crashed"
    old_tmp.mkdir()
    age(old_tmp, 10 * 86400)
    monkeypatch.setenv("ARTIFACTS_PY_DEPOT_PATH", os.pathsep.join([str(isolated_depot), str(shared)]))
    mine = install(b"mine")
    report = collect_garbage()
    assert [r["hash"] for r in report.removed] == [mine]
    assert (shared / "artifacts" / foreign / "f").read_text() == "x"
    assert old_tmp.is_dir()


def test_max_size_evicts_the_oldest_used_trees(tmp_path):
    p = tmp_path / "Artifacts.toml"
    hashes = [install(bytes([i]) * 1000) for i in range(3)]  # 1000 bytes each
    for i, h in enumerate(hashes):
        bind_artifact(p, f"A{i}", h)
        age(depot.artifacts_dir() / h, (3 - i) * 3600)  # A0 oldest, A2 newest
    report = collect_garbage(max_size=2500)
    assert [r["hash"] for r in report.removed] == [hashes[0]]
    assert installed() == set(hashes[1:])
    report = collect_garbage(max_size=0, dry_run=True)
    assert [r["hash"] for r in report.removed] == hashes[1:]
    assert installed() == set(hashes[1:])


def test_old_temp_leftovers_are_reaped_young_ones_kept():
    adir = depot.artifacts_dir()
    adir.mkdir(parents=True)
    old_dir, young_dir = adir / ".tmp-old", adir / ".tmp-young"
    old_dl, young_dl = adir / ".download-old", adir / ".download-young"
    for d in (old_dir, young_dir):
        d.mkdir()
        (d / "part").write_text("half")
    for f in (old_dl, young_dl):
        f.write_bytes(b"partial")
    age(old_dir, store.TEMP_GRACE_SECONDS + 60)
    age(old_dl, store.TEMP_GRACE_SECONDS + 60)

    dry = collect_garbage(dry_run=True)
    assert sorted(dry.temp_removed) == sorted([str(old_dir), str(old_dl)])
    assert old_dir.exists() and old_dl.exists()
    collect_garbage()
    assert not old_dir.exists() and not old_dl.exists()
    assert young_dir.is_dir() and young_dl.is_file()


def test_override_target_is_kept(tmp_path):
    target = install(b"target")
    p = tmp_path / "Artifacts.toml"
    pinned = "e" * 40
    bind_artifact(p, "O", pinned)
    (depot.artifacts_dir() / "Overrides.toml").write_text(f'{pinned} = "{target}"\n')
    overrides.load_overrides(force=True)
    assert used_hashes() == {pinned}
    collect_garbage()
    assert target in installed()


@pytest.mark.parametrize("text, n", [("1000", 1000), ("1K", 1024), ("1.5M", 3 << 19),
                                     ("2GiB", 2 << 30), ("10g", 10 << 30), ("0", 0)])
def test_parse_size(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["", "ten", "-1G", "5Q", "1..2"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_a_julia_depot_first_in_the_stack_keeps_what_julia_uses(tmp_path):
    julia_used, unused = install(b"julia"), install(b"unused")
    project = tmp_path / "MyPkg" / "Artifacts.toml"
    project.parent.mkdir()
    project.write_text(f'[[Lib]]\nos = "linux"\narch = "x86_64"\ngit-tree-sha1 = "{julia_used}"\n')
    log = depot.get_cache_dir() / "logs" / "artifact_usage.toml"
    log.parent.mkdir(parents=True)
    log_text = (f'"{project}" = [{{time = 2025-01-01T10:00:00Z}}]\n'
                f'"{tmp_path / "Gone" / "Artifacts.toml"}" = [{{time = 2024-01-01T10:00:00Z}}]\n')
    log.write_text(log_text)
    collect_garbage()
    assert installed() == {julia_used}
    assert log.read_text() == log_text  # Julia's log is read, never rewritten
