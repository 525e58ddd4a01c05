"""How the staff pages show time: the town's local time with how long ago beside it, one way
everywhere. Exports keep ISO 8601 with the offset (they do not use this module)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

_zone = ZoneInfo("Asia/Tokyo")


def zone() -> ZoneInfo:
    """The town's time zone (``[site] timezone`` in hub.toml; Asia/Tokyo until set)."""
    return _zone


def set_zone(name: str) -> None:
    """Called once when the hub starts, from its validated config."""
    global _zone
    _zone = ZoneInfo(name)


def ago(ts: datetime | None, now: datetime | None = None) -> str:
    """'12 s', '3 min', '5 h', '2 d' — how long since ``ts``."""
    if ts is None:
        return "never"
    secs = max(0, int(((now or datetime.now(UTC)) - ts).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if secs >= size:
            return f"{secs // size} {unit}"
    return f"{secs} s"


def duration(seconds: float | None) -> str:
    """'22 s', '4 min', '1 h 5 min', '2 d 3 h'."""
    if seconds is None:
        return "–"
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    return f"{d} d {h} h" if d else f"{h} h {m} min" if h else f"{m} min"


def local(ts: datetime | str) -> datetime:
    """A UTC time (or ISO string) in the town's time zone."""
    value = datetime.fromisoformat(ts) if isinstance(ts, str) else ts
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(_zone)


def when(ts: datetime | str | None, now: datetime | None = None) -> Markup:
    """``14:03 (5 min ago)`` today, ``12-01 14:03 (1 d ago)`` before: local time first, the
    full date and zone on hover, the exact UTC instant in the ``datetime`` attribute."""
    if ts is None:
        return Markup("never")
    at = local(ts)
    now = now or datetime.now(UTC)
    today = now.astimezone(_zone).date()
    shown = at.strftime("%H:%M") if at.date() == today else at.strftime("%m-%d %H:%M")
    if at.year != today.year:
        shown = at.strftime("%Y-%m-%d %H:%M")
    return Markup(
        '<time datetime="{iso}" title="{full}">{shown} <span class="sub">({ago} ago)</span></time>'
    ).format(
        iso=escape(at.astimezone(UTC).isoformat()),
        full=escape(at.strftime("%Y-%m-%d %H:%M:%S %Z")),
        shown=shown,
        ago=ago(at, now),
    )
