"""Staff pages rendered from real stored data; forms publish to a real broker."""

from __future__ import annotations

import re

import pytest

from mimamori.edge import contract
from mimamori.edge.service import Service
from mimamori.hub.cli import Hub
from mimamori.hub.clock import ago
from mimamori.hub.pages.commands import parse_desired
from mimamori.provisioning.fleet import Fleet
from tests.conftest import add_device
from tests.hub.conftest import Staff
from tests.mqtt_probe import wait_until
from tests.running import RunningService


@pytest.fixture
def live(fleet: Fleet, hub: Hub):
    """A real device service reporting to the real hub."""
    with RunningService(add_device(fleet, "field-01", location="North paddy")) as svc:
        wait_until(lambda: (hub.store.device("field-01") or {}).get("tele"), 15, "first telemetry")
        yield svc


def test_fleet_page_shows_the_device_with_health_and_status(
    hub: Hub, live: Service, admin: Staff
) -> None:
    live.emit("device.notice", {"level": "warning", "message": "camera lens fogged"})
    wait_until(lambda: hub.store.count_events() == 1, 10, "event stored")
    web = admin
    page = web.get("/").get_data(as_text=True)
    assert "field-01" in page and "North paddy" in page and "Monkey watch" in page
    assert 'class="pill on">online' in page
    assert "0.1.0" in page  # software version from the birth
    dev = web.get("/devices/field-01").get_data(as_text=True)
    assert "camera lens fogged" in dev and "device.notice" in dev
    assert "Outbox" in dev and "queued" in dev
    assert web.get("/devices/nobody").status_code == 404
    api = web.get("/api/devices").get_json()
    assert api[0]["id"] == "field-01" and api[0]["online"] is True


def test_desired_config_form_round_trip(hub: Hub, live: Service, admin: Staff) -> None:
    web = admin
    r = web.post("/devices/field-01/desired", data={"config": "[telemetry]\ninterval_s = 0\n"})
    assert r.status_code == 302
    wait_until(
        lambda: (hub.store.device("field-01")["reported"] or {}).get("version") == 1,
        10,
        "refusal reported",
    )
    page = web.get("/devices/field-01").get_data(as_text=True)
    assert "Version 1 was refused" in page and "telemetry.interval_s" in page
    assert live.cfg.telemetry.interval_s == 60
    web.post("/devices/field-01/desired", data={"config": "[telemetry]\ninterval_s = 15\n"})
    wait_until(lambda: live.cfg.telemetry.interval_s == 15, 10, "applied on the device")
    wait_until(lambda: hub.store.device("field-01")["reported"]["applied"], 10, "reported")
    bad = web.post(
        "/devices/field-01/desired", data={"config": "[telemetry"}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Config not sent: not valid TOML" in bad


def test_command_buttons_store_the_reply(hub: Hub, live: Service, admin: Staff) -> None:
    web = admin
    web.post("/devices/field-01/command/ping")
    wait_until(lambda: hub.store.replies("field-01")[0]["replied"], 10, "reply stored")
    reply = hub.store.replies("field-01")[0]
    assert reply["ok"] and reply["result"]["pong"] is True
    assert "pong" in web.get("/devices/field-01").get_data(as_text=True)
    assert web.post("/devices/field-01/command/format-disk").status_code == 404


def test_ingest_page_lists_rejects(hub: Hub, admin: Staff) -> None:
    hub.store.reject("mimamori/v1/x/tele", "schema", "load1: Input should be >= 0")
    page = admin.get("/ingest").get_data(as_text=True)
    assert "schema" in page and "load1: Input should be" in page


def test_parse_desired_and_ago() -> None:
    assert parse_desired('{"telemetry": {"interval_s": 5}}') == {"telemetry": {"interval_s": 5}}
    with pytest.raises(ValueError, match="expected sections"):
        parse_desired("interval_s = 5")
    with pytest.raises(ValueError, match="empty"):
        parse_desired("  ")
    now = contract.utcnow()
    from datetime import timedelta

    assert ago(now - timedelta(seconds=200), now) == "3 min"
    assert ago(None) == "never"


def test_times_show_the_towns_clock_with_how_long_ago() -> None:
    from datetime import UTC, datetime

    from mimamori.hub.clock import duration, when

    now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)  # 18:00 in Tokyo
    today = str(when(datetime(2026, 12, 2, 5, 3, tzinfo=UTC), now))
    assert ">14:03 <" in today and "(3 h ago)" in today
    assert 'datetime="2026-12-02T05:03:00+00:00"' in today and "JST" in today
    before = str(when(datetime(2026, 11, 30, 23, 30, tzinfo=UTC), now))
    assert ">12-01 08:30 <" in before and "(1 d ago)" in before
    assert str(when(None)) == "never"
    assert duration(22) == "22 s" and duration(240) == "4 min" and duration(3900) == "1 h 5 min"


def test_audit_page_shows_local_times(hub: Hub, admin: Staff) -> None:
    page = admin.get("/audit").get_data(as_text=True)
    assert "<time datetime=" in page and "(UTC)" not in page
    assert "Asia/Tokyo" in page  # the footer names the town's time zone
    icon = re.search(r'<link rel="icon"[^>]*href="([^"]+)"', page)
    assert icon and admin.get(icon.group(1)).status_code == 200  # no favicon 404s


def test_events_read_as_sentences() -> None:
    from mimamori.hub.events import sentence

    visit = {
        "vehicle": "3号車",
        "stop_sequence": 5,
        "stop_name": "市役所前",
        "arrival": "2026-12-02T05:00:00Z",
        "departure": "2026-12-02T05:00:12Z",
        "boardings": 3,
        "alightings": 1,
    }
    assert sentence("ridership.stop_visit", visit) == (
        "Stop 5 (市役所前): 3 on, 1 off, doors 12 s (3号車)"
    )
    seen = {"started": "2026-12-02T00:14:00Z", "score": 0.97, "label": "macaque", "frames": 4}
    assert sentence("wildlife.incursion", {**seen, "location": "North paddy"}) == (
        "Monkeys seen at North paddy 09:14, score 0.97 (macaque), 4 frames"
    )
    call = {
        "rang": "2026-12-02T01:00:00Z",
        "answered": "2026-12-02T01:00:20Z",
        "ended": "2026-12-02T01:00:42Z",
        "staff": "suzuki",
        "reason": "staff_ended",
        "stills": 2,
    }
    assert sentence("kiosk.call", call) == (
        "Call at 10:00 answered by suzuki after 20 s, talked 22 s (staff ended); 2 stills"
    )
    assert sentence("device.notice", {"level": "warning", "message": "lens fogged"}) == (
        "Warning: lens fogged"
    )
    assert sentence("other.kind", {}) == "other.kind"
