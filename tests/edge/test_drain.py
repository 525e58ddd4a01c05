"""The drain's bookkeeping: what to send next and what PUBACKs mean, without I/O."""

from __future__ import annotations

from mimamori.edge.drain import Drain


def test_acks_of_the_current_session_only_delete_rows() -> None:
    d = Drain(window=3, resend_upto=0)
    d.on_session(1)
    d.sent(10, 1)
    d.sent(11, 2)
    assert d.room == 1 and d.sent_upto == 2
    acks = d.on_acks([(1, 10, True), (0, 11, True), (1, 99, True)])
    assert acks.done == [1] and acks.refused == []
    assert d.room == 2


def test_a_refused_row_is_dropped_and_counted() -> None:
    d = Drain(window=2, resend_upto=0)
    d.on_session(4)
    d.sent(1, 7)
    acks = d.on_acks([(4, 1, False)])
    assert acks.done == [7] and acks.refused == [7]


def test_a_new_session_forgets_the_inflight_rows_and_starts_over() -> None:
    d = Drain(window=2, resend_upto=0)
    d.on_session(1)
    d.sent(1, 5)
    d.on_session(1)  # same session: nothing changes
    assert d.inflight == {1: 5}
    d.on_session(2)
    assert d.inflight == {} and d.sent_upto == 0 and d.room == 2
    assert d.is_resend(5) and not d.is_resend(6)  # a row sent before goes out as history
    assert d.on_acks([(1, 1, True)]).done == []  # the old session's ack means nothing


def test_a_failed_outbox_delete_sends_the_rows_again() -> None:
    d = Drain(window=5, resend_upto=3)
    d.on_session(1)
    d.sent(1, 4)
    d.ack_failed()
    assert d.sent_upto == 0 and d.is_resend(4)
