"""The call room's transitions, with a hand-turned clock: no threads, no broker, no database."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from mimamori.edge import contract
from mimamori.edge.contract import Reason
from mimamori.hub.counter.room import (
    REFUSALS_AUDITED_PER_HOUR,
    Command,
    CounterError,
    Room,
)

T0 = contract.utcnow()
A, B = "a" * 32, "b" * 32


def state(call: str | None, name: str, *, staff: str | None = None, at: int = 0, **kw: Any):
    return contract.CallState(
        call=call, state=name, since=T0 + timedelta(seconds=at), staff=staff, **kw
    )


def held(staff: str) -> dict[str, Any]:
    return {"staff": staff, "answered": T0}


def test_ringing_is_queued_written_to_the_book_and_placed() -> None:
    room = Room()
    out = room.call_state("k-1", state(A, "ringing"), None, now=0)
    assert out.rang == (A, "k-1", T0)
    assert out.commands == [Command("k-1", "call-queue", {"call": A, "position": 1}, qos=1)]
    out = room.call_state("k-2", state(B, "ringing", at=1), None, now=1)
    assert out.commands == [Command("k-2", "call-queue", {"call": B, "position": 2}, qos=1)]
    assert room.counters["calls"] == 2
    view = room.console("sato", None, T0 + timedelta(seconds=10))
    assert [(q["dev"], q["position"], q["waiting_s"]) for q in view["queue"]] == [
        ("k-1", 1, 10),
        ("k-2", 2, 9),
    ]


def test_connected_only_for_the_staff_member_holding_the_claim() -> None:
    room = Room()
    room.call_state("k-1", state(A, "ringing"), None, now=0)
    room.calls[A].staff = "sato"  # the relay set it when the book's claim succeeded
    out = room.call_state("k-1", state(A, "connected", staff="sato"), held("sato"), now=5)
    live = room.calls[A]
    assert (live.state, live.staff, live.answered, live.polled) == ("connected", "sato", T0, 5)
    assert out.refusal is None and out.ended == []
    assert room.console("sato", live, T0)["mine"]["call"] == A
    assert room.console("ito", None, T0)["taken"] == [{"dev": "k-1", "staff": "sato"}]


def test_unanswered_connected_is_refused_ended_and_audited_once_a_minute() -> None:
    room = Room()
    room.call_state("k-1", state(A, "ringing"), None, now=0)
    out = room.call_state("k-1", state(A, "connected", staff="mallory"), None, now=1)
    assert out.refusal is not None and out.refusal.reason is Reason.UNANSWERED
    assert out.refusal.audit and "no member of staff answered" in out.refusal.audit
    assert Command("k-1", "call-end", {"call": A}) in out.commands
    assert out.ended == [(A, "k-1", "refused")] and A not in room.calls
    room.call_state("k-1", state(A, "connected", staff="mallory"), None, now=2)
    assert room.counters["late_states"] == 1  # that call is over and stays over
    # a call the hub never saw (a retained state comes again on every reconnect)
    d = "d" * 32
    first = room.call_state("k-1", state(d, "connected", staff="mallory"), None, now=3)
    assert first.refusal is not None and first.refusal.audit is not None
    again = room.call_state("k-1", state(d, "connected", staff="mallory"), None, now=30)
    assert again.refusal is not None and again.refusal.audit is None  # counted, not audited
    assert again.commands == []
    later = room.call_state("k-1", state(d, "connected", staff="mallory"), None, now=100)
    assert later.refusal is not None and later.refusal.audit is not None


def test_wrong_staff_and_other_device_are_refused() -> None:
    room = Room()
    room.call_state("k-1", state(A, "ringing"), None, now=0)
    out = room.call_state("k-1", state(A, "connected", staff="ito"), held("sato"), now=1)
    assert out.refusal is not None and out.refusal.reason is Reason.WRONG_STAFF
    assert A in room.calls and room.calls[A].state == "ringing"
    out = room.call_state("k-2", state(A, "ended", reason="cancelled"), None, now=2)
    assert out.refusal is not None and out.refusal.reason is Reason.OTHER_DEVICE
    assert A in room.calls


def test_audits_per_device_are_capped_an_hour() -> None:
    room = Room()
    audited = 0
    for i in range(REFUSALS_AUDITED_PER_HOUR + 5):
        call = f"{i:032x}"
        out = room.call_state("k-1", state(call, "connected", staff="x"), None, now=i)
        assert out.refusal is not None
        audited += out.refusal.audit is not None
    assert audited == REFUSALS_AUDITED_PER_HOUR


def test_a_call_over_stays_over_and_a_restart_ends_the_old_one() -> None:
    room = Room()
    room.call_state("k-1", state(A, "ringing"), None, now=0)
    out = room.call_state("k-1", state(B, "ringing", at=5), None, now=5)
    assert (A, "k-1", "kiosk_restarted") in out.ended and list(room.calls) == [B]
    out = room.call_state("k-1", state(A, "ringing"), None, now=6)  # a replayed state
    assert room.counters["late_states"] == 1 and A not in room.calls and out.commands == []
    out = room.call_state("k-1", state(B, "ended", reason="cancelled"), None, now=7)
    assert out.ended == [(B, "k-1", "cancelled")] and room.calls == {}
    # ended while the hub was away: the book's record is closed
    out = room.call_state("k-1", state("d" * 32, "ended", reason="no_answer"), None, now=8)
    assert out.ended == [("d" * 32, "k-1", "no_answer")]


def test_watchdog_ends_calls_of_a_gone_page_or_a_gone_kiosk() -> None:
    room = Room()
    room.device_state("k-1", True, now=0)
    room.device_state("k-2", True, now=0)
    room.call_state("k-1", state(A, "ringing"), None, now=0)
    room.call_state("k-2", state(B, "ringing", at=1), None, now=0)
    room.calls[A].staff = "sato"
    room.call_state("k-1", state(A, "connected", staff="sato"), held("sato"), now=1)
    room.device_state("k-2", False, now=2)
    room.touch("sato", now=room.kiosk_gone_s - 5)  # the page polls
    assert room.check(now=room.kiosk_gone_s).ended == []
    out = room.check(now=room.kiosk_gone_s + 3)
    assert out.ended == [(B, "k-2", "link_lost")]
    out = room.check(now=room.kiosk_gone_s - 5 + room.staff_gone_s + 1)
    assert out.ended == [(A, "k-1", "staff_ended")]
    assert Command("k-1", "call-end", {"call": A}) in out.commands


def test_staff_may_act_only_on_their_own_connected_call() -> None:
    room = Room()
    room.call_state("k-1", state(A, "ringing"), None, now=0)
    with pytest.raises(CounterError, match="answered by nobody yet"):
        room.mine(A, "sato")
    room.calls[A].staff = "sato"
    with pytest.raises(CounterError, match="not connected"):
        room.connected_call(A, "sato")
    out = room.end(A, "sato")
    assert out.ended == [(A, "k-1", "staff_ended")]
    assert out.commands[0] == Command("k-1", "call-end", {"call": A})
    with pytest.raises(CounterError, match="has ended"):
        room.mine(A, "sato")


def test_frames_only_for_a_connected_call_of_that_kiosk() -> None:
    room = Room()
    meta = contract.ViewMeta(call=A, seq=1, ts=T0, w=4, h=4, q=50)
    room.frame("k-1", "face", meta, b"\xff\xd8", T0)
    assert room.counters["frames_dropped"] == 1
    room.call_state("k-1", state(A, "ringing"), None, now=0)
    room.calls[A].staff = "sato"
    room.call_state("k-1", state(A, "connected", staff="sato"), held("sato"), now=1)
    room.frame("k-2", "face", meta, b"\xff\xd8", T0)
    room.frame("k-1", "face", meta, b"\xff\xd8", T0)
    assert room.counters["frames"] == 1 and room.calls[A].frames["face"].seq == 1
