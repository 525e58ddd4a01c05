from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mimamori.edge.contract import ContractError, Priority
from mimamori.edge.outbox import Outbox
from tests.conftest import sqlite_integrity_ok


def notice(i: int) -> dict[str, str]:
    return {"level": "info", "message": f"n{i}"}


def test_seq_is_monotonic_across_deletes_and_reopen(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    rows = [box.put("device.notice", notice(i)) for i in range(5)]
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert len({r.id for r in rows}) == 5
    box.ack(r.seq for r in rows)
    assert box.depth() == 0
    box.close()
    box = Outbox(tmp_path / "o.sqlite")
    assert box.put("device.notice", notice(9)).seq == 6  # never reused after deletes
    assert sqlite_integrity_ok(tmp_path / "o.sqlite")


def test_pending_in_seq_order_after_cursor(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    for i in range(10):
        box.put("device.notice", notice(i))
    assert [r.seq for r in box.pending(3)] == [1, 2, 3]
    assert [r.seq for r in box.pending(3, after=3)] == [4, 5, 6]
    assert [r.data["message"] for r in box.pending(2, after=8)] == ["n8", "n9"]


def test_cap_drops_low_priority_first_and_never_alarms(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_bytes=40_000)
    for i in range(100):
        box.put("device.notice", notice(i), prio=Priority.ALARM)
    for i in range(200):
        box.put("device.notice", notice(i), prio=Priority.LOW)
    for i in range(200):
        box.put("device.notice", notice(i), prio=Priority.NORMAL)
    rows = box.pending(10_000)
    by_prio = {p: sum(1 for r in rows if r.prio == p) for p in Priority}
    assert by_prio[Priority.ALARM] == 100  # every alarm kept
    assert by_prio[Priority.LOW] == 0  # low went first
    assert 0 < by_prio[Priority.NORMAL] < 200
    assert box.bytes <= 40_000
    assert box.dropped() == 200 + (200 - by_prio[Priority.NORMAL])
    # alarms alone may exceed the cap rather than be dropped
    for i in range(300):
        box.put("device.notice", notice(i), prio=Priority.ALARM)
    assert sum(1 for r in box.pending(10_000) if r.prio == Priority.ALARM) == 400


def test_unknown_kind_and_bad_data_are_refused(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    with pytest.raises(ContractError, match="not in the contract"):
        box.put("nosuch.kind", {})
    with pytest.raises(ValueError, match="level"):
        box.put("device.notice", {"level": "loud", "message": "x"})
    assert box.depth() == 0


def test_hist_marks_offline_and_resent_rows(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    live = box.put("device.notice", notice(1))
    late = box.put("device.notice", notice(2), offline=True)
    assert live.payload().hist is False
    assert live.payload(resent=True).hist is True
    assert late.payload().hist is True


def test_age_and_held_wait_for_a_writer_holding_the_lock(tmp_path: Path) -> None:
    """``age_s`` and ``held`` read what ``put`` changes on other threads: under its lock."""
    box = Outbox(tmp_path / "o.sqlite")
    row = box.put("device.notice", {"level": "info", "message": "x"})
    seen: list[tuple[float, int]] = []
    reader = threading.Thread(target=lambda: seen.append((box.age_s(row), box.held)))
    with box._lock:  # a put() half-way on the app's thread
        reader.start()
        reader.join(0.3)
        assert reader.is_alive() and not seen
    reader.join(5)
    assert seen and seen[0][0] >= 0.3 and seen[0][1] == 0
