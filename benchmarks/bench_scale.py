#!/usr/bin/env python3
"""Scale: cold Gobbler resolution of many 1 KiB files (REST vs curl, mounted vs cp -r).

Run from the repository root (needs curl, GNU xargs, md5sum; /usr/bin/time
for the peak RSS column; pygobbler optional)::

    python benchmarks/bench_scale.py                  # 10,000 and 100,000 files; ~10 min
    python benchmarks/bench_scale.py --mode mounted   # the mounted registry only
    python benchmarks/bench_scale.py --quick          # 1,000 and 3,000 files, ~20 s

Setup (untimed): our Gobbler server
(``artifacts_py.servers.gobbler.launch.start_gobbler``) on a registry in the
workdir; one version ``bench/n<N>/v1`` of N random 1 KiB files (in folders
of 100) per size, uploaded with ``artifacts_py.gobbler`` and pinned in an
Artifacts.toml with ``artifacts_py.add_artifact`` (``bench_link.upload``,
``bench_gobbler_resolve.bind_versions``).

REST, each run a fresh process into a fresh, empty destination:

* ``artifacts_py.artifact(name, toml)`` into an empty depot
  (``ARTIFACTS_PY_DEPOT_PATH``), ``ARTIFACTS_PY_GOBBLER_URL`` set, the
  registry hidden (``ARTIFACTS_PY_GOBBLER_REGISTRY`` names a missing folder);
  run under ``/usr/bin/time -f %M`` for its peak RSS;
* ``xargs -P 8 curl``: the file URLs (given for free) in 8 lists, one
  keep-alive ``curl`` per list (a ``-K`` config file each); no checks;
* with ``--pygobbler``: ``pygobbler.fetch_directory(concurrent=8)`` (slow at
  100,000 files, so not by default).

Mounted registry (the REST URL unreachable, so any HTTP would fail):
``artifacts_py.artifact`` into an empty depot vs ``cp -r`` then ``md5sum`` of
every file (``bench_gobbler_resolve.Tools``), and ``python -c pass`` as a
reference: the interpreter start that every Python tool pays and ``cp`` does
not (on this VM, site-packages ``.pth`` hooks make it about 40 ms).

Whole process against whole process (interpreter start included; "call" is
the library call as the child timed it), median of ``--repeat`` (3) runs,
rounds interleaved, dirty pages flushed (untimed) before each run. Timed
runs write to the workdir's disk by default (``--dest tmpfs`` for
``/dev/shm``); each destination goes to a fresh ext4 block group where
possible, and trees are deleted only at the end (see README,
"bench_gobbler_resolve.py"). Each tool's first result is checked against the
manifest's md5s (untimed). Each table gives the load average before every
run. Targets (printed, never asserted), at the largest size: REST within
1.5x of ``xargs -P 8 curl`` with peak RSS under 150 MB; growth from the
smaller size linear (time ratio within 1.2x of the file-count ratio); mounted
within 1.5x of ``cp -r`` + ``md5sum``.
"""

# bench-requires: curl xargs md5sum
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from bench_gobbler_resolve import (OURS_CHILD, Run, Version, bind_versions,  # noqa: E402
                                   child_env, data_files, gobbler_server, make_targets, measure, print_runs,
                                   run_child)
from bench_gobbler_resolve import Tools as ResolveTools  # noqa: E402
from bench_link import Tools as LinkTools  # noqa: E402
from bench_link import upload  # noqa: E402

KiB = 1 << 10
SIZES = (10_000, 100_000)
QUICK_SIZES = (1_000, 3_000)
REPEAT = 3
TARGET_CURL = 1.5       # ours / xargs -P 8 curl, REST, largest size
TARGET_RSS = 150e6      # bytes: our peak RSS, REST, largest size
TARGET_GROWTH = 1.2     # (time ratio) / (file-count ratio): 1.0 is exactly linear
TARGET_CP = 1.5         # ours / (cp -r + md5sum), mounted, largest size
CURLS = 8                # curl processes
TIME = "/usr/bin/time"  # GNU time: -f %M is the peak RSS in KiB

Fetch = Callable[[Version, Path], Tuple[Run, Path]]


def with_load(fetch: Fetch) -> Fetch:
    """``fetch`` that records the 1-minute load average before the run (``info["load"]``)."""
    def run(v: Version, dest: Path) -> Tuple[Run, Path]:
        load = os.getloadavg()[0]
        r, result = fetch(v, dest)
        r.info["load"] = load
        return r, result
    return run


