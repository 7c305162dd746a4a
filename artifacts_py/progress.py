"""Progress bars: one thread-safe byte counter per install, drawn by tqdm on a terminal.

Sources call :meth:`Bar.update` with each chunk (through the transport's
``on_bytes`` hook) and :meth:`Bar.file_done` per file, so a version with one
large file moves per chunk, with rate and ETA. A bar is drawn only when
asked (``enabled=True``), or when ``enabled`` is None and stderr is a
terminal; otherwise every method does nothing. tqdm is imported only when a
bar is drawn.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Optional

# The CLI's --no-progress / -q: no bar anywhere in this process.
_disabled = False


def disable(value: bool = True) -> None:
    """Turn every bar off (or back on) for this process."""
    global _disabled
    _disabled = value


class Bar:
    """Bytes (and files) done of a total; safe to update from worker threads."""

    def __init__(self, desc: str, total: Optional[int] = None, nfiles: int = 0,
                 enabled: Optional[bool] = None) -> None:
        self.lock = threading.Lock()
        self.nfiles, self.files = nfiles, 0
        self._bar: Any = None
        if enabled is None:
            enabled = sys.stderr.isatty()
        if enabled and not _disabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True,
                             unit_divisor=1024, file=sys.stderr, mininterval=0.2,
                             leave=False, dynamic_ncols=True)

    @property
    def active(self) -> bool:
        return self._bar is not None

    def update(self, nbytes: int) -> None:
        """``nbytes`` more done (negative when a restarted transfer discards bytes)."""
        if self._bar is not None:
            with self.lock:
                self._bar.update(nbytes)

    def set_total(self, total: int) -> None:
        """The total became known (a Content-Length)."""
        if self._bar is not None and self._bar.total != total:
            with self.lock:
                self._bar.total = total
                self._bar.refresh()

    def file_done(self) -> None:
        """One more file finished (shown as ``k/n files``)."""
        if self._bar is not None:
            with self.lock:
                self.files += 1
                self._bar.set_postfix_str(f"{self.files}/{self.nfiles} files", refresh=False)

    def describe(self, desc: str) -> None:
        """Change the label, keeping the count (e.g. to say that unpacking runs too)."""
        if self._bar is not None:
            with self.lock:
                self._bar.set_description_str(desc, refresh=False)

    def stage(self, desc: str, total: Optional[int] = None) -> None:
        """Start a new phase on the same line (e.g. verifying after a download)."""
        if self._bar is not None:
            with self.lock:
                self._bar.reset(total=total)
                self._bar.set_description_str(desc, refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
