"""What the Ridership page calls routes and directions: names from the GTFS feed the buses
run (``[ridership] gtfs`` in hub.toml, a folder or a .zip), codes where there is none.

A route is named by ``route_short_name`` and ``route_long_name`` (``routes.txt``); a
direction by its trips' most common ``trip_headsign`` (``trips.txt``), else "outbound" (0)
or "inbound" (1). The last stop of each trip (``stop_times.txt``) tells a finished trip from
one under way. A feed that cannot be read is logged once and the codes are shown.
"""

from __future__ import annotations

import csv
import io
import logging
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

DIRECTIONS = {0: "outbound", 1: "inbound"}


@dataclass(frozen=True)
class Names:
    routes: dict[str, str] = field(default_factory=dict)
    headsigns: dict[tuple[str, int], str] = field(default_factory=dict)
    #: trip_id → the stop_sequence of its last stop (``stop_times.txt``)
    ends: dict[str, int] = field(default_factory=dict)

    def route(self, route_id: str) -> str:
        return self.routes.get(route_id) or route_id

    def direction(self, route_id: str | None, direction_id: int) -> str:
        fallback = DIRECTIONS.get(direction_id, str(direction_id))
        return self.headsigns.get((route_id or "", direction_id)) or fallback


def _rows(feed: Path, name: str) -> list[dict[str, str]]:
    if feed.is_dir():
        if not (feed / name).exists():
            return []
        data = (feed / name).read_bytes()
    else:
        with zipfile.ZipFile(feed) as z:
            if name not in z.namelist():
                return []
            data = z.read(name)
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]


@lru_cache(maxsize=4)
def _read(feed: Path, _mtime: float) -> Names:
    routes = {}
    for r in _rows(feed, "routes.txt"):
        label = " ".join(x for x in (r.get("route_short_name"), r.get("route_long_name")) if x)
        if r.get("route_id") and label:
            routes[r["route_id"]] = label
    signs: dict[tuple[str, int], Counter[str]] = {}
    for t in _rows(feed, "trips.txt"):
        if t.get("trip_headsign") and t.get("direction_id") in ("0", "1"):
            key = (t.get("route_id", ""), int(t["direction_id"]))
            signs.setdefault(key, Counter())[t["trip_headsign"]] += 1
    ends: dict[str, int] = {}
    for st in _rows(feed, "stop_times.txt"):
        seq = st.get("stop_sequence", "")
        if st.get("trip_id") and seq.isdigit():
            ends[st["trip_id"]] = max(ends.get(st["trip_id"], 0), int(seq))
    return Names(routes, {k: c.most_common(1)[0][0] for k, c in signs.items()}, ends)


def load(feed: Path | None) -> Names:
    """The names in ``feed`` (read again when the feed changes); none without a feed."""
    if feed is None:
        return Names()
    try:
        return _read(feed, feed.stat().st_mtime)
    except (OSError, UnicodeDecodeError, csv.Error, zipfile.BadZipFile) as e:
        log.warning("ridership names: cannot read the GTFS feed %s: %s", feed, e)
        return Names()
