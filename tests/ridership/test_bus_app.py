"""The bus app: door relay (MockFactory pins) + door cameras + GPS → stop visits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory

from mimamori.edge import contract
from mimamori.edge.camera import Frame
from mimamori.edge.ridership.app import Door, RidershipApp
from mimamori.edge.ridership.count import DoorCounter
from mimamori.edge.ridership.door import GpioDoor
from mimamori.edge.ridership.gps import Fix, Gps
from mimamori.edge.ridership.gtfs import load_feed
from mimamori.edge.ridership.sim import nmea, write_feed
from mimamori.edge.ridership.stops import StopMatcher
from tests.ridership.scenes import pad, render, walk

LINE = (40.0, 120.0, 280.0, 120.0)


class Frames:
    """A door camera at the seam: hands out prepared frames, then ends."""

    def __init__(self, frames: list[Frame]) -> None:
        self.frames, self.i = frames, 0

    def read(self) -> Frame | None:
        if self.i >= len(self.frames):
            return None
        self.i += 1
        return self.frames[self.i - 1]

    def close(self) -> None:
        pass


def make_app(
    pins: MockFactory, front: list[Frame], rear: list[Frame], tmp_path: Path
) -> tuple[RidershipApp, list[dict[str, Any]], Gps, list[datetime]]:
    feed = load_feed(write_feed(tmp_path / "gtfs"))
    events: list[dict[str, Any]] = []
    clock = [datetime(2026, 11, 25, 0, 2, 10, tzinfo=UTC)]  # 09:02 JST
    gps = Gps()
    doors = [
        Door("front", Frames(front), DoorCounter(LINE), GpioDoor(5, pin_factory=pins)),
        Door("rear", Frames(rear), DoorCounter(LINE), GpioDoor(6, pin_factory=pins)),
    ]
    app = RidershipApp(
        doors,
        lambda kind, data, prio: events.append({"kind": kind, **data}),
        vehicle="bus-07",
        gps=gps,
        matcher=StopMatcher(feed),
        tail_s=1.0,
        utcnow=lambda: clock[0],
    )
    return app, events, gps, clock


def test_a_stop_with_both_doors_becomes_one_visit_with_a_per_door_breakdown(
    pins: MockFactory, tmp_path: Path
) -> None:
    boarders = [pad(walk(((100, 25), 0), ((100, 225), 30)), 40 + 45 * k) for k in range(2)]
    alighter = [pad(walk(((200, 225), 0), ((200, 25), 30)), 50)]
    front, rear = render(boarders, 160), render(alighter, 160)
    app, events, gps, clock = make_app(pins, front, rear, tmp_path)
    feed_stop = app.matcher.feed.stops["S03A"] if app.matcher else None
    assert feed_stop is not None
    # driving in on the 09:00 outbound trip, then stopped at 中学校 (S03A)
    gps.feed(
        nmea(
            Fix(clock[0] - timedelta(seconds=15), feed_stop.lat, feed_stop.lon - 0.001), 68.0, 30.0
        )[1]
    )
    for line in nmea(Fix(clock[0] - timedelta(seconds=1), feed_stop.lat, feed_stop.lon), 0.0, 0.0):
        gps.feed(line)
    t = 0.0
    for i in range(160):
        if i == 30:
            pins.pin(5).drive_high()  # doors open
            pins.pin(6).drive_high()
        if i == 140:
            pins.pin(5).drive_low()
            pins.pin(6).drive_low()
        app.step(t)
        t += 0.1
        clock[0] += timedelta(seconds=0.1)
    assert len(events) == 1
    v = contract.StopVisitData.model_validate({k: e for k, e in events[0].items() if k != "kind"})
    assert (v.stop_id, v.stop_sequence, v.trip_id) == ("S03A", 3, "R1-out-0900")
    assert (v.boardings, v.alightings) == (2, 1)
    doors = {d.door: (d.boardings, d.alightings) for d in v.doors}
    assert doors == {"front": (2, 0), "rear": (0, 1)}
    assert v.fix is not None and v.fix.age_s < 30
    assert v.departure > v.arrival and not v.partial
    assert v.service_date.isoformat() == "2026-11-25"


def test_counting_stops_with_the_doors_shut_and_a_cut_off_stop_is_kept_as_partial(
    pins: MockFactory, tmp_path: Path
) -> None:
    # someone walks through while the doors are shut (the driver, a reflection): not counted;
    # then the doors open, one boards, and the recording ends before the doors close
    early = pad(walk(((100, 25), 0), ((100, 225), 30)), 10)
    boarder = pad(walk(((150, 25), 0), ((150, 225), 30)), 80)
    front = render([early, boarder], 120)
    app, events, _, _ = make_app(pins, front, render([], 120), tmp_path)
    for i in range(121):
        if i == 60:
            pins.pin(5).drive_high()
        app.step(i * 0.1)
    assert events == []
    app.close()
    assert len(events) == 1
    e = events[0]
    assert (e["boardings"], e["alightings"], e["partial"]) == (1, 0, True)
    assert e["stop_id"] is None and e["fix"] is None  # no GPS yet: untagged, not guessed
