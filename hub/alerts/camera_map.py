"""A small map of the wildlife cameras for the alerts page, drawn without a tile server.

Positions come from the fleet roster (given at provisioning, never by a device). They are
projected onto a flat local plane (metres east and north of their middle: over a town's few
kilometres the error is far below a dot's size), scaled to their bounding box with a margin,
north up, with a round-numbered scale bar. The page draws the result as an inline SVG.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

WIDTH, HEIGHT, MARGIN = 320, 200, 30  # px of the SVG's view box
MIN_SPAN_M = 200.0  # one camera, or cameras side by side: show this much around them
EARTH_M = 6_371_000.0


@dataclass(frozen=True)
class Dot:
    dev: str
    x: float
    y: float
    seen: bool  # one of the cameras that saw the troop
    anchor: str  # the label's SVG text-anchor: "start" (right of the dot) or "end"


@dataclass(frozen=True)
class CameraMap:
    dots: list[Dot]
    bar_m: int
    bar_px: float
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def bar_label(self) -> str:
        return f"{self.bar_m // 1000} km" if self.bar_m >= 1000 else f"{self.bar_m} m"


def local_metres(positions: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """(lat, lon) degrees → (east, north) metres from the middle of the positions."""
    lat_mid = sum(p[0] for p in positions.values()) / len(positions)
    lon_mid = sum(p[1] for p in positions.values()) / len(positions)
    shrink = math.cos(math.radians(lat_mid))  # a degree east is shorter away from the equator
    return {
        dev: (
            math.radians(lon - lon_mid) * EARTH_M * shrink,
            math.radians(lat - lat_mid) * EARTH_M,
        )
        for dev, (lat, lon) in positions.items()
    }


def round_metres(limit: float) -> int:
    """The largest 1, 2 or 5 × 10ⁿ metres not over ``limit`` (at least 1)."""
    if limit < 1:
        return 1
    power = 10 ** math.floor(math.log10(limit))
    return int(max(step * power for step in (1, 2, 5) if step * power <= limit))


def draw(positions: dict[str, tuple[float, float]], seen: Collection[str]) -> CameraMap | None:
    """The map of every camera in ``positions``, those in ``seen`` highlighted; None when
    no camera has a position."""
    if not positions:
        return None
    xy = local_metres(positions)
    east = [p[0] for p in xy.values()]
    north = [p[1] for p in xy.values()]
    span_e = max(max(east) - min(east), MIN_SPAN_M)
    span_n = max(max(north) - min(north), MIN_SPAN_M)
    scale = min((WIDTH - 2 * MARGIN) / span_e, (HEIGHT - 2 * MARGIN) / span_n)  # px per metre
    mid_e, mid_n = (max(east) + min(east)) / 2, (max(north) + min(north)) / 2
    dots = []
    for dev, (e, n) in xy.items():
        x = WIDTH / 2 + (e - mid_e) * scale
        y = HEIGHT / 2 - (n - mid_n) * scale  # SVG y grows downwards: north up
        dots.append(
            Dot(dev, round(x, 1), round(y, 1), dev in seen, "end" if x > WIDTH * 0.6 else "start")
        )
    bar_m = round_metres((WIDTH - 2 * MARGIN) / 3 / scale)
    return CameraMap(dots, bar_m, round(bar_m * scale, 1))
