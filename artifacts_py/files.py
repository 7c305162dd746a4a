"""Directory trees without recursion: walk, make read-only, remove.

Every walk here is a loop, not a recursive call, and holds one directory
file descriptor at a time: it goes down with ``openat(name, O_NOFOLLOW)`` and
back up with ``openat("..")``, checking that ``..`` is the very directory it
came from (device and inode). So a tree of any depth works, whatever Python's
recursion limit, the open-file limit or ``PATH_MAX`` (a path 5,000 folders
deep is longer than the kernel accepts in one call), and a walk never follows
a symlink out of the tree, even if the tree changes under it.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Container, Iterator, List, NamedTuple, Optional, Tuple

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# Errors from opening a name that is no longer the directory it was.
_NOT_A_DIR = (errno.ENOTDIR, errno.ELOOP)




class Entry(NamedTuple):
    """One thing below the walked root.

    ``rel`` is its ``/``-separated path from the root, ``name`` its last
    component, ``st`` its ``lstat``. ``dir_fd`` is an open descriptor of the
    folder holding it, valid only until the walk moves on: use it with
    ``dir_fd=`` calls (``os.open(entry.name, ..., dir_fd=entry.dir_fd)``).
    """

    rel: str
    name: str
    dir_fd: int
    st: os.stat_result


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_dev == b.st_dev and a.st_ino == b.st_ino


class _Cursor:
    """One open directory, moved down by name and up by ``..``, verified."""

    def __init__(self, root: str, dir_fd: Optional[int] = None) -> None:
        self.root = root
        self.fd = os.open(root, _DIR_FLAGS, dir_fd=dir_fd)
        self.ids: List[os.stat_result] = [os.fstat(self.fd)]

    def down(self, name: str, expected: Optional[os.stat_result] = None) -> None:
        """Enter the subfolder ``name`` (never through a symlink)."""
        fd = os.open(name, _DIR_FLAGS, dir_fd=self.fd)
        st = os.fstat(fd)
        if expected is not None and not _same(st, expected):
            os.close(fd)
            raise FileNotFoundError(errno.ENOENT, "replaced while being walked", name)
        os.close(self.fd)
        self.fd = fd
        self.ids.append(st)

    def up(self) -> None:
        """Go back to the parent folder, refusing if it is not the one we left."""
        fd = os.open("..", _DIR_FLAGS, dir_fd=self.fd)
        if not _same(os.fstat(fd), self.ids[-2]):
            os.close(fd)
            raise OSError(errno.ESTALE, f"{self.root}: a folder was moved while it was being "
                          "walked; nothing outside the tree was touched; try again")
        os.close(self.fd)
        self.fd = fd
        self.ids.pop()

    def close(self) -> None:
        os.close(self.fd)


def _listing(fd: int, sort: bool) -> List[Tuple[str, os.stat_result]]:
    out: List[Tuple[str, os.stat_result]] = []
    with os.scandir(fd) as it:
        for e in it:
            try:
                out.append((e.name, e.stat(follow_symlinks=False)))
            except FileNotFoundError:  # removed since listed
                continue
    if sort:  # by raw name bytes, as git and our archives order entries
        out.sort(key=lambda item: os.fsencode(item[0]))
    return out


def walk(root: "str | os.PathLike[str]", *, sort: bool = False,
         prune: Container[str] = ()) -> Iterator[Entry]:
    """Every file, symlink and folder below ``root``, depth first.

    A folder is yielded before its content; with ``sort`` siblings come in
    the order of their name bytes. Symlinks are yielded, never followed.
    Folders named in ``prune`` are yielded but not entered.
    """
    cur = _Cursor(os.fspath(root))
    try:
        # One frame per level: (path prefix, remaining entries, reversed).
        frames: List[Tuple[str, List[Tuple[str, os.stat_result]]]] = [
            ("", _listing(cur.fd, sort)[::-1])]
        while frames:
            prefix, todo = frames[-1]
            if not todo:
                frames.pop()
                if frames:
                    cur.up()
                continue
            name, st = todo.pop()
            rel = prefix + name
            yield Entry(rel, name, cur.fd, st)
            if stat.S_ISDIR(st.st_mode) and name not in prune:
                try:
                    cur.down(name, st)
                except FileNotFoundError:
                    continue
                except OSError as e:
                    if e.errno in _NOT_A_DIR:
                        continue
                    raise
                frames.append((rel + "/", _listing(cur.fd, sort)[::-1]))
    finally:
        cur.close()


def make_readonly(root: "str | os.PathLike[str]") -> None:
    """Clear the write bits of every regular file below ``root`` (folders stay writable)."""
    for e in walk(root):
        if stat.S_ISREG(e.st.st_mode) and e.st.st_mode & 0o222:
            os.chmod(e.name, stat.S_IMODE(e.st.st_mode) & ~0o222, dir_fd=e.dir_fd)


def _unlink(name: str, dir_fd: int) -> bool:
    """Remove a non-folder; False when it turned out to be a folder."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        return False
    except PermissionError:
        # EPERM/EACCES on Linux for a folder (unlink never removes one).
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            return False
        raise
    return True


