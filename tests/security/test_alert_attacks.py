"""A stolen wildlife camera against the monkey alerts: times from the future, troops held
open, broken snapshots, a failing alert channel. The real Alerts on a real store, alerts
delivered to a real HTTP webhook."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mimamori.edge import contract
from mimamori.hub.alerts import Alerts
from mimamori.hub.alerts.rules import MAX_TROOP_SPAN
from mimamori.hub.store import Message, Store
from tests.conftest import free_port
from tests.mqtt_probe import wait_until

JPEG = base64.b64encode(b"\xff\xd8\xff\xd9").decode()


class Webhook:
    def __init__(self, fail_first: int = 0) -> None:
        self.posts: list[dict] = []
        self.fail_first = fail_first
        self.calls = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.calls += 1
                if hook.calls <= hook.fail_first:
                    self.send_response(500)
                else:
                    hook.posts.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'hub.db'}").create()


@pytest.fixture
def hook() -> Iterator[Webhook]:
    h = Webhook()
    yield h
    h.server.shutdown()


def incursion(dev: str, started: datetime | str, *, age_s: float = 0.0) -> Message:
    p = contract.EventPayload(
        id=uuid.uuid4().hex,
        seq=1,
        kind="wildlife.incursion",
        prio=contract.Priority.ALARM,
        created=contract.utcnow(),
        age_s=age_s,
        data=contract.IncursionData(
            incursion=uuid.uuid4().hex,
            started=started,  # type: ignore[arg-type]
            score=0.95,
            label="macaque",
            box=(0, 0, 10, 10),
            frames=3,
            snapshot_jpeg=JPEG,
        ).model_dump(mode="json"),
    )
    return Message(contract.Topic(dev, "event", "wildlife.incursion"), p, datetime.now(UTC))


def test_a_camera_claiming_2099_cannot_swallow_later_incursions(
    store: Store, hook: Webhook
) -> None:
    alerts = Alerts(store, public_url="http://hub", secret=b"s" * 32, retry_delays=())
    alerts.add_subscriber("farmers", hook.url)
    t0 = datetime.now(UTC)
    alerts.handle(incursion("field-09", "2099-01-01T00:00:00Z"), t0)
    troop = alerts.recent()[0]
    assert abs(troop["started"] - t0) < timedelta(seconds=1)  # the hub's clock, not 2099
    # four real incursions at another camera, each after the attacker's troop has closed
    for k in range(1, 5):
        alerts.handle(incursion("field-01", t0), t0 + k * (MAX_TROOP_SPAN + timedelta(minutes=1)))
    alerts.close()
    assert len(alerts.recent()) == 5
    assert len(hook.posts) == 5  # each real one alerted


def test_troops_merge_only_neighbouring_cameras(store: Store, hook: Webhook) -> None:
    alerts = Alerts(
        store,
        public_url="http://hub",
        secret=b"s" * 32,
        retry_delays=(),
        areas=[["field-01", "field-02"], ["field-09"]],
    )
    alerts.add_subscriber("farmers", hook.url)
    t0 = datetime.now(UTC)
    alerts.handle(incursion("field-09", t0), t0)
    alerts.handle(incursion("field-01", t0), t0 + timedelta(minutes=1))  # another area
    alerts.handle(incursion("field-02", t0), t0 + timedelta(minutes=2))  # field-01's neighbour
    alerts.close()
    cameras = sorted(tuple(t["cameras"]) for t in alerts.recent())
    assert cameras == [("field-01", "field-02"), ("field-09",)]
    assert len(hook.posts) == 2


def test_a_broken_snapshot_is_refused_by_the_contract() -> None:
    for snapshot, why in (
        ("not base64 at all!", "not base64"),
        (base64.b64encode(b"GIF89a....").decode(), "not a JPEG"),
    ):
        with pytest.raises(ValueError, match=why):
            contract.IncursionData(
                incursion=uuid.uuid4().hex,
                started=contract.utcnow(),
                score=0.9,
                label="macaque",
                box=(0, 0, 1, 1),
                frames=1,
                snapshot_jpeg=snapshot,
            )


def test_a_failing_alert_is_logged_and_retried(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    hook = Webhook(fail_first=2)
    alerts = Alerts(store, public_url="http://hub", secret=b"s" * 32, retry_delays=(0.1, 0.1))
    alerts.add_subscriber("farmers", hook.url)
    t0 = datetime.now(UTC)
    alerts.handle(incursion("field-01", t0), t0)
    wait_until(lambda: hook.posts, 10, "the third attempt delivered")
    alerts.close()
    hook.server.shutdown()
    assert len(hook.posts) == 1 and hook.calls == 3
    troop = alerts.recent()[0]["id"]
    assert [d["ok"] for d in alerts.deliveries(troop)] == [False, False, True]
    assert sum("not delivered" in r.getMessage() for r in caplog.records) == 2


def test_im_on_it_link_expires(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    alerts = Alerts(store, public_url="http://hub", secret=b"s" * 32)
    token = alerts._tokens.dumps(["troop", "farmers"])
    assert alerts.resolve_token(token) == ("troop", "farmers")
    later = time.time() + 25 * 3600  # the clock seam of itsdangerous is time.time
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: later)
    assert alerts.resolve_token(token) is None
    alerts.close()
