"""Stop visits from the event store, grouped into cleaned trips; vehicle correction factors.

Visits are read from the ``events`` table (kind ``ridership.stop_visit``), which is already
exactly-once; nothing is copied, so a fix to the cleaning rules applies to all history.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mimamori.hub.ridership.trips import StopCount, Trip, clean
from mimamori.hub.store import TS, Store, metadata

factors = sa.Table(
    "ridership_vehicle_factors",
    metadata,
    sa.Column("vehicle", sa.String(40), primary_key=True),
    sa.Column("board", sa.Float, nullable=False),
    sa.Column("alight", sa.Float, nullable=False),
    sa.Column("note", sa.String(200), nullable=False, default=""),
    sa.Column("set_by", sa.String(64), nullable=False),
    sa.Column("set_at", TS, nullable=False),
)


def get_factors(store: Store) -> dict[str, dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(factors).order_by(factors.c.vehicle)).mappings().all()
    return {r["vehicle"]: dict(r) for r in rows}


def set_factors(
    store: Store, vehicle: str, board: float, alight: float, note: str, by: str
) -> None:
    if not vehicle.strip():
        raise ValueError("vehicle: give the bus number the counters report")
    for name, v in (("boarding factor", board), ("alighting factor", alight)):
        if not 0.5 <= v <= 2.0:
            raise ValueError(f"{name}: expected 0.5–2.0 (a ride check ratio), got {v}")
    row = {
        "vehicle": vehicle.strip(),
        "board": board,
        "alight": alight,
        "note": note[:200],
        "set_by": by,
        "set_at": datetime.now(UTC),
    }
    with store.engine.begin() as conn:
        conn.execute(sa.delete(factors).where(factors.c.vehicle == row["vehicle"]))
        conn.execute(sa.insert(factors).values(**row))


#: a trip is under way while it has not reached its last stop (from the hub's GTFS feed) and
#: its last visit is this recent; without a feed the hub cannot tell, and cleans what it has
UNDER_WAY = timedelta(hours=2)


@dataclass
class Visits:
    trips: list[Trip]  # finished trips, cleaned
    untagged: list[dict[str, Any]]  # visits with no trip (no fix, off the timetable)
    #: trips still under way: raw counts so far, cleaned (and counted) once they end
    under_way: list[Trip] = field(default_factory=list)


def _order(t: Trip) -> tuple[str, str, str]:
    return (t.service_date, t.stops[0].arrival if t.stops else "", t.vehicle)


def under_way(trip: Trip, ends: Mapping[str, int], now: datetime) -> bool:
    last = max((s.departure for s in trip.stops), default="")
    if not last:
        return False
    age = now - datetime.fromisoformat(last)
    end = ends.get(trip.trip_id)
    return end is not None and age < UNDER_WAY and max(s.seq for s in trip.stops) < end


def load(
    store: Store,
    start: date,
    end: date,
    *,
    ends: Mapping[str, int] | None = None,
    now: datetime | None = None,
) -> Visits:
    """Cleaned trips (and untagged visits) whose service date is in [start, end]; trips still
    under way (``ends``: each trip's last stop_sequence from the feed) are kept apart."""
    created = (
        datetime.combine(start - timedelta(days=1), datetime.min.time(), tzinfo=UTC),
        datetime.combine(end + timedelta(days=2), datetime.min.time(), tzinfo=UTC),
    )
    rows = store.events(kinds=["ridership.stop_visit"], limit=None, created=created)
    f = get_factors(store)
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    untagged = []
    for e in rows:
        d = e["data"]
        day = str(d.get("service_date", ""))
        if not (start.isoformat() <= day <= end.isoformat()):
            continue
        if d.get("trip_id") and d.get("stop_sequence") is not None:
            grouped[(d["vehicle"], day, d["trip_id"])].append(d)
        else:
            untagged.append(d)
    trips: list[Trip] = []
    open_trips: list[Trip] = []
    for (vehicle, day, trip_id), visits in grouped.items():
        by_seq: dict[int, StopCount] = {}
        partial = False
        for v in sorted(visits, key=lambda v: v["arrival"]):
            partial = partial or bool(v.get("partial"))
            s = by_seq.get(v["stop_sequence"])
            if s is None:
                by_seq[v["stop_sequence"]] = StopCount(
                    v["stop_id"] or "",
                    v.get("stop_name", ""),
                    v["stop_sequence"],
                    v["arrival"],
                    v["departure"],
                    v["boardings"],
                    v["alightings"],
                )
            else:  # the doors opened twice at one stop
                s.raw_on += v["boardings"]
                s.raw_off += v["alightings"]
                s.departure = v["departure"]
        first = visits[0]
        trip = Trip(
            vehicle,
            day,
            trip_id,
            first.get("route_id") or "",
            first.get("direction_id"),
            list(by_seq.values()),
        )
        if under_way(trip, ends or {}, now or datetime.now(UTC)):
            trip.stops.sort(key=lambda s: s.seq)
            load_ = 0
            for s in trip.stops:  # raw so far: nothing to balance until the trip ends
                s.on, s.off = s.raw_on, s.raw_off
                load_ = max(0, load_ + s.on - s.off)
                s.load = load_
            open_trips.append(trip)
            continue
        vf = f.get(vehicle)
        clean(trip, vf["board"] if vf else 1.0, vf["alight"] if vf else 1.0)
        if partial:
            trip.flags.append("a visit was cut short (device stopped with the doors open)")
        trips.append(trip)
    trips.sort(key=_order)
    open_trips.sort(key=_order)
    return Visits(trips, untagged, open_trips)
