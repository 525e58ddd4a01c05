"""Trip cleaning, as the US National Transit Database sampling rules ask of APC data.

Per trip the boardings must equal the alightings, and the load on board can never go
negative and ends at zero. Raw door counts rarely manage that (a child under the sensor, two
people as one), so each trip is cleaned in three documented steps, and the raw counts are
kept beside the cleaned ones:

1. **Vehicle factors**: boardings and alightings are multiplied by the vehicle's correction
   factors (set from a manual ride check; 1.0 until then).
2. **Balance**: both totals are scaled to their mean, T = (ΣB + ΣA) / 2, spreading the change
   over the stops in proportion to their counts, and rounded to whole riders with the
   largest-remainder method so that the totals are exactly T.
3. **Load**: walking the stops in order, where more would get off than are on board the
   alightings are cut to the load; what was cut gets off at the last stop, so the trip ends
   empty.

A trip changed by step 2 or 3 is flagged; so is one with a visit the device cut short.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class StopCount:
    stop_id: str
    stop_name: str
    seq: int
    arrival: str  # ISO time, UTC
    departure: str
    raw_on: int
    raw_off: int
    on: int = 0
    off: int = 0
    load: int = 0  # on board when leaving the stop (cleaned)


@dataclass
class Trip:
    vehicle: str
    service_date: str
    trip_id: str
    route_id: str
    direction_id: int | None
    stops: list[StopCount]
    flags: list[str] = field(default_factory=list)

    @property
    def raw_on(self) -> int:
        return sum(s.raw_on for s in self.stops)

    @property
    def raw_off(self) -> int:
        return sum(s.raw_off for s in self.stops)

    @property
    def on(self) -> int:
        return sum(s.on for s in self.stops)

    @property
    def off(self) -> int:
        return sum(s.off for s in self.stops)

    @property
    def max_load(self) -> int:
        return max((s.load for s in self.stops), default=0)


def largest_remainder(values: list[float], total: int) -> list[int]:
    """Round ``values`` to integers that sum to ``total``, nearest first."""
    floors = [math.floor(v) for v in values]
    short = total - sum(floors)
    order = sorted(range(len(values)), key=lambda i: values[i] - floors[i], reverse=True)
    for i in order[: max(0, short)]:
        floors[i] += 1
    return floors


def clean(trip: Trip, board_factor: float = 1.0, alight_factor: float = 1.0) -> Trip:
    """Fill ``on``, ``off`` and ``load`` of each stop (in place) and set the flags."""
    trip.stops.sort(key=lambda s: s.seq)
    on = [s.raw_on * board_factor for s in trip.stops]
    off = [s.raw_off * alight_factor for s in trip.stops]
    if board_factor != 1.0 or alight_factor != 1.0:
        trip.flags.append(f"vehicle factors ×{board_factor:g} on, ×{alight_factor:g} off")
    total_on, total_off = sum(on), sum(off)
    if not total_on or not total_off:
        on_i = off_i = [0] * len(on)
        if total_on or total_off:
            trip.flags.append("counts in one direction only: left out of the totals")
    else:
        target = round((total_on + total_off) / 2)
        if trip.raw_on != trip.raw_off:
            trip.flags.append(f"balanced: {trip.raw_on} on vs {trip.raw_off} off → {target} each")
        on_i = largest_remainder([v * target / total_on for v in on], target)
        off_i = largest_remainder([v * target / total_off for v in off], target)
    load = cut = 0
    for i, s in enumerate(trip.stops):
        s.on = on_i[i]
        s.off = off_i[i]
        if s.off > load + s.on:
            cut += s.off - (load + s.on)
            s.off = load + s.on
        load += s.on - s.off
        s.load = load
    if cut:
        trip.flags.append(f"load went negative: {cut} alighting(s) moved to the last stop")
    if load and trip.stops:
        last = trip.stops[-1]
        last.off += load
        last.load = 0
    return trip
