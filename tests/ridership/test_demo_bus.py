"""The demo bus: its door plan on the sample clip makes trips a planner would believe."""

from __future__ import annotations

import pytest

from mimamori.edge.camera.files import FileSource
from mimamori.edge.ridership.count import DoorCounter, count_video
from mimamori.edge.ridership.door import ScheduleDoor
from mimamori.edge.ridership.sim import plan_doors
from mimamori.provisioning.demo import BUS_LINE, BUS_STOP_S, VTEST

STOPS = 24  # two trips of twelve stops


def test_the_plan_fits_the_stops_and_boards_before_it_alights() -> None:
    # a made-up clip of 400 frames: people get on at frames 50-150, off at 250-350
    crossings = [(f, "in") for f in range(50, 150, 20)] + [(f, "out") for f in range(250, 350, 20)]
    plan = plan_doors(crossings, 400, STOPS, stop_s=BUS_STOP_S)
    assert plan.period_s == STOPS * BUS_STOP_S
    loops = plan.fps * plan.period_s / 400
    assert loops == pytest.approx(round(loops)) and 8 <= plan.fps <= 12  # whole clip loops
    for k, (a, b) in enumerate(plan.windows):
        assert k * BUS_STOP_S + 2 <= a < b <= (k + 1) * BUS_STOP_S, "door open while driving"
    for trip in (plan.expected[:12], plan.expected[12:]):
        load = 0
        for i, (on, off) in enumerate(trip):
            load += on - off
            assert load >= 1 or (on, off) == (0, 0) or i == 0 and on > 0
            assert off == 0 or i >= 6, "people got off in the first half of the trip"
            assert on == 0 or i < 6 or on < off
        assert sum(on for on, _ in trip) > 0


@pytest.mark.slow
@pytest.mark.skipif(not VTEST.is_file(), reason="../shared/media not present")
def test_the_demo_bus_counts_plausible_trips_on_the_sample_clip() -> None:
    """Replays the clip through the real counter with the door opening as the plan says
    (as the bus app does: counting while open and 0.5 s after, learning the floor between):
    every trip gets riders, none has more off than on board, and each ends balanced."""
    clip = count_video(VTEST, BUS_LINE)
    plan = plan_doors(
        [(c.frame, c.dir) for c in clip.crossings], clip.frames, STOPS, stop_s=BUS_STOP_S
    )
    now = [0.0]
    door = ScheduleDoor(plan.windows, plan.period_s, clock=lambda: now[0])
    source = FileSource(VTEST, loop=True)
    counter = DoorCounter(BUS_LINE)
    counts: list[list[int]] = [[0, 0] for _ in range(STOPS)]
    stop = closed = None
    for i in range(round(plan.period_s * plan.fps)):
        now[0] = i / plan.fps
        frame = source.read()
        assert frame is not None
        if door.is_open:
            closed = None
            if stop is None:
                stop = int(now[0] // BUS_STOP_S)
        elif stop is not None and closed is None:
            closed = now[0]
        if stop is None:
            counter.learn(frame)
            continue
        for c in counter.process(frame):
            counts[stop][0 if c.direction == "in" else 1] += 1
        if closed is not None and now[0] - closed >= 0.5:
            stop = closed = None
    source.close()
    for trip in (counts[:12], counts[12:]):
        on = sum(b for b, _ in trip)
        load = 0
        for b, a in trip:
            load += b - a
            assert load >= 0, f"more got off than were on board: {trip}"
        assert on >= 5 and abs(load) <= 1, f"not a balanced trip: {trip}"
        assert sum(b for b, _ in trip[:6]) > sum(b for b, _ in trip[6:]), trip
