"""Ridership at the hub: trip cleaning, the OD estimate, exports and the staff page."""

from __future__ import annotations

import csv
import io
import re
import tomllib
import uuid
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w

from mimamori.edge import contract
from mimamori.hub.cli import build
from mimamori.hub.clock import zone
from mimamori.hub.ridership import data, export, names, report
from mimamori.hub.ridership.od import ipf
from mimamori.hub.ridership.trips import StopCount, Trip, clean
from mimamori.hub.store import Message, Store
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.hub.conftest import staff_client

DAY = date(2026, 11, 25)  # a Wednesday


def test_ipf_recovers_a_known_od_matrix_from_its_margins() -> None:
    a = np.array([6.0, 4, 9, 3, 5, 2, 0])
    b = np.array([0.0, 2, 5, 1, 7, 4, 6])
    truth = np.triu(np.outer(a, b), k=1)  # the independence structure IPF assumes
    r = ipf(list(truth.sum(axis=1)), list(truth.sum(axis=0)))
    assert r.converged and not r.flags
    assert np.abs(r.matrix - truth).max() < 1e-4
    # with a prior from a ride-check survey as the seed, any matrix is recovered
    rng = np.random.default_rng(3)
    any_od = np.triu(rng.integers(0, 9, (6, 6)).astype(float), k=1)
    r2 = ipf(list(any_od.sum(axis=1)), list(any_od.sum(axis=0)), seed=any_od * 1.7)
    assert np.abs(r2.matrix - any_od).max() < 0.05


def test_ipf_flags_inconsistent_margins_instead_of_failing() -> None:
    r = ipf([5, 3, 0], [0, 2, 9])  # more alightings than boardings
    assert r.flags and "margins disagree" in r.flags[0]
    assert np.isclose(r.matrix.sum(), 8)
    assert np.allclose(np.tril(r.matrix), 0)  # nobody travels backwards
    with pytest.raises(ValueError, match="3 boarding counts but 2"):
        ipf([1, 2, 3], [1, 2])


def trip_of(counts: list[tuple[int, int]]) -> Trip:
    t0 = datetime(2026, 11, 24, 23, 0, tzinfo=UTC)
    stops = [
        StopCount(f"S{i}", f"stop {i}", i + 1, (t0 + timedelta(minutes=2 * i)).isoformat(),
                  (t0 + timedelta(minutes=2 * i, seconds=30)).isoformat(), on, off)
        for i, (on, off) in enumerate(counts)
    ]  # fmt: skip
    return Trip("bus-1", DAY.isoformat(), "T1", "R1", 0, stops)


def test_cleaning_balances_keeps_load_non_negative_and_ends_empty() -> None:
    t = clean(trip_of([(10, 1), (4, 2), (0, 9), (3, 0), (0, 3)]))  # 17 on, 15 off, load dips
    assert (t.raw_on, t.raw_off) == (17, 15)
    assert t.on == t.off == 16
    load = 0
    for s in t.stops:
        load += s.on - s.off
        assert load >= 0 and s.load == load
    assert t.stops[-1].load == 0
    assert any("balanced" in f for f in t.flags)


def test_cleaning_moves_impossible_alightings_to_the_last_stop() -> None:
    t = clean(trip_of([(2, 0), (0, 5), (3, 0)]))
    assert [s.off for s in t.stops] == [0, 2, 3]  # 3 could not get off at stop 2: on board
    assert t.on == t.off and all(s.load >= 0 for s in t.stops)
    assert any("negative" in f for f in t.flags)


def test_a_trip_counted_one_way_only_is_left_out_and_flagged() -> None:
    t = clean(trip_of([(4, 0), (3, 0)]))
    assert (t.on, t.off) == (0, 0) and "one direction only" in t.flags[0]


def test_a_clean_trip_is_left_as_counted_and_factors_are_applied() -> None:
    t = clean(trip_of([(5, 0), (2, 3), (0, 4)]))
    assert [(s.on, s.off) for s in t.stops] == [(5, 0), (2, 3), (0, 4)] and not t.flags
    f = clean(trip_of([(10, 0), (0, 10)]), 1.1, 1.1)
    assert (f.on, f.off) == (11, 11) and "vehicle factors" in f.flags[0]


