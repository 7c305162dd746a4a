"""Git tree hashes (Artifacts.toml's ``git-tree-sha1``), byte-identical to git.

A tree is hashed from (path, mode, blob sha1) triples, so the same
:class:`TreeBuilder` serves a directory on disk, a tar stream, and a Gobbler
manifest whose blob hashes were computed while downloading.

Rules (``julia-artifacts.md`` §4): blobs are ``sha1("blob <n>\\0" + bytes)``;
symlinks hash their target text; modes are 100644, 100755 (owner exec bit),
120000 and 40000; entries sort by raw name bytes with ``/`` appended to
directories; directories without any file below them are dropped; entries
named ``.git`` are skipped.
"""

from __future__ import annotations

import os
import stat
import threading
from typing import Any, Dict, Iterable, Tuple, Union

MODE_FILE = b"100644"
MODE_EXEC = b"100755"
MODE_LINK = b"120000"
MODE_TREE = b"40000"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

_CHUNK = 1 << 20
# Read small files whole: one syscall beats a chunk loop for the 10k-file case.
_WHOLE_READ_LIMIT = 1 << 20

PathLike = Union[str, "os.PathLike[str]"]


def blob_header(size: int) -> bytes:
    """The ``blob <size>\\0`` prefix git puts before a blob's bytes."""
    return b"blob %d\0" % size


def blob_sha1(data: bytes) -> bytes:
    """Raw 20-byte git blob hash of ``data``."""
    from hashlib import sha1

    h = sha1(blob_header(len(data)))
    h.update(data)
    return h.digest()


_buffers = threading.local()


def hash_file(path: PathLike, *hashes: Any) -> int:
    """Read ``path`` once, feeding every hash object; return the bytes read."""
    total = 0
    buf = getattr(_buffers, "buf", None)
    if buf is None:  # one read buffer per thread, not one per (small) file
        buf = _buffers.buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                return total
            total += n
            for h in hashes:
                h.update(view[:n])


def blob_hasher(size: int) -> Any:
    """A sha1 object primed with the git blob header for ``size`` bytes."""
    from hashlib import sha1

    return sha1(blob_header(size))


def file_blob_sha1(path: PathLike, size: int) -> bytes:
    """Raw git blob hash of a regular file of known ``size``."""
    h = blob_hasher(size)
    if size <= _WHOLE_READ_LIMIT:  # one read beats a chunk loop for the many-small-files case
        with open(path, "rb", buffering=0) as f:
            h.update(f.read())
    else:
        hash_file(path, h)
    return h.digest()


def mode_for(st_mode: int) -> bytes:
    """Git mode of a file from its ``st_mode`` (only the owner exec bit counts)."""
    if stat.S_ISLNK(st_mode):
        return MODE_LINK
    return MODE_EXEC if st_mode & stat.S_IXUSR else MODE_FILE


class TreeBuilder:
    """Collects (path, mode, blob hash) entries and computes the root tree hash.

    Paths are ``/``-separated and relative (str or bytes). A later ``add`` of
    the same path replaces the earlier one (tar semantics). Components named
    ``.git`` are skipped; empty directories never appear because only files
    and symlinks are added.
    """

    def __init__(self) -> None:
        self._root: Dict[bytes, object] = {}

    def add(self, path: Union[str, bytes], mode: bytes, sha: bytes) -> None:
        """Record a file or symlink. ``sha`` is the raw 20-byte blob hash."""
        parts = (os.fsencode(path) if isinstance(path, str) else path).split(b"/")
        parts = [p for p in parts if p and p != b"."]
        if not parts or b".git" in parts:
            return
        node = self._root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = (mode, sha)

    def remove(self, path: Union[str, bytes]) -> None:
        """Forget a path (and anything below it), e.g. when a tar entry is replaced."""
        parts = [p for p in (os.fsencode(path) if isinstance(path, str) else path).split(b"/") if p]
        node = self._root
        for part in parts[:-1]:
            node = node.get(part)  # type: ignore[assignment]
            if not isinstance(node, dict):
                return
        if parts:
            node.pop(parts[-1], None)

    def hexdigest(self) -> str:
        """The git tree hash of everything added, as 40 lower-case hex digits."""
        sha = _tree_sha(self._root)
        return sha.hex() if sha is not None else EMPTY_TREE


def _tree_sha(node: Dict[bytes, object]):
    entries = []
    for name, child in node.items():
        if isinstance(child, dict):
            sha = _tree_sha(child)
            if sha is None:  # no file anywhere below: git drops it
                continue
            entries.append((name + b"/", MODE_TREE, name, sha))
        else:
            mode, sha = child  # type: ignore[misc]
            entries.append((name, mode, name, sha))
    if not entries:
        return None
    entries.sort(key=lambda e: e[0])
    body = b"".join(mode + b" " + name + b"\0" + sha for _, mode, name, sha in entries)
    from hashlib import sha1

    return sha1(b"tree %d\0" % len(body) + body).digest()


def iter_tree(directory: PathLike) -> Iterable[Tuple[bytes, bytes, bytes]]:
    """Yield (relative path bytes, git mode, raw blob sha) for every file and
    symlink under ``directory``, never following symlinks and skipping ``.git``."""
    root = os.fspath(directory)
    stack = [(root, b"")]
    while stack:
        dirpath, rel = stack.pop()
        with os.scandir(dirpath) as it:
            for entry in it:
                name = os.fsencode(entry.name)
                if name == b".git":
                    continue
                relpath = rel + name
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append((entry.path, relpath + b"/"))
                elif stat.S_ISLNK(st.st_mode):
                    yield relpath, MODE_LINK, blob_sha1(os.fsencode(os.readlink(entry.path)))
                elif stat.S_ISREG(st.st_mode):
                    yield relpath, mode_for(st.st_mode), file_blob_sha1(entry.path, st.st_size)
                else:
                    raise ValueError(
                        f"{entry.path}: cannot hash a device, FIFO or socket; "
                        "an artifact may hold only files, directories and symlinks")


def compute_git_tree_sha1(directory: PathLike) -> str:
    """Git tree hash of ``directory``, equal to ``git add -A -f && git write-tree``.

    Symlinks are hashed as their target text and never followed; empty
    directories and ``.git`` entries are ignored.
    """
    if not os.path.isdir(directory):
        raise NotADirectoryError(f"{directory}: not a directory; "
                                 "compute_git_tree_sha1 needs the artifact's root folder")
    builder = TreeBuilder()
    for path, mode, sha in iter_tree(directory):
        builder.add(path, mode, sha)
    return builder.hexdigest()


def compute_sha256(path: PathLike) -> str:
    """SHA-256 of a file, as 64 lower-case hex digits."""
    from hashlib import sha256

    h = sha256()
    hash_file(path, h)
    return h.hexdigest()


def is_sha1_hex(s: object) -> bool:
    """True for a 40-digit hex string (either case)."""
    return isinstance(s, str) and len(s) == 40 and all(c in "0123456789abcdefABCDEF" for c in s)


def is_sha256_hex(s: object) -> bool:
    """True for a 64-digit hex string (either case)."""
    return isinstance(s, str) and len(s) == 64 and all(c in "0123456789abcdefABCDEF" for c in s)


__all__ = ["TreeBuilder", "compute_git_tree_sha1", "compute_sha256", "blob_sha1",
           "file_blob_sha1", "blob_header", "hash_file", "blob_hasher", "mode_for", "iter_tree", "EMPTY_TREE",
           "MODE_FILE", "MODE_EXEC", "MODE_LINK", "MODE_TREE", "is_sha1_hex", "is_sha256_hex"]
