"""Exports: a CSV of every stop of every trip, and a GTFS-ride feed (zip).

GTFS-ride files written (spec: github.com/ODOT-PTS/GTFS-ride, ``spec/en/reference.md``):

* ``ride_feed_info.txt``: ``ride_files`` = 4 (board_alight and ridership), the date range.
* ``board_alight.txt``: one row per trip and stop with ``record_use`` 0, the cleaned
  ``boardings``/``alightings``, ``load_count`` with ``load_type`` 1 (departing), the
  ``service_date`` and actual arrival/departure times, ``source`` 1 (APC).
* ``ridership.txt``: totals per route and direction over the range, with the weekday flags
  of the day-type filter, and one row per trip.
* ``od_estimate.txt`` (not part of GTFS-ride; other tools ignore it): the IPF estimate per
  route and direction, ``source`` 3 (model estimation).

Every file is written through ``csv_text``, which neutralises spreadsheet formulas: stop names,
vehicle, route and trip ids come from the devices, and a cell such as ``=HYPERLINK(...)``
would run when the file is opened in Excel or LibreOffice. A text cell starting with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` (OWASP's advice); numbers
stay numbers.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections import defaultdict
from datetime import UTC, datetime

from mimamori.hub.ridership.report import Filter, Report, build, local_time
from mimamori.hub.ridership.trips import Trip

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


#: what a spreadsheet reads as the start of a formula
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """``value`` as a CSV cell no spreadsheet runs as a formula (numbers are left alone)."""
    if value is None or isinstance(value, (int, float)):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_text(header: list[str], rows: list[list[object]]) -> str:
    """A CSV file (``\\n`` line ends) with every cell passed through ``safe_cell``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([safe_cell(h) for h in header])
    w.writerows([safe_cell(v) for v in row] for row in rows)
    return buf.getvalue()


def visits_csv(trips: list[Trip]) -> str:
    rows: list[list[object]] = []
    for t in trips:
        for s in t.stops:
            rows.append(
                [
                    t.service_date,
                    t.vehicle,
                    t.route_id,
                    "" if t.direction_id is None else t.direction_id,
                    t.trip_id,
                    s.seq,
                    s.stop_id,
                    s.stop_name,
                    local_time(s.arrival).strftime("%H:%M:%S"),
                    local_time(s.departure).strftime("%H:%M:%S"),
                    s.raw_on,
                    s.raw_off,
                    s.on,
                    s.off,
                    s.load,
                    "; ".join(t.flags),
                ]
            )
    return csv_text(
        [
            "service_date", "vehicle", "route_id", "direction_id", "trip_id", "stop_sequence",
            "stop_id", "stop_name", "arrival", "departure", "raw_boardings", "raw_alightings",
            "boardings", "alightings", "load_departing", "flags",
        ],
        rows,
    )  # fmt: skip


def gtfs_ride(trips: list[Trip], f: Filter) -> bytes:
    ymd = "%Y%m%d"
    info = csv_text(
        ["ride_files", "ride_start_date", "ride_end_date", "ride_feed_version"],
        [
            [
                4,
                f.start.strftime(ymd),
                f.end.strftime(ymd),
                datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
            ]
        ],
    )
    board_alight = []
    for t in trips:
        for s in t.stops:
            board_alight.append(
                [
                    t.trip_id, s.stop_id, s.seq, 0, 0, s.on, s.off, s.load, 1,
                    t.service_date.replace("-", ""),
                    local_time(s.arrival).strftime("%H:%M:%S"),
                    local_time(s.departure).strftime("%H:%M:%S"),
                    1,
                ]
            )  # fmt: skip
    days = [
        1 if f.day_type == "all" or (f.day_type == "weekday" and i < 5)
        or (f.day_type == "saturday" and i == 5) or (f.day_type == "sunday" and i == 6) else 0
        for i in range(7)
    ]  # fmt: skip
    ridership: list[list[object]] = []
    groups: dict[tuple[str, int | None], list[Trip]] = defaultdict(list)
    for t in trips:
        groups[(t.route_id, t.direction_id)].append(t)
    start, end = f.start.strftime(ymd), f.end.strftime(ymd)
    for (route, direction), ts in sorted(groups.items(), key=lambda kv: str(kv[0])):
        on, off = sum(t.on for t in ts), sum(t.off for t in ts)
        ridership.append([on, off, start, end, *days, route, _dir(direction), ""])
        for t in ts:
            day = t.service_date.replace("-", "")
            ridership.append([t.on, t.off, day, day, *days, route, _dir(direction), t.trip_id])
    od_rows: list[list[object]] = []
    for (route, direction), ts in sorted(groups.items(), key=lambda kv: str(kv[0])):
        rep: Report = build(ts)
        for i, a in enumerate(rep.stops):
            for j, b in enumerate(rep.stops):
                if rep.od[i, j] > 0.005:
                    od_rows.append(
                        [route, _dir(direction), a.stop_id, a.seq, b.stop_id, b.seq,
                         f"{rep.od[i, j]:.2f}", 3, "ipf"]
                    )  # fmt: skip
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ride_feed_info.txt", info)
        z.writestr(
            "board_alight.txt",
            csv_text(
                ["trip_id", "stop_id", "stop_sequence", "record_use", "schedule_relationship",
                 "boardings", "alightings", "load_count", "load_type", "service_date",
                 "service_arrival_time", "service_departure_time", "source"],
                board_alight,
            ),
        )  # fmt: skip
        z.writestr(
            "ridership.txt",
            csv_text(
                ["total_boardings", "total_alightings", "ridership_start_date",
                 "ridership_end_date", *DAYS, "route_id", "direction_id", "trip_id"],
                ridership,
            ),
        )  # fmt: skip
        z.writestr(
            "od_estimate.txt",
            csv_text(
                ["route_id", "direction_id", "boarding_stop_id", "boarding_stop_sequence",
                 "alighting_stop_id", "alighting_stop_sequence", "riders", "source", "method"],
                od_rows,
            ),
        )  # fmt: skip
    return out.getvalue()


def _dir(direction: int | None) -> object:
    return "" if direction is None else direction
