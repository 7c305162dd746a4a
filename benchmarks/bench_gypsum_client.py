#!/usr/bin/env python3
"""Reading gypsum versions: artifacts_py.gypsum vs gypsum_client 0.2.0's ``save_version``.

Run from the repository root (needs gypsum_client==0.2.0, the ``bench`` extra)::

    python benchmarks/bench_gypsum_client.py            # 2,000 x 16 KiB and 4 x 64 MiB
    python benchmarks/bench_gypsum_client.py --quick    # 200 x 16 KiB and 4 x 8 MiB, < 30 s

Setup (untimed): the GitHub API stand-in (``tests/github_standin.py``) and
``artifacts-gypsum`` on a local store in the workdir, on loopback; project
``bench`` with two versions of random files uploaded with our client.

Contenders, each a whole child process (interpreter start and imports
included), each into a fresh empty cache directory:

* ``artifacts_py.gypsum.save_version`` (8 threads, every file's size and md5
  checked against the manifest);
* ``gypsum_client.save_version`` with its default ``concurrent=1`` and with
  ``concurrent=8`` (a process pool; verifies nothing).

Median of 3 (``--repeat``), rounds interleaved; the ratio is the contender's
median wall time over ours, and the load average is printed with each table
(other work on this 2-core machine skews wall times). Each contender's first
result is checked against the manifest's md5s (untimed).
"""

# bench-requires: gypsum_client weed

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from common import bench_parser, workdir  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20
TOKEN = "bench-admin-token"
LOGIN = "bench-admin"

OURS = """
import json, sys, time
t0 = time.perf_counter()
from artifacts_py import gypsum
path = gypsum.save_version(sys.argv[1], sys.argv[2], sys.argv[3], cache_dir=sys.argv[5],
                           url=sys.argv[4])
print(json.dumps({"path": path, "call": time.perf_counter() - t0}))
"""

THEIRS = """
import json, sys, time
t0 = time.perf_counter()
import gypsum_client
path = gypsum_client.save_version(sys.argv[1], sys.argv[2], sys.argv[3], cache_dir=sys.argv[5],
                                  url=sys.argv[4], concurrent=int(sys.argv[6]))
print(json.dumps({"path": path, "call": time.perf_counter() - t0}))
"""


def child_env() -> Dict[str, str]:
    env = dict(os.environ)
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    env["PYTHONPATH"] = os.path.abspath(root) + (os.pathsep + env["PYTHONPATH"]
                                                 if env.get("PYTHONPATH") else "")
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def run_child(label: str, argv: List[str]) -> Tuple[float, Dict[str, Any]]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=1800)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{label}: exit status {proc.returncode}\n"
                         f"{proc.stderr.decode()[-3000:]}")
    return wall, json.loads(proc.stdout.decode().strip().splitlines()[-1])


def make_tree(src: Path, n: int, size: int) -> None:
    src.mkdir(parents=True)
    for i in range(n):
        sub = src / f"d{i % 20:02d}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i:05d}.bin").write_bytes(os.urandom(size))


def check(label: str, root: Path, manifest: Dict[str, Any]) -> None:
    for rel, entry in manifest.items():
        data = (root / rel).read_bytes()
        if len(data) != entry["size"] or hashlib.md5(data).hexdigest() != entry["md5sum"]:
            raise SystemExit(f"{label}: {rel} differs from the manifest")


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0], "gypsum-client")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (median)")
    args = parser.parse_args()
    from github_standin import GitHubStandIn

    from artifacts_py import gypsum
    from artifacts_py.servers.gypsum.launch import GypsumProcess

    shapes = [("small", 200 if args.quick else 2000, 16 * KiB),
              ("large", 4, (8 if args.quick else 64) * MiB)]
    with workdir(args.workdir, args.keep) as root:
        github = GitHubStandIn()
        github.add_user(TOKEN, LOGIN)
        store = root / "store"
        store.mkdir()
        service = GypsumProcess(["--port", "0", "--store", str(store), "--admin", LOGIN,
                                 "--github-api", github.url])
        url = service.url
        try:
            gypsum.create_project("bench", owners=[LOGIN], url=url, token=TOKEN)
            for asset, n, size in shapes:
                make_tree(root / "src" / asset, n, size)
                t0 = time.perf_counter()
                gypsum.upload_directory(str(root / "src" / asset), "bench", asset, "v1",
                                        url=url, token=TOKEN, cache_dir=None, concurrent=4)
                print(f"setup: uploaded {n} x {size // KiB} KiB in "
                      f"{time.perf_counter() - t0:.1f} s")
                shutil.rmtree(root / "src" / asset)
            contenders: Dict[str, Callable[[str, str], List[str]]] = {
                "artifacts_py.gypsum": lambda asset, dest: [
                    sys.executable, "-c", OURS, "bench", asset, "v1", url, dest],
                "gypsum_client concurrent=1": lambda asset, dest: [
                    sys.executable, "-c", THEIRS, "bench", asset, "v1", url, dest, "1"],
                "gypsum_client concurrent=8": lambda asset, dest: [
                    sys.executable, "-c", THEIRS, "bench", asset, "v1", url, dest, "8"],
            }
            for asset, n, size in shapes:
                manifest = gypsum.fetch_manifest("bench", asset, "v1", cache_dir=None, url=url)
                walls: Dict[str, List[float]] = {label: [] for label in contenders}
                for round_ in range(args.repeat):
                    for label, argv in contenders.items():
                        dest = tempfile.mkdtemp(dir=root, prefix="cache-")
                        subprocess.run(["sync"], check=False)
                        wall, info = run_child(label, argv(asset, dest))
                        walls[label].append(wall)
                        if round_ == 0:
                            check(label, Path(info["path"]), manifest)
                        shutil.rmtree(dest)
                ours = statistics.median(walls["artifacts_py.gypsum"])
                total = n * size
                print(f"\n{asset}: {n} x {size // KiB} KiB ({total / MiB:.0f} MiB) from "
                      f"artifacts-gypsum on loopback  [load average "
                      f"{os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}]")
                for label, runs in walls.items():
                    med = statistics.median(runs)
                    print(f"  {label:28} median {med:7.3f} s  x{med / ours:5.2f} of ours  "
                          f"{total / med / 1e6:7.1f} MB/s  (runs: "
                          f"{', '.join(f'{w:.2f}' for w in runs)})")
                sys.stdout.flush()
        finally:
            service.stop()
            github.close()


if __name__ == "__main__":
    main()
