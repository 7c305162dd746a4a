#!/usr/bin/env python3
"""Cold resolution of Gobbler versions: artifacts-py vs pygobbler vs curl / cp -r.

Run from the repository root (needs curl, md5sum; pygobbler installed)::

    python benchmarks/bench_gobbler_resolve.py            # 2,000 x 16 KiB and 4 x 256 MiB
    python benchmarks/bench_gobbler_resolve.py --quick    # 200 x 16 KiB and 4 x 16 MiB
    python benchmarks/bench_gobbler_resolve.py --profile /tmp/prof   # + py-spy profiles

Setup (untimed): our Gobbler-compatible server
(``artifacts_py.gobbler.start_gobbler``) on a registry/staging in the
workdir; project ``bench`` created and two versions of random files uploaded
with ``pygobbler.upload_directory``; both bound in an Artifacts.toml with
``artifacts_py.add_artifact(project=, asset=, version=, url=, registry=)``.

REST (registry not visible: ``ARTIFACTS_PY_GOBBLER_REGISTRY`` points at a
path that does not exist), each into a fresh empty destination:

* ``artifacts_py.artifact(name, toml)``: parallel GETs, md5 checked against
  ``..manifest``, git tree hash, read-only, atomic rename;
* ``pygobbler.fetch_directory(..., force_remote=True)`` with its default
  ``concurrent=1`` and with ``concurrent=8`` (verifies nothing);
* a bare ``http.client`` loop in Python (4 threads, keep-alive, files written,
  nothing checked): the floor for a Python client (small files only);
* ``curl --parallel --parallel-max 8`` of the same URLs: the limit.

Mounted registry, into a fresh empty depot (the REST URL is made unreachable,
so any HTTP would fail): ``artifacts_py.artifact`` vs
``cp -r VERSION DEST && find DEST -type f -print0 | xargs -0 md5sum``.

Every run is a separate process (interpreter start included in "wall";
"call" is the library call alone, reported by the child), median of 3
(``--repeat``), rounds interleaved, dirty pages flushed (untimed) before each
run, each destination in a fresh ext4 block group if possible, and trees of
many files are deleted only at the end (``common.spread_subdirs``, ``KEEP_FILES``:
mass deletes slow ext4's next file creations). Tables also give the CPU time of the client process tree and of the
server process in that run, and the load average (other work on the machine
skews wall times). ``--profile DIR`` then runs each of our resolutions once
more under py-spy (client and server) and prints the top self-time frames. Caches cannot be
dropped here: every source file is in the page cache (warm reads), so these
numbers measure CPU and write cost, not disk reads. Each tool's first result
is checked against the manifest's md5s (untimed). Targets (printed, never
asserted): REST small files >= 5x faster than pygobbler's default and >= 1.5x
faster than its concurrent=8; REST large files within 1.5x of curl;
mounted within 1.2x of cp -r + md5sum.
"""

# bench-requires: pygobbler curl md5sum
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20
PROJECT = "bench"
REPEAT = 3
TARGET_PYG_DEFAULT = 5.0   # ours at least this many times faster (small files)
TARGET_PYG_8 = 1.5         # ... than pygobbler concurrent=8 (small files)
TARGET_CURL = 1.5          # ours / curl, large files (issue 9)
TARGET_CP = 1.2            # ours / (cp -r + md5sum), mounted
# Trees of more files than this stay until the workdir goes: deleting thousands
# of files makes ext4 (without a journal, as here) slow to create the next ones
# for 60-300 s (see common.spread_subdirs), a cost of the harness, not of a tool.
KEEP_FILES = 100

# Children print one JSON line: the import and the call time, seen from inside.
OURS_CHILD = """\
import json, sys, time
t0 = time.perf_counter()
import artifacts_py
t1 = time.perf_counter()
path = artifacts_py.artifact(sys.argv[1], sys.argv[2])
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "call": t2 - t1, "path": str(path)}))
"""

PYG_CHILD = """\
import json, sys, time
t0 = time.perf_counter()
import pygobbler
t1 = time.perf_counter()
path = pygobbler.fetch_directory(sys.argv[1], registry=sys.argv[2], url=sys.argv[3],
                                 cache=sys.argv[4], force_remote=True,
                                 concurrent=int(sys.argv[5]))
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "call": t2 - t1, "path": path}))
"""

