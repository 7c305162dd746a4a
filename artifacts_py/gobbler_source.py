"""Gobbler versions as artifact sources: resolve, pin and publish.

A Gobbler version's tree is what a registry client sees: every manifest path
as a regular file (links resolved to their content, mode 0644); empty
directories are created on disk but do not count in the hash. Every file is
checked against the version's ``..manifest`` (size and md5), and the tree
hash is computed from the git blob hashes computed in that same pass (over
REST as the bytes stream in; from a mounted registry over the copy just
written, which the kernel copy left in the page cache).

Sources, in order: a mounted registry (files copied in place, never over
HTTP), then the REST API. ``ARTIFACTS_PY_GOBBLER_REGISTRY`` and
``ARTIFACTS_PY_GOBBLER_URL`` replace an entry's ``registry`` / ``url``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import quote

from .errors import (ArtifactError, GobblerError, GobblerNotFoundError, HashMismatchError)
from .sources import Source
from .tomlmodel import ArtifactEntry, GobblerSource
from .treehash import MODE_FILE, TreeBuilder, blob_hasher, hash_file

CHUNK = 1 << 20
SMALL_FILE = 1 << 20
# Over REST, files up to this size take Session.get_small (a lean GET whose
# per-request cost is most of a small file's); a failure there refetches them
# whole, so bigger files go straight to download(), which resumes with Range.
FAST_GET = 256 << 10
# Installed files are read-only whatever the umask (the Gobbler view is 0644; the
# depot clears write bits anyway), set as each file is written: no walk afterwards.
FILE_MODE = 0o444
# REST: requests in flight to hide network latency. More threads than that cost
# CPU in GIL hand-offs: 2,000 x 16 KiB over loopback on 2 cores took 1.21 s with 3,
# 1.40 s with 4, 1.67 s with 8 (benchmarks/bench_gobbler_resolve.py); 4 keeps a
# 1-2 ms network round trip covered at ~0.4 ms of CPU per small file.
WORKERS = 4
# A mounted registry is read from the page cache: CPU-bound, so more threads than
# cores only fight over the GIL (2,000 x 16 KiB: 0.40 s with 2 threads, 1.23 s with 8).
LOCAL_WORKERS = max(1, min(8, os.cpu_count() or 1))
REGISTRY_ENV = "ARTIFACTS_PY_GOBBLER_REGISTRY"
URL_ENV = "ARTIFACTS_PY_GOBBLER_URL"

Manifest = Dict[str, Dict[str, Any]]


def locations(g: GobblerSource) -> Tuple[Optional[str], Optional[str]]:
    """(registry path, REST url) for this machine, after the environment overrides."""
    return os.environ.get(REGISTRY_ENV) or g.registry, os.environ.get(URL_ENV) or g.url


def gobbler_sources(entry: ArtifactEntry, *, progress: Optional[bool] = None) -> List[Source]:
    """The mounted-registry source (if mounted here) and the REST source (if a URL)."""
    g = entry.gobbler
    assert g is not None
    registry, url = locations(g)
    out = []
    if registry and os.path.isdir(registry):
        out.append(Source(f"gobbler registry {registry} ({g.coordinates})",
                          lambda tmp: fill_from_registry(registry, g, tmp, progress=progress),
                          network=False, readonly=True))
    elif registry:
        # Not a way in here, but listed so that a total failure says why it was not used.
        out.append(_failing_source(f"gobbler registry {registry} ({g.coordinates})",
                                   f"{registry} is not mounted on this machine; set "
                                   f"{REGISTRY_ENV} to where it is mounted here"))
    if url:
        out.append(Source(f"gobbler {url} ({g.coordinates})",
                          lambda tmp: fill_from_rest(url, g, tmp, progress=progress),
                          readonly=True))
    elif not out:
        out.append(_failing_source(f"gobbler {g.coordinates}",
                                   f"the [gobbler] table has neither url nor registry; set "
                                   f"{URL_ENV}, or add url to [{entry.name}.gobbler]"))
    return out


def _failing_source(label: str, why: str) -> Source:
    def fail(_tmp: Path) -> None:
        raise GobblerError(why)

    return Source(label, fail, network=False)


# ------------------------------------------------------------ shared checking

def _plan(manifest: Any, where: str) -> Tuple[List[Tuple[str, int, str]], List[str]]:
    """Check a whole manifest before touching anything; return its files and empty dirs.

    Files are ``(path, size, md5)``, sorted; a link counts as its target's
    content. A malformed entry or a path that could leave the tree (a lying
    server or a damaged registry) refuses the version as a whole.
    """
    if not isinstance(manifest, dict):
        raise GobblerError(f"{where}: ..manifest is not a JSON object")
    files, empty = [], []
    for rel, e in sorted(manifest.items()):
        _check_path(rel, where)
        size = e.get("size") if isinstance(e, dict) else None
        md5 = e.get("md5sum") if isinstance(e, dict) else None
        if type(size) is not int or size < 0 or not isinstance(md5, str) or \
                (md5 and not _MD5.fullmatch(md5)):
            raise GobblerError(f"{where}: ..manifest entry {rel!r} is malformed ({e!r}); "
                               "expected {\"size\": N, \"md5sum\": \"<32 hex>\"}")
        if md5 == "" and "link" not in e:
            empty.append(rel)
        else:
            files.append((rel, size, md5))
    return files, empty


_MD5 = re.compile(r"[0-9a-f]{32}")


def _check_path(rel: object, where: str) -> None:
    """Refuse a manifest path that is absolute, has ``.``/``..``/empty parts, or a NUL."""
    if not isinstance(rel, str) or rel.startswith("/") or "\0" in rel or \
            any(p in ("", ".", "..") for p in rel.split("/")):
        raise GobblerError(f"{where}: manifest path {rel!r} is not a plain relative path; refused")


def _target(root: Path, rel: str) -> Path:
    """``root/rel`` for a path :func:`_check_path` accepted."""
    return root.joinpath(*rel.split("/"))


def _check(rel: str, size: int, md5: str, got_size: int, got_md5: str, where: str) -> None:
    if got_size != size or got_md5 != md5:
        raise HashMismatchError(
            f"{where}/{rel}: does not match the version's ..manifest (expected {size} bytes, "
            f"md5 {md5}; read {got_size} bytes, md5 {got_md5}): the registry copy was changed "
            "after publishing, or the transfer was corrupted", expected=md5, actual=got_md5)


def _tree_hash(digests: Dict[str, bytes]) -> str:
    builder = TreeBuilder()
    for rel, sha in digests.items():
        builder.add(rel, MODE_FILE, sha)
    return builder.hexdigest()


def _finish(tmp: Path, empty_dirs: List[str], digests: Dict[str, bytes]) -> str:
    """Create the empty dirs; the tree hash from the blob hashes."""
    for rel in empty_dirs:
        _target(tmp, rel).mkdir(parents=True, exist_ok=True)
    return _tree_hash(digests)


class _Bar:
    """One progress bar (bytes, with a files count) for a whole artifact."""

    def __init__(self, total: int, nfiles: int, desc: str, progress: Optional[bool]) -> None:
        import sys

        self.lock = threading.Lock()
        self.files, self.nfiles = 0, nfiles
        self.bar = None
        if progress or (progress is None and sys.stderr.isatty()):
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                            desc=desc, file=sys.stderr, leave=False)

    def update(self, nbytes: int, file_done: bool = False) -> None:
        if self.bar is None:
            return
        with self.lock:
            self.bar.update(nbytes)
            if file_done:
                self.files += 1
                self.bar.set_postfix_str(f"{self.files}/{self.nfiles} files", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run_pool(tasks: List[Callable[[], Tuple[str, bytes]]],
              workers: int = LOCAL_WORKERS) -> Dict[str, bytes]:
    """Run file tasks on ``workers`` threads; the first error stops them all.

    Each worker takes the next task itself: no future per file and no wake-up
    of this thread per result, which costs as much as a small file's copy.
    """
    out: Dict[str, bytes] = {}
    errors: List[BaseException] = []
    todo = iter(tasks)
    take = threading.Lock()

    def work() -> None:
        while not errors:
            with take:
                task = next(todo, None)
            if task is None:
                return
            try:
                rel, sha = task()
            except BaseException as e:  # handed to the caller's thread below
                errors.append(e)
                return
            out[rel] = sha

    threads = [threading.Thread(target=work, name=f"artifacts-py-fill-{i}", daemon=True)
               for i in range(max(1, min(workers, len(tasks))))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException as e:  # KeyboardInterrupt: let the workers finish their file
        errors.append(e)
        for t in threads:
            t.join()
        raise
    if errors:
        raise errors[0]
    return out


# ---------------------------------------------------------- mounted registry

def _version_dir(registry: str, g: GobblerSource) -> Path:
    return Path(registry, g.project, g.asset, g.version)


def read_local_manifest(registry: str, g: GobblerSource) -> Manifest:
    """The manifest of a complete version in a mounted registry."""
    import json

    vdir = _version_dir(registry, g)
    if not (vdir / "..summary").is_file():
        raise _which_missing(registry, g.project, g.asset, g.version,
                             _local_exists(registry)) or GobblerNotFoundError(
            f"{registry}: version {g.coordinates} has no ..summary: its upload is unfinished "
            "or failed", status=404)
    try:
        return json.loads((vdir / "..manifest").read_bytes())
    except (OSError, ValueError) as e:
        raise GobblerError(f"{registry}: {g.coordinates}: cannot read ..manifest ({e})") from None


def _which_missing(where: str, project: str, asset: str, version: Optional[str],
                   exists: Callable[..., bool]) -> Optional[GobblerNotFoundError]:
    """The error naming the first of project, asset, version that does not exist.

    ``exists(project[, asset[, version]])`` answers for one level; ``None``
    when all exist, or when a lookup itself fails (we cannot tell which).
    """
    coords = "/".join(x for x in (project, asset, version) if x is not None)
    levels = [("project", project), ("asset", asset)] + ([("version", version)] if version else [])
    for depth, (what, value) in enumerate(levels, 1):
        try:
            found = exists(*[v for _, v in levels[:depth]])
        except GobblerError:
            return None
        if not found:
            return GobblerNotFoundError(f"{where}: {what} {value!r} does not exist (looking "
                                        f"for {coords})", status=404, url=where)
    return None


def _local_exists(registry: str) -> Callable[..., bool]:
    """``exists`` for :func:`_which_missing` in a mounted registry."""
    return lambda *parts: Path(registry, *parts).is_dir()


def _remote_exists(url: str) -> Callable[..., bool]:
    """``exists`` for :func:`_which_missing` through the REST ``/list`` endpoint."""
    from .gobbler import client

    listers = (lambda: client.list_projects(url=url),
               lambda p: client.list_assets(p, url=url),
               lambda p, a: client.list_versions(p, a, url=url))
    return lambda *parts: parts[-1] in listers[len(parts) - 1](*parts[:-1])


_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | \
    getattr(os, "O_CLOEXEC", 0)


def _create(dst: str) -> int:
    """A new file in our temp dir, read-only whatever the umask (the fd stays writable)."""
    fd = os.open(dst, _O_NEW, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def _write_and_hash(dst: str, data: bytes) -> Tuple[int, str, bytes]:
    """Write a small file's bytes to a new ``dst``; (size, md5 hex, raw blob sha1)."""
    fout = _create(dst)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fout, view):]
    finally:
        os.close(fout)
    sha = blob_hasher(len(data))
    sha.update(data)
    return len(data), hashlib.md5(data).hexdigest(), sha.digest()


