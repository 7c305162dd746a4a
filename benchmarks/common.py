"""Shared helpers for the artifacts-py core benchmarks (not run by pytest).

* :func:`bench_args` / :func:`workdir`: the ``--quick`` / ``--workdir`` /
  ``--keep`` options every script takes, and a scratch folder that is removed
  afterwards;
* :func:`serve_directory`: a loopback HTTP server for a folder (nginx when it
  is installed, else a threaded ``http.server``);
* timing: :func:`median_of`, :func:`per_call`, :func:`time_commands`
  (every figure is a median; :func:`add_repeat` for ``--repeat``), and
  :func:`hash_floor` (what verifying costs here, before any I/O);
* :func:`python` and :func:`child_python_env`: a timed ``python -c`` child's
  interpreter (a bare venv, as users have it) and environment;
* data: :func:`write_random`, :func:`write_text_like`, :func:`make_small_tree`;
* output: :func:`print_table` (absolute times and ratios) and :func:`verdict`
  (PASS/MISS against a target; printed, never asserted).

Nothing here writes to ``/dev/null`` except by opening it for redirection.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import hashlib
import http.server
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

DEFAULT_WORKDIR = "/tmp/artifacts-bench"
REPO = Path(__file__).resolve().parent.parent  # the repository root: what children import

# ----------------------------------------------------------------- arguments


def bench_args(description: str, default_sub: str) -> argparse.Namespace:
    """Parse the options shared by every benchmark script."""
    return bench_parser(description, default_sub).parse_args()


def bench_parser(description: str, default_sub: str) -> argparse.ArgumentParser:
    """The parser of :func:`bench_args`, for scripts that add options of their own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small smoke run (seconds, not minutes)")
    p.add_argument("--workdir", default=os.path.join(DEFAULT_WORKDIR, default_sub),
                   help=f"scratch folder for generated data (default {DEFAULT_WORKDIR}/{default_sub}); "
                        "created empty and removed afterwards")
    p.add_argument("--keep", action="store_true", help="keep the workdir afterwards")
    return p


@contextlib.contextmanager
def workdir(path: str, keep: bool = False) -> Iterator[Path]:
    """A fresh, empty scratch folder, removed (read-only files too) on exit."""
    root = Path(path).absolute()
    if root.exists():
        rmtree(root)
    root.mkdir(parents=True)
    try:
        yield root
    finally:
        if keep:
            print(f"(kept {root})")
        else:
            rmtree(root)
            with contextlib.suppress(OSError):  # the shared default parent, if now empty
                root.parent.rmdir()


