"""Monkey alerts from the hub: a real SMTP server and a real webhook receive them."""

from __future__ import annotations

import base64
import email
import json
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import paho.mqtt.client as mqtt
import pytest
from aiosmtpd.controller import Controller

from mimamori.edge import contract
from mimamori.hub.auth import Accounts
from mimamori.hub.cli import Hub
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import MEDIA, device_identity, free_port
from tests.mqtt_probe import client, wait_until

JPEG = (
    base64.b64encode((MEDIA / "opencv" / "baboon.jpg").read_bytes()).decode()
    if MEDIA.is_dir()
    else base64.b64encode(b"\xff\xd8\xff\xd9").decode()
)


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))  # type: ignore[attr-defined]
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, Mailbox]]:
    box, port = Mailbox(), free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    yield port, box
    ctl.stop()


@pytest.fixture
def webhook() -> Iterator[tuple[int, list[dict]]]:
    posts: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], posts
    server.shutdown()


@pytest.fixture
def cams(fleet: Fleet, broker: MosquittoProcess) -> Iterator[dict[str, mqtt.Client]]:
    out = {}
    for name in ("field-01", "field-02"):
        fleet.add_device(name, "wildlife")
        c = client(device_identity(fleet, name))
        c.connect(broker.host, broker.port)
        c.loop_start()
        wait_until(c.is_connected, 5, name)
        out[name] = c
    yield out
    for c in out.values():
        c.loop_stop()
        c.disconnect()


def sighting(
    c: mqtt.Client,
    dev: str,
    incursion: str,
    *,
    seq: int,
    hist: bool = False,
    ago: timedelta = timedelta(0),
) -> None:
    seen = contract.utcnow() - ago
    data = contract.IncursionData(
        incursion=incursion,
        started=seen,
        score=0.93,
        label="macaque",
        box=(10, 10, 200, 200),
        frames=3,
        snapshot_jpeg=JPEG,
    )
    payload = contract.EventPayload(
        id=uuid.uuid4().hex,
        seq=seq,
        kind="wildlife.incursion",
        prio=contract.Priority.ALARM,
        hist=hist,
        created=seen,
        age_s=ago.total_seconds(),
        data=data.model_dump(mode="json"),
    )
    c.publish(contract.event(dev, "wildlife.incursion"), payload.dumps(), qos=1).wait_for_publish(5)


def test_one_alert_per_troop_with_snapshot_and_im_on_it(
    hub: Hub,
    cams: dict[str, mqtt.Client],
    smtp: tuple[int, Mailbox],
    webhook: tuple[int, list[dict]],
) -> None:
    port, mailbox = smtp
    hook_port, posts = webhook
    hub.alerts.add_subscriber(
        "yamada",
        f"mailto://127.0.0.1:{port}?from=hub@town.local&to=yamada@example.jp&mode=insecure",
        cameras="field-01,field-02",
    )
    hub.alerts.add_subscriber("farm-ops", f"json://127.0.0.1:{hook_port}/alerts")
    hub.alerts.add_subscriber(
        "night-owl", f"json://127.0.0.1:{hook_port}/owl", cameras="field-09"
    )  # follows another camera: nothing
    first = uuid.uuid4().hex
    sighting(cams["field-01"], "field-01", first, seq=1)
    sighting(cams["field-01"], "field-01", first, seq=1)  # the same message redelivered
    sighting(cams["field-02"], "field-02", uuid.uuid4().hex, seq=1)  # the troop moves on
    wait_until(lambda: mailbox.messages and posts, 20, "mail and webhook")
    wait_until(
        lambda: (
            len(hub.alerts.recent()) == 1
            and hub.alerts.recent()[0]["cameras"] == ["field-01", "field-02"]
        ),
        10,
        "merged troop",
    )
    mail = mailbox.messages[0]
    assert "Monkeys" in mail["Subject"]
    parts = {p.get_content_type(): p for p in mail.walk()}
    assert parts["image/jpeg"].get_payload(decode=True) == base64.b64decode(JPEG)
    text = parts["text/plain"].get_payload(decode=True).decode()
    assert "field-01" in text and "I'm on it:" in text and "delivered" not in text
    post = posts[0]
    assert post["attachments"][0]["base64"] == JPEG  # the webhook carries the picture too
    assert len(mailbox.messages) == 1 and len(posts) == 1  # one alert, not three

    # Yamada follows the link and takes it; farm-ops is told who is going
    token = re.search(r"/alerts/take/(\S+)", text).group(1)  # type: ignore[union-attr]
    web = hub.app.test_client()
    web.environ_base["wsgi.url_scheme"] = "https"
    page = web.get(f"/alerts/take/{token}").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    done = web.post(f"/alerts/take/{token}", data={"csrf_token": csrf}).get_data(as_text=True)
    assert "you are going" in done
    assert hub.alerts.recent()[0]["taken_by"] == "yamada"
    wait_until(lambda: len(posts) == 2, 10, "the others told")
    assert "yamada is going" in posts[1]["message"]
    assert web.get("/alerts/take/forged-token").status_code == 404


