"""GPS sentences, a GTFS feed and door openings → the right stop and trip."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from mimamori.edge.ridership.gps import Fix, Gps, NmeaParser, replay_lines
from mimamori.edge.ridership.gtfs import GtfsError, load_feed
from mimamori.edge.ridership.sim import drive, nmea, write_feed
from mimamori.edge.ridership.stops import StopMatcher

# A street running east. Outbound stops (north side) and inbound stops (south side) face each
# other 15 m apart across the road.
STOPS = """stop_id,stop_name,stop_lat,stop_lon
N1,Hall (east),36.200000,137.250000
N2,School (east),36.200000,137.255000
N3,Clinic (east),36.200000,137.260000
S1,Hall (west),36.199865,137.250000
S2,School (west),36.199865,137.255000
S3,Clinic (west),36.199865,137.260000
"""
TRIPS = """route_id,service_id,trip_id,direction_id
R,wd,east-0800,0
R,wd,west-0830,1
"""
STOP_TIMES = """trip_id,arrival_time,departure_time,stop_id,stop_sequence
east-0800,08:00:00,08:00:00,N1,1
east-0800,08:05:00,08:05:00,N2,2
east-0800,08:10:00,08:10:00,N3,3
west-0830,08:30:00,08:30:00,S3,1
west-0830,08:35:00,08:35:00,S2,2
west-0830,08:40:00,08:40:00,S1,3
"""


def feed_dir(tmp_path: Path, **override: str) -> Path:
    tmp_path.mkdir(exist_ok=True)
    files = {"stops.txt": STOPS, "trips.txt": TRIPS, "stop_times.txt": STOP_TIMES} | override
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def local(hhmm: str) -> datetime:
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime(2026, 11, 25, h, m, tzinfo=UTC) - timedelta(hours=9)  # JST → UTC


def test_a_recorded_nmea_log_tags_each_door_opening_with_its_stop(tmp_path: Path) -> None:
    feed = load_feed(feed_dir(tmp_path / "gtfs"))
    # the bus drives west on its 08:30 trip; at each stop the receiver's position is a few
    # metres off, *closer to the eastbound stop across the road* at School
    script = [
        ("08:31", 36.19987, 137.26002, 270.0, "S3"),
        ("08:36", 36.19994, 137.25503, 270.0, "S2"),  # 8 m from N2, 8.4 m from S2
        ("08:41", 36.19988, 137.24998, 270.0, "S1"),
    ]
    log = tmp_path / "bus.nmea"
    lines = []
    for hhmm, lat, lon, course, _ in script:
        t = local(hhmm)
        lines += nmea(Fix(t - timedelta(seconds=20), lat, lon + 0.0005), course, 25.0)
        lines.append("~~~ line noise ~~~")
        lines += nmea(Fix(t, lat, lon), 0.0, 0.0)  # stopped: the course is noise
    log.write_text("\n".join(lines) + "\n", encoding="ascii")
    gps = Gps()
    matcher = StopMatcher(feed)
    fixes = iter(replay_lines(log, speed=0))
    got = []
    for hhmm, *_ in script:
        while (f := gps.fix) is None or f.ts < local(hhmm):
            gps.feed(next(fixes))
        fix, course = gps.current()
        m = matcher.match(fix, course, local(hhmm))
        got.append((m.stop_id, m.trip_id, m.stop_sequence))
    assert got == [("S3", "west-0830", 1), ("S2", "west-0830", 2), ("S1", "west-0830", 3)]
    assert gps.parser.rejected["unparseable"] == 3


def test_without_a_known_trip_the_nearest_stop_wins_even_across_the_road(
    tmp_path: Path,
) -> None:
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "stops.txt").write_text(STOPS)
    m = StopMatcher(load_feed(tmp_path / "g"))
    r = m.match(Fix(local("08:36"), 36.19994, 137.25503), 270.0, local("08:36"))
    assert (r.stop_id, r.method, r.trip_id) == ("N2", "nearest", None)
    far = m.match(Fix(local("08:36"), 36.21, 137.25), None, local("08:36"))
    assert far.stop_id is None and far.distance_m is not None and far.distance_m > 1000


def test_no_fix_means_no_stop_rather_than_a_guess(tmp_path: Path) -> None:
    m = StopMatcher(load_feed(feed_dir(tmp_path)))
    assert m.match(None, None, local("08:36")).stop_id is None
    no_fix = Fix(local("08:36"), 36.2, 137.255, quality=0)
    assert m.match(no_fix, None, local("08:36")).stop_id is None


def test_a_day_of_door_openings_meets_the_apc_matching_targets(tmp_path: Path) -> None:
    feed = load_feed(write_feed(tmp_path, across_m=15))
    total = stops_ok = trips_ok = 0
    for seed in range(1, 4):
        matcher = StopMatcher(feed)
        for o in drive(feed, date(2026, 11, 25), seed=seed, gps_sigma_m=8.0):
            m = matcher.match(o.fix, o.course, o.when)
            total += 1
            stops_ok += m.stop_id == o.stop_id and m.stop_sequence == o.stop_sequence
            trips_ok += m.trip_id == o.trip_id
    assert total > 600
    assert stops_ok / total > 0.99
    assert trips_ok / total > 0.95


def test_garbage_nmea_is_counted_by_reason_and_good_sentences_still_parse() -> None:
    p = NmeaParser()
    good = nmea(Fix(datetime(2026, 11, 25, 1, 2, 3, tzinfo=UTC), 36.2, 137.25, 30.0, 90.0))
    lines = [
        "",
        "\x00\xff\xfe binary noise",
        "$GPRMC,010203.00,A,3612.0000,N,13715.0000,E,16.2,90.0,251126,,*00",  # bad checksum
        "$GPRMC,010203.00,V,,,,,,,251126,,*",
        good[0][:20],  # cut off mid-write
        *good,
    ]
    fixes = [f for line in lines if (f := p.feed(line)) is not None]
    assert len(fixes) == 1
    f = fixes[0]
    assert math.isclose(f.lat, 36.2, abs_tol=1e-6) and math.isclose(f.lon, 137.25, abs_tol=1e-6)
    assert f.speed_kmh is not None and math.isclose(f.speed_kmh, 30.0, abs_tol=0.2)
    assert (f.quality, f.sats) == (1, 8)
    assert p.rejected["checksum"] >= 1
    assert sum(p.rejected.values()) >= 4


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"stops.txt": "stop_id,stop_name,stop_lat\nA,x,36.2\n"},
            "stops.txt: missing column stop_lon",
        ),
        ({"stops.txt": "stop_id,stop_lat,stop_lon\nA,north,137\n"}, "stops.txt line 2"),
        ({"stop_times.txt": "trip_id,stop_id\n"}, "stop_times.txt: missing column stop_sequence"),
        (
            {"stop_times.txt": STOP_TIMES + "east-0800,8:xx,,N1,4\n"},
            "stop_times.txt line 8",
        ),
        ({"trips.txt": TRIPS.replace(",0\n", ",2\n", 1)}, "direction_id must be 0 or 1"),
    ],
)
def test_a_broken_feed_names_the_file_line_and_column(
    tmp_path: Path, override: dict[str, str], message: str
) -> None:
    with pytest.raises(GtfsError, match=message):
        load_feed(feed_dir(tmp_path, **override))


def test_a_feed_without_stops_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GtfsError, match="stops.txt is missing"):
        load_feed(tmp_path)
