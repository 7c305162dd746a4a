#!/usr/bin/env python3
"""``compute_git_tree_sha1`` vs ``git add -A && git write-tree`` on the same trees.

Run from the repository root::

    python benchmarks/bench_treehash.py            # full: 10,000 small files; one 1 GiB file
    python benchmarks/bench_treehash.py --quick    # smoke: 1,000 files; 64 MiB

Trees: (1) 10,000 files of random size 0-4 KiB in 10 x 10 nested folders;
(2) one 1 GiB random file. Page cache warm (every tree is read once before
timing), median of 3 (``--repeat``), rounds interleaved. Whole process
against whole process: ours is ``python -c`` calling
``artifacts_py.compute_git_tree_sha1`` and printing the hash (this
repository on ``PYTHONPATH``, byte-code caching on, written by an untimed
warm-up run); git runs in a fresh scratch ``GIT_DIR`` each time with
``--work-tree`` on the tree and an isolated configuration
(``GIT_CONFIG_NOSYSTEM=1``, ``HOME`` a temp dir). Both are timed from outside
(wall, and CPU of the processes); the hash git prints must equal ours. git also writes (zlib-compressed) objects: that is the cost of the
command users would otherwise run. Target, judged on the medians: ours at
least as fast as git.
"""

# bench-requires: git
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

MiB = 1 << 20
OURS = "import sys, artifacts_py; print(artifacts_py.compute_git_tree_sha1(sys.argv[1]))"


def git_env(home: Path) -> Dict[str, str]:
    """An environment where no user or system git configuration applies."""
    env = common.python_env(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", XDG_CONFIG_HOME=str(home),
                            GIT_CONFIG_GLOBAL=None, GIT_DIR=None, GIT_WORK_TREE=None,
                            GIT_INDEX_FILE=None, GIT_OBJECT_DIRECTORY=None)
    return env


def git_tree_hash(tree: Path, git_dir: Path, env: Dict[str, str]) -> str:
    """``git add -A && git write-tree`` in a new repository at ``git_dir``."""
    git = ["git", f"--git-dir={git_dir}", f"--work-tree={tree}"]
    with open("/dev/null", "wb") as sink:
        subprocess.run(["git", "init", "-q", "--bare", str(git_dir)], env=env, check=True,
                       stdout=sink)
    subprocess.run(git + ["add", "-A"], env=env, cwd=tree, check=True)
    out = subprocess.run(git + ["write-tree"], env=env, cwd=tree, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def our_tree_hash(tree: Path, env: Dict[str, str]) -> str:
    """``python -c`` computing the tree hash of ``tree``: what it prints."""
    out = subprocess.run([common.python(), "-c", OURS, str(tree)], env=env, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def warm(tree: Path) -> None:
    """Read every file once so both contenders start with a warm page cache."""
    for dirpath, _dirs, files in os.walk(tree):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                while f.read(16 * MiB):
                    pass


def bench_tree(root: Path, label: str, tree: Path, repeat: int) -> Tuple[bool, str]:
    env = git_env(root / "home")
    py_env = common.child_python_env(root / "pycache")
    warm(tree)
    our_tree_hash(tree, py_env)  # untimed: writes the .pyc files, as users have them
    ours: List[common.Stopwatch] = []
    git: List[common.Stopwatch] = []
    hashes = set()
    git_hashes = set()
    for i in range(repeat):  # interleaved
        common.drop_dirty_pages()
        with common.Stopwatch() as sw:
            hashes.add(our_tree_hash(tree, py_env))
        ours.append(sw)
        git_dir = root / f"git-{i}"
        common.drop_dirty_pages()
        with common.Stopwatch() as sw:
            git_hashes.add(git_tree_hash(tree, git_dir, env))
        git.append(sw)
        common.rmtree(git_dir)
    same = hashes == git_hashes and len(hashes) == 1
    rows = []
    for name, runs in (("python -c compute_git_tree_sha1", ours), ("git add -A && git write-tree", git)):
        med = common.median_run(runs)
        rows.append((name, med.wall, med.cpu, common.runs_note(runs, 3)))
    common.print_table(label, rows, "git add -A && git write-tree")
    print(f"  hashes: ours {sorted(hashes)}, git {sorted(git_hashes)}: "
          f"{'EQUAL' if same else 'DIFFERENT'}")
    ratio = rows[0][1] / rows[1][1]
    ok = common.verdict("at least as fast as git", ratio <= 1.0 and same,
                        f"{ratio:.2f}x git's median time" + ("" if same else "; HASHES DIFFER"))
    return ok, label


def main() -> int:
    parser = common.bench_parser(__doc__.splitlines()[0], "treehash")
    common.add_repeat(parser)
    args = parser.parse_args()
    common.header("bench_treehash", args.quick,
                  subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip())
    n_files, big = (1000, 64 * MiB) if args.quick else (10_000, 1024 * MiB)
    results = []
    with common.workdir(args.workdir, args.keep) as root:
        (root / "home").mkdir()
        small = root / "small"
        small.mkdir()
        size = common.make_small_tree(small, n_files, 4096)
        results.append(bench_tree(root, f"{n_files:,} small files (0-4 KiB, {size / MiB:.0f} MiB, "
                                        "nested folders)", small, args.repeat))
        common.rmtree(small)
        large = root / "large"
        large.mkdir()
        common.write_random(large / "big.bin", big)
        results.append(bench_tree(root, f"one {big / MiB:.0f} MiB random file", large,
                                  args.repeat))
    print("\nsummary: " + "; ".join(f"{label}: {'PASS' if ok else 'MISS'}" for ok, label in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