def visit(
    trip: str, seq: int, on: int, off: int, hhmm: str, *, direction: int = 0, vehicle: str = "bus-1"
) -> dict[str, Any]:
    h, m = (int(x) for x in hhmm.split(":"))
    arrival = datetime(DAY.year, DAY.month, DAY.day, h, m, tzinfo=zone())
    return {
        "visit": uuid.uuid4().hex, "vehicle": vehicle, "service_date": DAY.isoformat(),
        "route_id": "R1", "trip_id": trip, "direction_id": direction, "stop_id": f"S{seq}",
        "stop_name": f"停留所{seq}", "stop_sequence": seq, "arrival": arrival.isoformat(),
        "departure": (arrival + timedelta(seconds=40)).isoformat(), "boardings": on,
        "alightings": off, "doors": [{"door": "front", "boardings": on, "alightings": off}],
        "fix": None, "match": "trip", "distance_m": 4.0,
    }  # fmt: skip


def store_visits(store: Store, visits: list[dict[str, Any]], dev: str = "bus-01") -> None:
    msgs = []
    for n, v in enumerate(visits, start=1):
        contract.StopVisitData.model_validate(v)
        payload = contract.EventPayload(
            id=uuid.uuid4().hex,
            seq=n,
            kind="ridership.stop_visit",
            created=datetime.fromisoformat(v["departure"]),
            data=v,
        )
        msgs.append(
            Message(contract.parse_topic(contract.event(dev, "ridership.stop_visit")), payload,
                    datetime.now(UTC))
        )  # fmt: skip
    store.apply(msgs)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'hub.db'}").create()


DAY_VISITS = [
    # 07:30 outbound: 8 on, 8 off
    visit("T0730", 1, 5, 0, "07:30"), visit("T0730", 2, 3, 1, "07:34"),
    visit("T0730", 3, 0, 4, "07:38"), visit("T0730", 4, 0, 3, "07:42"),
    # 12:00 outbound, the counter missed an alighting: 4 on, 3 off
    visit("T1200", 1, 2, 0, "12:00"), visit("T1200", 2, 2, 0, "12:04"),
    visit("T1200", 4, 0, 3, "12:12"),
    # inbound: another stop pattern, shown separately
    visit("B0800", 1, 2, 0, "08:00", direction=1), visit("B0800", 2, 0, 2, "08:04", direction=1),
]  # fmt: skip


def test_report_selects_by_band_and_builds_the_load_profile(store: Store) -> None:
    store_visits(store, DAY_VISITS)
    visits = data.load(store, DAY, DAY)
    assert len(visits.trips) == 3 and not visits.untagged
    out = report.select(visits.trips, report.Filter(DAY, DAY, "R1", 0))
    rep = report.build(out)
    assert [s.seq for s in rep.stops] == [1, 2, 3, 4]
    assert rep.on == rep.off == 8 + 4  # the 12:00 trip balanced to 4 each (3.5 rounds to 4)
    am = report.build(report.select(visits.trips, report.Filter(DAY, DAY, "R1", 0, band="am")))
    assert [t.trip_id for t in am.trips] == ["T0730"]
    assert [s.mean_load for s in am.stops] == [5, 7, 3, 0]
    assert np.isclose(am.od.sum(), 8) and np.allclose(np.tril(am.od), 0)
    sat = report.select(visits.trips, report.Filter(DAY, DAY, day_type="saturday"))
    assert sat == []


