#!/usr/bin/env python3
"""Cold install of one tarball: artifacts-py vs fetch-artifacts vs pooch vs curl|tar.

Run from the repository root (peers: ``pip install -e .[bench]``)::

    python benchmarks/bench_cold.py            # full: ~256 MiB of mixed files
    python benchmarks/bench_cold.py --quick    # smoke: ~30 MiB

Data: two large random files, two large base64-text files (compressible about
4:3) and 1,000 small files of 0-64 KiB in nested folders, packed by
``artifacts_py.create_artifact`` as ``.tar.gz`` and as plain ``.tar``, served
by nginx on 127.0.0.1 (a threaded ``http.server`` when nginx is missing).

Whole process against whole process: each tool is a fresh process that
installs the tarball into an empty depot/cache folder on disk (fresh each
run; dirty pages flushed before each run, untimed), timed from outside (wall
time, and the CPU time of the process and its children). The Python tools
run as ``python -c "..."`` with this repository on ``PYTHONPATH`` and
byte-code caching on (``PYTHONPYCACHEPREFIX`` in the workdir; an untimed
warm-up run of every tool writes the .pyc files, as users have them).
Median of 3 (``--repeat``), rounds interleaved:

* ``artifacts_py.artifact(name, toml)`` with ``ARTIFACTS_PY_DEPOT_PATH`` an
  empty folder: download + sha256, safe unpack, tree hash from the stream,
  read-only, rename;
* ``fetch_artifacts.artifact(name, toml)`` after ``set_cache_dir``:
  urlretrieve, sha256, extractall, copytree;
* ``pooch.retrieve(url, known_hash, processor=pooch.Untar())``;
* ``curl -s URL | tar -xzf - -C DIR``: the physical limit, verifies nothing.

Every tool's result is checked (untimed, first timed round) against the tree
hash. Targets, judged on the medians: ours within 1.2x of curl|tar, and
faster than both peers. Under the ``.tar`` table, the verification floor:
the CPU time of sha256 (the tarball) + sha1 (the tree's blobs) measured
here, divided by the cores, and its ratio to curl|tar's median. A breakdown
of our pipeline follows each table: each phase alone, in-process (not a
whole process), median of ``--repeat``.
"""

# bench-requires: curl tar
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

TARGET_CURL = 1.2
NAME = "Big"
MiB = 1 << 20
CURL = "curl | tar (no verification)"

# Each command prints where the tree landed (its last line), for the check.
OURS = "import sys, artifacts_py; print(artifacts_py.artifact(sys.argv[1], sys.argv[2]))"
FETCH = ("import sys, fetch_artifacts; fetch_artifacts.set_cache_dir(sys.argv[3]); "
         "print(fetch_artifacts.artifact(sys.argv[1], sys.argv[2]))")
POOCH = ("import os, sys, pooch; pooch.get_logger().setLevel('WARNING'); "
         "pooch.retrieve(sys.argv[1], known_hash=sys.argv[2], fname=sys.argv[3], path=sys.argv[4], "
         "processor=pooch.Untar()); print(os.path.join(sys.argv[4], sys.argv[3] + '.untar'))")
CURL_TAR = 'set -o pipefail; curl -sf "$1" | tar {flags} - -C "$2" && echo "$2"'

def build_tree(src: Path, quick: bool) -> int:
    """The mixed tree; returns its size in bytes."""
    src.mkdir()
    big, text = (8 * MiB, 6 * MiB) if quick else (64 * MiB, 48 * MiB)
    for i in range(2):
        common.write_random(src / f"random{i}.bin", big)
        common.write_text_like(src / f"text{i}.txt", text)
    n_small, max_small = (200, 16 << 10) if quick else (1000, 64 << 10)
    return 2 * (big + text) + common.make_small_tree(src / "small", n_small, max_small)


Command = Tuple[List[str], Dict[str, str]]