class Tools:
    """The contenders of this script, as (version, fresh destination) -> (Run, result)."""

    def __init__(self, root: Path, toml: Path, registry: str, url: str) -> None:
        self.root, self.toml, self.url = root, toml, url
        self.resolve = ResolveTools(root, toml, registry, url)
        self.link = LinkTools(root, toml)

    def ours_rest(self, v: Version, dest: Path) -> Tuple[Run, Path]:
        """Our cold REST resolution; ``info["rss"]`` is its peak RSS in bytes (if measurable)."""
        env = child_env(ARTIFACTS_PY_DEPOT_PATH=str(dest), ARTIFACTS_PY_GOBBLER_URL=self.url,
                        ARTIFACTS_PY_GOBBLER_REGISTRY=self.resolve.nowhere)
        argv = [common.python(), "-c", OURS_CHILD, v.name, str(self.toml)]
        rss = self.root / "rss.txt"
        if os.path.exists(TIME):
            argv = [TIME, "-f", "%M", "-o", str(rss), *argv]
        r = run_child("ours (REST)", argv, env)
        if os.path.exists(TIME):
            r.info["rss"] = int(rss.read_text().split()[-1]) * KiB
        return r, Path(r.info["path"])

    def curl(self, v: Version, dest: Path) -> Tuple[Run, Path]:
        """``xargs -P 8 curl -K LIST``: each curl fetches its list over one connection.

        Config files, not argv (``bench_link.Tools.curl``): 100,000 paths
        overflow the command line. Written untimed.
        """
        files = data_files(v.manifest)
        per = math.ceil(len(files) / CURLS)
        lists = self.root / "curl-lists.txt"
        with open(lists, "w") as names:
            for i in range(0, len(files), per):
                cfg = self.root / f"curl-{i // per}.cfg"
                cfg.write_text("".join(f'url = "{self.url}/fetch/{v.coords}/{rel}"\n'
                                       f'output = "{dest / rel}"\n' for rel in files[i:i + per]))
                names.write(f"{cfg}\n")
        r = run_child(f"xargs -P {CURLS} curl", ["xargs", "-P", str(CURLS), "-n", "1", "-a",
                                                 str(lists), "curl", "-sf", "--create-dirs", "-K"],
                      child_env())
        return r, dest

    def interpreter(self, v: Version, dest: Path) -> Tuple[Run, Path]:
        """``python -c pass``: the start-up every Python contender pays (a reference row)."""
        return run_child("python -c pass", [common.python(), "-c", "pass"], child_env()), dest

    def pygobbler(self, v: Version, dest: Path) -> Tuple[Run, Path]:
        return self.link.pygobbler(8)(v, dest, self.url)


def loads(runs: Sequence[Run]) -> str:
    return ", ".join(f"{r.info.get('load', 0.0):.1f}" for r in runs)


def print_case(title: str, v: Version, runs: Dict[str, List[Run]], baseline: str) -> Dict[str, Run]:
    """The table (median runs), then each contender's load averages and peak RSS."""
    chosen = print_runs(title, runs, baseline, v.size)
    for label, rs in runs.items():
        rss = [r.info["rss"] for r in rs if "rss" in r.info]
        extra = f"; peak RSS {max(rss) / 1e6:.0f} MB (max of {len(rss)})" if rss else ""
        print(f"    {label}: load averages before its runs {loads(rs)}{extra}")
    sys.stdout.flush()
    return chosen


def growth(results: Dict[int, Dict[str, Run]], label: str) -> Tuple[float, float]:
    """(time ratio, file-count ratio) of ``label`` from the smallest to the largest size."""
    small, large = min(results), max(results)
    return results[large][label].wall / results[small][label].wall, large / small


def print_growth(results: Dict[int, Dict[str, Run]]) -> None:
    if len(results) < 2:
        return
    small, large = min(results), max(results)
    print(f"\n  growth {small:,} -> {large:,} files (linear = {large / small:.1f}x):")
    for label in results[large]:
        ratio, n = growth(results, label)
        per = results[large][label].wall / large * 1e6
        print(f"    {label}: {ratio:.2f}x ({ratio / n:.2f} of linear; {per:.0f} us per file "
              f"at {large:,})")