def test_gtfs_ride_and_csv_exports_parse_back(store: Store) -> None:
    store_visits(store, DAY_VISITS)
    trips = data.load(store, DAY, DAY).trips
    f = report.Filter(DAY, DAY, day_type="weekday")
    z = zipfile.ZipFile(io.BytesIO(export.gtfs_ride(trips, f)))
    assert set(z.namelist()) == {
        "ride_feed_info.txt", "board_alight.txt", "ridership.txt", "od_estimate.txt"
    }  # fmt: skip

    def rows(name: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(z.read(name).decode())))

    info = rows("ride_feed_info.txt")[0]
    assert (info["ride_files"], info["ride_start_date"]) == ("4", "20261125")
    ba = rows("board_alight.txt")
    assert len(ba) == len(DAY_VISITS)
    first = ba[0]
    assert {k: first[k] for k in ("trip_id", "stop_id", "stop_sequence", "record_use", "source")} == {
        "trip_id": "T0730", "stop_id": "S1", "stop_sequence": "1", "record_use": "0", "source": "1"
    }  # fmt: skip
    assert (first["boardings"], first["load_count"], first["service_date"]) == (
        "5",
        "5",
        "20261125",
    )
    assert first["service_arrival_time"] == "07:30:00"
    for trip in {r["trip_id"] for r in ba}:
        mine = [r for r in ba if r["trip_id"] == trip]
        assert sum(int(r["boardings"]) for r in mine) == sum(int(r["alightings"]) for r in mine)
    rid = rows("ridership.txt")
    totals = [r for r in rid if not r["trip_id"]]
    assert {(r["direction_id"], r["total_boardings"]) for r in totals} == {("0", "12"), ("1", "2")}
    assert (totals[0]["monday"], totals[0]["saturday"]) == ("1", "0")
    od = rows("od_estimate.txt")
    assert od and all(r["source"] == "3" and r["method"] == "ipf" for r in od)
    assert int(od[0]["alighting_stop_sequence"]) > int(od[0]["boarding_stop_sequence"])
    table = list(csv.DictReader(io.StringIO(export.visits_csv(trips))))
    short = [r for r in table if r["trip_id"] == "T1200"]
    assert [r["raw_alightings"] for r in short] == ["0", "0", "3"]
    assert sum(int(r["alightings"]) for r in short) == 4 and "balanced" in short[0]["flags"]


def test_vehicle_factors_are_validated(store: Store) -> None:
    with pytest.raises(ValueError, match="boarding factor"):
        data.set_factors(store, "bus-1", 3.0, 1.0, "", "kato")
    data.set_factors(store, "bus-1", 1.1, 0.95, "ride check", "kato")
    assert data.get_factors(store)["bus-1"]["board"] == 1.1


def test_ridership_page_names_routes_and_directions_lists_each_trip_once_and_numbers_od_columns(
    fleet: Fleet, broker: MosquittoProcess
) -> None:
    feed = fleet.root / "hub" / "gtfs"
    feed.mkdir()
    (feed / "routes.txt").write_text(
        "\ufeffroute_id,route_short_name,route_long_name,route_type\r\n"
        "R1,1,北循環線,3\r\nR2,,南線,3\r\n",
        encoding="utf-8",
    )
    (feed / "trips.txt").write_text(
        "route_id,service_id,trip_id,trip_headsign,direction_id\n"
        "R1,WD,T0730,駅前行,0\nR1,WD,T1200,駅前行,0\nR1,WD,B0800,,1\n",
        encoding="utf-8",
    )
    cfg = tomllib.loads(fleet.hub_config.read_text())
    fleet.hub_config.write_text(tomli_w.dumps({**cfg, "ridership": {"gtfs": "gtfs"}}))
    # a trip whose boarding at its last stop the estimate cannot place: two reasons, one trip
    odd = [visit("T1500", 1, 2, 0, "15:00"), visit("T1500", 2, 0, 2, "15:04"),
           visit("T1500", 4, 1, 1, "15:08")]  # fmt: skip
    hub = build(fleet.hub_config).start(web=False)
    try:
        store_visits(hub.store, DAY_VISITS + odd)
        staff = staff_client(hub, "kato", "transit")
        page = staff.get(f"/ridership?from={DAY}&to={DAY}&route=R1&direction=0").get_data(
            as_text=True
        )
    finally:
        hub.stop()
    # the filters: names from the feed, codes as the values
    assert '<option value="R1" selected>1 北循環線</option>' in page
    assert '<option value="0" selected>駅前行</option>' in page
    assert '<option value="1" >inbound</option>' in page  # no headsign in the feed
    # the estimate's warning: the trip once, with both reasons
    warning = re.search(r'<ul class="od-flags">(.*?)</ul>', page, re.S)
    assert warning, "no warning for the trip with a boarding at its last stop"
    items = re.findall(r"<li>(.*?)</li>", warning.group(1), re.S)
    assert len(items) == 1 and items[0].startswith(f"T1500 {DAY}: "), items
    assert "cannot be matched" in items[0] and "did not converge" in items[0]
    assert "1 trip(s) had inconsistent counts" in page
    # the OD table: stop numbers over the columns, names once per row, scrolling sideways
    od = re.search(r'<div class="scroll">\s*<table class="od">(.*?)</table>', page, re.S)
    assert od, "the OD table is not in a sideways-scrolling box"
    heads = re.findall(r'<th scope="col" title="([^"]*)">([^<]*)</th>', od.group(1))
    assert heads == [(f"停留所{n}", str(n)) for n in (1, 2, 3, 4)]
    assert '<span class="stopno">3</span> 停留所3' in od.group(1)


