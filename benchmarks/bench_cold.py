#!/usr/bin/env python3
"""Cold install of one tarball: artifacts-py vs fetch-artifacts vs pooch vs curl|tar.

Run from the repository root (peers: ``pip install -e .[bench]``)::

    python benchmarks/bench_cold.py            # full: ~256 MiB of mixed files
    python benchmarks/bench_cold.py --quick    # smoke: ~30 MiB

Data: two large random files, two large base64-text files (compressible about
4:3) and 1,000 small files of 0-64 KiB in nested folders, packed by
``artifacts_py.create_artifact`` as ``.tar.gz`` and as plain ``.tar``, served
by nginx on 127.0.0.1 (a threaded ``http.server`` when nginx is missing).

Each tool installs the tarball into an empty depot/cache (fresh each run;
dirty pages flushed before each run, untimed), median of 3 (``--repeat``),
rounds interleaved:

* ``artifacts_py.artifact(name, toml)``: download + sha256, safe unpack,
  tree hash from the stream, read-only, rename;
* ``fetch_artifacts.artifact(name, toml)``: urlretrieve, sha256, extractall,
  copytree;
* ``pooch.retrieve(url, known_hash, processor=pooch.Untar())``;
* ``curl -s URL | tar -xzf - -C DIR``: the physical limit, verifies nothing.

Every tool's result is checked (untimed, first round) against the tree hash.
Targets, judged on the medians: ours within 1.2x of curl|tar, and faster
than both peers. A breakdown of our pipeline (each phase alone, median of
``--repeat``) follows the tables.
"""

# bench-requires: curl tar
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

TARGET_CURL = 1.2
NAME = "Big"
MiB = 1 << 20


def build_tree(src: Path, quick: bool) -> int:
    """The mixed tree; returns its size in bytes."""
    src.mkdir()
    big, text = (8 * MiB, 6 * MiB) if quick else (64 * MiB, 48 * MiB)
    for i in range(2):
        common.write_random(src / f"random{i}.bin", big)
        common.write_text_like(src / f"text{i}.txt", text)
    n_small, max_small = (200, 16 << 10) if quick else (1000, 64 << 10)
    return 2 * (big + text) + common.make_small_tree(src / "small", n_small, max_small)


class Tools:
    """One install of the tarball by each tool into a fresh folder."""

    def __init__(self, root: Path, toml: Path, info: Dict[str, str]) -> None:
        self.root, self.toml, self.info = root, toml, info
        self.tar_flags = "-xzf" if info["url"].endswith(".gz") else "-xf"

    def ours(self, target: Path) -> Path:
        import artifacts_py

        os.environ["ARTIFACTS_PY_DEPOT_PATH"] = str(target)
        return artifacts_py.artifact(NAME, self.toml)

    def fetch_artifacts(self, target: Path) -> Path:
        import fetch_artifacts
        import fetch_artifacts.artifacts as fa

        fa._artifact_managers.clear()  # it caches its manager (and cache dir) per toml
        fetch_artifacts.set_cache_dir(target)
        path = fetch_artifacts.artifact(NAME, self.toml)
        (path / ".fetch_artifacts_complete").unlink()  # its marker: not artifact content
        return path

    def pooch(self, target: Path) -> Path:
        import pooch

        pooch.get_logger().setLevel("WARNING")
        fname = self.info["url"].rsplit("/", 1)[-1]
        pooch.retrieve(self.info["url"], known_hash=f"sha256:{self.info['sha256']}",
                       fname=fname, path=target, processor=pooch.Untar())
        return target / f"{fname}.untar"

    def curl_tar(self, target: Path) -> Path:
        import subprocess

        out = target / "out"
        out.mkdir(parents=True)
        subprocess.run(["bash", "-c", "set -o pipefail; curl -sf \"$1\" | tar "
                        f"{self.tar_flags} - -C \"$2\"", "-", self.info["url"], str(out)],
                       check=True)
        return out

    def all(self) -> List[Tuple[str, Callable[[Path], Path]]]:
        """Every contender; a peer that is not installed is left out (with a note)."""
        peers = [("fetch_artifacts.artifact", self.fetch_artifacts, "fetch_artifacts"),
                 ("pooch.retrieve + Untar", self.pooch, "pooch")]
        return [("artifacts_py.artifact", self.ours),
                *((label, fn) for label, fn, module in peers if common.have_peer(module)),
                ("curl | tar (no verification)", self.curl_tar)]


