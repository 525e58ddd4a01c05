"""The alerts page's camera map: north up, true to scale, fitted inside its box."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mimamori.hub.alerts.camera_map import HEIGHT, MARGIN, WIDTH, draw, round_metres
from mimamori.hub.roster import Roster


def px_per_metre(m: object) -> float:
    return m.bar_px / m.bar_m  # type: ignore[attr-defined]


def test_cameras_are_placed_north_up_at_their_true_distances() -> None:
    # 0.009° of latitude ≈ 1,000 m north; 0.01° of longitude at 36.2° N ≈ 898 m east
    m = draw(
        {"field-01": (36.2, 137.25), "field-02": (36.209, 137.25), "field-03": (36.2, 137.26)},
        seen={"field-02"},
    )
    assert m is not None
    dots = {d.dev: d for d in m.dots}
    assert [d.dev for d in m.dots if d.seen] == ["field-02"]
    north = (dots["field-01"].y - dots["field-02"].y) / px_per_metre(m)
    east = (dots["field-03"].x - dots["field-01"].x) / px_per_metre(m)
    assert north == pytest.approx(1000.8, rel=0.01)
    assert east == pytest.approx(1113.2 * math.cos(math.radians(36.2045)), rel=0.01)
    assert dots["field-01"].y == dots["field-03"].y and dots["field-01"].x == dots["field-02"].x
    # scaled to the bounding box with a margin: the tallest span fills the height less margins
    ys = [d.y for d in m.dots]
    assert max(ys) - min(ys) == pytest.approx(HEIGHT - 2 * MARGIN, abs=0.2)
    assert all(MARGIN - 0.2 <= d.x <= WIDTH - MARGIN + 0.2 for d in m.dots)
    assert dots["field-03"].anchor == "end", "a label near the right edge goes to the left"
    # the scale bar is a round number of metres and about a third of the map
    assert m.bar_m in (200, 500, 1000) and m.bar_px < WIDTH - 2 * MARGIN
    assert m.bar_label == ("1 km" if m.bar_m == 1000 else f"{m.bar_m} m")


def test_one_camera_sits_in_the_middle_and_no_camera_gives_no_map() -> None:
    m = draw({"field-01": (36.2, 137.25)}, seen=())
    assert m is not None and (m.dots[0].x, m.dots[0].y) == (WIDTH / 2, HEIGHT / 2)
    assert not m.dots[0].seen and 0 < m.bar_px < WIDTH
    assert draw({}, seen={"field-01"}) is None


@pytest.mark.parametrize(
    ("limit", "metres"), [(0.3, 1), (1, 1), (7.9, 5), (199, 100), (737, 500), (2000, 2000)]
)
def test_scale_bar_lengths_are_round(limit: float, metres: int) -> None:
    assert round_metres(limit) == metres


def test_the_map_takes_positions_from_the_roster_only_where_they_make_sense(
    tmp_path: Path,
) -> None:
    path = tmp_path / "devices.json"
    devices = {
        "field-01": {"role": "wildlife", "lat": 36.2, "lon": 137.25},
        "field-02": {"role": "wildlife", "lat": 36.2, "lon": None},  # half a position
        "field-03": {"role": "wildlife", "lat": 96.2, "lon": 137.25},  # not on Earth
        "field-04": {"role": "wildlife", "lat": "36.2", "lon": 137.25},  # text
        "field-05": {"role": "wildlife", "lat": 36.3, "lon": 137.2, "revoked": "2026-12-01"},
        "field-06": {"role": "wildlife", "lat": True, "lon": 137.2},
        "field-07": {"role": "wildlife"},
        "bus-01": {"role": "ridership", "lat": 36.2, "lon": 137.25},
    }
    path.write_text(json.dumps({"devices": devices}))
    assert Roster(path).positions("wildlife") == {"field-01": (36.2, 137.25)}