def _copy_and_hash(src: str, dst: str, size: int) -> Tuple[int, str, bytes]:
    """Copy ``src`` to ``dst`` (kernel copy where possible), then hash what landed.

    Hashing the destination checks the bytes we install, and reads them from
    the page cache the copy just filled. A small file is read once into memory
    (at most one byte more than the manifest says, so growth is caught),
    hashed, and written: cheaper than a copy and a re-read.
    """
    if size <= SMALL_FILE:
        fin = os.open(src, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            data = os.read(fin, size + 1)
            while len(data) <= size:  # a short read (network filesystems): keep going
                more = os.read(fin, size + 1 - len(data))
                if not more:
                    break
                data += more
        finally:
            os.close(fin)
        return _write_and_hash(dst, data)
    with open(src, "rb") as fin, open(_create(dst), "wb") as fout:
        _kernel_copy(fin.fileno(), fout.fileno(), size)
    md5, sha = hashlib.md5(), blob_hasher(os.path.getsize(dst))
    n = hash_file(dst, md5, sha)
    return n, md5.hexdigest(), sha.digest()


def _kernel_copy(fin: int, fout: int, size: int) -> None:
    """reflink (FICLONE), else copy_file_range / sendfile, else a buffered copy.

    The caller hashes what landed, so the copy only has to be complete: a
    kernel copy that fails, or stops short of ``size`` (some network and FUSE
    filesystems answer 0 early), is redone buffered from the start.
    """
    try:
        import fcntl

        fcntl.ioctl(fout, 0x40049409, fin)  # FICLONE: share blocks, copy nothing
        return
    except (OSError, ImportError):
        pass
    try:
        if _copy_range(fin, fout) >= size:
            return
    except OSError:
        pass
    os.lseek(fin, 0, os.SEEK_SET)
    os.lseek(fout, 0, os.SEEK_SET)
    os.ftruncate(fout, 0)
    with open(fin, "rb", closefd=False) as a, open(fout, "wb", closefd=False) as b:
        shutil.copyfileobj(a, b, CHUNK)


def _copy_range(fin: int, fout: int) -> int:
    """Copy in the kernel until the source says end of file; returns the bytes copied.

    Copies past the manifest's size too, so that a file that grew is caught.
    """
    copy = getattr(os, "copy_file_range", None)
    done = 0
    while True:
        n = copy(fin, fout, 1 << 30) if copy else os.sendfile(fout, fin, done, 1 << 30)
        if n == 0:
            return done
        done += n


def _fill(tmp: Path, manifest: Manifest, where: str, label: str, progress: Optional[bool],
          fetch: Callable[[str, str, int], Tuple[int, str, bytes]], workers: int) -> str:
    """Fetch every file of a manifest in parallel, checking each, and hash the tree.

    ``fetch(rel, dst, size)`` creates ``dst`` (``tmp/rel`` as a string: no
    pathlib per file) and returns (bytes, md5 hex, raw blob sha1).
    """
    files, empty_dirs = _plan(manifest, where)
    top = os.fspath(tmp)
    for parent in sorted({os.path.dirname(rel) for rel, _, _ in files} - {""}):
        os.makedirs(f"{top}/{parent}", exist_ok=True)  # once, not per file
    bar = _Bar(sum(s for _, s, _ in files), len(files), label, progress)

    def one(rel: str, size: int, md5: str) -> Callable[[], Tuple[str, bytes]]:
        def task() -> Tuple[str, bytes]:
            n, got_md5, sha = fetch(rel, f"{top}/{rel}", size)
            _check(rel, size, md5, n, got_md5, where)
            bar.update(n, True)
            return rel, sha
        return task

    try:
        digests = _run_pool([one(*f) for f in files], workers)
    finally:
        bar.close()
    return _finish(tmp, empty_dirs, digests)


def fill_from_registry(registry: str, g: GobblerSource, tmp: Path, *,
                       progress: Optional[bool] = None) -> str:
    """Copy a version out of a mounted registry into ``tmp``; return its tree hash."""
    manifest = read_local_manifest(registry, g)
    vdir = os.fspath(_version_dir(registry, g))
    where = f"{registry}/{g.coordinates}"

    def fetch(rel: str, dst: str, size: int) -> Tuple[int, str, bytes]:
        try:
            return _copy_and_hash(f"{vdir}/{rel}", dst, size)
        except FileNotFoundError:
            raise GobblerError(f"{where}/{rel}: listed in ..manifest but missing "
                               "(or a broken link) in the registry") from None

    return _fill(tmp, manifest, where, g.coordinates, progress, fetch, LOCAL_WORKERS)


# ------------------------------------------------------------------- REST API

def _fetch_url(url: str, g: GobblerSource, rel: str) -> str:
    segs = [g.project, g.asset, g.version] + rel.split("/")
    return url.rstrip("/") + "/fetch/" + "/".join(quote(s, safe="") for s in segs)


_local = threading.local()


def _session() -> Any:
    """This thread's keep-alive :class:`~artifacts_py.download.Session` (one per worker)."""
    s = getattr(_local, "session", None)
    if s is None:
        from .download import make_session

        s = _local.session = make_session()
    return s


def _refuse_offline(url: str) -> None:
    from .download import offline

    if offline():
        from .errors import OfflineError

        raise OfflineError(f"{url}: the Gobbler REST API was not contacted because "
                           "ARTIFACTS_PY_OFFLINE is set; unset it, or mount the registry "
                           f"and set {REGISTRY_ENV}", url=url)


def fetch_remote_manifest(url: str, g: GobblerSource) -> Manifest:
    """GET the version's ``..manifest``, never cached (missing project/asset/version -> which one)."""
    _refuse_offline(url)
    from urllib3.exceptions import HTTPError

    from .download import _reason

    target = _fetch_url(url, g, "..manifest")
    try:
        r = _session().get(target)
        try:
            body = r.read()
        finally:
            r.release_conn()
    except (HTTPError, OSError) as e:
        raise GobblerError(f"{url}: cannot reach the Gobbler service ({_reason(e)})",
                           url=url) from None
    if r.status == 404:
        raise _which_missing(url, g.project, g.asset, g.version, _remote_exists(url)) or \
            GobblerNotFoundError(f"{url}: version {g.coordinates} has no manifest "
                                 "(unfinished upload?)", status=404, url=url)
    if r.status >= 300:
        raise GobblerError(f"{target}: HTTP {r.status}", status=r.status, url=url)
    import json

    try:
        return json.loads(body)
    except ValueError:
        raise GobblerError(f"{target}: the manifest is not JSON", url=url) from None


def fill_from_rest(url: str, g: GobblerSource, tmp: Path, *,
                   progress: Optional[bool] = None) -> str:
    """Download a version over REST into ``tmp`` in parallel; return its tree hash."""
    from .download import download

    manifest = fetch_remote_manifest(url, g)
    where = f"{url.rstrip('/')}/fetch/{g.coordinates}"

    def fetch(rel: str, dst: str, size: int) -> Tuple[int, str, bytes]:
        file_url, session = _fetch_url(url, g, rel), _session()
        if size <= FAST_GET:  # the common case on a lean path; anything odd falls through
            data = session.get_small(file_url, size)
            if data is not None:
                return _write_and_hash(dst, data)
        got = download(file_url, dst, session=session, progress=False,
                       hashers=(hashlib.md5, lambda: blob_hasher(size)), compute_sha256=False,
                       mode=FILE_MODE)
        md5_obj, sha_obj = got.digests
        return got.size, md5_obj.hexdigest(), sha_obj.digest()

    return _fill(tmp, manifest, where, g.coordinates, progress, fetch, WORKERS)


# -------------------------------------------------------------------- pinning

def pin_version(project: str, asset: str, version: Optional[str] = None, *,
                url: Optional[str] = None, registry: Optional[str] = None,
                progress: Optional[bool] = None) -> Dict[str, Any]:
    """Resolve (latest when ``version`` is None), install and hash a Gobbler version.

    The mounted registry is used when there is one, else the REST API; if
    reading the registry fails for another reason than a missing name, the
    REST API is tried next. Returns ``git_tree_sha1``, ``path``, ``version``
    and ``gobbler`` (the table to bind: the given url/registry, not the
    environment overrides).
    """
    from . import depot

    reg, rest = locations(GobblerSource(project, asset, version or "latest", url, registry))
    mounted = reg if reg and os.path.isdir(reg) else None
    if not mounted and not rest:
        raise GobblerError(f"cannot reach Gobbler for {project}/{asset}: registry "
                           f"{reg or '(none)'} is not mounted here and no --url / {URL_ENV} was given")
    if not mounted:
        _refuse_offline(rest)  # type: ignore[arg-type]
    if version is None:
        version = _latest(project, asset, mounted, rest)
    g = GobblerSource(project, asset, version, url, registry)
    fills = []
    if mounted:
        fills.append(lambda tmp: fill_from_registry(mounted, g, tmp, progress=progress))
    if rest:
        fills.append(lambda tmp: fill_from_rest(rest, g, tmp, progress=progress))
    for i, fill in enumerate(fills):
        try:
            path = depot.persist(fill)
            break
        except GobblerNotFoundError:
            raise  # same registry either way: the name is missing
        except (ArtifactError, OSError, ValueError):
            if i == len(fills) - 1:
                raise
    table = {k: v for k, v in (("project", project), ("asset", asset), ("version", version),
                               ("url", url), ("registry", registry)) if v is not None}
    return {"git_tree_sha1": path.name, "path": path, "version": version, "gobbler": table}


def _latest(project: str, asset: str, registry: Optional[str], url: Optional[str]) -> str:
    """The latest version's name; a missing project or asset is named."""
    from .gobbler import client

    if registry:
        latest = client.fetch_latest(project, asset, registry=registry)
        where, exists = registry, _local_exists(registry)
    else:
        assert url is not None
        latest = client.fetch_latest(project, asset, url=url, force_remote=True)
        where, exists = url, _remote_exists(url)
    if latest is None:
        raise _which_missing(where, project, asset, None, exists) or GobblerNotFoundError(
            f"{where}: {project}/{asset} has no latest version (none uploaded, or all on "
            "probation); give one with @VERSION", status=404)
    return latest


# ------------------------------------------------------------------ publishing

def gobbler_view(directory: Path, ignore_dot: bool = True) -> Dict[str, Tuple[Path, int]]:
    """Files a Gobbler upload of ``directory`` holds: relative path -> (real file, size).

    Mirrors the server's walk: names starting with ``..`` (and ``.`` when
    ``ignore_dot``) are skipped, symlinks count as their target's content.
    """
    out: Dict[str, Tuple[Path, int]] = {}
    root = Path(directory)
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _skipped(d, ignore_dot))
        for d in dirs:
            if os.path.islink(os.path.join(dirpath, d)):
                raise ArtifactError(f"{os.path.join(dirpath, d)}: a symlink to a directory "
                                    "cannot be uploaded to Gobbler; replace it with a real folder")
        for name in files:
            if _skipped(name, ignore_dot):
                continue
            p = Path(dirpath, name)
            try:
                st = p.stat()
            except FileNotFoundError:
                raise ArtifactError(f"{p}: broken symlink; Gobbler cannot upload it") from None
            if not stat.S_ISREG(st.st_mode):
                raise ArtifactError(f"{p}: not a regular file; Gobbler uploads only files and links")
            out[p.relative_to(root).as_posix()] = (p, st.st_size)
    return out


