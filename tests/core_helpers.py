"""Helpers for the resolution/install tests (test_core, test_depot, test_concurrency,
test_install_faults): tarballs made with the real archiver, Artifacts.toml
writers, depot snapshots, a server that can hold requests at a gate, and the
worker run by child processes.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from httpserver import FaultyServer

# A small tree with a subdirectory, an executable and a symlink.
TREE: Dict[str, bytes] = {
    "README.txt": b"hello artifacts\n",
    "data/values.csv": b"a,b\n1,2\n3,4\n",
    "bin/run.sh": b"#!/bin/sh\necho hi\n",
}


def make_tree(root: Path, files: Optional[Dict[str, bytes]] = None) -> Path:
    """Write ``files`` (default :data:`TREE`) below ``root``; ``*.sh`` is executable."""
    files = TREE if files is None else files
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        if rel.endswith(".sh"):
            p.chmod(0o755)
    if files is TREE:
        (root / "link").symlink_to("README.txt")
    return root


def make_tarball(workdir: Path, files: Optional[Dict[str, bytes]] = None,
                 name: str = "art") -> Tuple[bytes, str, str]:
    """Pack a tree with ``create_archive``: (tarball bytes, git-tree-sha1, sha256)."""
    from artifacts_py.archives import create_archive
    from artifacts_py.treehash import compute_git_tree_sha1

    src = make_tree(workdir / f"{name}-src", files)
    archive = workdir / f"{name}.tar.gz"
    sha = create_archive(src, archive)
    return archive.read_bytes(), compute_git_tree_sha1(src), sha


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_toml(path: Path, name: str, tree: str,
               mirrors: Sequence[Tuple[str, str]] = (), extra: str = "") -> Path:
    """An Artifacts.toml binding ``name`` to ``tree`` with ``[[name.download]]`` mirrors."""
    lines = [f"[{name}]", f'git-tree-sha1 = "{tree}"', extra]
    for url, sha in mirrors:
        lines += [f"    [[{name}.download]]", f'    url = "{url}"', f'    sha256 = "{sha}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def snapshot(root: Path) -> Dict[str, Tuple[int, int, int]]:
    """(mode, size, mtime_ns) of every entry below ``root``, to prove nothing changed."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    st = os.lstat(root)
    out["."] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def depot_leftovers(depot: Path) -> List[str]:
    """Names in ``<depot>/artifacts`` that are not installed trees (temp dirs, downloads)."""
    d = depot / "artifacts"
    if not d.is_dir():
        return []
    return sorted(n for n in os.listdir(d) if n != "Overrides.toml"
                  and not (len(n) == 40 and all(c in "0123456789abcdef" for c in n)))


def installed(depot: Path) -> List[str]:
    """Installed tree hashes in a depot, straight from the directory."""
    d = depot / "artifacts"
    return sorted(n for n in os.listdir(d) if len(n) == 40) if d.is_dir() else []


class GatedServer(FaultyServer):
    """A FaultyServer that can hold GETs of one path until ``parties`` have arrived,
    and signals every request through ``arrived`` (no polling, no sleeps)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Condition()
        self._gates: Dict[str, threading.Barrier] = {}

    def gate(self, path: str, parties: int) -> None:
        """Hold GETs of ``path`` until ``parties`` of them are waiting."""
        self._gates[path] = threading.Barrier(parties, timeout=60)

    def _record(self, handler):  # type: ignore[override]
        result = super()._record(handler)
        with self.arrived:
            self.arrived.notify_all()
        gate = self._gates.get(handler.path.split("?", 1)[0])
        if gate is not None and handler.command == "GET":
            gate.wait()
        return result

    def wait_for(self, path: str, n: int, timeout: float = 60) -> bool:
        """Block until ``n`` requests for ``path`` were seen."""
        with self.arrived:
            return self.arrived.wait_for(lambda: self.count(path) >= n, timeout=timeout)



class FuncSource:
    """A source from a plain ``fill(dest) -> tree hash or None`` (unit tests of the store)."""

    label = "test fill"
    network = False
    readonly = False

    def __init__(self, fn: Callable[[Path], Optional[str]]) -> None:
        self.fn = fn

    def fill(self, dest: Path, work: Path, bar: Any) -> Any:
        from artifacts_py.sources.base import Filled

        return Filled(self.fn(dest), 0, 0)


def install(tree_hash: str, fn: Callable[[Path], Optional[str]]) -> Path:
    """Install ``tree_hash`` with a plain fill function; its own error propagates."""
    from artifacts_py import depot, store

    tree_hash = depot.require_hash(tree_hash)
    found = depot.find_installed(tree_hash, honor_overrides=False)
    if found is not None:
        return found
    target = store.prepare_depot(depot.get_cache_dir(), "test")
    return store.persist(target, tree_hash, FuncSource(fn), f"tree {tree_hash}", False)


def persist(fn: Callable[[Path], Optional[str]]) -> Path:
    """Install a tree whose hash is not known yet, with a plain fill function."""
    from artifacts_py import depot, store

    target = store.prepare_depot(depot.get_cache_dir(), "test")
    return store.persist(target, None, FuncSource(fn), "test tree", False)


def worker(name: str, toml: str, env: Dict[str, str], barrier, results, no_lock: bool) -> None:
    """Child process body: wait at the barrier, resolve, report (path, verified).

    ``env`` is the parent's ARTIFACTS_PY_* variables: a forkserver child has
    the environment of the (long-lived) fork server, not of this test.
    """
    import contextlib

    from artifacts_py import core, depot

    for key in [k for k in os.environ if k.startswith("ARTIFACTS_PY_")]:
        del os.environ[key]
    os.environ.update(env)
    if no_lock:  # prove correctness does not rest on the locks
        from artifacts_py import store

        store._hash_lock = lambda *_a: contextlib.nullcontext()  # type: ignore[assignment]
        store.depot_lock = lambda *_a, **_k: contextlib.nullcontext()  # type: ignore[assignment]
    barrier.wait()
    try:
        path = core.artifact(name, toml)
        results.put((str(path), core.verify_artifact(path.name), None))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        results.put((None, False, f"{type(e).__name__}: {e}"))


if __name__ == "__main__":  # `python core_helpers.py NAME TOML`: resolve once, print the path
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from artifacts_py import artifact

    print(artifact(sys.argv[1], sys.argv[2]), flush=True)
