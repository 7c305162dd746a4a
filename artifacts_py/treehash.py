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
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

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
    with open(path, "rb", buffering=0) as f:
        return _feed(f, hashes)


def _feed(f: Any, hashes: Sequence[Any]) -> int:
    """Read ``f`` to its end, feeding every hash object; return the bytes read."""
    buf = getattr(_buffers, "buf", None)
    if buf is None:  # one read buffer per thread, not one per (small) file
        buf = _buffers.buf = bytearray(_CHUNK)
    view = memoryview(buf)
    total = 0
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


def file_blob_sha1(path: PathLike, size: int, dir_fd: Optional[int] = None) -> bytes:
    """Raw git blob hash of a regular file of known ``size`` (``path``
    relative to ``dir_fd`` when given; a symlink there is not followed)."""
    h = blob_hasher(size)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd)
    if size <= _WHOLE_READ_LIMIT:  # one read beats a chunk loop for many small files
        try:
            h.update(os.read(fd, size))
        finally:
            os.close(fd)
    else:
        with open(fd, "rb", buffering=0) as f:
            _feed(f, (h,))
    digest: bytes = h.digest()
    return digest


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
        # The folder of the last add: (its path, its dict). Tar members come
        # folder by folder, so most adds skip the walk from the root.
        self._last: Optional[Tuple[bytes, Dict[bytes, object]]] = None

    def add(self, path: Union[str, bytes], mode: bytes, sha: bytes) -> None:
        """Record a file or symlink. ``sha`` is the raw 20-byte blob hash."""
        raw = path.encode("utf-8", "surrogateescape") if isinstance(path, str) else path
        last = self._last
        if last is not None:
            head, _, leaf = raw.rpartition(b"/")
            if head == last[0] and leaf and leaf != b"." and leaf != b".git":
                last[1][leaf] = (mode, sha)
                return
        parts = [p for p in raw.split(b"/") if p and p != b"."]
        if not parts or b".git" in parts:
            return
        node = self._root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = (mode, sha)
        folder = b"/".join(parts[:-1])
        normal = raw == (folder + b"/" + parts[-1] if folder else parts[-1])
        self._last = (folder, node) if normal else None

    def remove(self, path: Union[str, bytes]) -> None:
        """Forget a path (and anything below it), e.g. when a tar entry is replaced."""
        self._last = None
        raw = path.encode("utf-8", "surrogateescape") if isinstance(path, str) else path
        parts = [p for p in raw.split(b"/") if p and p != b"."]
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


_TreeEntry = Tuple[bytes, bytes, bytes, bytes]  # (sort key, mode, name, raw sha)


def _tree_object(entries: List[_TreeEntry]) -> Optional[bytes]:
    """Raw sha1 of one git tree object; None for a tree with nothing in it."""
    if not entries:
        return None
    entries.sort(key=lambda e: e[0])
    body = b"".join(mode + b" " + name + b"\0" + sha for _, mode, name, sha in entries)
    from hashlib import sha1

    return sha1(b"tree %d\0" % len(body) + body).digest()


def _tree_sha(root: Dict[bytes, object]) -> Optional[bytes]:
    """Post-order over the nested dicts, with a stack instead of recursion
    (a tree may be thousands of folders deep)."""
    # Frames: (name in parent, remaining children, entries so far).
    stack: List[Tuple[bytes, Iterator[Tuple[bytes, object]], List[_TreeEntry]]] = [
        (b"", iter(root.items()), [])]
    while True:
        name, children, entries = stack[-1]
        for child_name, child in children:
            if isinstance(child, dict):
                stack.append((child_name, iter(child.items()), []))
                break
            leaf: Tuple[bytes, bytes] = child  # type: ignore[assignment]
            entries.append((child_name, leaf[0], child_name, leaf[1]))
        else:
            stack.pop()
            sha = _tree_object(entries)
            if not stack:
                return sha
            if sha is not None:  # a folder without any file below: git drops it
                stack[-1][2].append((name + b"/", MODE_TREE, name, sha))


def iter_tree(directory: PathLike) -> Iterable[Tuple[bytes, bytes, bytes]]:
    """Yield (relative path bytes, git mode, raw blob sha) for every file and
    symlink under ``directory``, never following symlinks and skipping ``.git``.

    The walk is iterative (:func:`artifacts_py.files.walk`): any depth works.
    """
    from .files import walk

    for e in walk(directory, prune=(".git",)):
        mode = e.st.st_mode
        if e.name == ".git" or stat.S_ISDIR(mode):
            continue
        rel = os.fsencode(e.rel)
        if stat.S_ISLNK(mode):
            yield rel, MODE_LINK, blob_sha1(os.fsencode(os.readlink(e.name, dir_fd=e.dir_fd)))
        elif stat.S_ISREG(mode):
            yield rel, mode_for(mode), file_blob_sha1(e.name, e.st.st_size, dir_fd=e.dir_fd)
        else:
            from .errors import UnsupportedArchiveError  # a ValueError too

            raise UnsupportedArchiveError(
                f"{os.path.join(os.fspath(directory), e.rel)}: cannot hash a device, FIFO or "
                "socket; an artifact may hold only files, directories and symlinks; remove it")


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

    if not os.path.isfile(path):
        raise (IsADirectoryError if os.path.isdir(path) else FileNotFoundError)(
            f"{path}: not a file; compute_sha256 hashes a file (a tarball)")
    h = sha256()
    hash_file(path, h)
    return h.hexdigest()


__all__ = ["TreeBuilder", "compute_git_tree_sha1", "compute_sha256", "blob_sha1",
           "file_blob_sha1", "blob_header", "hash_file", "blob_hasher", "mode_for", "iter_tree", "EMPTY_TREE",
           "MODE_FILE", "MODE_EXEC", "MODE_LINK", "MODE_TREE"]
