"""When does a run of monkey scores become one incursion?

Pure logic on (time, score) pairs, so it is tested without cameras or clocks:

* an incursion **starts** when ``start_frames`` positive frames fall within ``window_s``
  (a single stray positive never starts one);
* it is **updated** while positives keep coming (best score and its frame kept);
* it **ends** after ``quiet_s`` seconds without a positive;
* after it ends, a new one may start only after ``cooldown_s`` (a troop milling at the edge of
  the frame is one visit, not ten).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, TypeVar

T = TypeVar("T")  # whatever the caller keeps with the best frame (an image, a box...)


@dataclass
class Incursion(Generic[T]):
    number: int
    started: datetime
    last_seen: datetime
    frames: int = 0
    max_score: float = 0.0
    best: T | None = None
    ended: datetime | None = None


@dataclass(frozen=True)
class Rules:
    threshold: float = 0.7
    start_frames: int = 2  # bench/wildlife_incursions.py: 3 loses infrared visits, 2 no false ones
    window_s: float = 10.0
    quiet_s: float = 30.0
    cooldown_s: float = 60.0


@dataclass
class Tracker(Generic[T]):
    """Feed every scored frame; returns "start", "update", "end" or None."""

    rules: Rules = field(default_factory=Rules)
    current: Incursion[T] | None = None
    last_ended: Incursion[T] | None = None
    count: int = 0
    _recent: deque[tuple[datetime, float, T]] = field(default_factory=deque)
    _cooldown_until: datetime | None = None

    def feed(
        self, ts: datetime, score: float, keep: T, threshold: float | None = None
    ) -> str | None:
        positive = score >= (self.rules.threshold if threshold is None else threshold)
        cur = self.current
        if cur is not None:
            if positive:
                cur.frames += 1
                cur.last_seen = ts
                if score > cur.max_score:
                    cur.max_score, cur.best = score, keep
                return "update"
            if (ts - cur.last_seen).total_seconds() >= self.rules.quiet_s:
                cur.ended = cur.last_seen
                self.current, self.last_ended = None, cur
                self._cooldown_until = ts + timedelta(seconds=self.rules.cooldown_s)
                self._recent.clear()
                return "end"
            return None
        if not positive:
            self._expire(ts)
            return None
        if self._cooldown_until is not None and ts < self._cooldown_until:
            return None
        self._recent.append((ts, score, keep))
        self._expire(ts)
        if len(self._recent) < self.rules.start_frames:
            return None
        best = max(self._recent, key=lambda r: r[1])
        self.count += 1
        self.current = Incursion(
            number=self.count,
            started=self._recent[0][0],
            last_seen=ts,
            frames=len(self._recent),
            max_score=best[1],
            best=best[2],
        )
        self._recent.clear()
        return "start"

    def _expire(self, ts: datetime) -> None:
        while self._recent and (ts - self._recent[0][0]).total_seconds() > self.rules.window_s:
            self._recent.popleft()
