#!/usr/bin/env python3
"""Reading gypsum versions: artifacts-py vs gypsum_client 0.2.0's ``save_version``.

Run from the repository root (needs gypsum_client==0.2.0, the ``bench`` extra)::

    python benchmarks/bench_gypsum_client.py            # 2,000 x 16 KiB and 4 x 64 MiB
    python benchmarks/bench_gypsum_client.py --quick    # 30 x 16 KiB and 4 x 2 MiB, < 30 s

Setup (untimed): the GitHub API stand-in (``tests/github_standin.py``) and
``artifacts-gypsum`` on a local store in the workdir, on loopback; project
``bench`` with two versions of random files uploaded with our client.

Contenders, each a whole child process (interpreter start and imports
included), each into a fresh empty cache directory:

* ``artifacts_py.artifact(name)`` on an Artifacts.toml entry with a
  ``[name.gypsum]`` table, into an empty depot (the transfer engine; size, md5
  and blob hash of every file checked, the tree hash verified);
* ``artifacts_py.gypsum.save_version`` (8 threads, every file's size and md5
  checked against the manifest);
* ``gypsum_client.save_version`` with its default ``concurrent=1`` and with
  ``concurrent=8`` (a process pool; verifies nothing).

On plain loopback and through ``benchmarks/linkemu.py`` (``--rtt 20`` etc.,
200 Mbit/s by default): the physical limit printed beside is bytes / bandwidth
+ 3 round trips (handshake, summary and manifest, one round of file requests).

Median of 3 (``--repeat``, also with ``--quick``), rounds interleaved, every
run listed; the ratio is the contender's median wall time over artifact()'s,
and the load average is printed with each table (other work on this 2-core
machine skews wall times). Each contender's
first result is checked against the manifest's md5s (untimed).
"""

# bench-requires: gypsum_client weed

from __future__ import annotations

import contextlib
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
from typing import Any, Callable, Dict, Iterator, List, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from common import add_repeat, bench_parser, python, workdir  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20
TOKEN = "bench-admin-token"
LOGIN = "bench-admin"

RESOLVE = """
import json, sys, time
t0 = time.perf_counter()
import artifacts_py
path = artifacts_py.artifact(sys.argv[1], sys.argv[2])
print(json.dumps({"path": str(path), "call": time.perf_counter() - t0}))
"""

OURS = """
import json, sys, time
t0 = time.perf_counter()
from artifacts_py import gypsum
path = gypsum.save_version(sys.argv[1], sys.argv[2], sys.argv[3], cache_dir=sys.argv[5],
                           url=sys.argv[4])
print(json.dumps({"path": path, "call": time.perf_counter() - t0}))
"""

PIN = """
import sys, artifacts_py
artifacts_py.add_artifact(sys.argv[1], sys.argv[2], project="bench", asset=sys.argv[2],
                          version="v1", url=sys.argv[3], gypsum=True, verbose=False)
"""

THEIRS = """
import json, sys, time
t0 = time.perf_counter()
import gypsum_client
path = gypsum_client.save_version(sys.argv[1], sys.argv[2], sys.argv[3], cache_dir=sys.argv[5],
                                  url=sys.argv[4], concurrent=int(sys.argv[6]))
print(json.dumps({"path": path, "call": time.perf_counter() - t0}))
"""


def child_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTS_PY_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a timed child must not recompile every run
    env.update(extra)
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    env["PYTHONPATH"] = os.path.abspath(root) + (os.pathsep + env["PYTHONPATH"]
                                                 if env.get("PYTHONPATH") else "")
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def run_child(label: str, argv: List[str], env: Dict[str, str]) -> Tuple[float, Dict[str, Any]]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
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
    add_repeat(parser)
    parser.add_argument("--rtt", type=float, nargs="+", metavar="MS",
                        help="round trips in ms, 0 = plain loopback (default 0 20; quick: 20)")
    parser.add_argument("--rate", type=float, default=200.0,
                        help="bandwidth per direction in Mbit/s through the link (default 200)")
    parser.add_argument("--shape", choices=("small", "large"), action="append",
                        help="only this data set (repeatable; default both)")
    parser.add_argument("--contender", action="append", metavar="LABEL",
                        help="only contenders whose label contains LABEL (repeatable; "
                             "artifact() is always run: ratios are to it)")
    args = parser.parse_args()
    rtts = args.rtt or ([20.0] if args.quick else [0.0, 20.0])
    from github_standin import GitHubStandIn

    from artifacts_py import gypsum
    from artifacts_py.servers.gypsum.launch import GypsumProcess

    shapes = [("small", 30 if args.quick else 2000, 16 * KiB),
              ("large", 4, (2 if args.quick else 64) * MiB)]
    with workdir(args.workdir, args.keep) as root:
        github = GitHubStandIn()
        github.add_user(TOKEN, LOGIN)
        shapes = [s for s in shapes if not args.shape or s[0] in args.shape]
        store = root / "store"
        store.mkdir()
        service = GypsumProcess(["--port", "0", "--store", str(store), "--admin", LOGIN,
                                 "--github-api", github.url])
        url = service.url
        try:
            gypsum.create_project("bench", owners=[LOGIN], url=url, token=TOKEN)
            toml = root / "Artifacts.toml"
            for asset, n, size in shapes:
                make_tree(root / "src" / asset, n, size)
                t0 = time.perf_counter()
                gypsum.upload_directory(str(root / "src" / asset), "bench", asset, "v1",
                                        url=url, token=TOKEN, cache_dir=None, concurrent=4)
                print(f"setup: uploaded {n} x {size // KiB} KiB in "
                      f"{time.perf_counter() - t0:.1f} s")
                shutil.rmtree(root / "src" / asset)
                pin_env = {"ARTIFACTS_PY_DEPOT_PATH": str(root / "setup-depot")}
                subprocess.run([python(), "-c", PIN, str(toml), asset, url],
                               env=child_env(**pin_env), check=True)
            for rtt in rtts:
                with _link(service.port, rtt, args.rate) as link_url:
                    _measure(args, root, shapes, toml, link_url, rtt)
        finally:
            service.stop()
            github.close()


