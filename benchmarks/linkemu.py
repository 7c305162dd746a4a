#!/usr/bin/env python3
"""A link emulator: a TCP proxy on 127.0.0.1 that gives a chosen round trip and bandwidth.

No kernel module is needed (this machine's kernel has no ``sch_netem``).
Every byte that goes through the proxy, in each direction, passes

1. a **token bucket** shared by every connection in that direction (the
   link's bandwidth, ``--rate`` Mbit/s, with a burst of ``--burst`` KiB: a
   chunk leaves at once while the bucket holds enough tokens, else when the
   bucket has refilled);
2. then a fixed **one-way delay** of half the round trip (``--rtt`` ms).

Data in flight is delayed, not serialised behind the delay: each direction
of each connection keeps a queue of (due time, chunk) and delivers each
chunk at its due time, so many chunks can be on the wire at once, as on a
real path. The queue holds at most about twice the bandwidth-delay product;
beyond that the proxy stops reading, which pushes back on the sender as a
full TCP window would.

A new connection also pays the TCP handshake: the client's first byte
leaves one round trip after the proxy accepted the connection (the client's
``connect()`` returns at once on loopback, but its data arrives when it
would have after a SYN / SYN-ACK exchange).

Not emulated: packet loss, TCP slow start and congestion control, jitter.
So this is the best case of a real path with that round trip and bandwidth;
a real one is slower.

As a command::

    python benchmarks/linkemu.py --target 127.0.0.1:8080 --rtt 20 --rate 200
    python benchmarks/linkemu.py --selftest      # checks RTT and bandwidth (~15 s)

It prints ``linkemu listening on 127.0.0.1:PORT`` and runs until killed. As
a library: :class:`LinkEmulator` (in a thread of this process) or
:func:`spawn` (a child process running the command, so the proxy's CPU does
not share a GIL with the caller).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import socket
import socketserver
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Set, Tuple

CHUNK = 64 << 10            # bytes read from a socket at a time
DEFAULT_BURST = 64 << 10    # bytes: about 2.6 ms at 200 Mbit/s, a typical tbf burst
MIN_WINDOW = 256 << 10      # bytes a connection may have queued in one direction, at least
# epoll rounds every timeout up to the next millisecond, so a timed wait ends
# 0-1 ms late; aiming half a millisecond early makes the mean error zero.
TIMER_SLACK = 0.0005
_LISTENING = re.compile(r"linkemu listening on 127\.0\.0\.1:(\d+)")


@dataclass(frozen=True)
class Link:
    """The emulated path: round trip (s), bandwidth (bit/s; None = unlimited), burst (bytes)."""

    rtt: float
    rate: Optional[float] = None
    burst: int = DEFAULT_BURST
    handshake: bool = True

    @property
    def window(self) -> int:
        """Bytes a connection may queue per direction: twice the bandwidth-delay product."""
        if self.rate is None:
            return max(MIN_WINDOW, 16 << 20)
        return max(MIN_WINDOW, int(2 * self.rate / 8 * self.rtt) + self.burst)

    def describe(self) -> str:
        """E.g. ``rtt 20 ms, 200 Mbit/s, burst 64 KiB``."""
        rate = "unlimited" if self.rate is None else f"{self.rate / 1e6:g} Mbit/s"
        return f"rtt {self.rtt * 1e3:g} ms, {rate}, burst {self.burst >> 10} KiB"


class _Direction:
    """One direction of the link, shared by all connections: token bucket, then delay."""

    def __init__(self, link: Link) -> None:
        self.delay = link.rtt / 2
        self.rate = None if link.rate is None else link.rate / 8  # bytes per second
        self.slack = 0.0 if self.rate is None else link.burst / self.rate
        self.tat = 0.0  # when the bucket is full again (GCRA's theoretical arrival time)

    def due(self, n: int, now: float) -> float:
        """When a chunk of ``n`` bytes handed to the link at ``now`` reaches the far end."""
        if self.rate is None:
            return now + self.delay
        self.tat = max(self.tat, now) + n / self.rate
        return max(now, self.tat - self.slack) + self.delay


class _Pipe:
    """One direction of one connection: read, stamp with a due time, deliver when due."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 direction: _Direction, window: int, not_before: float) -> None:
        self.reader, self.writer, self.direction = reader, writer, direction
        self.window, self.not_before = window, not_before
        self.queue: "asyncio.Queue[Tuple[float, bytes]]" = asyncio.Queue()
        self.queued = 0
        self.room = asyncio.Event()
        self.room.set()

    async def feed(self) -> None:
        """Read from the source and queue each chunk (an empty one is EOF)."""
        loop = asyncio.get_running_loop()
        last = 0.0
        while True:
            await self.room.wait()
            data = await self.reader.read(CHUNK)
            now = max(loop.time(), self.not_before)
            due = self.direction.due(len(data), now) if data else now + self.direction.delay
            last = max(last, due)  # never overtake earlier chunks of this connection
            self.queue.put_nowait((last, data))
            if not data:
                return
            self.queued += len(data)
            if self.queued > self.window:
                self.room.clear()

    async def deliver(self) -> None:
        """Write each chunk to the destination at its due time; half-close at EOF."""
        loop = asyncio.get_running_loop()
        while True:
            due, data = await self.queue.get()
            wait = due - loop.time() - TIMER_SLACK
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if self.writer.can_write_eof():
                    self.writer.write_eof()
                return
            self.writer.write(data)
            await self.writer.drain()
            self.queued -= len(data)
            if self.queued <= self.window:
                self.room.set()


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Proxy:
    """The asyncio side: accept, connect to the target, run both pipes."""

    def __init__(self, target: Tuple[str, int], link: Link) -> None:
        self.target, self.link = target, link
        self.up, self.down = _Direction(link), _Direction(link)
        # The loop holds tasks weakly, and a stream's protocol holds its reader weakly:
        # once the client has half-closed, nothing else keeps a connection's tasks alive
        # while the server's answer is still on its way, and the GC would drop them.
        self.live: Set["asyncio.Task[None]"] = set()

    async def handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        """Serve one client connection (a strong reference is held while it runs)."""
        me = asyncio.current_task()
        assert me is not None
        self.live.add(me)
        try:
            await self._relay(c_reader, c_writer)
        finally:
            self.live.discard(me)

    async def _relay(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        accepted = asyncio.get_running_loop().time()
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.target)
        except OSError:
            c_writer.transport.abort()
            return
        for w in (c_writer, s_writer):
            _nodelay(w)
        first = accepted + self.link.rtt if self.link.handshake else 0.0
        up = _Pipe(c_reader, s_writer, self.up, self.link.window, first)
        down = _Pipe(s_reader, c_writer, self.down, self.link.window, 0.0)
        tasks = [asyncio.ensure_future(c) for c in (up.feed(), up.deliver(), down.feed(),
                                                     down.deliver())]
        failed = True
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            failed = any(not t.cancelled() and t.exception() is not None for t in done)
        except asyncio.CancelledError:
            pass  # the proxy is shutting down: drop the connection, quietly
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for w in (c_writer, s_writer):
            if failed:
                w.transport.abort()  # a reset on one side resets the other
            else:
                w.close()


