#!/usr/bin/env python3
"""Cold REST resolution of Gobbler versions over an emulated network link.

Run from the repository root (needs curl and GNU xargs; pygobbler optional)::

    python benchmarks/bench_link.py                          # ~15 min: 2 versions x 3 links
    python benchmarks/bench_link.py --only small --rtt 20    # one version, one link
    python benchmarks/bench_link.py --rtt 0 50 --rate 1000   # loopback and 50 ms at 1 Gbit/s
    python benchmarks/bench_link.py --quick                  # smoke run, < 30 s

Setup (untimed): our Gobbler server
(``artifacts_py.servers.gobbler.launch.start_gobbler``) on a registry in the
workdir; versions ``bench/small/v1`` (2,000 x 16 KiB) and ``bench/large/v1``
(4 x 64 MiB) of random files uploaded with ``artifacts_py.gobbler``, and pinned
in an Artifacts.toml with ``artifacts_py.add_artifact``.

Links: ``--rtt`` round trips in ms (default 0, 20 and 100; 0 is plain
loopback, anything else goes through ``benchmarks/linkemu.py`` in a child
process) at ``--rate`` Mbit/s per direction (default 200).

Contenders, each a fresh process into a fresh, empty destination, all
through the same link:

* ``artifacts_py.ensure_artifact_installed(name, toml)`` into an empty depot
  (``ARTIFACTS_PY_DEPOT_PATH``), the registry hidden
  (``ARTIFACTS_PY_GOBBLER_REGISTRY`` names a missing folder) and
  ``ARTIFACTS_PY_GOBBLER_URL`` set to the link: manifest, files, md5 and tree
  hash checks;
* ``pygobbler.fetch_directory(..., force_remote=True, concurrent=N)`` for N =
  1, 8, 32 (a process pool; one new connection per file; no checks);
* ``xargs -P N curl`` for N = 8, 32: the file URLs (from the manifest, given
  for free) split into N lists, one ``curl`` per list fetching its files one
  after another over one keep-alive connection; no checks.

For the large version (4 files), N = 32 would be the same as N = 8 and is
left out (a note says so).

The physical limit of a link of round trip RTT and bandwidth BW, for B bytes
in n files of S bytes each::

    limit    = 3 x RTT + B / BW
    limit(P) = 2 x RTT + max(B / BW + RTT, ceil(n / P) x (RTT + S / BW))

The 3 round trips of ``limit``: the TCP handshake (the emulator charges one
per new connection), the manifest request, and one round of file requests
all in flight at once, whose answers then take B / BW to arrive. A tool
with only P requests in flight needs ceil(n / P) rounds, and each request
takes at least RTT + S / BW (``limit(P)``; with P >= n it equals
``limit``). Both are lower bounds: curl is handed the URLs, so it skips the
manifest and can beat them by one RTT, and pygobbler pays a handshake per
file, which they do not count. Beyond the cap of 150 s a run is stopped
(its process group killed) and counts as 150 s, shown as ``>``.
Loopback has no limit to speak of; its tables compare with the fastest row.

Every run is timed as a whole process (interpreter start included). The
table shows the median of ``--repeat`` (3) runs, rounds interleaved; a
contender whose first run takes longer than 30 s runs once (pygobbler with
concurrent=1 needs 2 round trips per file: 400 s for 2,000 files at 100 ms,
so it is stopped at the cap).
Each tool's first result is checked against the manifest's md5s (untimed).
The load column is the 1-minute load average when the runs started: the
machine is shared, so read wall times with it in mind. Timed runs write to
the workdir's disk by default (``--dest tmpfs`` for ``/dev/shm``; see
README, "bench_gobbler_resolve.py").
"""

# bench-requires: curl xargs
from __future__ import annotations

import contextlib
import math
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import linkemu  # noqa: E402
from bench_gobbler_resolve import (PYG_CHILD, Run, Version, bind_versions,  # noqa: E402
                                   check_tree, child_env, data_files, gobbler_server,
                                   make_targets, make_tree)

KiB, MiB = 1 << 10, 1 << 20
PROJECT = "bench"
REPEAT = 3
SLOW = 30.0          # seconds: a contender slower than this in its first run runs once
CAP = 150.0          # seconds: a run still going then is stopped (its whole process group)
KEEP_FILES = 100     # see bench_gobbler_resolve.KEEP_FILES: many-file trees stay till the end

OURS_CHILD = """\
import json, sys
import artifacts_py
path = artifacts_py.ensure_artifact_installed(sys.argv[1], sys.argv[2])
print(json.dumps({"path": str(path)}))
"""

