"""Which stop (and which trip) a door opening happened at.

With trips in the feed, every stop of every trip running near the time is a candidate, and
each candidate gets a cost; the cheapest within ``radius_m`` wins:

* distance from the GPS fix to the stop (1 unit per 15 m),
* the bus's course while driving in against the trip's direction of travel at that stop
  (0 same way, 3 opposite): this is what keeps a stop on the far side of the road from
  winning,
* how far from the timetable (1 unit per 10 min, at most 4: buses run late),
* sequence: on the trip already being run, stops must come in order (a skipped stop costs a
  little, going back is impossible); changing trip costs more unless the last one was at its
  end.

Without trips, the nearest stop within the radius wins. Without a fix, no stop: the counts
are still recorded, untagged, rather than guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from mimamori.edge.ridership.gps import Fix
from mimamori.edge.ridership.gtfs import Feed, Trip

EARTH_M = 6_371_000.0


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular distance: exact enough within a town."""
    x = math.radians(lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
    y = math.radians(lat2 - lat1)
    return EARTH_M * math.hypot(x, y)


def bearing(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    x = math.radians(lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
    y = math.radians(lat2 - lat1)
    return math.degrees(math.atan2(x, y)) % 360


def angle_between(a: float, b: float) -> float:
    d = abs(a - b) % 360
    return 360 - d if d > 180 else d


@dataclass(frozen=True)
class Match:
    stop_id: str | None
    stop_name: str = ""
    stop_sequence: int | None = None
    trip_id: str | None = None
    route_id: str | None = None
    direction_id: int | None = None
    distance_m: float | None = None
    method: Literal["trip", "nearest", "none"] = "none"
    service_date: str = ""  # YYYY-MM-DD of the service day (a 25:10 trip belongs to yesterday)


class StopMatcher:
    def __init__(self, feed: Feed, *, route_id: str | None = None, radius_m: float = 60.0) -> None:
        self.feed, self.route_id, self.radius = feed, route_id, radius_m
        self.tz = ZoneInfo(feed.timezone)
        self.trips = [
            t
            for t in feed.trips.values()
            if t.stop_times and (route_id is None or t.route_id == route_id)
        ]
        self._bearings = {t.id: self._trip_bearings(t) for t in self.trips}
        self.trip: Trip | None = None  # the trip being run, as far as we can tell
        self.index = -1  # index into trip.stop_times of the last matched stop

    def _trip_bearings(self, trip: Trip) -> list[float]:
        pts = [self.feed.stops[st.stop_id] for st in trip.stop_times]
        out = []
        for i in range(len(pts)):
            a = pts[max(0, i - 1)] if i > 0 else pts[i]
            b = pts[min(len(pts) - 1, i + 1)] if i < len(pts) - 1 else pts[i]
            out.append(bearing(a.lat, a.lon, b.lat, b.lon) if a != b else 0.0)
        return out

    def match(self, fix: Fix | None, course: float | None, when: datetime) -> Match:
        local = when.astimezone(self.tz)
        if fix is None or fix.quality == 0:
            return Match(None, service_date=local.date().isoformat())
        if not self.trips:
            return self._nearest(fix, local)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        now_s = (local - midnight).total_seconds()
        best: tuple[float, Trip, int, float, bool] | None = None
        for trip in self.trips:
            bearings = self._bearings[trip.id]
            for i, st in enumerate(trip.stop_times):
                stop = self.feed.stops[st.stop_id]
                d = distance_m(fix.lat, fix.lon, stop.lat, stop.lon)
                if d > self.radius:
                    continue
                cost = d / 15.0
                if course is not None and len(trip.stop_times) > 1:
                    cost += 1.5 * (1 - math.cos(math.radians(angle_between(course, bearings[i]))))
                yesterday = False
                if st.arrival_s is not None:
                    late = abs(now_s - st.arrival_s)
                    if st.arrival_s >= 86400 and abs(now_s + 86400 - st.arrival_s) < late:
                        late, yesterday = abs(now_s + 86400 - st.arrival_s), True
                    cost += min(4.0, late / 600.0)
                if self.trip is not None:
                    if trip.id == self.trip.id:
                        if i < self.index:
                            continue
                        cost += 0.5 if i == self.index else 0.3 * (i - self.index - 1)
                    else:
                        ended = self.index >= len(self.trip.stop_times) - 2
                        cost += 0.3 if ended else 1.5
                if best is None or cost < best[0]:
                    best = (cost, trip, i, d, yesterday)
        if best is None:
            return self._nearest(fix, local)
        _, trip, i, d, yesterday = best
        self.trip, self.index = trip, i
        st = trip.stop_times[i]
        day = (midnight - timedelta(days=1)) if yesterday else midnight
        return Match(
            st.stop_id,
            self.feed.stops[st.stop_id].name,
            st.seq,
            trip.id,
            trip.route_id,
            trip.direction_id,
            round(d, 1),
            "trip",
            day.date().isoformat(),
        )

    def _nearest(self, fix: Fix, local: datetime) -> Match:
        best = min(
            self.feed.stops.values(),
            key=lambda s: distance_m(fix.lat, fix.lon, s.lat, s.lon),
            default=None,
        )
        if best is None:
            return Match(None, service_date=local.date().isoformat())
        d = distance_m(fix.lat, fix.lon, best.lat, best.lon)
        if d > self.radius:
            return Match(None, distance_m=round(d, 1), service_date=local.date().isoformat())
        return Match(
            best.id,
            best.name,
            distance_m=round(d, 1),
            method="nearest",
            route_id=self.route_id,
            service_date=local.date().isoformat(),
        )
