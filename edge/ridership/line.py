"""A directional counting line with hysteresis.

The line runs from (x1, y1) to (x2, y2). Crossing it toward the side its direction points to
when turned clockwise on screen counts as **in**; the other way is **out** (a line drawn left
to right counts downward movement as in). Around the line lies a band ``band_px`` wide on each
side: a track changes side only once it is beyond the band, so a person lingering on the line
never flickers in and out. One who steps into the band and back again counts zero; one who
waits on the line and then walks through counts once; one who walks through and later comes
back counts once each way (the bus load stays right).

Only crossings of the segment as drawn count: where the path from the last point beyond the
band to the first point beyond it on the other side meets the line must lie between the two
ends (within ``margin_px``, default 0). Someone walking round the end of a line drawn in a
walkway is not counted; a door line should run from jamb to jamb.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from mimamori.edge.vision.blobs import Box
from mimamori.edge.vision.tracking import Track

Anchor = Literal["center", "bottom"]


@dataclass(frozen=True)
class Crossing:
    ts: datetime
    track: int
    direction: Literal["in", "out"]


def parse_line(text: str) -> tuple[float, float, float, float]:
    """'x1,y1,x2,y2' → four numbers; ValueError naming what is wrong."""
    parts = text.replace(" ", "").split(",")
    if len(parts) != 4:
        raise ValueError(f"line {text!r}: expected x1,y1,x2,y2 (four numbers)")
    try:
        x1, y1, x2, y2 = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"line {text!r}: expected x1,y1,x2,y2 (four numbers)") from None
    if (x1, y1) == (x2, y2):
        raise ValueError(f"line {text!r}: the two end points are the same")
    return x1, y1, x2, y2


class LineCounter:
    def __init__(
        self,
        line: tuple[float, float, float, float],
        *,
        band_px: float = 12.0,
        anchor: Anchor = "center",
        margin_px: float = 0.0,
    ) -> None:
        x1, y1, x2, y2 = line
        self.line = line
        self.band, self.anchor, self.margin = band_px, anchor, margin_px
        dx, dy = x2 - x1, y2 - y1
        self._len = (dx * dx + dy * dy) ** 0.5
        self._ux, self._uy = dx / self._len, dy / self._len  # along the line
        self.normal = (-self._uy, self._ux)  # unit vector to the "in" side (clockwise on screen)
        self._side: dict[int, tuple[int, tuple[float, float]]] = {}  # track → side, where
        self.ins = 0
        self.outs = 0

    def point(self, box: Box) -> tuple[float, float]:
        x1, y1, x2, y2 = box
        return ((x1 + x2) / 2, y2 if self.anchor == "bottom" else (y1 + y2) / 2)

    def _frame(self, x: float, y: float) -> tuple[float, float]:
        """(along the line from its start, across it toward the in side), in pixels."""
        rx, ry = x - self.line[0], y - self.line[1]
        return rx * self._ux + ry * self._uy, rx * self.normal[0] + ry * self.normal[1]

    def side(self, x: float, y: float, band: float | None = None) -> int:
        """+1 in side, -1 out side, 0 inside the band (of the whole line, ends extended)."""
        band = self.band if band is None else band
        across = self._frame(x, y)[1]
        if across > band:
            return 1
        if across < -band:
            return -1
        return 0

    def within(self, a: tuple[float, float], b: tuple[float, float]) -> bool:
        """Does the path from a to b (on opposite sides) meet the line between its ends?"""
        (pa, qa), (pb, qb) = self._frame(*a), self._frame(*b)
        along = pa + (pb - pa) * qa / (qa - qb) if qa != qb else (pa + pb) / 2
        return -self.margin <= along <= self._len + self.margin

    def update(self, tracks: list[Track], ts: datetime) -> list[Crossing]:
        """Feed the trusted tracks of one frame; returns the crossings completed in it."""
        out: list[Crossing] = []
        live = set()
        for t in tracks:
            live.add(t.id)
            if t.missed:
                continue  # coasting: wait to see where it comes out
            point = self.point(t.box)
            if t.id not in self._side:
                # first seen (perhaps inside the band: it stood still and faded into the
                # background, or came out from behind someone): which half it started in
                first = self.point(t.first_box)
                self._side[t.id] = (self.side(*first, band=0.0), first)
            side = self.side(*point)
            if side == 0:
                continue
            before, where = self._side[t.id]
            self._side[t.id] = (side, point)
            if before and side != before and self.within(where, point):
                if side > 0:
                    self.ins += 1
                else:
                    self.outs += 1
                out.append(Crossing(ts, t.id, "in" if side > 0 else "out"))
        for gone in set(self._side) - live:
            del self._side[gone]
        return out