def _skipped(name: str, ignore_dot: bool) -> bool:
    return name.startswith("..") or (ignore_dot and name.startswith("."))


def hash_view(view: Dict[str, Tuple[Path, int]]) -> Tuple[str, Dict[str, Tuple[int, str]]]:
    """Tree hash of a Gobbler view, plus (size, md5) per path for checking the manifest."""
    def one(rel: str) -> Tuple[str, bytes]:
        path, _size = view[rel]
        md5, sha = hashlib.md5(), blob_hasher(os.path.getsize(path))
        sums[rel] = (hash_file(path, md5, sha), md5.hexdigest())
        return rel, sha.digest()

    sums: Dict[str, Tuple[int, str]] = {}
    digests = _run_pool([(lambda r=r: one(r)) for r in view])
    return _tree_hash(digests), sums


def publish(toml_path: "str | os.PathLike[str]", name: str, directory: "str | os.PathLike[str]", *,
            project: str, asset: str, version: str, url: Optional[str] = None,
            staging: Optional[str] = None, registry: Optional[str] = None,
            probation: bool = False, archive: Optional[str] = None,
            archive_url: Optional[str] = None, force: bool = False,
            progress: Optional[bool] = None) -> Dict[str, Any]:
    """Upload ``directory`` as project/asset/version and bind it as ``name``.

    The tree hash is that of the Gobbler view of the folder; after the upload
    the version's manifest is checked against the local sizes and md5s. With
    ``archive`` a deterministic tarball of the same view is written and added
    as a ``[[download]]`` mirror (``archive_url``, default a ``file://`` URL).
    A failure leaves the Artifacts.toml untouched and says whether the
    version now exists in the registry. ``progress`` is accepted for symmetry
    with ``add``; uploads are local file operations with no bar.
    """
    from . import binding
    from .gobbler import client
    from .tomlmodel import check_gobbler_name, load_file

    toml_path = Path(toml_path)
    url = url or os.environ.get(URL_ENV)
    if not url:
        raise GobblerError(f"publish needs the Gobbler REST URL: pass --url or set {URL_ENV}")
    if toml_path.exists() and name in load_file(toml_path) and not force:
        raise binding.BindingExistsError(f"{toml_path}: {name!r} is already bound; pass --force "
                                         "to re-bind it to the published version")
    for what, value in (("project", project), ("asset", asset), ("version", version)):
        problem = check_gobbler_name(value, what)
        if problem:
            raise ValueError(problem)
    directory = Path(directory)
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory}: not a directory; publish uploads a folder")
    view = gobbler_view(directory)
    tree_hash, sums = hash_view(view)

    if staging is None or registry is None:
        info = client.service_info(url)
        staging = staging or info["staging"]
        registry = registry or info["registry"]
    g = GobblerSource(project, asset, version, url, registry)
    try:
        client.upload_directory(project, asset, version, str(directory), staging, url,
                                probation=probation)
    except OSError as e:  # GobblerError, or the staging copy failed
        raise GobblerError(f"publishing {directory} as {g.coordinates} failed: {e}. "
                           f"{_exists_note(g)} {toml_path} was not changed",
                           status=getattr(e, "status", None), reason=getattr(e, "reason", None),
                           url=url) from None
    try:
        _check_uploaded(g, sums, directory)
        mirrors = []
        if archive:
            sha256 = _archive_view(directory, view, Path(archive))
            mirrors.append({"url": archive_url or Path(archive).absolute().as_uri(),
                            "sha256": sha256})
        table = {"project": project, "asset": asset, "version": version, "url": url,
                 "registry": registry}
        binding.bind_artifact(toml_path, name, tree_hash, gobbler=table, download=mirrors,
                              force=force)
    except (ArtifactError, OSError, ValueError) as e:
        note = (f"{g.coordinates} was uploaded and exists in the registry, but {e}; "
                f"{toml_path} was not changed")
        if isinstance(e, HashMismatchError):
            raise HashMismatchError(note) from None
        raise GobblerError(note, url=url) from None
    return {"git_tree_sha1": tree_hash, "project": project, "asset": asset, "version": version,
            "url": url, "registry": registry, "files": len(view),
            "archive": str(archive) if archive else None}


