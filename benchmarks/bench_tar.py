#!/usr/bin/env python3
"""Unpacking tarballs: ``extract_tarball`` against GNU tar, whole process vs whole process.

Run from the repository root::

    python benchmarks/bench_tar.py                  # 1,000 and 100,000 files of 1 KiB, 256 MiB .tar
    python benchmarks/bench_tar.py --files 1000     # one size only
    python benchmarks/bench_tar.py --no-big         # skip the 256 MiB plain tar

Setup (untimed): a tree of N files of 1 KiB of random bytes in folders of
1,000, packed by ``create_archive`` as ``.tar.gz`` in a work dir on disk
(``--workdir``, default the system temp dir; must not be tmpfs to be fair).

Timed, median of 3 after an untimed warm-up (which also writes the bytecode,
as an installed package has it), each run a fresh process unpacking into a
fresh folder:

* ``python -c 'extract_tarball(archive, dest)'`` (files read-only, tree hash
  computed from the stream);
* ``tar -xzf archive -C dest``.

Then a plain 256 MiB ``.tar`` (four 64 MiB random files) piped through
``cat`` as a stand-in for ``curl``: ``cat | python extract_tarball(stdin)``
against ``cat | tar -xf -``. Targets (printed, never asserted): 2x of tar for
100,000 files, 1.2x for the piped big tar.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parent.parent
# Bytecode as an installed package has it (the untimed warm-up run writes it).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPATH"] = str(ROOT)
OURS = ("import sys; from artifacts_py.archives import extract_tarball; "
        "extract_tarball(sys.argv[1] if sys.argv[1] != '-' else sys.stdin.buffer, sys.argv[2], "
        "readonly=True)")


def _make_tree(root: Path, files: int, size: int) -> None:
    for i in range(files):
        folder = root / f"d{i // 1000:04d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        (folder / f"f{i:06d}.bin").write_bytes(os.urandom(size))


def _timed(cmd: str, dest: Path) -> float:
    if dest.exists():
        subprocess.run(["rm", "-rf", str(dest)], check=True)
    dest.mkdir()
    subprocess.run(["sync"], check=True)
    start = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True, env=ENV)
    return time.perf_counter() - start


def _compare(label: str, ours: str, theirs: str, dest: Path, target: float) -> None:
    a: List[float] = []
    b: List[float] = []
    _timed(ours, dest)  # warm-up: page cache, bytecode
    for _ in range(3):  # interleaved rounds
        a.append(_timed(ours, dest))
        b.append(_timed(theirs, dest))
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"{label:<34} ours {ma:7.3f} s   tar {mb:7.3f} s   ratio {ma / mb:5.2f}x "
          f"(target {target}x)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, action="append")
    ap.add_argument("--no-big", action="store_true")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--quick", action="store_true", help="1,000 files only, no big tar (< 30 s)")
    args = ap.parse_args()
    if args.quick:
        args.files, args.no_big = args.files or [1000], True
    sys.path.insert(0, str(ROOT))
    from artifacts_py.archives import create_archive

    work = Path(tempfile.mkdtemp(prefix="bench-tar-", dir=args.workdir))
    py = sys.executable
    try:
        for n in args.files or [1000, 100_000]:
            src = work / f"src{n}"
            _make_tree(src, n, 1024)
            archive = work / f"t{n}.tar.gz"
            create_archive(src, archive)
            shutil.rmtree(src)
            dest = work / "dest"
            _compare(f"{n:,} x 1 KiB .tar.gz", f"{py} -c \"{OURS}\" {archive} {dest}",
                     f"tar -xzf {archive} -C {dest}", dest, 2.0)
        if not args.no_big:
            src = work / "big"
            src.mkdir()
            for i in range(4):
                (src / f"r{i}.bin").write_bytes(os.urandom(64 << 20))
            archive = work / "big.tar"
            create_archive(src, archive, "none")
            shutil.rmtree(src)
            dest = work / "dest"
            _compare("256 MiB .tar through a pipe", f"cat {archive} | {py} -c \"{OURS}\" - {dest}",
                     f"cat {archive} | tar -xf - -C {dest}", dest, 1.2)
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