def spread_subdirs(path: Path) -> bool:
    """Ask ext2/3/4 to put each new subdirectory of ``path`` in a fresh block group.

    (``chattr +T``, the "top of a directory hierarchy" hint.) ext4 without a
    journal, like this VM's disk, skips inodes freed in the last 60-300 s when
    it allocates new ones, so after one run's tree of 2,000 files is deleted,
    the next run's 2,000 creates in the same group each scan past them
    (measured: ~20 us per create becomes ~250-500 us). That cost belongs to
    the harness's cleanup, not to the tool being timed; a destination in a
    fresh group does not pay it. False where the hint cannot be set.
    """
    try:
        return subprocess.run(["chattr", "+T", str(path)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0
    except OSError:
        return False


def rmtree(path: "str | os.PathLike[str]") -> None:
    """``rm -rf`` that copes with the read-only files artifact installs leave."""
    def onerror(func: Callable[[str], object], p: str, _exc: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o755)
            if not os.path.islink(p):
                os.chmod(p, 0o755)
            func(p)

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=onerror)


def python_env(base: Optional[Mapping[str, str]] = None, **overrides: Optional[str]) -> Dict[str, str]:
    """``base`` (default: the current environment) with ``overrides`` applied
    (``None`` deletes a key)."""
    env = dict(os.environ if base is None else base)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def child_python_env(pycache: Path, **overrides: Optional[str]) -> Dict[str, str]:
    """The environment of a timed ``python -c`` child, as users have it.

    This repository first on ``PYTHONPATH``; byte-code caching on (this
    sandbox sets PYTHONDONTWRITEBYTECODE) with the .pyc files under
    ``pycache`` so the repository is not touched (an untimed warm-up run
    writes them); no stray ``ARTIFACTS_PY_*`` variables. ``overrides`` as
    for :func:`python_env`.
    """
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTS_PY_")}
    return python_env(env, **{"PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": None,
                              "PYTHONPYCACHEPREFIX": str(pycache), **overrides})


@functools.lru_cache(maxsize=None)
def python() -> str:
    """The interpreter every timed Python child runs on: this one, as users have it.

    A bare venv of this interpreter (``<workdir>/python-X.Y``, made once):
    its start-up runs no ``.pth`` hook of this machine's site-packages (this
    sandbox's imports certifi for its CA bundle, and the editable install's
    finder imports pathlib and urllib.parse: ~30 ms per process that a
    user's venv does not pay, and which hid imports of ours). One ``.pth``
    line each makes this repository and the installed packages (our
    dependencies, the peers) importable, after the standard library.
    """
    import site
    import venv

    home = Path(DEFAULT_WORKDIR) / f"python-{sys.version_info[0]}.{sys.version_info[1]}"
    exe = home / "bin" / "python"
    paths = [str(REPO), *site.getsitepackages()]
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        paths.append(site.getusersitepackages())
    ver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    pth = home / "lib" / ver / "site-packages" / "_bench_paths.pth"
    want = "\n".join(paths) + "\n"
    if not exe.exists() or not pth.exists() or pth.read_text() != want:
        rmtree(home)
        venv.EnvBuilder(with_pip=False, symlinks=True).create(home)
        pth.write_text(want)
    return str(exe)


# --------------------------------------------------------------------- peers

# The optional peers of the ``bench`` extra: import name -> distribution name.
PEERS = {"pooch": "pooch", "fetch_artifacts": "fetch-artifacts", "pygobbler": "pygobbler",
         "gypsum_client": "gypsum-client"}
_noted: Set[str] = set()


def have_peer(module: str) -> bool:
    """Whether the optional peer ``module`` is installed (it is not imported here).

    If it is not, a note says so once and its rows are skipped: never silently.
    """
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        return True
    if module not in _noted:
        _noted.add(module)
        print(f"   note: {PEERS.get(module, module)} is not installed: its rows are skipped "
              "(pip install -e .[bench])")
        sys.stdout.flush()
    return False


# -------------------------------------------------------------------- server

NGINX_CONF = """\
{user}worker_processes 2;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        location {prefix} {{ alias {root}/; disable_symlinks off; }}
    }}
}}
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, proc: "subprocess.Popen[bytes]", timeout: float = 20.0) -> None:
    """Poll until something accepts connections on ``port`` (or the process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"nginx exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)  # polling for readiness, not synchronising work
    raise SystemExit(f"nginx did not listen on port {port} within {timeout} s")


def nginx_exe() -> Optional[str]:
    """The nginx binary (Debian puts it in /usr/sbin), or None."""
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


@contextlib.contextmanager
def nginx(root: Path, tmp: Path, prefix: str = "/") -> Iterator[str]:
    """Run nginx in the foreground serving ``root`` at ``prefix``; yield its base URL."""
    exe = nginx_exe()
    if exe is None:
        raise SystemExit("nginx not found: install it first (apt-get install -y nginx-light)")
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # As root, workers would drop to 'nobody' and could not read our files.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, tmp=tmp, port=port, root=root, prefix=prefix))
    with open("/dev/null", "wb") as sink:
        proc = subprocess.Popen([exe, "-p", str(tmp), "-e", str(tmp / "error.log"),
                                 "-c", str(conf)], stdout=sink, stderr=sink)
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # no per-request noise on stderr
        pass


@contextlib.contextmanager
def _threaded(root: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def serve_directory(root: Path, scratch: Path) -> Iterator[Tuple[str, str]]:
    """Serve ``root`` on 127.0.0.1; yields (base URL, server name).

    nginx (sendfile, never the bottleneck) when it is on PATH, else Python's
    threaded ``http.server``. ``scratch`` holds nginx's config and logs.
    """
    if nginx_exe():
        with nginx(root, scratch) as url:
            yield url, "nginx"
    else:
        with _threaded(root) as url:
            yield url, "python http.server (threaded)"


# -------------------------------------------------------------------- timing


def drop_dirty_pages() -> None:
    """Flush dirty pages so one run's writeback does not slow the next (untimed)."""
    os.sync()


def cpu_seconds() -> float:
    """User + system CPU of this process and of its finished children.

    Other work on the machine barely moves it, unlike wall time, so it is
    printed next to the wall times (the targets are about wall time).
    """
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.wall`` and ``sw.cpu`` (seconds)."""

    wall = cpu = 0.0

    def __enter__(self) -> "Stopwatch":
        self._cpu, self._wall = cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = cpu_seconds() - self._cpu


def median_of(run: Callable[[], object], repeat: int,
              setup: Optional[Callable[[], None]] = None,
              teardown: Optional[Callable[[], None]] = None) -> Tuple[Stopwatch, List[Stopwatch]]:
    """The median (see :func:`median_run`) and all of ``repeat`` timed runs.

    ``setup``/``teardown`` run around each run, untimed; dirty pages are
    flushed before each run.
    """
    runs = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        drop_dirty_pages()
        with Stopwatch() as sw:
            run()
        runs.append(sw)
        if teardown is not None:
            teardown()
    return median_run(runs), runs


def median_run(runs: Sequence[Stopwatch]) -> Stopwatch:
    """A Stopwatch holding the median wall time and the median CPU time of ``runs``.

    The median, not the fastest: the fastest run is the one the machine
    happened to leave alone, which says little about what a user sees.
    """
    med = Stopwatch()
    med.wall = statistics.median(r.wall for r in runs)
    med.cpu = statistics.median(r.cpu for r in runs)
    return med


def runs_note(runs: Sequence[Stopwatch], digits: int = 2) -> str:
    """``median of 3 (1.02, 0.98, 1.10 s)``: how many runs, and each one's wall time."""
    return f"median of {len(runs)} ({', '.join(f'{r.wall:.{digits}f}' for r in runs)} s)"


def add_repeat(parser: argparse.ArgumentParser, default: int = 3) -> None:
    """Add ``--repeat N``: timed runs per contender, the median reported (N >= 3)."""
    def integer(text: str) -> int:  # the name argparse shows for a non-number
        n = int(text)
        if n < 3:
            raise argparse.ArgumentTypeError(f"{n} runs: a median needs at least 3")
        return n

    parser.add_argument("--repeat", type=integer, default=default, metavar="N",
                        help=f"timed runs per contender, the median is reported "
                             f"(at least 3; default {default})")


def load_note() -> str:
    """The 1-minute load average: other work on the machine skews wall times."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


def hash_floor(size: int, algorithms: Sequence[str]) -> float:
    """Seconds of CPU for each of ``algorithms`` (hashlib names) over ``size`` bytes,
    summed, measured on this machine (on up to 256 MiB, scaled).

    The verification a tool must do whatever its I/O: divided by the cores, a
    floor under its wall time that an unverified baseline (curl) does not pay.
    """
    block, n = os.urandom(1 << 20), max(1, min(size >> 20, 256))
    start = time.process_time()
    for name in algorithms:
        h = hashlib.new(name)
        for _ in range(n):
            h.update(block)
    return (time.process_time() - start) * size / (n << 20)


def per_call(fn: Callable[[], object], max_calls: int = 100_000, batches: int = 7,
             batch_seconds: float = 0.3) -> Tuple[float, float, int]:
    """Median per-call seconds over ``batches`` batches of up to ``max_calls`` calls.

    The batch size is calibrated so that one batch lasts about
    ``batch_seconds`` (slow calls such as pooch's re-hash get fewer calls).
    Returns (median wall seconds per call, median CPU seconds per call,
    calls per batch).
    """
    fn()  # warm caches
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    n = int(min(max_calls, max(3, batch_seconds / one)))
    loop = range(n)
    runs = []
    for _ in range(batches):
        with Stopwatch() as sw:
            for _ in loop:
                fn()
        runs.append(sw)
    return (statistics.median(r.wall for r in runs) / n,
            statistics.median(r.cpu for r in runs) / n, n)


Command = Tuple[Sequence[str], Mapping[str, str], str]


def time_commands(commands: Mapping[str, Command], runs: int) -> Dict[str, List[Stopwatch]]:
    """Wall and CPU time of each command (argv, env, cwd), ``runs`` rounds, interleaved.

    Interleaving spreads drift (CPU frequency, background work) over all
    commands alike. A failing command aborts with its stderr.
    """
    times: Dict[str, List[Stopwatch]] = {label: [] for label in commands}
    with open("/dev/null", "wb") as sink:
        for label, (argv, env, cwd) in commands.items():  # untimed: prime pyc caches
            proc = subprocess.run(argv, env=dict(env), cwd=cwd, stdout=sink, stderr=subprocess.PIPE)
            if proc.returncode:
                raise SystemExit(f"{label}: {' '.join(argv)} failed:\n{proc.stderr.decode()}")
        for _ in range(runs):
            for label, (argv, env, cwd) in commands.items():
                with Stopwatch() as sw:
                    proc = subprocess.run(argv, env=dict(env), cwd=cwd, stdout=sink, stderr=sink)
                times[label].append(sw)
                if proc.returncode:
                    raise SystemExit(f"{label}: exit status {proc.returncode}")
    return times


# ---------------------------------------------------------------------- data


def write_random(path: Path, size: int) -> None:
    """``size`` random bytes: incompressible, nothing deduplicates."""
    chunk = 16 << 20
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(chunk, left)
            fh.write(os.urandom(n))
            left -= n


def write_text_like(path: Path, size: int) -> None:
    """``size`` bytes of base64 text lines: compresses about 4:3, like real data."""
    chunk = 12 << 20
    with open(path, "wb") as fh:
        left = size
        while left:
            raw = base64.encodebytes(os.urandom(chunk * 3 // 4))
            fh.write(raw[:min(left, len(raw))])
            left -= min(left, len(raw))


def make_small_tree(root: Path, n_files: int, max_size: int, fanout: int = 10,
                    seed: int = 1) -> int:
    """``n_files`` files of random size 0..``max_size`` in two levels of folders.

    Random bytes for most, text for every fourth (so gzip has something to do).
    Returns the total number of bytes written.
    """
    rng = random.Random(seed)
    total = 0
    for i in range(n_files):
        d = root / f"d{i % fanout:02d}" / f"s{(i // fanout) % fanout:02d}"
        d.mkdir(parents=True, exist_ok=True)
        size = rng.randint(0, max_size)
        data = os.urandom(size)
        if i % 4 == 0:
            data = base64.encodebytes(data)[:size]
        (d / f"f{i:05d}.dat").write_bytes(data)
        total += size
    return total


def pack_and_bind(src: Path, www: Path, toml: Path, name: str, base_url: str,
                  compression: str = "gz") -> Dict[str, str]:
    """Pack ``src`` with ``create_artifact`` into ``www`` and bind it in ``toml``.

    Returns ``git_tree_sha1``, ``sha256``, ``url`` and ``archive_path``.
    """
    import artifacts_py

    suffix = ".tar.gz" if compression == "gz" else ".tar"
    archive = www / f"{name}{suffix}"
    info: Dict[str, str] = dict(artifacts_py.create_artifact(src, archive,
                                                            compression=compression))
    info["url"] = f"{base_url}/{archive.name}"
    artifacts_py.bind_artifact(toml, name, info["git_tree_sha1"], info["url"], info["sha256"],
                               force=True)
    return info


# -------------------------------------------------------------------- output


def fmt_time(seconds: float) -> str:
    """A duration with a readable unit (ns, µs, ms, s)."""
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


Row = Tuple[str, float, Optional[float], str]


def print_table(title: str, rows: Sequence[Row], baseline: str) -> None:
    """Print (label, wall seconds, CPU seconds or None, note) rows, each with
    its wall-time ratio to the row labelled ``baseline``, and the load average."""
    base = {label: t for label, t, _, _ in rows}[baseline]
    width = max(len(label) for label, _, _, _ in rows)
    print(f"\n{title}")
    print(f"  {'':{width}}  {'wall':>10}  {'ratio':>7}  {'cpu':>10}  note")
    for label, t, cpu, note in rows:
        cpu_text = fmt_time(cpu) if cpu is not None else "-"
        print(f"  {label:{width}}  {fmt_time(t):>10}  {t / base:6.2f}x  {cpu_text:>10}  {note}")
    print(f"  (ratio = wall / wall of '{baseline}'; cpu = user+sys of the client side; "
          f"{load_note()})")
    sys.stdout.flush()


def verdict(what: str, ok: bool, detail: str) -> bool:
    """Print one PASS/MISS line for a target; returns ``ok``."""
    print(f"  {'PASS' if ok else 'MISS'}  {what}: {detail}")
    return ok


def header(name: str, quick: bool, extra: str = "") -> None:
    """Print what ran where, so a pasted table says what produced it."""
    import platform

    print(f"== {name} {'(--quick)' if quick else ''}")
    print(f"   python {platform.python_version()} on {platform.machine()} (children: a bare venv, "
          f"{python()}), {load_note()}{', ' + extra if extra else ''}")
    sys.stdout.flush()
