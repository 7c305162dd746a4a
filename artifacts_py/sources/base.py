"""What every source of an artifact's content is: the plug-in point of installs.

A source fills a private, empty directory it is handed (``dest``) with a
tree, using ``work`` (a private directory on the same filesystem) for
anything else it needs, such as a downloaded tarball. It reports the tree
hash it computed on the way (or None to have ``dest`` hashed), and how many
bytes and files it wrote. It knows nothing of depots, locks or the
Artifacts.toml: :mod:`artifacts_py.store` verifies and renames what it made.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional, Protocol

from ..progress import Bar


class Filled(NamedTuple):
    """What a fill produced: the tree hash it computed (None: hash it), bytes, files."""

    tree_hash: Optional[str]
    nbytes: int
    nfiles: int


class Source(Protocol):
    """One way to get an artifact's tree (see the module docstring)."""

    @property
    def label(self) -> str:
        """Where the content comes from, for messages and logs."""

    @property
    def network(self) -> bool:
        """True when the fill needs the network (it is skipped offline)."""

    @property
    def readonly(self) -> bool:
        """True when the fill leaves every file without write bits (no walk after)."""

    def fill(self, dest: Path, work: Path, bar: Bar) -> Filled:
        """Write the tree into ``dest``; return what was written."""


class Unavailable(NamedTuple):
    """A source that cannot be used here, listed so a total failure says why."""

    label: str
    why: str
    network: bool = False
    readonly: bool = True

    def fill(self, dest: Path, work: Path, bar: Bar) -> Filled:
        from ..errors import SourceUnavailableError

        raise SourceUnavailableError(self.why)
