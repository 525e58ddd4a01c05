"""A made-up bus route and a day of driving it: for the demo, the tests and the benchmark.

``write_feed`` writes a small GTFS feed: one route through a town, out and back, whose stops
on the way back stand across the road (``across_m`` apart) from those on the way out, with a
trip every ``headway_min`` minutes. ``drive`` runs one bus through the day's trips and yields
each door opening with the GPS fix it would see (noise, the odd bad fix, drift from the
timetable) and the truth, so a stop matcher can be scored. ``nmea`` turns a fix into the RMC
and GGA sentences a receiver would send.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pynmea2

from mimamori.edge.ridership.gps import KNOTS_TO_KMH, Fix
from mimamori.edge.ridership.gtfs import Feed, Stop, Trip
from mimamori.edge.ridership.stops import bearing

ORIGIN = (36.2048, 137.2529)  # a valley town in the Japanese Alps
STOP_NAMES = [
    "役場前", "駅前", "郵便局", "中学校", "公民館", "診療所",
    "農協", "神社前", "橋北", "温泉口", "上村", "終点",
]  # fmt: skip


def _offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return (
        lat + north_m / 111_320.0,
        lon + east_m / (111_320.0 * math.cos(math.radians(lat))),
    )


def write_feed(
    folder: Path,
    *,
    stops: int = 12,
    spacing_m: float = 450.0,
    across_m: float = 18.0,
    first: str = "07:00",
    last: str = "19:00",
    headway_min: int = 30,
    run_min: int = 2,
) -> Path:
    """Write agency, routes, stops, trips and stop_times for route R1; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    lat0, lon0 = ORIGIN
    rows_stops = []
    for i in range(stops):
        # the road bends: east, then north-east
        east = i * spacing_m * 0.9
        north = i * spacing_m * 0.4 + (i * i * 3.0)
        name = STOP_NAMES[i % len(STOP_NAMES)]
        la, lo = _offset(lat0, lon0, north, east)
        rows_stops.append([f"S{i + 1:02d}A", f"{name}（上り）", f"{la:.6f}", f"{lo:.6f}"])
        # the stop for the other direction stands across the road (to the south-east)
        la2, lo2 = _offset(la, lo, -across_m * 0.9, across_m * 0.4)
        rows_stops.append([f"S{i + 1:02d}B", f"{name}（下り）", f"{la2:.6f}", f"{lo2:.6f}"])
    _write(folder / "stops.txt", ["stop_id", "stop_name", "stop_lat", "stop_lon"], rows_stops)
    _write(
        folder / "agency.txt",
        ["agency_id", "agency_name", "agency_url", "agency_timezone"],
        [["town", "Town bus", "https://example.jp", "Asia/Tokyo"]],
    )
    _write(
        folder / "routes.txt",
        ["route_id", "route_short_name", "route_long_name", "route_type"],
        [["R1", "1", "役場前–終点", "3"]],
    )
    trips, times = [], []
    h, m = (int(x) for x in first.split(":"))
    start = h * 60 + m
    h, m = (int(x) for x in last.split(":"))
    end = h * 60 + m
    for n, t0 in enumerate(range(start, end + 1, headway_min)):
        direction = n % 2
        trip_id = f"R1-{'out' if direction == 0 else 'back'}-{t0 // 60:02d}{t0 % 60:02d}"
        trips.append(["R1", "weekday", trip_id, str(direction)])
        order = range(stops) if direction == 0 else range(stops - 1, -1, -1)
        for seq, i in enumerate(order, start=1):
            at = (t0 + (seq - 1) * run_min) * 60
            stamp = f"{at // 3600:02d}:{at % 3600 // 60:02d}:00"
            times.append([trip_id, stamp, stamp, f"S{i + 1:02d}{'AB'[direction]}", str(seq)])
    _write(folder / "trips.txt", ["route_id", "service_id", "trip_id", "direction_id"], trips)
    _write(
        folder / "stop_times.txt",
        ["trip_id", "arrival_time", "departure_time", "stop_id", "stop_sequence"],
        times,
    )
    return folder


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@dataclass(frozen=True)
class Opening:
    when: datetime  # UTC
    fix: Fix | None
    course: float | None
    trip_id: str
    stop_id: str
    stop_sequence: int