def test_route_and_direction_names_fall_back_to_codes(tmp_path: Path) -> None:
    none = names.load(None)
    assert (none.route("R9"), none.direction("R9", 0), none.direction("R9", 1)) == (
        "R9",
        "outbound",
        "inbound",
    )
    broken = tmp_path / "feed.zip"
    broken.write_bytes(b"not a zip")
    assert names.load(broken).route("R1") == "R1"
    with zipfile.ZipFile(feed := tmp_path / "ok.zip", "w") as z:
        z.writestr("routes.txt", "route_id,route_short_name,route_long_name\nR1,,Hill line\n")
    assert names.load(feed).route("R1") == "Hill line"


def test_a_trip_under_way_is_shown_raw_and_left_out_until_it_ends(store: Store) -> None:
    """A bus three stops into a five-stop trip has 4 on and nobody off yet: that is not a
    trip to balance (it would show zeros and be flagged), it is a trip under way."""
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.astimezone(zone()).date()

    def recent(trip: str, seq: int, on: int, off: int, minutes_ago: int) -> dict[str, Any]:
        v = visit(trip, seq, on, off, "08:00")
        at = now - timedelta(minutes=minutes_ago)
        v |= {"service_date": today.isoformat(), "arrival": at.isoformat()}
        v["departure"] = (at + timedelta(seconds=40)).isoformat()
        return v

    store_visits(
        store,
        [recent("T9", 1, 3, 0, 12), recent("T9", 2, 1, 0, 8), recent("T9", 3, 0, 0, 4)]
        + [recent("T8", s, on, off, 60 - 5 * s) for s, on, off in [(1, 2, 0), (5, 0, 2)]],
    )
    got = data.load(store, today, today, ends={"T9": 5, "T8": 5}, now=now)
    assert [t.trip_id for t in got.under_way] == ["T9"]
    t9 = got.under_way[0]
    assert (t9.raw_on, t9.raw_off, t9.stops[-1].load) == (4, 0, 4) and not t9.flags
    assert [t.trip_id for t in got.trips] == ["T8"]  # reached its last stop: cleaned
    # a bus that never got to the end (gone out of service) is cleaned after two hours; and
    # without a feed the hub cannot know where a trip ends: it cleans what it has
    later = data.load(store, today, today, ends={"T9": 5}, now=now + timedelta(hours=3))
    assert later.under_way == [] and {t.trip_id for t in later.trips} == {"T8", "T9"}
    assert data.load(store, today, today, now=now).under_way == []


def test_the_ridership_page_shows_a_trip_under_way(fleet: Fleet, broker: MosquittoProcess) -> None:
    feed = fleet.root / "hub" / "gtfs"
    feed.mkdir()
    (feed / "stop_times.txt").write_text(
        "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
        + "".join(f"T9,08:0{s}:00,08:0{s}:00,S{s},{s}\n" for s in range(1, 6)),
        encoding="utf-8",
    )
    cfg = tomllib.loads(fleet.hub_config.read_text())
    fleet.hub_config.write_text(tomli_w.dumps({**cfg, "ridership": {"gtfs": "gtfs"}}))
    now = datetime.now(UTC).replace(microsecond=0)
    v = visit("T9", 2, 3, 0, "08:00")
    v |= {"service_date": now.astimezone(zone()).date().isoformat(), "arrival": now.isoformat()}
    v["departure"] = (now + timedelta(seconds=30)).isoformat()
    hub = build(fleet.hub_config).start(web=False)
    try:
        store_visits(hub.store, [v])
        page = staff_client(hub, "kato", "transit").get("/ridership").get_data(as_text=True)
    finally:
        hub.stop()
    under_way = page[page.index("Under way") : page.index("</section>", page.index("Under way"))]
    assert "停留所2" in under_way and "3/0" in under_way
    assert "No counted trips" in page  # not balanced into zeros and flagged