Fetch = Callable[[Version, Path, str], Tuple[Run, Path]]


def run_child(label: str, argv: Sequence[str], env: Dict[str, str]) -> Run:
    """Run one timed child in its own process group; stop the group after ``CAP`` seconds.

    A stopped run has ``info["stopped"]`` set and its wall time is the cap. A
    failing child aborts the benchmark with its stderr.
    """
    import json
    import resource
    import signal
    import subprocess

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(argv), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=CAP)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return Run(CAP, 0.0, 0.0, {"stopped": True})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{label}: exit status {proc.returncode}\n{err.decode()[-3000:]}")
    lines = out.decode().strip().splitlines()
    info = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(wall, cpu, 0.0, info)


@dataclass
class Contender:
    """A tool, how to run it (version, destination, base URL), and its requests in flight."""

    label: str
    fetch: Fetch
    in_flight: Optional[int] = None   # None: the tool decides


@dataclass
class Result:
    """The runs of one contender in one case, and the load average before each."""

    runs: List[Run] = field(default_factory=list)
    loads: List[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    @property
    def cpu(self) -> float:
        return statistics.median(r.cpu for r in self.runs)


# ------------------------------------------------------------------ setup

def upload(root: Path, staging: str, registry: str, url: str,
           shapes: Sequence[Tuple[str, str, int, int]]) -> List[Version]:
    """Upload each (entry name, asset, files, size) as ``bench/<asset>/v1`` (untimed)."""
    from artifacts_py import gobbler

    gobbler.create_project(PROJECT, staging=staging, url=url)
    versions = []
    for name, asset, n, size in shapes:
        src = root / f"src-{asset}"
        make_tree(src, n, size)
        gobbler.upload_directory(PROJECT, asset, "v1", str(src), staging=staging, url=url)
        if n <= KEEP_FILES:
            common.rmtree(src)
        manifest = gobbler.fetch_manifest(PROJECT, asset, "v1", registry=registry)
        versions.append(Version(name, asset, n, size, manifest))
    return versions


# ------------------------------------------------------------------ tools

class Tools:
    """The contenders; each fetch takes (version, fresh destination, base URL of the link)."""

    def __init__(self, root: Path, toml: Path) -> None:
        self.root, self.toml = root, toml
        self.nowhere = str(root / "registry-not-mounted-here")
        self.select: Optional[List[str]] = None  # --select: a subset of the contenders

    def ours(self, max_connections: Optional[int] = None) -> Fetch:
        """artifacts-py; ``max_connections`` sets ARTIFACTS_PY_MAX_CONNECTIONS (default 64)."""
        def fetch(v: Version, dest: Path, url: str) -> Tuple[Run, Path]:
            extra = {} if max_connections is None else {
                "ARTIFACTS_PY_MAX_CONNECTIONS": str(max_connections)}
            env = child_env(ARTIFACTS_PY_DEPOT_PATH=str(dest), ARTIFACTS_PY_GOBBLER_URL=url,
                            ARTIFACTS_PY_GOBBLER_REGISTRY=self.nowhere, **extra)
            run = run_child("artifacts_py", [common.python(), "-c", OURS_CHILD, v.name,
                                             str(self.toml)], env)
            return run, Path(run.info.get("path", dest))
        return fetch

    def pygobbler(self, concurrent: int) -> Fetch:
        def fetch(v: Version, dest: Path, url: str) -> Tuple[Run, Path]:
            run = run_child(f"pygobbler concurrent={concurrent}",
                            [common.python(), "-c", PYG_CHILD, v.coords, self.nowhere, url,
                             str(dest), str(concurrent)], child_env())
            return run, Path(run.info.get("path", dest))
        return fetch

    def curl(self, procs: int) -> Fetch:
        def fetch(v: Version, dest: Path, url: str) -> Tuple[Run, Path]:
            files = data_files(v.manifest)
            per = math.ceil(len(files) / procs)
            args = self.root / f"curl-args-{procs}.txt"  # written untimed
            args.write_text("".join(f"-o {dest / rel} {url}/fetch/{v.coords}/{rel}\n"
                                    for rel in files))
            run = run_child(f"xargs -P {procs} curl",
                            ["xargs", "-P", str(procs), "-n", str(3 * per), "-a", str(args),
                             "curl", "-sf", "--create-dirs"], child_env())
            return run, dest
        return fetch

    def contenders(self, v: Version) -> Tuple[List[Contender], List[str]]:
        """Every contender for ``v`` (peers that are missing are left out); printed notes."""
        out = [Contender("artifacts_py.ensure_artifact_installed", self.ours()),
               Contender("artifacts_py, ARTIFACTS_PY_MAX_CONNECTIONS=256", self.ours(256))]
        notes = []
        if common.have_peer("pygobbler"):
            out += [Contender(f"pygobbler concurrent={n}", self.pygobbler(n), n)
                    for n in (1, 8, 32)]
        if shutil.which("curl") and shutil.which("xargs"):
            out += [Contender(f"xargs -P {n} curl", self.curl(n), n) for n in (8, 32)]
        else:
            notes.append("curl or xargs is not on PATH: the curl rows are skipped")
        same = [c for c in out if c.in_flight and c.in_flight > 8 and v.n_files <= 8]
        if same:
            notes.append(f"{', '.join(c.label for c in same)}: left out, the same as 8 "
                         f"for {v.n_files} files")
        chosen = [c for c in out if c not in same]
        if self.select:
            chosen = [c for c in chosen if any(w in c.label for w in self.select)]
        return chosen, notes


# -------------------------------------------------------------- measuring

@dataclass(frozen=True)
class Case:
    """One link: its label and, for an emulated one, its parameters."""

    rtt_ms: float
    rate_mbit: float

    @property
    def link(self) -> Optional[linkemu.Link]:
        if not self.rtt_ms:
            return None
        return linkemu.Link(self.rtt_ms / 1e3, self.rate_mbit * 1e6 or None)

    def describe(self) -> str:
        return "plain loopback" if self.link is None else f"{self.link.describe()} (emulated)"

    def short(self) -> str:
        """E.g. ``loopback`` or ``20 ms, 200 Mbit/s``."""
        return "loopback" if self.link is None else f"{self.rtt_ms:g} ms, {self.rate_mbit:g} Mbit/s"

    def limit(self, v: Version, in_flight: Optional[int] = None) -> Optional[float]:
        """The physical limit (see the module docstring); None on plain loopback."""
        link = self.link
        if link is None:
            return None
        wire = 8 / link.rate if link.rate else 0.0  # seconds per byte
        rounds = 1 if in_flight is None else math.ceil(v.n_files / in_flight)
        return 2 * link.rtt + max(v.size * wire + link.rtt,
                                  rounds * (link.rtt + v.file_size * wire))

    def formula(self, v: Version) -> str:
        link = self.link
        if link is None:
            return "no limit on plain loopback; x best = median / fastest median"
        wire = f"{v.size / 1e6:.1f} MB / {link.rate / 1e6:g} Mbit/s" if link.rate else "0"
        return (f"limit = {wire} + 3 x {link.rtt * 1e3:g} ms = {self.limit(v):.3f} s; limit(P) = "
                f"2 RTT + max(B/BW + RTT, ceil({v.n_files}/P) x (RTT + file/BW))")


@contextlib.contextmanager
def base_url(case: Case, server: str) -> Iterator[str]:
    """The URL the contenders use: the server itself, or the emulator in front of it."""
    link = case.link
    if link is None:
        yield server
        return
    host, _, port = server.rpartition("/")[2].rpartition(":")
    with linkemu.spawn((host, int(port)), link) as proxy_port:
        yield f"http://127.0.0.1:{proxy_port}"


def measure(targets: Path, tag: str, v: Version, contenders: Sequence[Contender], url: str,
            repeat: int) -> Dict[str, Result]:
    """``repeat`` rounds of every contender into fresh destinations, interleaved."""
    results = {c.label: Result() for c in contenders}
    for rnd in range(repeat):
        for i, c in enumerate(contenders):
            res = results[c.label]
            if res.runs and res.runs[0].wall > SLOW:  # includes a run stopped at the cap
                continue
            dest = targets / f"{tag}-{v.asset}-{i}-{rnd}"
            common.drop_dirty_pages()
            res.loads.append(os.getloadavg()[0])
            run, result = c.fetch(v, dest, url)
            res.runs.append(run)
            if rnd == 0 and not run.info.get("stopped"):
                check_tree(c.label, result, v.manifest)
            if v.n_files <= KEEP_FILES:
                common.rmtree(dest)
    return results


def print_case(case: Case, v: Version, contenders: Sequence[Contender],
               results: Dict[str, Result], notes: Sequence[str]) -> List[str]:
    """The table of one (link, version); returns its summary lines.

    A run stopped at the cap counts as ``CAP`` seconds, and its ratios are
    lower bounds (shown with ``>``).
    """
    best = min(r.median for r in results.values())
    limit = case.limit(v)
    width = max(len(c.label) for c in contenders)
    print(f"\nREST, cold: {v.coords}, {v.describe()}, over {case.describe()}")
    print(f"  {case.formula(v)}")
    for note in notes:
        print(f"  note: {note}")
    print(f"  {'':{width}}  {'median':>8}  {'x limit':>8}  {'x best':>7}  {'limit(P)':>8}  "
          f"{'x lim(P)':>8}  {'cpu':>7}  {'load':>4}  runs (s)")
    summary = []
    for c in contenders:
        r = results[c.label]
        gt = ">" if any(x.info.get("stopped") for x in r.runs) else " "
        lim_p = case.limit(v, c.in_flight) if c.in_flight else None
        x_limit = f"{gt}{r.median / limit:6.2f}x" if limit else f"{'-':>8}"
        lp = (f"{lim_p:7.2f}s  {gt}{r.median / lim_p:6.2f}x" if lim_p else f"{'-':>8}  {'-':>8}")
        load = statistics.median(r.loads)
        walls = ", ".join(f"{x.wall:.2f}" + (" (stopped)" if x.info.get("stopped") else "")
                          for x in r.runs)
        row = (f"{gt}{r.median:7.2f}s  {x_limit}  {gt}{r.median / best:5.2f}x")
        print(f"  {c.label:{width}}  {row}  {lp}  {r.cpu:6.2f}s  {load:4.1f}  {walls}")
        summary.append(f"  {case.short():16} {v.asset:5}  {c.label:{width}}  {row}  "
                       f"load {load:.1f}")
    print("  (median of the runs, whole process; x limit = median / limit; x best = median / "
          "fastest median; cpu = user+sys of the client process tree, median; load = "
          "1-min load average at the start of the runs)")
    sys.stdout.flush()
    return summary


# ------------------------------------------------------------------- main

def main() -> int:
    p = common.bench_parser(__doc__.splitlines()[0], "link")
    p.add_argument("--rtt", type=float, nargs="+", default=None, metavar="MS",
                   help="round trips in ms, 0 = plain loopback (default 0 20 100; quick: 20)")
    p.add_argument("--rate", type=float, default=200.0,
                   help="bandwidth per direction in Mbit/s, 0 = unlimited (default 200)")
    p.add_argument("--repeat", type=int, default=None,
                   help=f"runs per contender, median of (default {REPEAT}; quick: 1)")
    p.add_argument("--only", choices=("small", "large"), help="one version only")
    p.add_argument("--dest", choices=("disk", "tmpfs"), default="disk",
                   help="where the timed runs write: the workdir's disk (default) or /dev/shm")
    p.add_argument("--select", nargs="+", metavar="TEXT",
                   help="only the contenders whose label contains one of these")
    args = p.parse_args()
    rtts = args.rtt if args.rtt is not None else ([20.0] if args.quick else [0.0, 20.0, 100.0])
    repeat = args.repeat or (1 if args.quick else REPEAT)
    shapes = [("Small", "small", 40 if args.quick else 2000, 16 * KiB),
              ("Large", "large", 2 if args.quick else 4, (1 if args.quick else 64) * MiB)]
    shapes = [s for s in shapes if not args.only or s[1] == args.only]
    cases = [Case(rtt, args.rate) for rtt in rtts]
    common.header("bench_link", args.quick, f"links: {'; '.join(c.describe() for c in cases)}")
    summary: List[str] = []
    with common.workdir(args.workdir, args.keep) as root, \
            gobbler_server(root) as (staging, registry, server), \
            make_targets(root, args.dest) as targets:
        t0 = time.perf_counter()
        versions = upload(root, staging, registry, server, shapes)
        toml = bind_versions(root, versions, registry, server)
        print(f"   server {server}; uploaded and pinned "
              f"{', '.join(v.describe() for v in versions)} in {time.perf_counter() - t0:.0f} s")
        tools = Tools(root, toml)
        tools.select = args.select
        if not args.quick:  # untimed: bytecode caches and the server warm
            measure(targets, "prime", versions[0], tools.contenders(versions[0])[0][:2], server, 1)
        for case in cases:
            with base_url(case, server) as url:
                for v in versions:
                    contenders, notes = tools.contenders(v)
                    results = measure(targets, f"rtt{case.rtt_ms:g}", v, contenders, url, repeat)
                    summary += print_case(case, v, contenders, results, notes)
    print("\nsummary (median, ratio to the physical limit, ratio to the fastest):")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