def driving_in(pts: list[Stop], i: int) -> float:
    """The course of a bus arriving at stop ``i`` (at the first stop: leaving it)."""
    a, b = (pts[i - 1], pts[i]) if i else (pts[0], pts[1])
    return bearing(a.lat, a.lon, b.lat, b.lon)


def drive(
    feed: Feed,
    day: date,
    *,
    seed: int = 1,
    gps_sigma_m: float = 6.0,
    bad_fix_rate: float = 0.02,
    skip_rate: float = 0.15,
    course_sigma: float = 15.0,
) -> Iterator[Opening]:
    """One bus running every trip of the day in timetable order."""
    rng = random.Random(seed)
    tz = ZoneInfo(feed.timezone)
    midnight = datetime.combine(day, datetime.min.time(), tzinfo=tz)
    delay = 0.0
    trips = sorted(feed.trips.values(), key=lambda t: t.stop_times[0].arrival_s or 0)
    for trip in trips:
        pts = [feed.stops[st.stop_id] for st in trip.stop_times]
        for i, st in enumerate(trip.stop_times):
            delay = max(-60.0, min(480.0, delay + rng.gauss(10, 40)))
            if 0 < i < len(pts) - 1 and rng.random() < skip_rate:
                continue  # nobody waiting, nobody getting off: the door stays shut
            stop = pts[i]
            heading = driving_in(pts, i)
            sigma = gps_sigma_m * (4 if rng.random() < bad_fix_rate else 1)
            la, lo = _offset(stop.lat, stop.lon, rng.gauss(0, sigma), rng.gauss(0, sigma))
            when = midnight + timedelta(seconds=(st.arrival_s or 0) + delay)
            when_utc = when.astimezone(UTC)
            fix = Fix(when_utc, la, lo, 0.0, None, 1, 8, 1.1)
            course = (heading + rng.gauss(0, course_sigma)) % 360
            yield Opening(when_utc, fix, course, trip.id, st.stop_id, st.seq)


def nmea(fix: Fix, course: float | None = None, speed_kmh: float | None = None) -> list[str]:
    """The RMC and GGA sentences a receiver sends for this fix."""
    t = fix.ts.strftime("%H%M%S.00")
    d = fix.ts.strftime("%d%m%y")

    def dm(value: float, width: int) -> str:
        """NMEA's degrees and decimal minutes: 36.2048 → '3612.2880'."""
        a = abs(value)
        deg = int(a)
        return f"{deg:0{width}d}{(a - deg) * 60:07.4f}"

    lat, lon = dm(fix.lat, 2), dm(fix.lon, 3)
    ns, ew = ("N" if fix.lat >= 0 else "S"), ("E" if fix.lon >= 0 else "W")
    spd = speed_kmh if speed_kmh is not None else (fix.speed_kmh or 0.0)
    crs = course if course is not None else (fix.course or 0.0)
    rmc = pynmea2.RMC(
        "GP",
        "RMC",
        (t, "A", lat, ns, lon, ew, f"{spd / KNOTS_TO_KMH:.1f}", f"{crs:.1f}", d, "", ""),
    )
    gga = pynmea2.GGA(
        "GP",
        "GGA",
        (t, lat, ns, lon, ew, str(fix.quality), f"{fix.sats or 8:02d}",
         f"{fix.hdop or 1.0:.1f}", "650.0", "M", "36.0", "M", "", ""),
    )  # fmt: skip
    return [str(gga), str(rmc)]


def demo_trips(feed: Feed) -> list[Trip]:
    """The trips the demo bus drives, over and over: the first outbound and inbound."""
    return sorted(feed.trips.values(), key=lambda t: t.stop_times[0].arrival_s or 0)[:2]


