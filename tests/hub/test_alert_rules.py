"""The alert decisions and texts as pure functions: no database, broker or network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mimamori.hub.alerts import rules, text
from mimamori.hub.alerts.timeline import visits_by_day

T0 = datetime(2026, 6, 1, 5, 2, tzinfo=UTC)  # 14:02 in Japan


def test_when_seen_is_the_hub_clock_less_the_devices_wait() -> None:
    assert rules.when_seen(T0, 5.0, False) == (T0 - timedelta(seconds=5), False)
    assert rules.when_seen(T0, None, False) == (T0, False)
    assert rules.when_seen(T0, 61.0, False) == (T0 - timedelta(seconds=61), True)
    assert rules.when_seen(T0, 0.0, True) == (T0, True)  # replayed from the outbox
    seen, late = rules.when_seen(T0, 10 * 365 * 86400.0, False)  # a decade "old"
    assert seen == T0 - rules.MAX_AGE and late


def test_device_clock_off_allows_the_tolerance_plus_the_wait() -> None:
    seen = T0 - timedelta(minutes=30)
    assert not rules.device_clock_off(seen + timedelta(minutes=9), seen, seen)
    assert rules.device_clock_off(seen + timedelta(minutes=11), seen, seen)
    assert not rules.device_clock_off(seen + timedelta(minutes=39), seen, T0)
    assert rules.device_clock_off(datetime(2099, 1, 1, tzinfo=UTC), seen, T0)


@pytest.mark.parametrize(
    ("hour", "quiet", "expected"),
    [
        (23, (22, 5), True),
        (3, (22, 5), True),
        (5, (22, 5), False),
        (12, (22, 5), False),
        (12, (9, 17), True),
        (17, (9, 17), False),
        (8, (9, 17), False),
        (3, (None, 5), False),
        (3, (None, None), False),
    ],
)
def test_quiet_hours_may_wrap_past_midnight(
    hour: int, quiet: tuple[int | None, int | None], expected: bool
) -> None:
    assert rules.in_quiet_hours(hour, *quiet) is expected


def test_follows_takes_a_star_or_a_list_of_cameras() -> None:
    assert rules.follows("*", ["field-01"])
    assert rules.follows("field-02, field-01", ["field-01"])
    assert not rules.follows("field-02,field-03", ["field-01"])
    assert not rules.follows("field-011", ["field-01"])


def test_a_sighting_joins_the_newest_troop_at_a_neighbouring_camera() -> None:
    areas = [{"field-01", "field-02"}, {"field-09"}]
    newest = {"id": "b", "cameras": ["field-09"]}
    older = {"id": "a", "cameras": ["field-01"]}
    assert rules.troop_to_join([newest, older], "field-02", areas) is older
    assert rules.troop_to_join([newest, older], "field-02", None) is newest
    assert rules.troop_to_join([newest], "field-01", areas) is None  # another area
    assert rules.troop_to_join([older], "field-01", areas) is None  # same camera: a new visit
    assert rules.troop_to_join([], "field-01", None) is None


def test_line_budget_counts_by_the_japanese_calendar_month() -> None:
    assert rules.is_line("line://token/U1") and rules.is_line("LINES://x")
    assert not rules.is_line("json://127.0.0.1/line")
    # 1 July 00:30 in Japan is still June in UTC: July's budget has begun
    assert rules.month_start(datetime(2026, 6, 30, 15, 30, tzinfo=UTC)) == datetime(
        2026, 6, 30, 15, 0, tzinfo=UTC
    )
    assert rules.month_start(T0) == datetime(2026, 5, 31, 15, 0, tzinfo=UTC)
    assert rules.line_allows(199, 200) and not rules.line_allows(200, 200)


def test_escalation_reaches_each_duty_step_in_turn() -> None:
    every = timedelta(minutes=10)
    assert not rules.escalates_to(1, T0, T0 + timedelta(minutes=9), every)
    assert rules.escalates_to(1, T0, T0 + timedelta(minutes=10), every)
    assert not rules.escalates_to(2, T0, T0 + timedelta(minutes=19), every)
    assert rules.escalates_to(2, T0, T0 + timedelta(minutes=20), every)
    assert not rules.escalates_to(0, T0, T0 + timedelta(hours=1), every)  # alerted at once


def test_retry_schedule_tries_at_once_then_after_each_delay() -> None:
    assert rules.retry_schedule((10.0, 60.0)) == [0.0, 10.0, 60.0]
    assert rules.retry_schedule(()) == [0.0]


def test_alert_text_is_bilingual_and_a_late_one_says_so() -> None:
    live = text.alert_text("field-01", 0.873, 12, T0, False, T0)
    assert live == "サルが出ました / monkeys at field-01: seen 14:02. Score 0.87, 12 frames."
    late = text.alert_text("field-01", 0.9, 3, T0, True, T0 + timedelta(minutes=29))
    assert "seen 14:02, delivered 14:31 (held by a coverage gap)" in late
    assert text.with_link(live, "http://hub/t") == f"{live}\nI'm on it: http://hub/t"
    assert text.line_text(live, "http://hub/t") == (
        "サルが出ました / monkeys at field-01: seen 14:02. http://hub/t"
    )
    assert text.escalation_text(["field-01", "field-02"], T0) == (
        "Nobody has taken this yet (escalated): monkeys at field-01, field-02, seen 14:02."
    )
    assert (
        text.taken_text("yamada", ["field-01"], T0) == "yamada is going to field-01 (seen 14:02)."
    )


def test_timeline_joins_each_incursion_with_its_end_by_local_day() -> None:
    def ev(kind: str, inc: str, **data: object) -> dict[str, object]:
        return {"kind": kind, "data": {"incursion": inc, **data}}

    rows = [
        ev("wildlife.incursion_end", "a", ended="2026-06-01T05:10:00Z"),
        ev("wildlife.incursion", "b", started="2026-06-01T16:00:00Z"),  # 2 June in Japan
        ev("wildlife.incursion", "a", started="2026-06-01T05:02:00Z"),
    ]
    by_day = visits_by_day(rows)
    assert list(by_day) == ["2026-06-02", "2026-06-01"]
    assert by_day["2026-06-02"][0]["end"] is None
    assert by_day["2026-06-01"][0]["end"] == {"incursion": "a", "ended": "2026-06-01T05:10:00Z"}