def _make_writable(fd: int) -> None:
    """A read-only folder's entries cannot be removed: give the owner rwx."""
    mode = os.fstat(fd).st_mode
    if mode & 0o700 != 0o700:
        os.fchmod(fd, stat.S_IMODE(mode) | 0o700)


def _empty_folder(cur: _Cursor) -> List[str]:
    """Unlink every non-folder in the current folder; return its subfolders."""
    _make_writable(cur.fd)
    subdirs = []
    with os.scandir(cur.fd) as it:
        for e in it:
            if e.is_dir(follow_symlinks=False) or not _unlink(e.name, cur.fd):
                subdirs.append(e.name)
    return subdirs


def _chmod_folder(dir_fd: int, name: str) -> None:
    """Give folder ``name`` owner rwx; a symlink put there meanwhile is not followed."""
    o_path = getattr(os, "O_PATH", 0)
    if not o_path:
        os.chmod(name, 0o700, dir_fd=dir_fd)
        return
    fd = os.open(name, o_path | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                 dir_fd=dir_fd)
    try:
        os.chmod(f"/proc/self/fd/{fd}", 0o700)  # the folder opened above, nothing else
    finally:
        os.close(fd)


def _enter(cur: _Cursor, name: str) -> bool:
    """Go into subfolder ``name`` for removal; False if it is gone or not a folder."""
    for attempt in (1, 2):
        try:
            cur.down(name)
            return True
        except FileNotFoundError:
            return False
        except PermissionError:
            if attempt == 2:
                raise
            _chmod_folder(cur.fd, name)  # a folder with no read bit
        except OSError as e:
            if e.errno not in _NOT_A_DIR:
                raise
            _unlink(name, cur.fd)  # replaced by a symlink or file meanwhile
            return False
    return False


def remove_tree(path: "str | os.PathLike[str]", *, dir_fd: Optional[int] = None) -> None:
    """``rm -rf path``, without recursion.

    Works on read-only files and folders, tolerates another process removing
    the same tree at the same time, and never follows a symlink (a symlink
    inside is removed, not what it points to; ``path`` itself may be one and
    then only the link goes). A missing ``path`` is fine. With ``dir_fd``,
    ``path`` is relative to that open folder.
    """
    path = os.fspath(path)
    try:
        st = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        try:
            os.unlink(path, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        return
    while _remove_pass(path, dir_fd):
        pass  # a folder vanished under us (another remover): start again from the top


def _remove_pass(path: str, dir_fd: Optional[int]) -> bool:
    """One removal pass; True when it must be repeated."""
    try:
        cur = _Cursor(path, dir_fd)
    except FileNotFoundError:
        return False
    try:
        # Per level below the root: (its name, subfolders still to remove).
        stack: List[Tuple[str, List[str]]] = [("", _empty_folder(cur))]
        while len(stack) > 1 or stack[0][1]:
            name, todo = stack[-1]
            if todo:
                child = todo.pop()
                if _enter(cur, child):
                    stack.append((child, _empty_folder(cur)))
                continue
            stack.pop()
            try:
                cur.up()
            except FileNotFoundError:  # our folder was removed by someone else
                return True
            try:
                os.rmdir(name, dir_fd=cur.fd)
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                stack[-1][1].append(name)  # something was added meanwhile: again
    finally:
        cur.close()
    try:
        os.rmdir(path, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        return True  # refilled meanwhile
    return False


def umask() -> Optional[int]:
    """The process umask, read without changing it (Linux's /proc); None
    when unknown (then set modes explicitly: ``os.umask`` to read it would
    race with other threads creating files)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


# Longest relative path handed to one openat call: well under PATH_MAX (4096).
_PATH_STEP = 3000


def open_dir_at(dir_fd: int, rel: str) -> int:
    """Open folder ``rel`` below ``dir_fd``; returns a new descriptor.

    ``rel`` may be longer than ``PATH_MAX``: it is opened a few thousand
    bytes at a time. The last component of each step is never a symlink
    (``O_NOFOLLOW``); use it on folders this process made.
    """
    parts = [p for p in rel.split("/") if p and p != "."]
    fd = dir_fd
    start = 0
    try:
        while True:
            end, size = start, 0
            while end < len(parts) and (end == start or size + len(parts[end]) < _PATH_STEP):
                size += len(os.fsencode(parts[end])) + 1
                end += 1
            nxt = os.open("/".join(parts[start:end]) or ".", _DIR_FLAGS, dir_fd=fd)
            if fd != dir_fd:
                os.close(fd)
            fd = nxt
            start = end
            if start >= len(parts):
                return fd
    except BaseException:
        if fd != dir_fd:
            os.close(fd)
        raise


__all__ = ["Entry", "walk", "make_readonly", "remove_tree", "open_dir_at", "umask"]


def create_exclusive(directory: str, prefix: str) -> Tuple[int, str]:
    """A new file ``<directory>/<prefix><random>``, opened for writing; (fd, path).

    Unlike ``mkstemp`` (0600) its mode is 0666 minus the umask, so another
    account (a registry service) can read it; no chmod, which would break
    default ACLs.
    """
    import secrets

    while True:
        path = os.path.join(directory, prefix + secrets.token_hex(6))
        try:
            return os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666), path
        except FileExistsError:
            continue