# The floor for any Python client here: the standard library's http.client, one
# keep-alive connection per thread, each body written to its file; no hashing,
# no checks, no retries. argv: host port url-prefix dest threads path...
BARE_CHILD = """\
import http.client, json, os, sys, threading, time
t0 = time.perf_counter()
host, port, prefix, dest, n = sys.argv[1:6]
todo, lock = iter(sys.argv[6:]), threading.Lock()
def work():
    conn = http.client.HTTPConnection(host, int(port))
    while True:
        with lock:
            rel = next(todo, None)
        if rel is None:
            return
        conn.request("GET", prefix + rel)
        body = conn.getresponse().read()
        path = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(body)
threads = [threading.Thread(target=work) for _ in range(int(n))]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"call": time.perf_counter() - t0}))
"""
BARE_THREADS = 4


# ------------------------------------------------------------------ helpers

def child_env(**overrides: Optional[str]) -> Dict[str, str]:
    """Our environment for a timed child: bytecode caching on, no stray ARTIFACTS_PY_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTS_PY_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a timed child must not recompile every run
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@contextlib.contextmanager
def gobbler_server(root: Path) -> Iterator[Tuple[str, str, str]]:
    """Our Gobbler server on ``root/registry`` + ``root/staging``; yields (staging, registry, url)."""
    from artifacts_py.servers.gobbler import launch

    registry, staging = root / "registry", root / "staging"
    registry.mkdir()
    staging.mkdir()
    os.chmod(staging, 0o1777)
    _, staging_s, registry_s, url = launch.start_gobbler(registry=str(registry),
                                                         staging=str(staging))
    try:
        yield staging_s, registry_s, url
    finally:
        launch.stop_gobbler()


def server_pid() -> Optional[int]:
    """The running server's process id (its CPU time, py-spy), if it is a child process."""
    from artifacts_py.servers.gobbler import launch

    inst = launch._current  # private: launch exposes no pid, and only benchmarks need it
    return inst.process.pid if inst is not None and inst.process is not None else None


def md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb", buffering=0) as f:
        while True:
            chunk = f.read(MiB)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)


def data_files(manifest: Dict[str, dict]) -> List[str]:
    """Manifest paths that are real files (not empty-directory entries)."""
    return sorted(p for p, e in manifest.items() if e.get("md5sum"))


def check_tree(label: str, root: Path, manifest: Dict[str, dict]) -> None:
    """Every manifest file is under ``root`` with its md5; SystemExit otherwise (untimed)."""
    for rel in data_files(manifest):
        p = root / rel
        if not p.is_file() or md5_file(p) != manifest[rel]["md5sum"]:
            raise SystemExit(f"{label}: {p} is missing or differs from the manifest")


