"""The bus app: door signals + door cameras + GPS → one ``ridership.stop_visit`` per stop.

A visit starts when the first door opens: the GPS fix then (and the course the bus drove in
on) picks the stop. Every door's counter runs while any door is open and for ``tail_s``
after the last one closes (the last passenger is still on the step); with the doors shut the
cameras only keep their background model fresh. When the visit ends it is recorded through
the outbox, so a tunnel or a dead zone delays it but loses nothing, and a visit still open
when the app stops is recorded as partial rather than dropped.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mimamori.edge.app import App, Meter, Telemetry
from mimamori.edge.camera import CameraError, FrameSource
from mimamori.edge.contract import Priority
from mimamori.edge.ridership.count import DoorCounter
from mimamori.edge.ridership.door import DoorSignal
from mimamori.edge.ridership.gps import Fix, Gps
from mimamori.edge.ridership.stops import Match, StopMatcher

log = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any], Priority], Any]


@dataclass
class Door:
    name: str
    source: FrameSource
    counter: DoorCounter
    signal: DoorSignal
    exhausted: bool = False


@dataclass
class Visit:
    arrival: datetime
    fix: Fix | None
    match: Match
    counts: dict[str, list[int]] = field(default_factory=dict)  # door → [boardings, alightings]


class RidershipApp(App):
    tick_s = 0.0  # the cameras pace the loop

    def __init__(
        self,
        doors: list[Door],
        emit: Emit,
        *,
        vehicle: str,
        gps: Gps | None = None,
        matcher: StopMatcher | None = None,
        tail_s: float = 3.0,
        utcnow: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.doors, self.emit, self.vehicle = doors, emit, vehicle
        self.gps, self.matcher, self.tail_s = gps, matcher, tail_s
        self.utcnow = utcnow
        self.visit: Visit | None = None
        self._closed_at: float | None = None
        self._on_close = on_close
        self.meter = Meter()

    def step(self, now: float) -> None:
        opened = any(d.signal.is_open for d in self.doors)
        if opened and self.visit is None:
            self._begin()
        if self.visit is not None:
            if opened:
                self._closed_at = None
            elif self._closed_at is None:
                self._closed_at = now
        counting = self.visit is not None
        for door in self.doors:
            self._read(door, counting)
        closed_at = self._closed_at
        if self.visit is not None and closed_at is not None and now - closed_at >= self.tail_s:
            self._finish(partial=False)
        if all(d.exhausted for d in self.doors):
            time.sleep(0.1)  # replays that ended: do not spin

    def _read(self, door: Door, counting: bool) -> None:
        if door.exhausted:
            return
        try:
            frame = door.source.read()
        except CameraError as e:
            log.error("door %s: %s", door.name, e)
            door.exhausted = True
            return
        if frame is None:
            door.exhausted = True
            return
        self.meter.frame()
        if not counting:
            door.counter.learn(frame)
            return
        assert self.visit is not None
        counts = self.visit.counts.setdefault(door.name, [0, 0])
        with self.meter.inference():
            crossings = door.counter.process(frame)
        for c in crossings:
            counts[0 if c.direction == "in" else 1] += 1

    def _begin(self) -> None:
        now = self.utcnow()
        fix, course = self.gps.current() if self.gps is not None else (None, None)
        if self.matcher is not None:
            match = self.matcher.match(fix, course, now)
        else:
            match = Match(None, service_date=now.date().isoformat())
        self.visit = Visit(now, fix, match, {d.name: [0, 0] for d in self.doors})
        self._closed_at = None
        log.info("doors open at %s", match.stop_name or match.stop_id or "an unknown stop")

    def _finish(self, partial: bool) -> None:
        v = self.visit
        if v is None:
            return
        self.visit = None
        now = self.utcnow()
        m = v.match
        doors = [{"door": k, "boardings": b, "alightings": a} for k, (b, a) in v.counts.items()]
        data: dict[str, Any] = {
            "visit": uuid.uuid4().hex,
            "vehicle": self.vehicle,
            "service_date": m.service_date or v.arrival.date().isoformat(),
            "route_id": m.route_id,
            "trip_id": m.trip_id,
            "direction_id": m.direction_id,
            "stop_id": m.stop_id,
            "stop_name": m.stop_name,
            "stop_sequence": m.stop_sequence,
            "arrival": v.arrival.isoformat(),
            "departure": now.isoformat(),
            "boardings": sum(d["boardings"] for d in doors),
            "alightings": sum(d["alightings"] for d in doors),
            "doors": doors,
            "fix": None
            if v.fix is None
            else {
                "lat": round(v.fix.lat, 6),
                "lon": round(v.fix.lon, 6),
                "quality": v.fix.quality,
                "sats": v.fix.sats,
                "hdop": v.fix.hdop,
                "age_s": round(max(0.0, (v.arrival - v.fix.ts).total_seconds()), 1)
                if v.fix.ts <= v.arrival
                else 0.0,
            },
            "match": m.method,
            "distance_m": m.distance_m,
            "partial": partial,
        }
        log.info(
            "stop %s: %d on, %d off%s",
            m.stop_name or m.stop_id,
            data["boardings"],
            data["alightings"],
            " (partial)" if partial else "",
        )
        self.emit("ridership.stop_visit", data, Priority.NORMAL)

    def telemetry(self) -> Telemetry:
        return self.meter.read()

    def close(self) -> None:
        self._finish(partial=True)
        for d in self.doors:
            d.source.close()
            d.signal.close()
        if self._on_close is not None:
            self._on_close()