def test_alert_held_by_a_coverage_gap_says_when_it_was_seen(
    hub: Hub, cams: dict[str, mqtt.Client], webhook: tuple[int, list[dict]]
) -> None:
    hook_port, posts = webhook
    hub.alerts.add_subscriber("farm-ops", f"json://127.0.0.1:{hook_port}/alerts")
    sighting(
        cams["field-01"], "field-01", uuid.uuid4().hex, seq=1, hist=True, ago=timedelta(minutes=29)
    )
    wait_until(lambda: posts, 20, "late alert")
    assert re.search(r"seen \d\d:\d\d, delivered \d\d:\d\d", posts[0]["message"])
    assert hub.alerts.recent()[0]["late"] is True


def test_escalation_to_the_duty_roster_and_the_line_budget(
    hub: Hub, cams: dict[str, mqtt.Client], webhook: tuple[int, list[dict]]
) -> None:
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from mimamori.hub.alerts.tables import deliveries

    hook_port, posts = webhook
    hub.alerts.retry_delays = ()  # one attempt each: the LINE rows below are counted
    hub.alerts.add_subscriber("first", f"json://127.0.0.1:{hook_port}/first")
    hub.alerts.add_subscriber("backup", f"json://127.0.0.1:{hook_port}/backup", duty=1)
    hub.alerts.add_subscriber("line-group", "line://token/Uabcdef")  # counts against the budget
    sighting(cams["field-01"], "field-01", uuid.uuid4().hex, seq=1)
    wait_until(lambda: len(posts) == 1, 20, "the first alert")
    assert hub.alerts.escalate() == 0  # too early: the roster waits
    later = datetime.now(UTC) + hub.alerts.escalate_after + timedelta(seconds=1)
    assert hub.alerts.escalate(now=later) == 1  # nobody took it: the backup hears
    wait_until(lambda: len(posts) == 2, 10, "escalation")
    assert "escalated" in posts[1]["message"]
    assert hub.alerts.escalate(now=later) == 0  # once only

    def line_rows() -> int:
        with hub.store.engine.connect() as c:
            return int(
                c.execute(
                    sa.select(sa.func.count())
                    .select_from(deliveries)
                    .where(deliveries.c.subscriber == "line-group")
                ).scalar_one()
            )

    # the first alert's LINE attempt (it fails: no network here) is recorded asynchronously
    wait_until(lambda: line_rows() >= 1, 20, "the LINE attempt recorded")
    # the LINE budget: with this month's messages used up, LINE subscribers are skipped
    with hub.store.engine.begin() as c:
        c.execute(
            deliveries.insert(),
            [
                {
                    "troop": "x",
                    "subscriber": "line-group",
                    "kind": "alert",
                    "at": datetime.now(UTC),
                    "ok": True,
                }
            ]
            * 200,
        )
    assert hub.alerts.line_used() == 200
    before = line_rows()
    sighting(cams["field-01"], "field-01", uuid.uuid4().hex, seq=2)  # a new visit here
    wait_until(lambda: len(posts) == 3, 20, "the next troop's alert")
    assert line_rows() == before  # nothing more sent to LINE this month


def test_alerts_page_and_per_camera_timeline(hub: Hub, cams: dict[str, mqtt.Client]) -> None:
    from tests.hub.conftest import staff_client

    sighting(cams["field-01"], "field-01", uuid.uuid4().hex, seq=1)
    wait_until(lambda: hub.alerts.recent(), 20, "troop stored")
    ranger = staff_client(hub, "suzuki", "wildlife")
    page = ranger.get("/alerts").get_data(as_text=True)
    assert "/alerts/camera/field-01" in page and "nobody yet" in page and "data:image/jpeg" in page
    assert "Nobody is subscribed to alerts yet" in page
    # a signed-in ranger takes it from the page: recorded, audited, shown
    troop = hub.alerts.recent()[0]["id"]
    ranger.post(f"/alerts/{troop}/going")
    assert hub.alerts.troop(troop)["taken_by"] == "suzuki"  # type: ignore[index]
    page = ranger.get("/alerts").get_data(as_text=True)
    assert "taken by suzuki" in page and "I&#39;m going" not in page
    assert any(r["action"] == "alert.taken" for r in Accounts(hub.store).audit_log())
    timeline = ranger.get("/alerts/camera/field-01").get_data(as_text=True)
    assert "1 visit" in timeline and "score 0.93" in timeline
    transit = staff_client(hub, "kato", "transit")
    assert transit.get("/alerts").status_code == 403