def demo_gps_log(feed: Feed, path: Path, *, stop_s: float = 10.0) -> Path:
    """A bus running the ``demo_trips``, ``stop_s`` per stop: two seconds driving in, then
    standing at the stop (for a door schedule of e.g. [[3, 8]] in a 10 s period)."""
    t = datetime.now(UTC).replace(microsecond=0)
    lines: list[str] = []
    for trip in demo_trips(feed):
        pts = [feed.stops[st.stop_id] for st in trip.stop_times]
        for i, stop in enumerate(pts):
            course = driving_in(pts, i)
            for s in range(int(stop_s)):
                moving = s < 2
                lines += nmea(
                    Fix(t, stop.lat, stop.lon), course if moving else 0.0, 25.0 if moving else 0.0
                )
                t += timedelta(seconds=1)
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


@dataclass(frozen=True)
class DoorPlan:
    """Door-open windows (seconds within ``period_s``) for replaying a labelled clip at a
    made-up route's stops, and the clip rate that makes the clip loop line up with them."""

    windows: list[tuple[float, float]]
    period_s: float
    fps: float
    expected: list[tuple[int, int]]  # (on, off) the labels say each stop should count


def plan_doors(
    crossings: list[tuple[int, str]],
    clip_frames: int,
    stops: int,
    *,
    stop_s: float = 10.0,
    driving_s: float = 2.0,
    tail_s: float = 0.5,
    lead: int = 15,
) -> DoorPlan:
    """Choose, stop by stop, when the door is open so that a loop of the labelled clip gives a
    plausible day: people board in the first half of each trip and get off in the second, and
    the load never goes below zero. ``crossings`` are the hand-labelled (frame, "in"|"out")
    of the clip; ``stops`` is the number of stops of one loop of the GPS log (``stop_s`` each,
    the first ``driving_s`` of them driving in). The clip is slowed or sped up slightly so a
    whole number of clip loops fits one loop of the route. A crossing is taken as counted when
    the door opened ``lead`` frames before it (the tracker has seen the person on one side)
    and the visit, which goes on counting ``tail_s`` after the door closes, is still open; a
    window with a crossing near either edge is not used."""
    period = stops * stop_s
    loops = max(1, round(period * 10 / clip_frames))  # about 10 frames/s
    fps = clip_frames * loops / period
    half = stops // 2  # two trips per loop: out and back
    windows: list[tuple[float, float]] = []
    expected: list[tuple[int, int]] = []
    load = 0
    for k in range(stops):
        first = math.ceil((k * stop_s + driving_s) * fps)
        last = math.floor((k + 1) * stop_s * fps) - 1
        boarding = (k % half) < half // 2
        if k % half == 0:
            load = 0  # a new trip starts empty
        best: tuple[int, int, int, int, int] | None = None  # gain, start, end, on, off
        for s in range(first, last - 19, 5):
            for e in range(s + 20, last + 1, 5):
                on = off = edge = 0
                end = e + round(tail_s * fps)  # counting stops here
                for f, d in crossings:
                    for loop in range(s // clip_frames - 1, e // clip_frames + 2):
                        t = f + loop * clip_frames  # the crossing in this pass of the clip
                        if s + lead <= t < end - lead // 2:
                            on, off = on + (d == "in"), off + (d == "out")
                        elif s <= t < end + 3:
                            edge += 1  # half seen: may or may not be counted
                if edge or load + on - off < 1:  # one to spare for a missed count
                    continue
                gain = on - 2 * off if boarding else off - 2 * on
                if best is None or (gain, e - s) > (best[0], best[2] - best[1]):
                    best = (gain, s, e, on, off)
        if best is None:  # nothing clean: open briefly on an empty stretch
            windows.append(((k * stop_s + driving_s), (k * stop_s + driving_s + 1.0)))
            expected.append((0, 0))
            continue
        _, start, end, on, off = best
        windows.append((round(start / fps, 2), round(end / fps, 2)))
        expected.append((on, off))
        load += on - off
    return DoorPlan(windows, period, round(fps, 4), expected)
