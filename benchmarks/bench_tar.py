#!/usr/bin/env python3
"""Unpacking tarballs: ``extract_tarball`` against GNU tar, whole process vs whole process.

Run from the repository root::

    python benchmarks/bench_tar.py                  # 1,000 and 100,000 files of 1 KiB, 256 MiB .tar
    python benchmarks/bench_tar.py --files 1000     # one size only (repeat for more sizes)
    python benchmarks/bench_tar.py --no-big         # skip the 256 MiB plain tar
    python benchmarks/bench_tar.py --quick          # 1,000 files only, no big tar

Setup (untimed): a tree of N files of 1 KiB of random bytes in folders of
1,000, packed by ``create_archive`` as ``.tar.gz`` in ``--workdir`` (default
``/tmp/artifacts-bench/tar``: on disk, as users have it; tmpfs would flatter
both contenders).

Timed, median of 3 (``--repeat``), rounds interleaved, after an untimed
warm-up (which also writes the bytecode, as an installed package has it);
each run a fresh process unpacking into a fresh folder, dirty pages flushed
before it (untimed):

* ``python -c 'extract_tarball(archive, dest)'`` (files read-only, tree hash
  computed from the stream);
* ``tar -xzf archive -C dest``.

Then a plain 256 MiB ``.tar`` (four 64 MiB random files) piped through
``cat`` as a stand-in for ``curl``: ``cat | python extract_tarball(stdin)``
against ``cat | tar -xf -``. Each table lists every run and the load
average. Targets (printed, never asserted), judged on the medians: within
2x of tar for the .tar.gz trees, 1.2x for the piped big tar.
"""

# bench-requires: tar
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OURS = ("import sys; from artifacts_py.archives import extract_tarball; "
        "extract_tarball(sys.argv[1] if sys.argv[1] != '-' else sys.stdin.buffer, sys.argv[2], "
        "readonly=True)")
MiB = 1 << 20


def make_tree(root: Path, files: int, size: int) -> None:
    """``files`` random files of ``size`` bytes, 1,000 to a folder."""
    for i in range(files):
        folder = root / f"d{i // 1000:04d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        (folder / f"f{i:06d}.bin").write_bytes(os.urandom(size))


def timed(cmd: str, dest: Path, env: Dict[str, str]) -> common.Stopwatch:
    """One run of the shell command ``cmd`` into an empty ``dest``."""
    common.rmtree(dest)
    dest.mkdir()
    common.spread_subdirs(dest)  # the last run's deletes must not slow this run's creates
    common.drop_dirty_pages()
    with common.Stopwatch() as sw:
        subprocess.run(cmd, shell=True, check=True, env=env)
    return sw


def compare(title: str, contenders: List[Tuple[str, str]], dest: Path, target: float,
            repeat: int, env: Dict[str, str]) -> bool:
    """Time (label, command) pairs, ours first and tar last; one table, one verdict."""
    timed(contenders[0][1], dest, env)  # warm-up: page cache, bytecode
    runs: Dict[str, List[common.Stopwatch]] = {label: [] for label, _ in contenders}
    for _ in range(repeat):  # interleaved rounds
        for label, cmd in contenders:
            runs[label].append(timed(cmd, dest, env))
    med = {label: common.median_run(rs) for label, rs in runs.items()}
    rows = [(label, m.wall, m.cpu, common.runs_note(runs[label], 3)) for label, m in med.items()]
    ours, tar = contenders[0][0], contenders[-1][0]
    common.print_table(title, rows, tar)
    ratio = med[ours].wall / med[tar].wall
    return common.verdict(f"within {target}x of tar", ratio <= target,
                          f"{ratio:.2f}x wall, medians (cpu {med[ours].cpu / med[tar].cpu:.2f}x)")


def main() -> int:
    p = common.bench_parser(__doc__.splitlines()[0], "tar")
    p.add_argument("--files", type=int, action="append", metavar="N",
                   help="time a .tar.gz of N files of 1 KiB; repeat for several sizes "
                        "(default 1000 and 100000; --quick: 1000)")
    p.add_argument("--no-big", action="store_true",
                   help="skip the 256 MiB plain .tar through a pipe (--quick skips it)")
    common.add_repeat(p)
    args = p.parse_args()
    if args.quick:
        args.files, args.no_big = args.files or [1000], True
    tar_version = subprocess.run(["tar", "--version"], capture_output=True, text=True).stdout
    common.header("bench_tar", args.quick, tar_version.splitlines()[0] if tar_version else "")
    sys.path.insert(0, str(ROOT))
    from artifacts_py.archives import create_archive

    # Bytecode as an installed package has it (the untimed warm-up run writes it).
    env = common.python_env(PYTHONDONTWRITEBYTECODE=None, PYTHONPATH=str(ROOT))
    py, ours = shlex.quote(common.python()), shlex.quote(OURS)
    results = []
    with common.workdir(args.workdir, args.keep) as work:
        dest = work / "dest"
        for n in args.files or [1000, 100_000]:
            src = work / f"src{n}"
            make_tree(src, n, 1024)
            archive = shlex.quote(str(work / f"t{n}.tar.gz"))
            create_archive(src, work / f"t{n}.tar.gz")
            common.rmtree(src)
            d = shlex.quote(str(dest))
            title = f"{n:,} x 1 KiB .tar.gz"
            results.append((title, compare(
                title, [("python -c extract_tarball", f"{py} -c {ours} {archive} {d}"),
                        ("tar -xzf", f"tar -xzf {archive} -C {d}")],
                dest, 2.0, args.repeat, env)))
        if not args.no_big:
            src = work / "big"
            src.mkdir()
            size = 4 * 64 * MiB
            for i in range(4):
                common.write_random(src / f"r{i}.bin", size // 4)
            create_archive(src, work / "big.tar", "none")
            common.rmtree(src)
            archive, d = shlex.quote(str(work / "big.tar")), shlex.quote(str(dest))
            title = f"{size // MiB} MiB .tar through a pipe"
            results.append((title, compare(
                title, [("cat | python -c extract_tarball", f"cat {archive} | {py} -c {ours} - {d}"),
                        ("cat | tar -xf -", f"cat {archive} | tar -xf - -C {d}")],
                dest, 1.2, args.repeat, env)))
    print("\nsummary: " + "; ".join(f"{title}: {'PASS' if ok else 'MISS'}"
                                    for title, ok in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