class Tools:
    """The command by which each tool installs the tarball into an empty folder."""

    def __init__(self, root: Path, toml: Path, info: Dict[str, str]) -> None:
        self.toml, self.info = toml, info
        # HOME in the workdir: no user configuration, nothing written to the real home.
        self.env = common.child_python_env(root / "pycache", HOME=str(root / "home"),
                                           XDG_CACHE_HOME=None, TMPDIR=str(root / "tmp"))
        self.tar_flags = "-xzf" if info["url"].endswith(".gz") else "-xf"

    def ours(self, target: Path) -> Command:
        return ([common.python(), "-c", OURS, NAME, str(self.toml)],
                dict(self.env, ARTIFACTS_PY_DEPOT_PATH=str(target)))

    def fetch_artifacts(self, target: Path) -> Command:
        return [common.python(), "-c", FETCH, NAME, str(self.toml), str(target)], self.env

    def pooch(self, target: Path) -> Command:
        fname = self.info["url"].rsplit("/", 1)[-1]
        return ([common.python(), "-c", POOCH, self.info["url"], f"sha256:{self.info['sha256']}",
                 fname, str(target)], self.env)

    def curl_tar(self, target: Path) -> Command:
        return ["bash", "-c", CURL_TAR.format(flags=self.tar_flags), "-", self.info["url"],
                str(target)], self.env

    def all(self) -> List[Tuple[str, Callable[[Path], Command]]]:
        """Every contender; a peer that is not installed is left out (with a note)."""
        peers = [("fetch_artifacts.artifact", self.fetch_artifacts, "fetch_artifacts"),
                 ("pooch.retrieve + Untar", self.pooch, "pooch")]
        return [("artifacts_py.artifact", self.ours),
                *((label, fn) for label, fn, module in peers if common.have_peer(module)),
                (CURL, self.curl_tar)]


def install(label: str, command: Command, target: Path) -> Tuple[common.Stopwatch, Path]:
    """Run one install into the empty folder ``target``; its time and where the tree is."""
    argv, env = command
    target.mkdir()
    common.drop_dirty_pages()
    with common.Stopwatch() as sw:
        proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode:
        raise SystemExit(f"{label}: exit status {proc.returncode}\n{proc.stderr.decode()[-3000:]}")
    return sw, Path(proc.stdout.decode().splitlines()[-1])


def check(label: str, tree: Path, expected: str) -> None:
    """The installed tree must hash to the bound git-tree-sha1 (untimed)."""
    from artifacts_py import compute_git_tree_sha1

    (tree / ".fetch_artifacts_complete").unlink(missing_ok=True)  # its marker, not content
    got = compute_git_tree_sha1(tree)
    if got != expected:
        raise SystemExit(f"{label}: installed tree hashes to {got}, expected {expected}")


def run_variant(targets: Path, tools: Tools, repeat: int) -> Dict[str, List[common.Stopwatch]]:
    """An untimed warm-up, then ``repeat`` installs by each tool, interleaved; the
    first timed install of each is verified."""
    for i, (label, command) in enumerate(tools.all()):  # writes the .pyc files
        install(label, command(targets / f"warm-{i}"), targets / f"warm-{i}")
        common.rmtree(targets / f"warm-{i}")
    times: Dict[str, List[common.Stopwatch]] = {label: [] for label, _ in tools.all()}
    for rnd in range(repeat):
        for i, (label, command) in enumerate(tools.all()):
            target = targets / f"{rnd}-{i}"
            sw, tree = install(label, command(target), target)
            times[label].append(sw)
            if rnd == 0:
                check(label, tree, tools.info["git_tree_sha1"])
            common.rmtree(target)
    return times


def report(title: str, times: Dict[str, List[common.Stopwatch]], size: int) -> Tuple[bool, bool]:
    """The table of whole-process installs and the two verdicts."""
    med = {label: common.median_run(runs) for label, runs in times.items()}
    rows = [(label, m.wall, m.cpu, f"{common.runs_note(times[label])}, "
                                   f"{size / m.wall / 1e6:.0f} MB/s of content")
            for label, m in med.items()]
    common.print_table(title, rows, CURL)
    ours = med["artifacts_py.artifact"].wall
    ratio = ours / med[CURL].wall
    ok1 = common.verdict(f"within {TARGET_CURL}x of curl|tar", ratio <= TARGET_CURL,
                         f"{ratio:.2f}x wall, medians (median cpu: ours "
                         f"{med['artifacts_py.artifact'].cpu:.2f} s, curl|tar {med[CURL].cpu:.2f} s)")
    present = [med[p].wall for p in ("fetch_artifacts.artifact", "pooch.retrieve + Untar")
               if p in med]
    if not present:
        print("  (no peer installed: the 'faster than both peers' target is not judged)")
        return ok1, False
    peers = min(present)
    ok2 = common.verdict(f"faster than {'both peers' if len(present) == 2 else 'the peer'}",
                         ours < peers,
                         f"medians: ours {ours:.3f} s vs fastest peer {peers:.3f} s ({peers / ours:.2f}x)")
    return ok1, ok2


def verification_floor(archive: Path, size: int, curl: common.Stopwatch) -> None:
    """Print the CPU that sha256 of the tarball + sha1 of the tree's blobs cost here, and
    the floor it puts under any verifying install: curl|tar's own CPU (receive, parse,
    write) plus those hashes, spread over every core, against curl|tar's wall time."""
    hashes = common.hash_floor(archive.stat().st_size, ("sha256",)) + \
        common.hash_floor(size, ("sha1",))
    cores = os.cpu_count() or 1
    floor = (curl.cpu + hashes) / cores
    print(f"  verification floor: sha256 (the tarball) + sha1 (the tree's blobs) cost {hashes:.2f} s "
          f"of CPU here; with curl|tar's own {curl.cpu:.2f} s of CPU that is {floor:.2f} s on "
          f"{cores} cores = {floor / curl.wall:.2f}x of curl|tar's median wall, at best")