def proc_cpu(pid: Optional[int]) -> float:
    """User + system CPU seconds of a running process (0 if unknown)."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """One timed child: wall seconds, its (and its children's) CPU, the server's CPU."""

    wall: float
    cpu: float
    server_cpu: float
    info: dict

    @property
    def call(self) -> float:
        """The library call alone as the child timed it (wall for non-Python tools)."""
        return self.info.get("call", self.wall)


def run_child(label: str, argv: Sequence[str], env: Dict[str, str]) -> Run:
    """Run one timed child process; SystemExit with its stderr if it fails."""
    import resource

    server = server_pid()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    s0 = proc_cpu(server)
    t0 = time.perf_counter()
    proc = subprocess.run(list(argv), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    s1 = proc_cpu(server)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{label}: exit status {proc.returncode}\n{proc.stderr.decode()[-3000:]}")
    lines = proc.stdout.decode().strip().splitlines()
    info = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(wall, cpu, s1 - s0, info)


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.3f} s"


def print_runs(title: str, runs: Dict[str, List[Run]], baseline: str, size: int) -> Dict[str, Run]:
    """Table of each contender's median run (by wall); returns those runs.

    Columns: wall time, ratio to ``baseline``, CPU of the client process tree
    and of the server process during that run, then all walls and throughput.
    """
    chosen = {label: sorted(rs, key=lambda r: r.wall)[(len(rs) - 1) // 2]
            for label, rs in runs.items()}
    width = max(len(label) for label in runs)
    print(f"\n{title}  [load average {os.getloadavg()[0]:.1f}]")
    print(f"  {'':{width}}  {'wall':>9}  {'ratio':>6}  {'cpu':>9}  {'srv cpu':>9}  note")
    for label, r in chosen.items():
        walls = ", ".join(f"{x.wall:.2f}" for x in runs[label])
        call = f"; call {fmt(r.call)}" if "call" in r.info else ""
        print(f"  {label:{width}}  {fmt(r.wall):>9}  {r.wall / chosen[baseline].wall:5.2f}x  "
              f"{fmt(r.cpu):>9}  {fmt(r.server_cpu):>9}  median of {len(runs[label])} ({walls} s)"
              f"{call}; {size / r.wall / 1e6:.0f} MB/s")
    print(f"  (ratio = wall / wall of '{baseline}'; cpu = user+sys of the client process tree,"
          " srv cpu = of the Gobbler server, in that run)")
    sys.stdout.flush()
    return chosen


# --------------------------------------------------------------------- data

@dataclass
class Version:
    """One uploaded test version and how it is bound."""

    name: str           # Artifacts.toml entry
    asset: str
    n_files: int
    file_size: int
    manifest: Dict[str, dict]
    tree_hash: str = ""

    @property
    def coords(self) -> str:
        return f"{PROJECT}/{self.asset}/v1"

    @property
    def size(self) -> int:
        return self.n_files * self.file_size

    def describe(self) -> str:
        each = f"{self.file_size // KiB} KiB" if self.file_size < MiB else f"{self.file_size // MiB} MiB"
        return f"{self.n_files} files x {each} ({self.size / MiB:.0f} MiB)"


def make_tree(src: Path, n_files: int, size: int) -> None:
    """``n_files`` random files in folders of 100 (a realistic nested layout)."""
    for i in range(n_files):
        d = src / f"d{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        common.write_random(d / f"f{i:05d}.bin", size)


def upload_versions(root: Path, quick: bool, staging: str, registry: str,
                    url: str, only: Optional[str] = None) -> List[Version]:
    """Create project ``bench`` and upload the small and the large version (untimed)."""
    import pygobbler as pyg

    from artifacts_py.gobbler import client

    shapes = [("Small", "small", 200 if quick else 2000, 16 * KiB),
              ("Large", "large", 4, (16 if quick else 256) * MiB)]
    pyg.create_project(PROJECT, staging=staging, url=url)
    versions = []
    for name, asset, n, size in shapes:
        if only and asset != only:
            continue
        src = root / f"src-{asset}"
        make_tree(src, n, size)
        pyg.upload_directory(PROJECT, asset, "v1", str(src), staging=staging, url=url)
        if n <= KEEP_FILES:
            common.rmtree(src)  # the registry has it now; save the disk
        manifest = client.fetch_manifest(PROJECT, asset, "v1", registry=registry)
        versions.append(Version(name, asset, n, size, manifest))
    return versions


def bind_versions(root: Path, versions: List[Version], registry: str, url: str) -> Path:
    """Pin both versions in an Artifacts.toml (through the mounted registry; untimed)."""
    import artifacts_py

    toml = root / "project" / "Artifacts.toml"
    toml.parent.mkdir()
    saved = os.environ.get("ARTIFACTS_PY_DEPOT_PATH")
    os.environ["ARTIFACTS_PY_DEPOT_PATH"] = str(root / "pin-depot")
    try:
        for v in versions:
            info = artifacts_py.add_artifact(toml, v.name, project=PROJECT, asset=v.asset,
                                             version="v1", url=url, registry=registry,
                                             verbose=False)
            v.tree_hash = info["git_tree_sha1"]
    finally:
        if saved is None:
            del os.environ["ARTIFACTS_PY_DEPOT_PATH"]
        else:
            os.environ["ARTIFACTS_PY_DEPOT_PATH"] = saved
    return toml  # pin-depot kept: see KEEP_FILES


# -------------------------------------------------------------------- tools

class Tools:
    """Each contender, as a function (version, fresh destination) -> (Run, result dir)."""

    def __init__(self, root: Path, toml: Path, registry: str, url: str) -> None:
        self.root, self.toml, self.registry, self.url = root, toml, registry, url
        self.nowhere = str(root / "registry-not-mounted-here")

    def ours_env(self, dest: Path, rest: bool) -> Dict[str, str]:
        """A fresh depot; REST: registry invisible; mounted: URL unreachable (no silent REST)."""
        if rest:
            return child_env(ARTIFACTS_PY_DEPOT_PATH=str(dest),
                             ARTIFACTS_PY_GOBBLER_REGISTRY=self.nowhere)
        return child_env(ARTIFACTS_PY_DEPOT_PATH=str(dest),
                         ARTIFACTS_PY_GOBBLER_URL="http://127.0.0.1:9")

    def ours_rest(self, v: Version, dest: Path) -> Tuple[Run, Path]:
        run = run_child("ours (REST)", [common.python(), "-c", OURS_CHILD, v.name, str(self.toml)],
                        self.ours_env(dest, rest=True))
        return run, Path(run.info["path"])

    def ours_mounted(self, v: Version, dest: Path) -> Tuple[Run, Path]:
        run = run_child("ours (mounted)", [common.python(), "-c", OURS_CHILD, v.name,
                                           str(self.toml)], self.ours_env(dest, rest=False))
        return run, Path(run.info["path"])

    def pygobbler(self, concurrent: int) -> Callable[[Version, Path], Tuple[Run, Path]]:
        def fetch(v: Version, dest: Path) -> Tuple[Run, Path]:
            run = run_child(f"pygobbler concurrent={concurrent}",
                            [common.python(), "-c", PYG_CHILD, v.coords, self.nowhere, self.url,
                             str(dest), str(concurrent)], child_env())
            return run, Path(run.info["path"])
        return fetch

    def bare(self, v: Version, dest: Path) -> Tuple[Run, Path]:
        from urllib.parse import urlsplit

        u = urlsplit(self.url)
        run = run_child("bare http.client", [common.python(), "-c", BARE_CHILD, u.hostname,
                                             str(u.port), f"/fetch/{v.coords}/", str(dest),
                                             str(BARE_THREADS), *data_files(v.manifest)],
                        child_env())
        return run, dest

    def curl(self, v: Version, dest: Path) -> Tuple[Run, Path]:
        # The config file (written untimed) lists every data file of the manifest.
        cfg = self.root / "curl.cfg"
        with open(cfg, "w") as fh:
            for rel in data_files(v.manifest):
                fh.write(f'url = "{self.url}/fetch/{v.coords}/{rel}"\n'
                         f'output = "{dest / rel}"\n')
        run = run_child("curl", ["curl", "-sf", "--parallel", "--parallel-max", "8",
                                 "--create-dirs", "-K", str(cfg)], child_env())
        return run, dest

    def cp_md5sum(self, v: Version, dest: Path) -> Tuple[Run, Path]:
        src = Path(self.registry, PROJECT, v.asset, "v1")
        out = self.root / "md5sum.txt"
        script = ('set -e -o pipefail; cp -r "$1" "$2"; '
                  'find "$2" -type f -print0 | xargs -0 md5sum > "$3"')
        run = run_child("cp -r + md5sum", ["bash", "-c", script, "-", str(src), str(dest),
                                           str(out)], child_env())
        return run, dest


Contender = Tuple[str, Callable[[Version, Path], Tuple[Run, Path]]]


def measure(targets: Path, case: str, v: Version, contenders: Sequence[Contender],
            repeat: int) -> Dict[str, List[Run]]:
    """``repeat`` runs of each contender into fresh destinations, rounds interleaved."""
    runs: Dict[str, List[Run]] = {label: [] for label, _ in contenders}
    for rnd in range(repeat):
        for i, (label, fetch) in enumerate(contenders):
            dest = targets / f"{case}-{v.asset}-{i}-{rnd}"
            common.drop_dirty_pages()
            run, result = fetch(v, dest)
            runs[label].append(run)
            if rnd == 0:
                check_tree(label, result, v.manifest)
            if v.n_files <= KEEP_FILES:
                common.rmtree(dest)
    return runs


@contextlib.contextmanager
def make_targets(root: Path, where: str) -> Iterator[Path]:
    """The folder the timed runs write into (``--dest``).

    tmpfs by default: this VM's ext4 (no journal) skips inodes freed in the last
    60-300 s by anyone, so creating 2,000 files takes 0.04 s or 1 s depending on
    what the machine deleted lately, which swamps the tools' own differences.
    On disk, each destination is spread to a fresh block group where possible.
    """
    shm = Path("/dev/shm")
    on_tmpfs = where == "tmpfs" and shm.is_dir() and shutil.disk_usage(shm).free > 6 * 2 ** 30
    targets = shm / f"artifacts-bench-{os.getpid()}" if on_tmpfs else root / "targets"
    targets.mkdir()
    if on_tmpfs:
        print(f"   timed runs write to {targets} (tmpfs; --dest disk for {root})")
    else:
        spread = common.spread_subdirs(targets)
        print(f"   timed runs write to {targets} (disk; block groups spread: {spread})")
    try:
        yield targets
    finally:
        common.rmtree(targets)


def prime(targets: Path, tools: Tools, v: Version) -> None:
    """One untimed run of each Python child so bytecode caches exist."""
    for i, fetch in enumerate((tools.ours_rest, tools.pygobbler(1))):
        fetch(v, targets / f"prime-{i}")  # kept: see KEEP_FILES


# ----------------------------------------------------------------- profiles

# Leaf frames that are a thread waiting (for work, a lock, the network), not working.
IDLE = ("Condition.wait (", "_worker (concurrent/futures/thread.py", ".select (selectors.py",
        "SocketIO.readinto (socket.py", "Thread.join (", "_wait_for_tstate_lock (")


def top_self(raw: Path, n: int = 8) -> List[Tuple[float, str]]:
    """The ``n`` frames with most self samples in a py-spy raw (collapsed) file, as %
    of the busy samples (waits in ``IDLE`` are left out)."""
    import collections

    counts: "collections.Counter[str]" = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, k = line.rpartition(" ")
        frames = [f for f in stack.split(";") if not f.startswith("thread (")]
        if frames and not any(idle in frames[-1] for idle in IDLE):
            counts[frames[-1]] += int(k)
    total = sum(counts.values()) or 1
    return [(100 * k / total, frame) for frame, k in counts.most_common(n)]


def spy_run(stem: Path, argv: Sequence[str], env: Dict[str, str],
            before: Callable[[], None] = lambda: None) -> None:
    """Run ``argv`` twice under py-spy (``stem``.txt collapsed stacks, ``stem``.svg
    flame graph) while recording the Gobbler server (``stem``-server.txt); print the
    top self-time frames of both. ``before`` runs (untimed) before each run."""
    spy = shutil.which("py-spy")
    if not spy:
        print("\n(--profile: py-spy is not on PATH; pip install py-spy)")
        return
    pid = server_pid()
    server = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
         "-o", f"{stem}-server.txt"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL) if pid else None
    for fmt, suffix in (("raw", "txt"), ("flamegraph", "svg")):
        before()
        subprocess.run([spy, "record", "--rate", "250", "--threads", "--format", fmt,
                        "-o", f"{stem}.{suffix}", "--", *argv], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if server is not None:
        server.send_signal(2)  # py-spy writes its output on SIGINT
        server.wait(timeout=60)
    for path in (Path(f"{stem}.txt"), Path(f"{stem}-server.txt")):
        if path.exists():
            print(f"  {path.name}: top self time (% of busy samples; waits left out)")
            for pct, frame in top_self(path):
                print(f"    {pct:5.1f}%  {frame[:110]}")


def profile(out: Path, tools: Tools, versions: List[Version], targets: Path,
            only: Optional[str] = None) -> None:
    """One more run of each of our resolutions under py-spy, with the server's profile."""
    out.mkdir(parents=True, exist_ok=True)
    print(f"\nprofiles in {out} (py-spy, 250 Hz; .txt collapsed stacks, .svg flame graphs)")
    for v in versions:
        for mode in (only,) if only else ("rest", "mounted"):
            dest = targets / f"profile-{mode}-{v.asset}"
            spy_run(out / f"ours-{mode}-{v.asset}",
                    [common.python(), "-c", OURS_CHILD, v.name, str(tools.toml)],
                    tools.ours_env(dest, rest=mode == "rest"), lambda: common.rmtree(dest))
            common.rmtree(dest)


# --------------------------------------------------------------------- main

def main() -> int:
    p = common.bench_parser(__doc__.splitlines()[0], "gobbler-resolve")  # --quick: 200 x 16 KiB, 4 x 16 MiB
    p.add_argument("--repeat", type=int, default=REPEAT, help=f"runs per contender (median of; {REPEAT})")
    p.add_argument("--profile", metavar="DIR", help="also record py-spy profiles of our runs")
    p.add_argument("--only", choices=("small", "large"), help="one version only")
    p.add_argument("--dest", choices=("tmpfs", "disk"), default="tmpfs",
                   help="where the timed runs write: /dev/shm (default; steady) or the "
                        "workdir's filesystem (this VM's ext4 makes file creation erratic)")
    p.add_argument("--mode", choices=("rest", "mounted"), help="one way of resolving only")
    args = p.parse_args()
    common.header("bench_gobbler_resolve", args.quick, "warm page cache (caches cannot be dropped)")
    verdicts: List[bool] = []
    with common.workdir(args.workdir, args.keep) as root, \
            gobbler_server(root) as (staging, registry, url), \
            make_targets(root, args.dest) as targets:
        t0 = time.perf_counter()
        versions = upload_versions(root, args.quick, staging, registry, url, args.only)
        toml = bind_versions(root, versions, registry, url)
        print(f"   server {url}; uploaded and pinned {', '.join(v.describe() for v in versions)} "
              f"in {time.perf_counter() - t0:.0f} s")
        tools = Tools(root, toml, registry, url)
        prime(targets, tools, versions[0])
        curl = "curl --parallel-max 8 (no verification)"
        pyg1, pyg8 = "pygobbler.fetch_directory concurrent=1", "pygobbler.fetch_directory concurrent=8"
        ours = "artifacts_py.artifact"
        bare = f"python http.client x{BARE_THREADS} (no verification)"
        for v in versions if args.mode != "mounted" else ():
            contenders = [(ours, tools.ours_rest), (pyg1, tools.pygobbler(1)),
                          (pyg8, tools.pygobbler(8)), (curl, tools.curl)]
            if v.asset == "small":
                contenders.insert(3, (bare, tools.bare))
            runs = measure(targets, "rest", v, contenders, args.repeat)
            best = print_runs(f"REST, cold: {v.coords}, {v.describe()}", runs, curl, v.size)
            if v.asset == "small":
                for peer, target in ((pyg1, TARGET_PYG_DEFAULT), (pyg8, TARGET_PYG_8)):
                    r = best[peer].wall / best[ours].wall
                    verdicts.append(common.verdict(
                        f">= {target}x faster than pygobbler {peer.split()[-1]}", r >= target,
                        f"{r:.2f}x (library calls alone: {best[peer].call / best[ours].call:.2f}x)"))
                floor = best[pyg1].wall / best[bare].wall
                print(f"  (a bare http.client loop with no verification is {floor:.2f}x faster "
                      "than pygobbler concurrent=1: the most any Python client gets here)")
            else:
                r = best[ours].wall / best[curl].wall
                hashes = common.hash_floor(v.size, ("md5", "sha1"))
                cores = os.cpu_count() or 1
                floor = (best[curl].cpu + hashes) / cores
                print(f"  (the md5 and git blob sha1 that every file needs cost {hashes:.2f} s of CPU "
                      f"here; with curl's own {best[curl].cpu:.2f} s of CPU (receive, write) that "
                      f"is {floor:.2f} s on {cores} cores = {floor / best[curl].wall:.2f}x of "
                      "curl's wall time, at best)")
                verdicts.append(common.verdict(
                    f"within {TARGET_CURL}x of parallel curl", r <= TARGET_CURL,
                    f"{r:.2f}x (our call alone: {best[ours].call / best[curl].wall:.2f}x)"))
        mounted, cp = "artifacts_py.artifact (mounted registry)", "cp -r + md5sum (all files)"
        for v in versions if args.mode != "rest" else ():
            runs = measure(targets, "mounted", v, [(mounted, tools.ours_mounted), (cp, tools.cp_md5sum)],
                           args.repeat)
            best = print_runs(f"mounted registry, cold: {v.coords}, {v.describe()}", runs, cp,
                              v.size)
            r = best[mounted].wall / best[cp].wall
            verdicts.append(common.verdict(
                f"within {TARGET_CP}x of cp -r + md5sum", r <= TARGET_CP,
                f"{r:.2f}x (our call alone: {best[mounted].call / best[cp].wall:.2f}x)"))
        if args.profile:
            profile(Path(args.profile), tools, versions, targets, args.mode)
    print(f"\nsummary: {sum(verdicts)} of {len(verdicts)} targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