def rest(targets: Path, tools: Tools, versions: List[Version], repeat: int,
         pygobbler: bool) -> List[bool]:
    """The REST tables and their verdicts."""
    ours, curl = "artifacts_py.artifact (REST)", "xargs -P 8 curl (no verification)"
    contenders = [(ours, with_load(tools.ours_rest)), (curl, with_load(tools.curl))]
    if pygobbler and common.have_peer("pygobbler"):
        contenders.append(("pygobbler.fetch_directory concurrent=8", with_load(tools.pygobbler)))
    results: Dict[int, Dict[str, Run]] = {}
    for v in versions:
        runs = measure(targets, "rest", v, contenders, repeat)
        results[v.n_files] = print_case(f"REST, cold: {v.coords}, {v.describe()}", v, runs, curl)
    big = results[max(results)]
    r = big[ours].wall / big[curl].wall
    verdicts = [common.verdict(f"REST {max(results):,} files within {TARGET_CURL}x of xargs -P 8 curl",
                               r <= TARGET_CURL, f"{r:.2f}x ({big[ours].wall:.2f} s vs "
                               f"{big[curl].wall:.2f} s; load {big[ours].info['load']:.1f})")]
    if "rss" in big[ours].info:
        rss = big[ours].info["rss"]
        verdicts.append(common.verdict(f"REST {max(results):,} files: peak RSS < "
                                       f"{TARGET_RSS / 1e6:.0f} MB", rss < TARGET_RSS,
                                       f"{rss / 1e6:.0f} MB (median run)"))
    print_growth(results)
    if len(results) > 1:
        ratio, n = growth(results, ours)
        verdicts.append(common.verdict(f"REST growth {min(results):,} -> {max(results):,} linear",
                                       ratio <= TARGET_GROWTH * n,
                                       f"{ratio:.2f}x for {n:.0f}x the files"))
    return verdicts


def mounted(targets: Path, tools: Tools, versions: List[Version], repeat: int) -> List[bool]:
    """The mounted-registry tables and their verdict."""
    ours, cp = "artifacts_py.artifact (mounted registry)", "cp -r + md5sum (all files)"
    start = "python -c pass (reference: interpreter start)"
    contenders = [(ours, with_load(tools.resolve.ours_mounted)),
                  (cp, with_load(tools.resolve.cp_md5sum))]
    results: Dict[int, Dict[str, Run]] = {}
    for v in versions:
        runs = measure(targets, "mounted", v, contenders, repeat)
        runs[start] = [with_load(tools.interpreter)(v, targets)[0] for _ in range(repeat)]
        results[v.n_files] = print_case(f"mounted registry, cold: {v.coords}, {v.describe()}", v,
                                        runs, cp)
    big = results[max(results)]
    r = big[ours].wall / big[cp].wall
    for sizes in results.values():
        del sizes[start]
    print_growth(results)
    return [common.verdict(f"mounted {max(results):,} files within {TARGET_CP}x of cp -r + md5sum",
                           r <= TARGET_CP, f"{r:.2f}x ({big[ours].wall:.2f} s vs "
                           f"{big[cp].wall:.2f} s; our call alone {big[ours].call:.2f} s; "
                           f"load {big[ours].info['load']:.1f})")]


def main() -> int:
    p = common.bench_parser(__doc__.splitlines()[0], "scale")
    p.add_argument("--repeat", type=int, default=REPEAT, help=f"runs per contender (median of; {REPEAT})")
    p.add_argument("--sizes", type=int, nargs="+", help="file counts (default 10000 100000; "
                   "--quick: 1000 3000)")
    p.add_argument("--mode", choices=("rest", "mounted"), help="one way of resolving only")
    p.add_argument("--dest", choices=("disk", "tmpfs"), default="disk",
                   help="where the timed runs write (default: the workdir's disk)")
    p.add_argument("--pygobbler", action="store_true", help="also pygobbler concurrent=8 (slow)")
    args = p.parse_args()
    sizes = sorted(args.sizes or (QUICK_SIZES if args.quick else SIZES))
    common.header("bench_scale", args.quick, "warm page cache (caches cannot be dropped)")
    if not os.path.exists(TIME):
        print(f"   note: {TIME} is missing: no peak RSS (apt-get install time)")
    verdicts: List[bool] = []
    with common.workdir(args.workdir, args.keep) as root, \
            gobbler_server(root) as (staging, registry, url), \
            make_targets(root, args.dest) as targets:
        t0 = time.perf_counter()
        versions = upload(root, staging, registry, url,
                          [(f"Files{n}", f"n{n}", n, KiB) for n in sizes])
        toml = bind_versions(root, versions, registry, url)
        print(f"   server {url}; uploaded and pinned {', '.join(v.describe() for v in versions)} "
              f"in {time.perf_counter() - t0:.0f} s")
        tools = Tools(root, toml, registry, url)
        tools.ours_rest(versions[0], targets / "prime")  # untimed: bytecode caches
        if args.mode != "mounted":
            verdicts += rest(targets, tools, versions, args.repeat, args.pygobbler)
        if args.mode != "rest":
            verdicts += mounted(targets, tools, versions, args.repeat)
    print(f"\nsummary: {sum(verdicts)} of {len(verdicts)} targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
