"""Hub ingest's and the counter relay's handlers on the in-memory transport: routing, the
roster, rejects by reason, acks and commands (the wire: test_ingest.py, tests/kiosk)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from mimamori.edge import contract
from mimamori.edge.contract import Reason
from mimamori.edge.transport_fake import FakeBroker, FakeTransport
from mimamori.hub.config import HubConfig
from mimamori.hub.counter.calls import CallBook
from mimamori.hub.counter.relay import Relay
from mimamori.hub.ingest import Ingest
from mimamori.hub.roster import Roster
from mimamori.hub.store import Store
from tests.mqtt_probe import wait_until

CALL = "c" * 32


class Device:
    def __init__(self, broker: FakeBroker, dev: str) -> None:
        self.dev = dev
        self.t = FakeTransport(broker)
        self.t.start()

    def event(self, seq: int, kind: str = "device.notice", **data: Any) -> str:
        payload = contract.EventPayload(
            id=uuid.uuid4().hex,
            seq=seq,
            kind=kind,
            created=contract.utcnow(),
            data=data or {"level": "info", "message": f"n{seq}"},
        )
        self.t.publish(contract.event(self.dev, kind), payload.dumps(), qos=1)
        return payload.id


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


@pytest.fixture
def roster(tmp_path: Path) -> Roster:
    path = tmp_path / "devices.json"
    devices = {"field-01": {"role": "wildlife"}, "kiosk-01": {"role": "kiosk"}}
    path.write_text(json.dumps({"devices": devices}))
    return Roster(path)


@pytest.fixture
def ingest(broker: FakeBroker, store: Store, roster: Roster) -> Iterator[Ingest]:
    running = Ingest(HubConfig(), store, roster, transport=partial(FakeTransport, broker))
    running.start()
    yield running
    running.stop()


def test_ingest_says_the_hub_is_online_and_stores_events(
    ingest: Ingest, broker: FakeBroker, store: Store
) -> None:
    hub_state = contract.HubState.model_validate_json(broker.retained[contract.HUB_STATE].payload)
    assert hub_state.online and ingest.connected
    dev = Device(broker, "field-01")
    ids = [dev.event(i) for i in (1, 2)]
    wait_until(lambda: ingest.counters["stored"] == 2, 5, "stored")
    assert {e["event_id"] for e in store.events("field-01")} == set(ids)
    assert isinstance(ingest.transport, FakeTransport)
    # the two events after their commit, and the hub's own state (+/state), unread
    wait_until(lambda: len(ingest.transport.acked) == 3, 5, "acked after the commit")


def test_ingest_counts_each_reject_by_its_reason_and_acks_it(
    ingest: Ingest, broker: FakeBroker, store: Store
) -> None:
    dev = Device(broker, "field-01")
    stranger = Device(broker, "field-99")
    dev.t.publish(contract.tele("field-01"), b"{nope", qos=1)
    dev.t.publish(f"{contract.ROOT}/Bad_Dev/tele", b"{}", qos=1)
    dev.t.publish(contract.tele("field-01"), b'{"v": 1, "load1": -1}', qos=1)
    stranger.event(1)
    now = contract.iso(contract.utcnow())
    kiosk = Device(broker, "kiosk-01")  # a kiosk raising a wildlife alarm
    kiosk.event(
        1,
        "wildlife.incursion_end",
        incursion="a" * 32,
        started=now,
        ended=now,
        frames=1,
        max_score=0.5,
    )
    wait_until(lambda: ingest.counters["rejected"] == 5, 5, "rejects")
    assert {k: v for k, v in ingest.counters.items() if k.startswith("rejected.")} == {
        f"rejected.{Reason.NOT_JSON}": 1,
        f"rejected.{Reason.BAD_TOPIC}": 1,
        f"rejected.{Reason.SCHEMA}": 1,
        f"rejected.{Reason.UNKNOWN_DEVICE}": 1,
        f"rejected.{Reason.NOT_ALLOWED}": 1,
    }
    assert store.reject_counts() == {
        "not_json": 1,
        "bad_topic": 1,
        "schema": 1,
        "unknown_device": 1,
        "not_allowed": 1,
    }
    assert isinstance(ingest.transport, FakeTransport)
    wait_until(lambda: len(ingest.transport.acked) == 5 + 1, 5, "rejects (and +/state) acked")
    assert store.count_events() == 0


def test_ingest_commands_carry_response_topic_correlation_and_expiry(
    ingest: Ingest, broker: FakeBroker
) -> None:
    corr = ingest.send_command("field-01", "ping", {"n": 1})
    sent = broker.on(contract.cmd("field-01", "ping"))[-1]
    assert sent.corr == corr.encode() and sent.response_topic == contract.reply("field-01", "ping")
    version = ingest.set_desired("field-01", {"telemetry": {"interval_s": 5}})
    desired = broker.retained[contract.twin_desired("field-01")]
    assert contract.TwinDesired.model_validate_json(desired.payload).version == version


@pytest.fixture
def relay(broker: FakeBroker, store: Store, roster: Roster) -> Iterator[Relay]:
    sent: list[tuple[str, str, dict[str, Any]]] = []

    def send_command(dev: str, name: str, args: dict[str, Any]) -> str:
        sent.append((dev, name, args))
        return uuid.uuid4().hex

    audits: list[tuple[str, ...]] = []
    running = Relay(
        HubConfig(),
        CallBook(store),
        send_command,
        lambda *a: audits.append(a),
        roster=roster,
        transport=partial(FakeTransport, broker),
    )
    running.sent, running.audits = sent, audits  # type: ignore[attr-defined]
    running.start()
    yield running
    running.stop()


def call_state(name: str, **kw: Any) -> bytes:
    return contract.CallState(call=CALL, state=name, since=contract.utcnow(), **kw).dumps()


def test_relay_follows_a_kiosks_call_and_queues_it(relay: Relay, broker: FakeBroker) -> None:
    kiosk = Device(broker, "kiosk-01")
    kiosk.t.publish(contract.state("kiosk-01"), contract.StatePayload(online=True, bdseq=1).dumps())
    kiosk.t.publish(contract.call("kiosk-01"), call_state("ringing"), qos=1, retain=True)
    assert CALL in relay.calls and relay.kiosks["kiosk-01"].online
    queue = broker.on(contract.cmd("kiosk-01", "call-queue"))
    assert json.loads(queue[-1].payload)["args"] == {"call": CALL, "position": 1}
    assert relay.book.get(CALL) is not None
    assert relay.console("sato")["queue"][0]["call"] == CALL
    kiosk.t.publish(contract.call("kiosk-01"), call_state("ended", reason="cancelled"), qos=1)
    assert CALL not in relay.calls


def test_relay_refuses_a_connected_nobody_answered_and_other_roles(
    relay: Relay, broker: FakeBroker
) -> None:
    kiosk = Device(broker, "kiosk-01")
    camera = Device(broker, "field-01")
    kiosk.t.publish(contract.call("kiosk-01"), call_state("connected", staff="mallory"), qos=1)
    camera.t.publish(contract.call("field-01"), call_state("ringing"), qos=1)
    kiosk.t.publish(contract.view("kiosk-01", "face"), b"not a jpeg", meta="{}")
    assert relay.counters[f"rejected.{Reason.UNANSWERED}"] == 1
    assert relay.counters[f"rejected.{Reason.NOT_ALLOWED}"] == 1
    assert relay.counters[f"rejected.{Reason.SCHEMA}"] == 1
    assert ("kiosk-01", "call-end", {"call": CALL}) in relay.sent  # type: ignore[attr-defined]
    assert [a[1] for a in relay.audits] == ["counter.refused"]  # type: ignore[attr-defined]
    assert relay.calls == {}
