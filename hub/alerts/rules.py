"""The decisions behind monkey alerts, as pure functions: no database, no network, no clock.

When a sighting happened and whether it is late, whether a subscriber is in quiet hours or
follows a camera, which open troop a sighting joins, whether the LINE budget allows another
message, when escalation reaches a subscriber on the duty roster, and when a failed delivery
is tried again. ``hub.alerts.service`` applies them to the database and the notifier.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

#: LINE counts its monthly message budget by the calendar month in Japan time
LINE_ZONE = ZoneInfo("Asia/Tokyo")
MERGE_WINDOW = timedelta(minutes=5)
#: a troop stops taking in new cameras this long after it began: a new alert goes out
MAX_TROOP_SPAN = timedelta(hours=1)
LATE_AFTER = timedelta(seconds=60)
#: an event older than this by the device's own count is taken as this old (a week of outage)
MAX_AGE = timedelta(days=7)
#: a device wall clock further off than this from the hub's judgement is logged
CLOCK_TOLERANCE = timedelta(minutes=10)
TAKE_VALID = timedelta(hours=24)
#: waits before each retry of a failed delivery
RETRY_DELAYS = (10.0, 60.0, 300.0)


def when_seen(received: datetime, age_s: float | None, hist: bool) -> tuple[datetime, bool]:
    """(when it was seen, whether the alert is late), by the hub's clock.

    The device says only how long the event waited (``age_s``, its monotonic clock), taken
    as at most ``MAX_AGE``; an event replayed from the outbox (``hist``) is late too."""
    waited = min(timedelta(seconds=age_s or 0.0), MAX_AGE)
    return received - waited, waited > LATE_AFTER or hist


def device_clock_off(started: datetime, seen: datetime, received: datetime) -> bool:
    """Does the device's own start time differ from the hub's judgement by more than the
    tolerance (plus however long the event waited)?"""
    return abs(started - seen) > CLOCK_TOLERANCE + (received - seen)


def in_quiet_hours(hour: int, quiet_from: int | None, quiet_to: int | None) -> bool:
    """Is the local ``hour`` inside quiet hours [from, to), which may wrap past midnight?"""
    if quiet_from is None or quiet_to is None:
        return False
    if quiet_from < quiet_to:
        return quiet_from <= hour < quiet_to
    return hour >= quiet_from or hour < quiet_to


def follows(spec: str, cameras: Iterable[str]) -> bool:
    """Does a subscriber's camera list (``*`` or ``a, b``) take in any of ``cameras``?"""
    return spec == "*" or bool(set(cameras) & {c.strip() for c in spec.split(",")})


def neighbours(areas: Sequence[set[str]] | None, a: str, b: str) -> bool:
    """Do cameras ``a`` and ``b`` watch the same area (one troop can visit both)?

    ``areas`` None: every camera neighbours every other."""
    return areas is None or any(a in area and b in area for area in areas)


def troop_to_join(
    open_troops: Sequence[Mapping[str, Any]], dev: str, areas: Sequence[set[str]] | None
) -> Mapping[str, Any] | None:
    """The troop a sighting at ``dev`` joins, or None for a new troop (and a new alert).

    ``open_troops`` are those seen within the merge window, newest first: the newest with a
    neighbouring camera is the candidate, and a camera already in it starts a new visit."""
    recent = next(
        (t for t in open_troops if any(neighbours(areas, dev, c) for c in t["cameras"])), None
    )
    return recent if recent is not None and dev not in recent["cameras"] else None


def is_line(url: str) -> bool:
    """Is this Apprise URL a LINE one (text only, a monthly message budget)?"""
    return url.split("://", 1)[0].lower() in ("line", "lines")


def month_start(now: datetime) -> datetime:
    """The start of ``now``'s calendar month in Japan time, in UTC: LINE counts by it."""
    local = now.astimezone(LINE_ZONE)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def line_allows(used: int, budget: int) -> bool:
    """May one more LINE message go out this month?"""
    return used < budget


def escalates_to(duty: int, delivered: datetime, now: datetime, every: timedelta) -> bool:
    """Has escalation of an untaken alert delivered at ``delivered`` reached roster step
    ``duty`` by ``now`` (one step each ``every``)? Step 0 is alerted at once, not by this."""
    return 0 < duty <= int((now - delivered) / every)


def retry_schedule(retry_delays: Sequence[float]) -> list[float]:
    """The wait before each attempt of one delivery: at once, then after each retry delay."""
    return [0.0, *retry_delays]
