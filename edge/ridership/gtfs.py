"""The parts of a GTFS feed a bus counter needs: stops, and when given, trips and stop times.

A feed is a folder or a .zip of CSV files. ``stops.txt`` is required; ``trips.txt`` and
``stop_times.txt`` go together and let door openings be matched to a trip and its stop
sequence; ``routes.txt`` names the routes and ``agency.txt`` gives the time zone. A missing
file or column, or a value that is not what the spec says, is a ``GtfsError`` naming the
file, the line and the column.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mimamori.edge.errors import MimamoriError


class GtfsError(MimamoriError):
    """The feed cannot be used as it is."""


@dataclass(frozen=True)
class Stop:
    id: str
    name: str
    lat: float
    lon: float


@dataclass(frozen=True)
class StopTime:
    stop_id: str
    seq: int
    arrival_s: int | None  # seconds after the service day's midnight (may exceed 24 h)


@dataclass
class Trip:
    id: str
    route_id: str
    direction_id: int | None
    service_id: str
    stop_times: list[StopTime] = field(default_factory=list)


@dataclass
class Feed:
    stops: dict[str, Stop]
    trips: dict[str, Trip]
    routes: dict[str, str]  # route_id → short or long name
    timezone: str = "Asia/Tokyo"


def parse_time(text: str) -> int | None:
    """'HH:MM:SS' (hours may pass 24) → seconds; '' → None."""
    text = text.strip()
    if not text:
        return None
    h, m, s = (int(p) for p in text.split(":"))
    if not (0 <= m < 60 and 0 <= s < 60 and h >= 0):
        raise ValueError(text)
    return h * 3600 + m * 60 + s


class _Files:
    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_dir():
            self._zip = None
        elif zipfile.is_zipfile(path):
            self._zip = zipfile.ZipFile(path)
        else:
            raise GtfsError(f"{path}: not a GTFS folder or .zip")

    def has(self, name: str) -> bool:
        if self._zip is None:
            return (self.path / name).is_file()
        return name in self._zip.namelist()

    def rows(self, name: str, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
        if not self.has(name):
            raise GtfsError(f"{self.path}: {name} is missing")
        raw = (self.path / name).read_bytes() if self._zip is None else self._zip.read(name)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise GtfsError(f"{name}: not UTF-8 ({e})") from None
        # newline="" semantics: csv itself splits lines, so a stray CR inside a row is data
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            header = [h.strip() for h in reader.fieldnames or []]
        except csv.Error as e:
            raise GtfsError(f"{name} line 1: {e}") from None
        missing = [c for c in required if c not in header]
        if missing:
            raise GtfsError(
                f"{name}: missing column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)} (has: {', '.join(header) or 'nothing'})"
            )
        reader.fieldnames = header
        n = 1
        try:
            for n, row in enumerate(reader, start=2):
                yield n, {k: (v or "").strip() for k, v in row.items() if k is not None}
        except csv.Error as e:
            raise GtfsError(f"{name} line {n + 1}: {e}") from None


def load_feed(path: Path) -> Feed:
    files = _Files(path)
    stops: dict[str, Stop] = {}
    for n, r in files.rows("stops.txt", ("stop_id", "stop_lat", "stop_lon")):
        try:
            lat, lon = float(r["stop_lat"]), float(r["stop_lon"])
        except ValueError:
            raise GtfsError(
                f"stops.txt line {n}: stop_lat/stop_lon must be numbers "
                f"(got {r['stop_lat']!r}, {r['stop_lon']!r})"
            ) from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise GtfsError(f"stops.txt line {n}: position {lat}, {lon} is off the globe")
        stops[r["stop_id"]] = Stop(r["stop_id"], r.get("stop_name", ""), lat, lon)
    routes: dict[str, str] = {}
    if files.has("routes.txt"):
        for _, r in files.rows("routes.txt", ("route_id",)):
            routes[r["route_id"]] = r.get("route_short_name") or r.get("route_long_name") or ""
    timezone = "Asia/Tokyo"
    if files.has("agency.txt"):
        for _, r in files.rows("agency.txt", ()):
            timezone = r.get("agency_timezone") or timezone
            break
    trips: dict[str, Trip] = {}
    if files.has("trips.txt") != files.has("stop_times.txt"):
        raise GtfsError(f"{path}: trips.txt and stop_times.txt go together (one is missing)")
    if files.has("trips.txt"):
        for n, r in files.rows("trips.txt", ("route_id", "service_id", "trip_id")):
            d = r.get("direction_id", "")
            if d not in ("", "0", "1"):
                raise GtfsError(f"trips.txt line {n}: direction_id must be 0 or 1 (got {d!r})")
            trips[r["trip_id"]] = Trip(
                r["trip_id"], r["route_id"], int(d) if d else None, r["service_id"]
            )
        for n, r in files.rows("stop_times.txt", ("trip_id", "stop_id", "stop_sequence")):
            trip = trips.get(r["trip_id"])
            if trip is None:
                raise GtfsError(
                    f"stop_times.txt line {n}: trip_id {r['trip_id']!r} not in trips.txt"
                )
            if r["stop_id"] not in stops:
                raise GtfsError(
                    f"stop_times.txt line {n}: stop_id {r['stop_id']!r} not in stops.txt"
                )
            try:
                seq = int(r["stop_sequence"])
                arrival = parse_time(r.get("arrival_time") or r.get("departure_time") or "")
            except ValueError:
                raise GtfsError(
                    f"stop_times.txt line {n}: stop_sequence must be a whole number and "
                    f"arrival_time HH:MM:SS (got {r['stop_sequence']!r}, "
                    f"{r.get('arrival_time', '')!r})"
                ) from None
            trip.stop_times.append(StopTime(r["stop_id"], seq, arrival))
        for trip in trips.values():
            trip.stop_times.sort(key=lambda st: st.seq)
    return Feed(stops, trips, routes, timezone)
