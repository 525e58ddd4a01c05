"""The outbox's pure decisions: validation, space, what to drop, when to hold an alarm."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from mimamori.edge import contract
from mimamori.edge.contract import Priority
from mimamori.edge.outbox_rules import (
    MAX_HELD,
    ROW_OVERHEAD,
    cut,
    droppable,
    encode,
    may_store_on_low_space,
    space,
    when_refused,
)

NOTICE = {"level": "info", "message": "ハロー"}


def test_encode_gives_compact_utf8_text_and_counted_size() -> None:
    text, size = encode("device.notice", NOTICE)
    assert json.loads(text) == NOTICE and "ハロー" in text and " " not in text
    assert size == len(text) + ROW_OVERHEAD


def test_encode_refuses_unknown_kinds_and_data_off_the_schema() -> None:
    with pytest.raises(contract.ContractError):
        encode("device.nonsense", NOTICE)
    with pytest.raises(ValidationError):
        encode("device.notice", {"level": "loud", "message": "x"})


def test_space_is_low_under_the_reserve_and_stays_low_until_four_times_it() -> None:
    assert space(2_000, 1_000, was_full=False) == "ok"
    assert space(999, 1_000, was_full=False) == "low"
    assert space(3_999, 1_000, was_full=True) == "low"  # no flapping at the edge
    assert space(4_000, 1_000, was_full=True) == "back"


def test_lower_priorities_go_first_and_alarms_never() -> None:
    assert droppable(Priority.ALARM) == (Priority.LOW, Priority.NORMAL)
    assert droppable(Priority.NORMAL) == (Priority.LOW,)
    assert droppable(Priority.LOW) == ()


def test_low_space_stores_alarms_always_and_others_only_in_spare_pages() -> None:
    assert may_store_on_low_space(Priority.ALARM, 0)
    assert not may_store_on_low_space(Priority.NORMAL, 3)
    assert may_store_on_low_space(Priority.LOW, 4)


def test_a_refused_alarm_is_held_in_memory_up_to_the_limit_anything_else_dropped() -> None:
    assert when_refused(Priority.ALARM, 0) == "hold"
    assert when_refused(Priority.ALARM, MAX_HELD) == "drop"
    assert when_refused(Priority.NORMAL, 0) == "drop"


@given(
    sizes=st.lists(st.integers(1, 10_000), min_size=0, max_size=50),
    excess=st.integers(1, 200_000),
)
def test_cut_takes_the_oldest_rows_just_until_the_excess_is_freed(
    sizes: list[int], excess: int
) -> None:
    rows = [(seq, size) for seq, size in enumerate(sizes, start=1)]
    seqs, freed = cut(rows, excess)
    assert seqs == [seq for seq, _ in rows[: len(seqs)]]  # oldest first, no gaps
    assert freed == sum(sizes[: len(seqs)])
    if freed < excess:
        assert len(seqs) == len(rows)  # not enough: all of them
    else:
        assert freed - sizes[len(seqs) - 1] < excess  # not one row more than needed
