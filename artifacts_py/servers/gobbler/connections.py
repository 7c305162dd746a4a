"""A bound on the server's concurrent connections (one thread each).

Idle keep-alive connections are what a slow or hostile client piles up, and
they are the cheapest to drop: HTTP clients must expect an idle connection
to be closed. So when the server is full, a new connection takes the place
of the one that has been idle longest; only when every connection is busy
with a request does the accept loop wait for one to finish.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Dict, Set

DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_IDLE_TIMEOUT = 60.0


class ConnectionLimiter:
    """Counts open connections and knows which of them wait for a request."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._cond = threading.Condition()
        self._open = 0
        self._idle: Dict[socket.socket, None] = {}  # an ordered set, longest idle first
        self._evicted: Set[socket.socket] = set()  # told to go, not yet closed

    def admit(self) -> None:
        """Wait for a free slot, evicting the longest-idle connection if needed."""
        with self._cond:
            while self._open >= self.limit:
                # Enough evictions under way free one slot once their threads end.
                if self._idle and len(self._evicted) <= self._open - self.limit:
                    oldest = next(iter(self._idle))
                    del self._idle[oldest]
                    self._evicted.add(oldest)
                    # Wakes the handler's blocked read with end-of-file.
                    with contextlib.suppress(OSError):
                        oldest.shutdown(socket.SHUT_RDWR)
                    continue
                self._cond.wait()
            self._open += 1

    def idle(self, sock: socket.socket) -> None:
        """``sock`` now waits for its next request and may be evicted."""
        with self._cond:
            self._idle[sock] = None
            self._cond.notify_all()

    def busy(self, sock: socket.socket) -> bool:
        """``sock`` has a request to handle; False if it was evicted meanwhile."""
        with self._cond:
            if sock not in self._idle:
                return False
            del self._idle[sock]
            return True

    def release(self, sock: socket.socket) -> None:
        """``sock`` is closed: free its slot."""
        with self._cond:
            self._idle.pop(sock, None)
            self._evicted.discard(sock)
            self._open -= 1
            self._cond.notify_all()
