#!/usr/bin/env python3
"""Warm ``artifact()`` hits: artifacts-py vs fetch-artifacts vs pooch.

Run from the repository root (peers: ``pip install -e .[bench]``)::

    python benchmarks/bench_warm.py            # full
    python benchmarks/bench_warm.py --quick    # smoke run

Setup: an artifact ``X`` (one 10 MiB random file plus two small ones) packed
with ``create_artifact``, served from loopback, bound in an Artifacts.toml and
installed once by every tool; the server is then stopped, so every timed hit
is provably offline.

(a) in-process, per call (median of 7 batches, up to 100,000 calls a batch):
    ``artifacts_py.artifact("X", toml)``, ``fetch_artifacts.artifact("X", toml)``
    (a marker-file check), ``pooch.retrieve(url, known_hash=sha256)`` on the
    cached 10 MiB file (pooch re-hashes it every time) and with
    ``known_hash=None``. Target: ours < 10 µs.

(b) fresh process, ``python -c "..."`` for each tool plus the baselines
    ``python -c pass`` and ``python -c "import tomllib"``; 30 interleaved
    rounds, median. Ours runs twice: with ``ARTIFACTS_PY_DEPOT_PATH`` set and
    with the default depot (HOME is a temp dir holding a pre-installed
    artifact). Target: ours within 1.15x of ``import tomllib``. Then
    ``python -X importtime`` shows which imports the ours commands add on top
    of the baseline (median self time over 7 runs).

Every figure is a median; the load average is printed under each table.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

TARGET_HIT = 10e-6
TARGET_FRESH = 1.15
BIG = 10 << 20
NAME = "X"


def build(root: Path, base_url: str, toml: Path) -> Dict[str, str]:
    """The artifact, its tarball and the single file pooch fetches."""
    src = root / "src"
    src.mkdir()
    common.write_random(src / "data.bin", BIG)
    (src / "README").write_text("warm-hit benchmark artifact\n")
    (src / "sub").mkdir()
    (src / "sub" / "small.txt").write_text("x" * 1000)
    www = root / "www"
    info = common.pack_and_bind(src, www, toml, NAME, base_url)
    os.link(src / "data.bin", www / "data.bin")
    from artifacts_py import compute_sha256

    info["file_url"] = f"{base_url}/data.bin"
    info["file_sha256"] = compute_sha256(src / "data.bin")
    return info


def install_everything(root: Path, toml: Path, info: Dict[str, str], home: Path) -> None:
    """Install with each tool once, in-process and in the fresh-process homes."""
    import artifacts_py

    os.environ["ARTIFACTS_PY_DEPOT_PATH"] = str(root / "depot")
    got = artifacts_py.artifact(NAME, toml)
    assert got.name == info["git_tree_sha1"], got
    if common.have_peer("fetch_artifacts"):
        import fetch_artifacts

        fetch_artifacts.set_cache_dir(root / "fa-cache")
        fetch_artifacts.artifact(NAME, toml)
    if common.have_peer("pooch"):
        import pooch

        pooch.get_logger().setLevel("WARNING")
        pooch.retrieve(info["file_url"], known_hash=f"sha256:{info['file_sha256']}",
                       fname="data.bin", path=root / "pooch")
    # The default depot and ~/.fetch_artifacts of the fresh processes, under HOME.
    env = default_env(home)
    for code in (ours_code(), *([fa_code()] if common.have_peer("fetch_artifacts") else [])):
        subprocess.run([common.python(), "-c", code], env=env, cwd=toml.parent, check=True)
    depot = home / ".cache" / "artifacts-py" / "artifacts" / info["git_tree_sha1"]
    assert depot.is_dir(), f"default depot not where expected: {depot}"


def default_env(home: Path) -> Dict[str, str]:
    """No artifacts-py/XDG variables, HOME in the workdir: the default depot is fresh.

    Byte-code caching is on (as for users; this sandbox sets
    PYTHONDONTWRITEBYTECODE), with the .pyc files under the workdir so the
    repository is not touched; the priming run writes them.
    """
    env = common.python_env(HOME=str(home), XDG_CACHE_HOME=None, ARTIFACTS_PY_DEPOT_PATH=None,
                            PYTHONDONTWRITEBYTECODE=None,
                            PYTHONPYCACHEPREFIX=str(home.parent / "pycache"))
    for key in list(env):
        if key.startswith("ARTIFACTS_PY_"):
            del env[key]
    return env


def ours_code(toml: str = "Artifacts.toml") -> str:
    return f"import artifacts_py; artifacts_py.artifact({NAME!r}, {toml!r})"


def big_toml(toml: Path) -> Path:
    """A 1,000-entry Artifacts.toml binding X among 999 others (about 400 KB)."""
    import hashlib

    text = toml.read_text()
    for i in range(999):
        h = hashlib.sha1(str(i).encode()).hexdigest()
        text += (f"\n[Other{i}]\ngit-tree-sha1 = \"{h}\"\ndescription = \"artifact {i}\"\n"
                 f"\n    [[Other{i}.download]]\n    url = \"https://example.org/{i}.tar.gz\"\n"
                 f"    sha256 = \"{hashlib.sha256(str(i).encode()).hexdigest()}\"\n")
    out = toml.with_name("Big.toml")
    out.write_text(text)
    return settled(out)


def settled(toml: Path) -> Path:
    """``toml`` with an mtime an hour ago, as a user's Artifacts.toml is: one written
    seconds ago is parsed again by every process (artifacts_py._toml.RACY_SECONDS)."""
    old = time.time() - 3600
    os.utime(toml, (old, old))
    return toml


def fa_code() -> str:
    return f"import fetch_artifacts; fetch_artifacts.artifact({NAME!r}, 'Artifacts.toml')"


def pooch_code(info: Dict[str, str], root: Path, hashed: bool) -> str:
    known = repr(f"sha256:{info['file_sha256']}") if hashed else "None"
    return (f"import pooch; pooch.retrieve({info['file_url']!r}, known_hash={known}, "
            f"fname='data.bin', path={str(root / 'pooch')!r})")


# ---------------------------------------------------------------- (a) in-process


def in_process(root: Path, toml: Path, info: Dict[str, str], quick: bool) -> bool:
    import artifacts_py

    max_calls = 10_000 if quick else 100_000
    batches = 3 if quick else 7
    url, sha = info["file_url"], f"sha256:{info['file_sha256']}"
    big = big_toml(toml)
    cases = [("artifacts_py.artifact", lambda: artifacts_py.artifact(NAME, toml)),
             ("artifacts_py.artifact, 1,000 entries", lambda: artifacts_py.artifact(NAME, big))]
    if common.have_peer("fetch_artifacts"):
        import fetch_artifacts

        cases.append(("fetch_artifacts.artifact", lambda: fetch_artifacts.artifact(NAME, toml)))
    if common.have_peer("pooch"):
        import pooch

        cases += [
            ("pooch.retrieve known_hash (10 MiB)",
             lambda: pooch.retrieve(url, known_hash=sha, fname="data.bin", path=root / "pooch")),
            ("pooch.retrieve known_hash=None",
             lambda: pooch.retrieve(url, known_hash=None, fname="data.bin", path=root / "pooch")),
        ]
    rows = []
    for label, fn in cases:
        wall, cpu, n = common.per_call(fn, max_calls=max_calls, batches=batches)
        rows.append((label, wall, cpu, f"median of {batches} batches x {n} calls"))
    common.print_table("(a) warm hit, in-process, per call", rows, "artifacts_py.artifact")
    ours = rows[0][1]
    return common.verdict("warm hit in-process < 10 µs", ours < TARGET_HIT,
                          f"{common.fmt_time(ours)} per call")


# ------------------------------------------------------------- (b) fresh process


def fresh_process(root: Path, toml: Path, info: Dict[str, str], home: Path,
                  quick: bool) -> Tuple[bool, bool]:
    py = common.python()
    cwd = str(toml.parent)
    dflt = default_env(home)
    with_env = dict(dflt, ARTIFACTS_PY_DEPOT_PATH=str(root / "depot"))
    commands = {
        "python -c pass": ([py, "-c", "pass"], dflt, cwd),
        "python -c 'import tomllib'": ([py, "-c", "import tomllib"], dflt, cwd),
        "artifacts_py (ARTIFACTS_PY_DEPOT_PATH)": ([py, "-c", ours_code()], with_env, cwd),
        "artifacts_py (default depot)": ([py, "-c", ours_code()], dflt, cwd),
        "artifacts_py (1,000-entry Artifacts.toml)": ([py, "-c", ours_code(str(big_toml(toml)))],
                                                      dflt, cwd),
    }
    if common.have_peer("fetch_artifacts"):
        commands["fetch_artifacts.artifact"] = ([py, "-c", fa_code()], dflt, cwd)
    if common.have_peer("pooch"):
        commands["pooch.retrieve known_hash (10 MiB)"] = (
            [py, "-c", pooch_code(info, root, True)], dflt, cwd)
        commands["pooch.retrieve known_hash=None"] = (
            [py, "-c", pooch_code(info, root, False)], dflt, cwd)
    runs = 5 if quick else 30
    times = common.time_commands(commands, runs)
    base = "python -c 'import tomllib'"
    rows = [(label, statistics.median(r.wall for r in rs), statistics.median(r.cpu for r in rs),
             f"median of {runs} (runs {common.fmt_time(min(r.wall for r in rs))} to "
             f"{common.fmt_time(max(r.wall for r in rs))})")
            for label, rs in times.items()]
    common.print_table("(b) warm hit, fresh process (wall time of the whole process)", rows, base)
    walls = {label: statistics.median(r.wall for r in rs) for label, rs in times.items()}
    cpus = {label: statistics.median(r.cpu for r in rs) for label, rs in times.items()}
    oks = []
    for label in ("artifacts_py (ARTIFACTS_PY_DEPOT_PATH)", "artifacts_py (default depot)",
                  "artifacts_py (1,000-entry Artifacts.toml)"):
        ratio = walls[label] / walls[base]
        oks.append(common.verdict(f"{label} within {TARGET_FRESH}x of import tomllib",
                                  ratio <= TARGET_FRESH,
                                  f"{ratio:.2f}x wall (cpu: {cpus[label] / cpus[base]:.2f}x)"))
    import_report(commands, base, quick)
    return oks[0], oks[1] and oks[2]


def importtime(argv: List[str], env: Dict[str, str], cwd: str) -> Dict[str, Tuple[int, int]]:
    """module -> (self µs, cumulative µs) from one ``python -X importtime`` run."""
    proc = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], env=env, cwd=cwd,
                          capture_output=True, text=True, check=True)
    out = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cum_us, name = line[len("import time:"):].split("|")
        out[name.strip()] = (int(self_us), int(cum_us))
    return out


def import_report(commands, base: str, quick: bool) -> None:
    """Imports the ours commands add on top of ``import tomllib``.

    Median over runs, like every other figure.
    """
    reps = 3 if quick else 7
    baseline = set(importtime(*commands[base]))
    for label in ("artifacts_py (ARTIFACTS_PY_DEPOT_PATH)", "artifacts_py (default depot)"):
        runs = [importtime(*commands[label]) for _ in range(reps)]
        names = set(runs[0]) - baseline
        self_us = {n: statistics.median(r.get(n, (0, 0))[0] for r in runs) for n in names}
        top_cum = {n: statistics.median(r.get(n, (0, 0))[1] for r in runs)
                   for n in names if "." not in n.strip()}
        total = sum(self_us.values())
        print(f"\n  -X importtime, {label}: {len(names)} modules beyond 'import tomllib', "
              f"{total / 1000:.1f} ms self time in all (medians of {reps} runs; {common.load_note()})")
        print("    top-level packages by cumulative time: " + ", ".join(
            f"{n} {us / 1000:.1f} ms" for n, us in sorted(top_cum.items(), key=lambda kv: -kv[1])[:8]))
        print("    modules by self time: " + ", ".join(
            f"{n.strip()} {us / 1000:.2f} ms" for n, us in
            sorted(self_us.items(), key=lambda kv: -kv[1])[:14]))


def main() -> int:
    args = common.bench_args(__doc__.splitlines()[0], "warm")
    common.header("bench_warm", args.quick)
    with common.workdir(args.workdir, args.keep) as root:
        (root / "www").mkdir()
        proj = root / "proj"
        proj.mkdir()
        toml = proj / "Artifacts.toml"
        home = root / "home"
        home.mkdir()
        with common.serve_directory(root / "www", root / "server") as (url, server):
            info = build(root, url, toml)
            settled(toml)
            install_everything(root, toml, info, home)
        print(f"   installed from {server}; server stopped: every hit below is offline")
        ok_a = in_process(root, toml, info, args.quick)
        ok_env, ok_dflt = fresh_process(root, toml, info, home, args.quick)
    print(f"\nsummary: in-process {'PASS' if ok_a else 'MISS'}, fresh process with env "
          f"{'PASS' if ok_env else 'MISS'}, fresh process default depot and 1,000 entries "
          f"{'PASS' if ok_dflt else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
