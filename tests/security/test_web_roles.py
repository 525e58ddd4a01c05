"""A member of staff reads past their role: monkey snapshots, other apps' data, admin pages."""

from __future__ import annotations

import pytest

from mimamori.hub.cli import Hub
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.kiosk.conftest import web_hub  # noqa: F401  (the hub with its pages served)
from tests.mqtt_probe import wait_until
from tests.security.web_helpers import JPEG_B64, Browser, device, incursion, signed_in


@pytest.fixture
def monkeys(web_hub: Hub, fleet: Fleet, broker: MosquittoProcess) -> str:  # noqa: F811
    """A real camera (its own certificate) reports a troop with its snapshot."""
    with device(fleet, broker, "field-01", "wildlife") as cam:
        cam.event("wildlife.incursion", incursion(), prio=2)
        cam.event("device.notice", {"level": "warning", "message": "camera lens fogged"})
        wait_until(lambda: web_hub.store.count_events() == 2, 15, "events stored")
    wait_until(lambda: web_hub.alerts.recent(), 15, "troop stored")
    return "field-01"


def test_counter_and_transit_staff_see_no_monkey_snapshots(web_hub: Hub, monkeys: str) -> None:  # noqa: F811
    for name, role in (("ito", "counter"), ("kato", "transit")):
        b = signed_in(web_hub, name, role)
        page = b.get(f"/devices/{monkeys}")
        assert page.status == 200
        assert "camera lens fogged" in page.text  # device health notices are for all staff
        assert JPEG_B64 not in page.text and "data:image/jpeg" not in page.text, role
        assert "wildlife.incursion" not in page.text and "macaque" not in page.text, role
        assert b.get("/alerts").status == 403
        assert b.get(f"/alerts/camera/{monkeys}").status == 403
        assert JPEG_B64 not in b.get("/api/devices").text
    for role in ("wildlife", "admin"):  # the roles that need them still see them
        b = signed_in(web_hub, f"u-{role}", role)
        assert JPEG_B64 in b.get(f"/devices/{monkeys}").text
        assert JPEG_B64 in b.get("/alerts").text


# every page and what each role gets: 200 (or 204/302 where the page answers so), else 403
ROUTES = {
    "/": ("admin", "wildlife", "transit", "counter"),
    "/devices/field-01": ("admin", "wildlife", "transit", "counter"),
    "/api/devices": ("admin", "wildlife", "transit", "counter"),
    "/alerts": ("admin", "wildlife"),
    "/alerts/camera/field-01": ("admin", "wildlife"),
    "/ridership": ("admin", "transit"),
    "/ridership/visits.csv": ("admin", "transit"),
    "/ridership/gtfs-ride.zip": ("admin", "transit"),
    "/ridership/label": ("admin", "transit"),
    "/counter": ("admin", "counter"),
    "/counter/state.json": ("admin", "counter"),
    "/ingest": ("admin",),
    "/audit": ("admin",),
}


def test_every_page_checks_the_role(web_hub: Hub, monkeys: str) -> None:  # noqa: F811
    rules = {r.rule for r in web_hub.app.url_map.iter_rules() if "GET" in (r.methods or ())}
    listed = {"/", "/devices/<dev>", "/api/devices", "/alerts", "/alerts/camera/<dev>",
              "/ridership", "/ridership/visits.csv", "/ridership/gtfs-ride.zip",
              "/ridership/label", "/counter",
              "/counter/state.json", "/ingest", "/audit"}  # fmt: skip
    public = {"/login", "/static/<path:filename>", "/alerts/take/<token>"}
    counter_calls = {r for r in rules if r.startswith("/counter/")}  # checked in tests/kiosk
    assert rules - listed - public - counter_calls == set(), "a page with no role check here"
    for role in ("admin", "wildlife", "transit", "counter"):
        b = signed_in(web_hub, f"r-{role}", role)
        for path, allowed in ROUTES.items():
            got = b.get(path).status
            if role in allowed:
                assert got == 200, (role, path, got)
            else:
                assert got == 403, (role, path, got)
    anonymous = Browser(web_hub)
    for path in ROUTES:
        assert anonymous.get(path).status in (302, 401), path