def run_variant(root: Path, tools: Tools, repeat: int) -> Dict[str, List[common.Stopwatch]]:
    """``repeat`` installs by each tool, interleaved; results verified once."""
    from artifacts_py import compute_git_tree_sha1

    times: Dict[str, List[common.Stopwatch]] = {label: [] for label, _ in tools.all()}
    for rnd in range(repeat):
        for label, install in tools.all():
            target = root / "targets" / f"{len(times[label])}-{label.split()[0]}"
            common.drop_dirty_pages()
            with common.Stopwatch() as sw:
                out = install(target)
            times[label].append(sw)
            if rnd == 0:
                got = compute_git_tree_sha1(out)
                if got != tools.info["git_tree_sha1"]:
                    raise SystemExit(f"{label}: installed tree hashes to {got}, "
                                     f"expected {tools.info['git_tree_sha1']}")
            common.rmtree(target)
    return times


def report(title: str, times: Dict[str, List[common.Stopwatch]], size: int) -> Tuple[bool, bool]:
    med = {label: common.median_run(runs) for label, runs in times.items()}
    rows = [(label, m.wall, m.cpu, f"{common.runs_note(times[label])}, "
                                   f"{size / m.wall / 1e6:.0f} MB/s of content")
            for label, m in med.items()]
    curl = "curl | tar (no verification)"
    common.print_table(title, rows, curl)
    ours = med["artifacts_py.artifact"].wall
    ratio = ours / med[curl].wall
    ok1 = common.verdict(f"within {TARGET_CURL}x of curl|tar", ratio <= TARGET_CURL,
                         f"{ratio:.2f}x wall, medians (median cpu: ours "
                         f"{med['artifacts_py.artifact'].cpu:.2f} s, curl|tar {med[curl].cpu:.2f} s)")
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


def breakdown(root: Path, info: Dict[str, str], repeat: int) -> None:
    """Each phase of our install alone (median of ``repeat``), to see where time goes."""
    import subprocess

    from artifacts_py import archives, files, transport

    tarball = root / "phase.download"
    url, sha = info["url"], info["sha256"]
    local = info["archive_path"]

    def fresh_dir() -> Path:
        return Path(tempfile.mkdtemp(dir=root / "targets"))

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
    phases: List[Tuple[str, Callable, Callable]] = [
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
        args: List[Path] = []
        med, runs = common.median_of(lambda: fn(args[-1]), repeat,
                                     setup=lambda: args.append(make_arg()))
        results.append((label, med.wall, med.cpu, common.runs_note(runs, 3)))
        common.rmtree(root / "targets")
        (root / "targets").mkdir()
        if tarball.exists():
            tarball.unlink()
    common.print_table(f"breakdown of our install, each phase alone ({Path(local).name})",
                       results, results[0][0])


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
        (root / "targets").mkdir()
        (root / "tmp").mkdir()
        tempfile.tempdir = str(root / "tmp")  # fetch-artifacts downloads via the temp dir
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
                  f"data made in {time.perf_counter() - t0:.0f} s")
            for toml, info in variants:
                archive = Path(info["archive_path"])
                archive.read_bytes()  # warm page cache: the server never waits on disk
                title = (f"cold install of {archive.name} ({archive.stat().st_size / MiB:.0f} MiB"
                         f" archive, {size / MiB:.0f} MiB content)")
                times = run_variant(root, Tools(root, toml, info), repeat)
                verdicts.append((archive.name, report(title, times, size)))
                breakdown(root, info, repeat)
    print("\nsummary: " + "; ".join(
        f"{name}: vs curl|tar {'PASS' if a else 'MISS'}, vs peers {'PASS' if b else 'MISS'}"
        for name, (a, b) in verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
