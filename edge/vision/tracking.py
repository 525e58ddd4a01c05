"""Multi-object tracking by centroid distance with constant-velocity prediction.

Each detection box is matched to a track by the distance to the track's *predicted* position
(last position plus velocity times frames missed), within a gate that scales with the box
size; the pairs are the assignment with the least total distance (SciPy's
``linear_sum_assignment``). Taking the nearest pair first instead swaps two people who meet
on the line going opposite ways (one hidden behind the other for a few frames): neither is
counted. A track that finds no detection coasts on its velocity for up to
``max_missed`` frames (a person behind a pole, a merged blob) before it is dropped, so a short
occlusion does not split one walker into two tracks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from mimamori.edge.vision.blobs import Box


@dataclass(frozen=True)
class TrackSettings:
    max_missed: int = 8  # frames a track may coast without a detection
    gate: float = 0.9  # match radius as a fraction of the box diagonal
    min_gate_px: float = 25.0  # ...but at least this many pixels
    min_hits: int = 3  # detections before a track is trusted (counted)
    smoothing: float = 0.5  # velocity: weight of the newest step


@dataclass
class Track:
    id: int
    box: Box
    x: float
    y: float
    vx: float = 0.0
    vy: float = 0.0
    hits: int = 1
    missed: int = 0
    path: list[tuple[float, float]] = field(default_factory=list)
    first_box: Box = (0, 0, 0, 0)  # where it was first detected (before it was trusted)

    def predicted(self) -> tuple[float, float]:
        k = self.missed + 1
        return self.x + self.vx * k, self.y + self.vy * k

    @property
    def diagonal(self) -> float:
        x1, y1, x2, y2 = self.box
        return math.hypot(x2 - x1, y2 - y1)


def centroid(box: Box) -> tuple[float, float]:
    x1, y1, x2, y2 = box
    return (x1 + x2) / 2, (y1 + y2) / 2


class Tracker:
    def __init__(self, settings: TrackSettings | None = None) -> None:
        self.s = settings or TrackSettings()
        self.tracks: list[Track] = []
        self._next_id = 1

    def clear(self) -> None:
        """Forget every track (new ones get new ids)."""
        self.tracks.clear()

    def update(self, boxes: list[Box]) -> list[Track]:
        """Feed one frame's detections; returns the live tracks (trusted or not)."""
        used_t: set[int] = set()
        used_d: set[int] = set()
        if self.tracks and boxes:
            far = 1e9  # outside every gate: never paired
            cost = np.full((len(self.tracks), len(boxes)), far)
            for ti, t in enumerate(self.tracks):
                px, py = t.predicted()
                gate = max(self.s.min_gate_px, self.s.gate * t.diagonal)
                for di, b in enumerate(boxes):
                    cx, cy = centroid(b)
                    d = math.hypot(cx - px, cy - py)
                    if d <= gate:
                        cost[ti, di] = d
            rows, cols = linear_sum_assignment(cost)
            for ti, di in zip(rows.tolist(), cols.tolist(), strict=True):
                if cost[ti, di] < far:
                    used_t.add(ti)
                    used_d.add(di)
                    self._move(self.tracks[ti], boxes[di])
        for ti, t in enumerate(self.tracks):
            if ti not in used_t:
                t.missed += 1  # coasts: predicted() extrapolates from the last position
        self.tracks = [t for t in self.tracks if t.missed <= self.s.max_missed]
        for di, b in enumerate(boxes):
            if di not in used_d:
                cx, cy = centroid(b)
                self.tracks.append(Track(self._next_id, b, cx, cy, path=[(cx, cy)], first_box=b))
                self._next_id += 1
        return self.tracks

    def _move(self, t: Track, box: Box) -> None:
        cx, cy = centroid(box)
        steps = t.missed + 1
        a = self.s.smoothing
        t.vx = (1 - a) * t.vx + a * (cx - t.x) / steps if t.hits > 1 else (cx - t.x) / steps
        t.vy = (1 - a) * t.vy + a * (cy - t.y) / steps if t.hits > 1 else (cy - t.y) / steps
        t.x, t.y, t.box = cx, cy, box
        t.hits += 1
        t.missed = 0
        t.path.append((cx, cy))
        if len(t.path) > 64:
            del t.path[:-64]

    def trusted(self) -> list[Track]:
        return [t for t in self.tracks if t.hits >= self.s.min_hits]