def test_alerts_page_draws_the_cameras_from_provisioning_with_the_troops_highlighted(
    hub: Hub, fleet: Fleet, broker: MosquittoProcess
) -> None:
    from mimamori.edge.cli import main
    from tests.hub.conftest import staff_client

    ranger = staff_client(hub, "suzuki", "wildlife")
    fleet.add_device("field-01", "wildlife")
    page = ranger.get("/alerts").get_data(as_text=True)
    assert "<svg" not in page and "mimamori provision place NAME --lat" in page

    # where each camera stands is given at provisioning, on the command line or afterwards
    fleet_arg = ["--fleet", str(fleet.root)]
    assert main(["provision", "place", "field-01", "--lat", "36.2", "--lon", "137.25", *fleet_arg]) == 0  # fmt: skip
    assert main(["provision", "device", "field-02", "--role", "wildlife", "--lat", "36.2045",
                 "--lon", "137.2556", *fleet_arg]) == 0  # fmt: skip
    fleet.add_device("field-03", "wildlife", lat=36.199, lon=137.262)
    fleet.add_device("bus-01", "ridership", lat=36.3, lon=137.3)  # not a camera: not drawn
    c = client(device_identity(fleet, "field-01"))
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        wait_until(c.is_connected, 5, "field-01")
        sighting(c, "field-01", uuid.uuid4().hex, seq=1)
        wait_until(lambda: hub.alerts.recent(), 20, "troop stored")
    finally:
        c.loop_stop()
        c.disconnect()
    page = ranger.get("/alerts").get_data(as_text=True)
    svg = re.search(r'<svg class="camera-map" viewBox="0 0 (\d+) (\d+)".*?</svg>', page, re.S)
    assert svg, "no map on the alerts page"
    assert "mimamori provision place" not in page
    dots = {
        name: (cls, float(x), float(y))
        for cls, x, y, name in re.findall(
            r'<g class="(cam(?: seen)?)"><circle cx="([\d.]+)" cy="([\d.]+)".*?>([\w-]+)</text>',
            svg.group(0),
            re.S,
        )
    }
    assert set(dots) == {"field-01", "field-02", "field-03"}
    assert dots["field-01"][0] == "cam seen" and dots["field-02"][0] == dots["field-03"][0] == "cam"
    width, height = int(svg.group(1)), int(svg.group(2))
    assert all(0 < x < width and 0 < y < height for _, x, y in dots.values())
    assert dots["field-02"][2] < dots["field-01"][2] < dots["field-03"][2]  # north up
    assert dots["field-01"][1] < dots["field-02"][1] < dots["field-03"][1]  # east right
    assert re.search(r'<text x="10" y="\d+">\d+ m</text>', svg.group(0)), "no scale bar"
    # what was there stays: where, when, who was told, who is going
    assert "/alerts/camera/field-01" in page and "<time datetime=" in page
    assert "<dt>Told</dt><dd>nobody</dd>" in page and "I'm going / 対応します" in page


def test_a_device_position_needs_both_coordinates_in_range(fleet: Fleet) -> None:
    from mimamori.provisioning.fleet import FleetError

    with pytest.raises(FleetError, match="both --lat and --lon"):
        fleet.add_device("field-01", "wildlife", lat=36.2)
    with pytest.raises(FleetError, match="latitude -90..90"):
        fleet.add_device("field-01", "wildlife", lat=136.2, lon=36.2)
    fleet.add_device("field-01", "wildlife")
    roster = json.loads((fleet.root / "hub" / "devices.json").read_text())["devices"]
    assert (roster["field-01"]["lat"], roster["field-01"]["lon"]) == (None, None)
    fleet.place("field-01", 36.2, 137.25)
    roster = json.loads((fleet.root / "hub" / "devices.json").read_text())["devices"]
    assert (roster["field-01"]["lat"], roster["field-01"]["lon"]) == (36.2, 137.25)
