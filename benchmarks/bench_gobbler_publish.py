#!/usr/bin/env python3
"""Publishing a folder to Gobbler: artifacts_py.publish_artifact vs pygobbler.upload_directory.

Run from the repository root (pygobbler installed)::

    python benchmarks/bench_gobbler_publish.py            # 1 GiB in 100 random files
    python benchmarks/bench_gobbler_publish.py --quick    # 100 MiB in 100 random files

Setup (untimed): our Gobbler-compatible server (``start_gobbler``) on a
registry/staging in the workdir, project ``bench`` created, the folder
written once (random bytes: nothing compresses, nothing deduplicates).

Each run is a separate process publishing the same folder, median of 3
(``--repeat``), rounds interleaved, dirty pages flushed before each run (untimed):

* ``artifacts_py.publish_artifact(toml, name, dir, project=, asset=,
  version=, url=)`` into a fresh Artifacts.toml: Gobbler view + tree hash and
  md5 of every file, staging (hard links), the server's upload, manifest
  check, bind;
* ``pygobbler.upload_directory(project, asset, version, dir, staging, url)``:
  copy into staging (plus its md5 checks), the server's upload.

Every run uploads to an asset of its own (``ours0``, ``pyg0``, ...; version
``v1``): Gobbler deduplicates a new version against its asset's latest one,
which would turn later uploads of the same bytes into links. The asset is
removed afterwards (untimed). Our first result's tree hash is checked against
``compute_git_tree_sha1`` of the folder. Instrumented wrappers (timers
around our own functions, in the child) split our time into hashing, staging,
the server's upload and the manifest check (of the median run).

Target (printed, never asserted), judged on the medians: publish no slower
than pygobbler.
"""

# bench-requires: pygobbler
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from bench_gobbler_resolve import (PROJECT, Run, child_env, gobbler_server,  # noqa: E402
                                   print_runs, run_child, spy_run)

MiB = 1 << 20
REPEAT = 3

# A timer around a module attribute, installed in the child before the call.
TIMER = """\
import json, sys, time
spent = {}
def timed(module, attr, key):
    inner = getattr(module, attr, None)
    if inner is None:  # renamed in the library: that part is left out of the breakdown
        return
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return inner(*a, **k)
        finally:
            spent[key] = spent.get(key, 0.0) + time.perf_counter() - t
    setattr(module, attr, wrapper)
"""

OURS_CHILD = TIMER + """\
import artifacts_py
from artifacts_py import publish as gs
from artifacts_py.gobbler import client
timed(gs, "gobbler_view", "view walk")
timed(gs, "hash_view", "hashing (tree hash + md5 of the view)")
timed(client, "_populate", "staging (hard links)")
timed(client, "_request", "server upload (request to response)")
timed(gs, "_check_uploaded", "manifest check")
toml, src, asset, url = sys.argv[1:5]
t0 = time.perf_counter()
info = artifacts_py.publish_artifact(toml, "Data", src, project=sys.argv[5], asset=asset,
                                     version="v1", url=url)
call = time.perf_counter() - t0
print(json.dumps({"call": call, "spent": spent, "tree": info["git_tree_sha1"]}))
"""

PYG_CHILD = TIMER + """\
import pygobbler
import pygobbler._utils as ut
timed(ut, "dump_request", "server upload (request to response)")
project, asset, src, staging, url = sys.argv[1:6]
t0 = time.perf_counter()
pygobbler.upload_directory(project, asset, "v1", src, staging, url)
call = time.perf_counter() - t0
spent["staging copy + md5 checks"] = call - sum(spent.values())
print(json.dumps({"call": call, "spent": spent}))
"""


def make_folder(src: Path, n_files: int, total: int) -> int:
    """``n_files`` random files adding up to ``total`` bytes; returns the total."""
    src.mkdir()
    each = total // n_files
    for i in range(n_files):
        common.write_random(src / f"part{i:03d}.bin", each)
    return each * n_files


def main() -> int:
    p = common.bench_parser(__doc__.splitlines()[0], "gobbler-publish")  # --quick: 100 MiB
    p.add_argument("--profile", metavar="DIR", help="also record py-spy profiles of one publish")
    common.add_repeat(p, REPEAT)
    args = p.parse_args()
    common.header("bench_gobbler_publish", args.quick, "warm page cache (caches cannot be dropped)")
    from artifacts_py import compute_git_tree_sha1
    from artifacts_py.gobbler import client

    with common.workdir(args.workdir, args.keep) as root, \
            gobbler_server(root) as (staging, _registry, url):
        src = root / "src"
        size = make_folder(src, 100, (100 if args.quick else 1024) * MiB)
        expected = compute_git_tree_sha1(src)
        client.create_project(PROJECT, staging=staging, url=url)
        print(f"   server {url}; folder: 100 random files, {size / MiB:.0f} MiB")

        ours, pyg = "artifacts_py.publish_artifact", "pygobbler.upload_directory"

        def argv(label: str, asset: str) -> List[str]:
            if label == ours:
                toml = root / f"toml-{asset}" / "Artifacts.toml"  # fresh every run
                return [common.python(), "-c", OURS_CHILD, str(toml), str(src), asset, url, PROJECT]
            return [common.python(), "-c", PYG_CHILD, PROJECT, asset, str(src), staging, url]

        # One untimed run each: bytecode caches written, page cache warm.
        for label, asset in ((ours, "prime-ours"), (pyg, "prime-pyg")):
            run_child(label, argv(label, asset), child_env())
            client.remove_asset(PROJECT, asset, staging=staging, url=url)

        runs: Dict[str, List[Run]] = {ours: [], pyg: []}
        for rnd in range(args.repeat):
            for label, stem in ((ours, "ours"), (pyg, "pyg")):
                asset = f"{stem}{rnd}"
                common.drop_dirty_pages()
                run = run_child(label, argv(label, asset), child_env())
                runs[label].append(run)
                if label == ours and rnd == 0 and run.info["tree"] != expected:
                    raise SystemExit(f"published tree hash {run.info['tree']} != {expected}")
                client.remove_asset(PROJECT, asset, staging=staging, url=url)

        med = print_runs(f"publish {size / MiB:.0f} MiB in 100 files (new asset per run)",
                         runs, pyg, size)
        ratio = med[ours].wall / med[pyg].wall
        common.verdict("publish no slower than pygobbler", ratio <= 1.0,
                       f"ours/pygobbler = {ratio:.2f}x, median runs (library calls alone: "
                       f"{med[ours].call / med[pyg].call:.2f}x)")
        for label, run in med.items():
            parts = list(run.info["spent"].items())
            parts.append(("rest (process start, imports, everything else)",
                          run.wall - sum(t for _, t in parts)))
            print(f"\n  where the time goes, {label} (its median run, {run.wall:.3f} s wall):")
            for key, t in parts:
                print(f"    {key:52} {t:7.3f} s  {100 * t / run.wall:5.1f}%")
        if args.profile:
            out = Path(args.profile)
            out.mkdir(parents=True, exist_ok=True)
            print(f"\nprofiles in {out} (py-spy, 250 Hz; .txt collapsed stacks, .svg flame graphs)")

            def fresh() -> None:  # spy_run publishes twice: same asset and toml, made new
                from artifacts_py.errors import GobblerError

                with contextlib.suppress(GobblerError):
                    client.remove_asset(PROJECT, "profile", staging=staging, url=url)
                common.rmtree(root / "toml-profile")

            spy_run(out / "ours-publish", argv(ours, "profile"), child_env(), fresh)
            fresh()
    return 0


if __name__ == "__main__":
    sys.exit(main())