def _check_uploaded(g: GobblerSource, sums: Dict[str, Tuple[int, str]], directory: Path) -> None:
    """The fresh manifest (read uncached) must list exactly our files with our sizes/md5s."""
    if g.registry and os.path.isdir(g.registry):
        manifest = read_local_manifest(g.registry, g)
    else:
        manifest = fetch_remote_manifest(g.url, g)  # type: ignore[arg-type]
    files, _empty = _plan(manifest, g.coordinates)
    listed = {rel: (size, md5) for rel, size, md5 in files}
    problems = [rel for rel, size_md5 in sums.items() if listed.get(rel) != size_md5]
    extra = [rel for rel in listed if rel not in sums]
    if problems or extra:
        raise HashMismatchError(
            f"its manifest does not match {directory}: {len(problems)} file(s) differ or are "
            f"missing ({', '.join(sorted(problems)[:5])}), {len(extra)} unexpected "
            f"({', '.join(sorted(extra)[:5])})")


def _exists_note(g: GobblerSource) -> str:
    """Whether ``g``'s version is in the registry after a failed upload, as a sentence."""
    from .gobbler import client

    try:
        versions = client.list_versions(g.project, g.asset, registry=g.registry, url=g.url)
    except (GobblerNotFoundError, FileNotFoundError):  # no such project or asset
        versions = []
    except GobblerError:
        return f"Whether {g.coordinates} exists in the registry could not be checked."
    if g.version in versions:
        return f"The version {g.coordinates} exists in the registry."
    return f"The version {g.coordinates} does not exist in the registry."


def _archive_view(directory: Path, view: Dict[str, Tuple[Path, int]], archive: Path) -> str:
    """A deterministic tarball of the Gobbler view (so with its tree hash); its sha256."""
    import tempfile

    from . import depot
    from .archives import create_archive

    if _packs_as_view(directory):
        return create_archive(directory, archive)
    tmp = Path(tempfile.mkdtemp(prefix=".view-", dir=archive.parent))
    try:
        for rel, (src, _size) in view.items():
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o644)
        return create_archive(tmp, archive)
    finally:
        depot.remove_tree(tmp)


def _packs_as_view(directory: Path) -> bool:
    """Would a tarball of the folder as is hold the Gobbler view?

    Only if nothing differs: no symlinks, no exec bits, no skipped dot names
    (metadata only; no file is read).
    """
    for dirpath, dirs, files in os.walk(directory):
        for name in dirs + files:
            st = os.lstat(os.path.join(dirpath, name))
            if name.startswith(".") or stat.S_ISLNK(st.st_mode) or \
                    (stat.S_ISREG(st.st_mode) and st.st_mode & 0o100):
                return False
    return True