@contextlib.contextmanager
def _link(port: int, rtt_ms: float, rate_mbit: float) -> Iterator[str]:
    """The service's URL, through the link emulator unless ``rtt_ms`` is 0."""
    if not rtt_ms:
        yield f"http://127.0.0.1:{port}"
        return
    import linkemu

    with linkemu.spawn(("127.0.0.1", port), linkemu.Link(rtt_ms / 1e3, rate_mbit * 1e6)) as p:
        yield f"http://127.0.0.1:{p}"


def _measure(args: Any, root: Path, shapes: List[Tuple[str, int, int]], toml: Path, url: str,
             rtt_ms: float) -> None:
    from artifacts_py import gypsum

    contenders: Dict[str, Callable[[str, str], Tuple[List[str], Dict[str, str]]]] = {
        "artifacts_py.artifact": lambda asset, dest: (
            [python(), "-c", RESOLVE, asset, str(toml)],
            child_env(ARTIFACTS_PY_DEPOT_PATH=dest, ARTIFACTS_PY_GYPSUM_URL=url)),
        "artifacts_py.gypsum.save_version": lambda asset, dest: (
            [python(), "-c", OURS, "bench", asset, "v1", url, dest], child_env()),
        "gypsum_client concurrent=1": lambda asset, dest: (
            [python(), "-c", THEIRS, "bench", asset, "v1", url, dest, "1"], child_env()),
        "gypsum_client concurrent=8": lambda asset, dest: (
            [python(), "-c", THEIRS, "bench", asset, "v1", url, dest, "8"], child_env()),
    }
    contenders = {label: make for label, make in contenders.items()
                  if label == "artifacts_py.artifact" or not args.contender
                  or any(c in label for c in args.contender)}
    where = "loopback" if not rtt_ms else f"{rtt_ms:g} ms, {args.rate:g} Mbit/s (emulated)"
    for asset, n, size in shapes:
        manifest = gypsum.fetch_manifest("bench", asset, "v1", cache_dir=None, url=url)
        walls: Dict[str, List[float]] = {label: [] for label in contenders}
        for round_ in range(args.repeat):
            for label, make in contenders.items():
                dest = tempfile.mkdtemp(dir=root, prefix="cache-")
                subprocess.run(["sync"], check=False)
                argv, env = make(asset, dest)
                wall, info = run_child(label, argv, env)
                walls[label].append(wall)
                if round_ == 0:
                    check(label, Path(info["path"]), manifest)
                subprocess.run(["rm", "-rf", dest], check=False)
        ours = statistics.median(walls["artifacts_py.artifact"])
        total = n * size
        limit = (total * 8 / (args.rate * 1e6) + 3 * rtt_ms / 1e3) if rtt_ms else None
        print(f"\n{asset}: {n} x {size // KiB} KiB ({total / MiB:.0f} MiB) from artifacts-gypsum, "
              f"{where}" + (f"; physical limit {limit:.3f} s" if limit else "") +
              f"  [load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}]")
        for label, runs in walls.items():
            med = statistics.median(runs)
            vs_limit = f"  x{med / limit:5.2f} of limit" if limit else ""
            print(f"  {label:34} median {med:7.3f} s  x{med / ours:5.2f} of artifact()"
                  f"{vs_limit}  (runs: {', '.join(f'{w:.2f}' for w in runs)})")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
