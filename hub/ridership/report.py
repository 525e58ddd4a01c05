"""What transit staff read: per stop, load profile, by hour, per trip, and the OD estimate.

Filters follow how service is planned: a route and direction, a date range, a day type
(weekday, Saturday, Sunday) and a time band by the trip's start (early, AM peak 07–09,
midday 09–16, PM peak 16–19, evening). Times are local (``hub.clock.zone()``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np

from mimamori.hub.clock import zone
from mimamori.hub.ridership.od import ipf
from mimamori.hub.ridership.trips import Trip

DAY_TYPES = {
    "all": "Every day",
    "weekday": "Weekdays",
    "saturday": "Saturdays",
    "sunday": "Sundays",
}
BANDS = {
    "all": ("All day", 0, 24),
    "early": ("Early (before 07:00)", 0, 7),
    "am": ("AM peak (07–09)", 7, 9),
    "midday": ("Midday (09–16)", 9, 16),
    "pm": ("PM peak (16–19)", 16, 19),
    "evening": ("Evening (19:00 on)", 19, 24),
}


@dataclass(frozen=True)
class Filter:
    start: date
    end: date
    route_id: str | None = None
    direction_id: int | None = None
    day_type: str = "all"
    band: str = "all"


def local_time(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(zone())


def day_type(day: str) -> str:
    wd = date.fromisoformat(day).weekday()
    return "saturday" if wd == 5 else "sunday" if wd == 6 else "weekday"


def select(trips: list[Trip], f: Filter) -> list[Trip]:
    _, lo, hi = BANDS.get(f.band, BANDS["all"])
    out = []
    for t in trips:
        if f.route_id is not None and t.route_id != f.route_id:
            continue
        if f.direction_id is not None and t.direction_id != f.direction_id:
            continue
        if f.day_type != "all" and day_type(t.service_date) != f.day_type:
            continue
        if t.stops and not (lo <= local_time(t.stops[0].arrival).hour < hi):
            continue
        out.append(t)
    return out


@dataclass
class StopRow:
    seq: int
    stop_id: str
    name: str
    raw_on: int = 0
    raw_off: int = 0
    on: int = 0
    off: int = 0
    loads: list[int] = field(default_factory=list)

    @property
    def mean_load(self) -> float:
        return float(np.mean(self.loads)) if self.loads else 0.0

    @property
    def p95_load(self) -> float:
        return float(np.percentile(self.loads, 95)) if self.loads else 0.0


@dataclass
class Report:
    trips: list[Trip]
    stops: list[StopRow]
    hours: dict[int, tuple[int, int]]  # local hour → (on, off)
    od: np.ndarray
    od_flags: list[str]  # one per trip the estimate had to adjust: its id, date and reasons

    @property
    def on(self) -> int:
        return sum(t.on for t in self.trips)

    @property
    def off(self) -> int:
        return sum(t.off for t in self.trips)

    @property
    def flagged(self) -> int:
        return sum(1 for t in self.trips if t.flags)


def build(trips: list[Trip]) -> Report:
    stops: dict[int, StopRow] = {}
    hours: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for t in trips:
        for s in t.stops:
            row = stops.setdefault(s.seq, StopRow(s.seq, s.stop_id, s.stop_name))
            row.raw_on += s.raw_on
            row.raw_off += s.raw_off
            row.on += s.on
            row.off += s.off
            h = local_time(s.arrival).hour
            hours[h][0] += s.on
            hours[h][1] += s.off
    order = sorted(stops)
    index = {seq: i for i, seq in enumerate(order)}
    # the load leaving each stop of the pattern, per trip (a stop the bus passed without
    # opening keeps the load it had)
    for t in trips:
        by_seq = {s.seq: s for s in t.stops}
        load = 0
        for seq in order:
            if seq in by_seq:
                load = by_seq[seq].load
            stops[seq].loads.append(load)
    n = len(order)
    od = np.zeros((n, n))
    flags: list[str] = []
    for t in trips:
        on = [0.0] * n
        off = [0.0] * n
        for s in t.stops:
            on[index[s.seq]] += s.on
            off[index[s.seq]] += s.off
        r = ipf(on, off)
        od += r.matrix
        if r.flags:  # one line per trip, whatever number of reasons
            flags.append(f"{t.trip_id} {t.service_date}: {'; '.join(r.flags)}")
    return Report(
        trips,
        [stops[s] for s in order],
        {h: (v[0], v[1]) for h, v in sorted(hours.items())},
        od,
        flags,
    )