def breakdown(root: Path, info: Dict[str, str], repeat: int) -> None:
    """Each phase of our install alone, in-process (median of ``repeat``): where the time goes."""
    from artifacts_py import archives, files, transport

    tarball = root / "phase.download"
    phase_dirs = root / "phases"
    url, sha = info["url"], info["sha256"]
    local = info["archive_path"]

    def fresh_dir() -> Path:
        return Path(tempfile.mkdtemp(dir=phase_dirs))

    def curl_only() -> None:
        subprocess.run(["curl", "-sf", "-o", str(tarball), url], check=True)

    def gunzip_only() -> None:
        with open(local, "rb") as f:
            with archives.open_decompressed(f, local) as s:
                while s.read(MiB):
                    pass

    def extracted_dir() -> Path:
        d = fresh_dir()
        archives.extract_tarball(local, d)
        return d

    none = lambda: None  # noqa: E731
    phases: List[Tuple[str, Callable[..., object], Callable[[], Any]]] = [
        ("curl -o file (download only)", lambda _: curl_only(), none),
        ("transport.download (HTTP + sha256 + write)",
         lambda _: transport.download(url, tarball, sha256=sha), none),
        ("decompress only (open_decompressed + read)", lambda _: gunzip_only(), none),
        ("tarball_tree_hash (decompress+parse+sha1)",
         lambda _: archives.tarball_tree_hash(local), none),
        ("extract_tarball (the above + write files)",
         lambda d: archives.extract_tarball(local, d), fresh_dir),
        ("make_readonly (walk + chmod)", files.make_readonly, extracted_dir),
    ]
    if not local.endswith(".gz"):
        del phases[2]
    results = []
    for label, fn, make_arg in phases:
        phase_dirs.mkdir()
        args: List[Path] = []
        med, runs = common.median_of(lambda: fn(args[-1]), repeat,
                                     setup=lambda: args.append(make_arg()))
        results.append((label, med.wall, med.cpu, common.runs_note(runs, 3)))
        common.rmtree(phase_dirs)
        if tarball.exists():
            tarball.unlink()
    common.print_table(f"breakdown of our install ({Path(local).name}): each phase alone, "
                       "in-process (a breakdown, not whole processes)", results, results[0][0])


def main() -> int:
    parser = common.bench_parser(__doc__.splitlines()[0], "cold")
    common.add_repeat(parser)
    args = parser.parse_args()
    common.header("bench_cold", args.quick)
    repeat = args.repeat
    verdicts = []
    with common.workdir(args.workdir, args.keep) as root:
        www = root / "www"
        www.mkdir()
        for sub in ("targets", "tmp", "home"):  # tmp: the children's TMPDIR, on this disk
            (root / sub).mkdir()
        # Each run's folder in a fresh block group: the last run's deletes must not
        # slow this run's creates (see common.spread_subdirs).
        spread = common.spread_subdirs(root / "targets")
        t0 = time.perf_counter()
        size = build_tree(root / "src", args.quick)
        with common.serve_directory(www, root / "server") as (base, server):
            variants = []
            for compression in ("gz", "none"):
                toml = root / f"proj-{compression}" / "Artifacts.toml"
                toml.parent.mkdir()
                info = common.pack_and_bind(root / "src", www, toml, NAME, base, compression)
                variants.append((toml, info))
            n_files = sum(len(f) for _, _, f in os.walk(root / "src"))
            print(f"   content: {n_files} files, {size / MiB:.0f} MiB; served by {server}; "
                  f"data made in {time.perf_counter() - t0:.0f} s; installs into {root / 'targets'}"
                  f" (disk; block groups spread: {spread})")
            for toml, info in variants:
                archive = Path(info["archive_path"])
                archive.read_bytes()  # warm page cache: the server never waits on disk
                title = (f"cold install of {archive.name} ({archive.stat().st_size / MiB:.0f} MiB"
                         f" archive, {size / MiB:.0f} MiB content)")
                times = run_variant(root / "targets", Tools(root, toml, info), repeat)
                verdicts.append((archive.name, report(title, times, size)))
                if info["url"].endswith(".tar"):
                    verification_floor(archive, size, common.median_run(times[CURL]))
                breakdown(root, info, repeat)
    print("\nsummary: " + "; ".join(
        f"{name}: vs curl|tar {'PASS' if a else 'MISS'}, vs peers {'PASS' if b else 'MISS'}"
        for name, (a, b) in verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
