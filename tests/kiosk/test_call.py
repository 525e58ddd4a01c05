"""The kiosk's call machine, opening hours and view flow control, on injected clocks."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime
from datetime import time as dtime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from mimamori.edge import contract
from mimamori.edge.camera import Frame
from mimamori.kiosk.call import Call, CallError, CallMachine, Hours
from mimamori.kiosk.views import View
from tests.mqtt_probe import wait_until

JST = ZoneInfo("Asia/Tokyo")
HOURS = Hours((0, 1, 2, 3, 4), dtime(8, 30), dtime(17, 15), JST, frozenset({date(2026, 12, 29)}))


def jst(*args: int) -> datetime:
    return datetime(*args, tzinfo=JST).astimezone(UTC)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def machine(clock: Clock) -> tuple[CallMachine, list[tuple[str, str]]]:
    changes: list[tuple[str, str]] = []

    def seen(old: Call, new: Call) -> None:
        changes.append((old.state, new.state))

    m = CallMachine(seen, ring_timeout_s=60, ended_show_s=10, link_grace_s=5, clock=clock)
    return m, changes


def test_opening_hours_weekdays_holidays_and_when_to_come_back() -> None:
    assert HOURS.is_open(jst(2026, 11, 25, 10, 0))  # a Wednesday
    assert not HOURS.is_open(jst(2026, 11, 25, 8, 29))
    assert not HOURS.is_open(jst(2026, 11, 25, 17, 15))
    assert not HOURS.is_open(jst(2026, 11, 28, 10, 0))  # Saturday
    assert not HOURS.is_open(jst(2026, 12, 29, 10, 0))  # a closed date
    # Friday evening: back on Monday morning
    assert HOURS.next_open(jst(2026, 11, 27, 18, 0)) == datetime(2026, 11, 30, 8, 30, tzinfo=JST)
    assert HOURS.next_open(jst(2026, 12, 28, 18, 0)) == datetime(2026, 12, 30, 8, 30, tzinfo=JST)
    assert HOURS.describe() == ("月〜金 8:30〜17:15", "Mon-Fri 8:30-17:15")


def test_opening_hours_read_the_way_people_say_them() -> None:
    always = Hours(tuple(range(7)), dtime.min, dtime.max, JST)  # opens 00:00, closes 24:00
    assert always.describe() == ("毎日 24時間", "every day, 24 hours")
    nine_to_five = Hours(tuple(range(7)), dtime(9), dtime(17), JST)
    assert nine_to_five.describe() == ("毎日 9:00〜17:00", "every day 9:00-17:00")
    late = Hours((0, 2), dtime(9), dtime.max, JST)  # closes at midnight
    assert late.describe() == ("月・水 9:00〜24:00", "Mon, Wed 9:00-24:00")


def test_ring_answer_end_and_back_to_idle() -> None:
    clock = Clock()
    m, changes = machine(clock)
    call = m.ring().call
    assert call and m.ring().call == call, "a second press does not start another call"
    with pytest.raises(CallError):
        m.answer("0" * 32, "suzuki")  # a stale answer for another call is refused
    m.answer(call, "suzuki")
    assert (m.current.state, m.current.staff) == ("connected", "suzuki")
    m.hang_up(call)
    assert (m.current.state, m.current.reason) == ("ended", "staff_ended")
    with pytest.raises(CallError):
        m.answer(call, "tanaka")  # a late answer cannot reopen it
    clock.t += 10
    m.tick(link_ok=True)
    assert m.current.state == "idle"
    assert changes == [
        ("idle", "ringing"),
        ("ringing", "connected"),
        ("connected", "ended"),
        ("ended", "idle"),
    ]


def test_nobody_answers_then_the_phone_number() -> None:
    clock = Clock()
    m, _ = machine(clock)
    m.ring()
    clock.t += 59
    m.tick(link_ok=True)
    assert m.current.state == "ringing"
    clock.t += 1
    m.tick(link_ok=True)
    assert (m.current.state, m.current.reason) == ("ended", "no_answer")


def test_a_short_link_outage_is_ridden_out_a_long_one_ends_the_call() -> None:
    clock = Clock()
    m, _ = machine(clock)
    call = m.ring().call
    assert call
    m.answer(call, "suzuki")
    m.tick(link_ok=False)
    clock.t += 4
    m.tick(link_ok=False)
    m.tick(link_ok=True)  # back within the grace
    clock.t += 4
    m.tick(link_ok=False)
    assert m.current.state == "connected"
    clock.t += 5
    m.tick(link_ok=False)
    assert (m.current.state, m.current.reason) == ("ended", "link_lost")


def test_queue_place_only_while_ringing() -> None:
    m, _ = machine(Clock())
    call = m.ring().call
    assert call
    assert m.queued(call, 3).position == 3
    m.answer(call, "suzuki")
    assert m.current.position is None
    assert m.queued(call, 2).position is None


class Still:
    """A camera at the seam: the same picture at whatever rate it is read."""

    def __init__(self) -> None:
        self.image = np.full((720, 1280, 3), 128, np.uint8)
        self.closed = False
        self.index = 0

    def read(self) -> Frame:
        time.sleep(0.005)
        self.index += 1
        return Frame(self.image, contract.utcnow(), self.index)

    def close(self) -> None:
        self.closed = True


def test_view_sends_no_faster_than_acknowledged_and_not_at_all_after_stop() -> None:
    sent: list[contract.ViewMeta] = []
    lock = threading.Lock()

    def send(jpeg: bytes, meta: str) -> bool:
        with lock:
            sent.append(contract.ViewMeta.model_validate_json(meta))
        return True

    camera = Still()
    view = View("face", lambda: camera, send, fps=50, window=2)
    call = "a" * 32
    view.start(call)
    wait_until(lambda: view.stats["skipped"] >= 5, 5, "frames skipped while two are in flight")
    assert len(sent) == 2, "two frames in flight, then wait for the hub"
    for _ in range(5):  # the staff browser takes frames: more follow
        before = len(sent)
        view.ack(call, sent[-1].seq)
        wait_until(lambda n=before: len(sent) > n, 5, "a frame after the ack")
    assert len(sent) >= 6
    assert [m.seq for m in sent] == list(range(len(sent)))
    assert sent[0].w == 1280 and sent[0].h == 720
    view.stop()
    count = len(sent)
    view.ack(call, sent[-1].seq)
    time.sleep(0.2)
    assert len(sent) == count and camera.closed and not view.sending


def test_a_slow_link_lowers_quality_instead_of_queueing() -> None:
    t = [0.0]
    sent: list[contract.ViewMeta] = []
    view = View(
        "doc",
        Still,
        lambda j, m: bool(sent.append(contract.ViewMeta.model_validate_json(m))) or True,
        clock=lambda: t[0],
    )
    call = "b" * 32
    view.start(call)
    wait = time.monotonic() + 2
    while len(sent) < 1 and time.monotonic() < wait:
        time.sleep(0.01)
    first_q = sent[0].q
    for _ in range(4):  # every acknowledgement comes back a second later
        seq = sent[-1].seq
        t[0] += 1.0
        view.ack(call, seq)
        wait = time.monotonic() + 2
        while sent[-1].seq == seq and time.monotonic() < wait:
            time.sleep(0.01)
    view.stop()
    assert sent[-1].q < first_q
    assert max(sent[-1].w, sent[-1].h) < 1280
