"""A bad rural link between a device and the broker: a TCP proxy that delays, throttles,
stalls and cuts connections (the kernel here has no netem, so this is done in user space).

Each direction keeps its order: a chunk leaves ``delay ± jitter`` after it arrived, never
before the chunk ahead of it, and no faster than ``kbit_s``. ``stall()`` freezes both
directions for a while (a tunnel, a dead spot); ``cut_every_s`` closes a random connection
at random moments (the mobile network dropping the session).
"""

from __future__ import annotations

import contextlib
import queue
import random
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class LinkStats:
    connections: int = 0
    cuts: int = 0
    stalls: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass
class BadLink:
    upstream: tuple[str, int]
    delay_s: float = 0.8
    jitter_s: float = 0.4
    kbit_s: float = 64.0
    cut_every_s: float = 0.0  # mean seconds between cuts; 0 = never
    stall_every_s: float = 0.0  # mean seconds between stalls; 0 = never
    stall_s: tuple[float, float] = (2.0, 5.0)
    seed: int = 7
    stats: LinkStats = field(default_factory=LinkStats)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port = int(self._server.getsockname()[1])
        self._stop = threading.Event()
        self._stalled_until = 0.0
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()

    def start(self) -> BadLink:
        for target in (self._accept, self._chaos):
            threading.Thread(target=target, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.close()
        with self._lock:
            for a, b in self._pairs:
                for s in (a, b):
                    with contextlib.suppress(OSError):
                        s.close()

    def stall(self, seconds: float) -> None:
        self._stalled_until = max(self._stalled_until, time.monotonic() + seconds)
        self.stats.stalls += 1

    def cut_all(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
            self.stats.cuts += 1

    # -- internals -----------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            up.settimeout(None)
            with self._lock:
                self._pairs.append((client, up))
            self.stats.connections += 1
            for src, dst, up_dir in ((client, up, True), (up, client, False)):
                q: queue.Queue[tuple[float, bytes] | None] = queue.Queue()
                threading.Thread(target=self._read, args=(src, q, up_dir), daemon=True).start()
                threading.Thread(target=self._write, args=(dst, q), daemon=True).start()

    def _read(
        self, src: socket.socket, q: queue.Queue[tuple[float, bytes] | None], up: bool
    ) -> None:
        while True:
            try:
                data = src.recv(4096)
            except OSError:
                data = b""
            if not data:
                q.put(None)
                return
            if up:
                self.stats.bytes_up += len(data)
            else:
                self.stats.bytes_down += len(data)
            q.put((time.monotonic(), data))

    def _write(self, dst: socket.socket, q: queue.Queue[tuple[float, bytes] | None]) -> None:
        last = 0.0
        per_byte = 8 / (self.kbit_s * 1000)
        while True:
            item = q.get()
            if item is None:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_RDWR)
                return
            arrived, data = item
            due = max(last, arrived + max(0.0, self._rng.gauss(self.delay_s, self.jitter_s / 2)))
            for i in range(0, len(data), 256):
                piece = data[i : i + 256]
                due = max(due, self._stalled_until)
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    dst.sendall(piece)
                except OSError:
                    return
                due = time.monotonic() + len(piece) * per_byte
            last = due

    def _chaos(self) -> None:
        next_cut = self._next(self.cut_every_s)
        next_stall = self._next(self.stall_every_s)
        while not self._stop.wait(0.1):
            now = time.monotonic()
            if now >= next_cut:
                with self._lock:
                    victim = self._rng.choice(self._pairs) if self._pairs else None
                    if victim:
                        self._pairs.remove(victim)
                if victim:
                    for s in victim:
                        with contextlib.suppress(OSError):
                            s.shutdown(socket.SHUT_RDWR)
                            s.close()
                    self.stats.cuts += 1
                next_cut = self._next(self.cut_every_s)
            if now >= next_stall:
                self.stall(self._rng.uniform(*self.stall_s))
                next_stall = self._next(self.stall_every_s)

    def _next(self, mean_s: float) -> float:
        if mean_s <= 0:
            return float("inf")
        return time.monotonic() + self._rng.expovariate(1 / mean_s)