async def _serve(target: Tuple[str, int], link: Link, port: int, stop: asyncio.Event,
                 ready: Callable[[int], None]) -> None:
    """Accept connections until ``stop`` is set, then drop the open ones."""
    server = await asyncio.start_server(_Proxy(target, link).handle, "127.0.0.1", port,
                                        backlog=1024)
    ready(server.sockets[0].getsockname()[1])
    await stop.wait()
    server.close()
    handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in handlers:
        t.cancel()
    await asyncio.gather(*handlers, return_exceptions=True)
    await server.wait_closed()


class LinkEmulator:
    """The proxy in a background thread of this process.

    ``with LinkEmulator(("127.0.0.1", 8080), Link(0.02, 200e6)) as port: ...``
    connects ``127.0.0.1:port`` to the target through the emulated link.
    """

    def __init__(self, target: Tuple[str, int], link: Link, port: int = 0) -> None:
        self.target, self.link, self.port = target, link, port
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._stop: Optional[asyncio.Event] = None

    def start(self) -> int:
        """Start listening; returns the port."""
        ready = threading.Event()

        def listening(port: int) -> None:
            self.port = port
            ready.set()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._stop = asyncio.Event()
            self._loop.run_until_complete(_serve(self.target, self.link, self.port, self._stop,
                                                 listening))
            self._loop.close()

        self._thread = threading.Thread(target=run, name="linkemu", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("linkemu: the proxy did not start listening within 10 s")
        return self.port

    def stop(self) -> None:
        """Stop listening and end the thread (open connections are dropped)."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> int:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def link_args(link: Link) -> List[str]:
    """The command-line options that describe ``link``."""
    return ["--rtt", f"{link.rtt * 1e3:g}", "--rate", f"{(link.rate or 0) / 1e6:g}",
            "--burst", str(link.burst >> 10), *([] if link.handshake else ["--no-handshake"])]


@contextlib.contextmanager
def spawn(target: Tuple[str, int], link: Link) -> Iterator[int]:
    """Run the proxy as a child process (this file as a command); yields its port."""
    argv = [sys.executable, os.path.abspath(__file__), "--target", f"{target[0]}:{target[1]}",
            *link_args(link)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        match = _LISTENING.search(proc.stdout.readline())
        if not match:
            raise RuntimeError(f"linkemu did not start: {' '.join(argv)}")
        yield int(match.group(1))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def serve(target: Tuple[str, int], link: Link, port: int) -> None:
    """The command: listen until SIGINT or SIGTERM."""
    def listening(bound: int) -> None:
        print(f"linkemu listening on 127.0.0.1:{bound} -> {target[0]}:{target[1]} "
              f"({link.describe()})", flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await _serve(target, link, port, stop, listening)

    asyncio.run(main())


# ---------------------------------------------------------------- self-test

class _TestHandler(socketserver.BaseRequestHandler):
    """``P``: echo each byte back (ping-pong); ``B<n>\\n``: send n bytes, then close."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        mode = sock.recv(1)
        if mode == b"P":
            while byte := sock.recv(1):
                sock.sendall(byte)
        elif mode == b"B":
            line = b""
            while not line.endswith(b"\n"):
                line += sock.recv(32)
            left = int(line)
            block = bytes(CHUNK)
            while left:
                n = min(left, len(block))
                sock.sendall(block[:n])
                left -= n


class _TestServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _ping_pong(port: int, rounds: int) -> Tuple[float, float]:
    """(connect + first round trip, median of the later round trips), in seconds."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times = []
        for i in range(rounds + 1):
            t = time.perf_counter()
            s.sendall(b"Px" if i == 0 else b"x")
            if s.recv(1) != b"x":
                raise RuntimeError("ping-pong: the echo differs")
            times.append(time.perf_counter() - (t0 if i == 0 else t))
        return times[0], statistics.median(times[1:] or times)


def _bulk(port: int, size: int, conns: int) -> float:
    """Bytes per second from first to last byte, ``size`` bytes over ``conns`` connections."""
    marks: List[Tuple[float, float]] = []

    def one() -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"B%d\n" % (size // conns))
            got, first = 0, 0.0
            while chunk := s.recv(1 << 20):
                if not got:
                    first = time.perf_counter()
                got += len(chunk)
            if got != size // conns:
                raise RuntimeError(f"bulk: got {got} of {size // conns} bytes")
            marks.append((first, time.perf_counter()))

    threads = [threading.Thread(target=one) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    start, end = min(m[0] for m in marks), max(m[1] for m in marks)
    return size / (end - start) * 8


def _check(what: str, got: float, want: float, unit: str, tolerance: float = 0.10) -> bool:
    ok = abs(got - want) <= tolerance * want
    print(f"  {'PASS' if ok else 'FAIL'}  {what}: {got:.2f} {unit} (want {want:.2f} +- "
          f"{tolerance:.0%})", flush=True)
    return ok


def selftest(links: Sequence[Link]) -> int:
    """Ping-pong gives the RTT, a bulk transfer the bandwidth (within 10%); 0 if all hold."""
    print(f"linkemu self-test (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    oks = []
    with _TestServer(("127.0.0.1", 0), _TestHandler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        target = ("127.0.0.1", server.server_address[1])
        for link in links:
            print(f"link: {link.describe()} (proxy in a child process)", flush=True)
            with spawn(target, link) as port:
                _ping_pong(port, 1)  # untimed: the first connection pays one-off start-up costs
                connect, rtt = _ping_pong(port, 20)
                oks.append(_check("ping-pong round trip", rtt * 1e3, link.rtt * 1e3, "ms"))
                connect = statistics.median([connect, *(_ping_pong(port, 0)[0] for _ in range(2))])
                oks.append(_check("connect + first round trip (handshake), median of 3",
                                  connect * 1e3, 2 * link.rtt * 1e3, "ms"))
                if link.rate is not None:
                    # ~1.5 s of data: long enough that the burst and one RTT hardly count.
                    size = int(link.rate / 8 * 1.5)
                    for conns in (1, 4):
                        rate = _bulk(port, size, conns)
                        oks.append(_check(f"bulk bandwidth, {conns} connection(s)", rate / 1e6,
                                          link.rate / 1e6, "Mbit/s"))
        server.shutdown()
    print(f"self-test: {sum(oks)} of {len(oks)} checks passed")
    return 0 if all(oks) else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse the command line; run the proxy or the self-test."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", help="HOST:PORT to forward to")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    p.add_argument("--rtt", type=float, default=20.0, help="round trip in ms (default 20)")
    p.add_argument("--rate", type=float, default=200.0,
                   help="bandwidth per direction in Mbit/s; 0 = unlimited (default 200)")
    p.add_argument("--burst", type=int, default=DEFAULT_BURST >> 10,
                   help=f"token-bucket burst in KiB (default {DEFAULT_BURST >> 10})")
    p.add_argument("--no-handshake", action="store_true",
                   help="do not charge a round trip for each new connection")
    p.add_argument("--selftest", action="store_true",
                   help="check RTT and bandwidth at 20 and 100 ms, 200 Mbit/s, then exit")
    args = p.parse_args(argv)
    link = Link(args.rtt / 1e3, args.rate * 1e6 or None, args.burst << 10, not args.no_handshake)
    if args.selftest:
        return selftest([link, Link(0.1, 200e6, link.burst)] if args.rtt != 100 else [link])
    if not args.target:
        p.error("--target HOST:PORT is required (or --selftest)")
    host, _, port = args.target.rpartition(":")
    serve((host, int(port)), link, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
