"""Hub ingest against a real Mosquitto and the real store."""

from __future__ import annotations

import json
import uuid

import paho.mqtt.client as mqtt
import pytest

from mimamori.edge import contract
from mimamori.hub.cli import Hub, build
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import device_identity, hub_identity, hub_port, stored_events
from tests.mqtt_probe import client, wait_until


@pytest.fixture
def dev(fleet: Fleet, broker: MosquittoProcess) -> mqtt.Client:
    """A raw MQTT session as device field-01 (its own certificate)."""
    fleet.add_device("field-01", "wildlife")
    c = client(device_identity(fleet, "field-01"))
    c.connect(broker.host, broker.port)
    c.loop_start()
    wait_until(c.is_connected, 5, "device session")
    yield c
    c.loop_stop()
    c.disconnect()


def event(seq: int, event_id: str | None = None, message: str = "hi") -> bytes:
    return contract.EventPayload(
        id=event_id or uuid.uuid4().hex,
        seq=seq,
        kind="device.notice",
        created=contract.utcnow(),
        data={"level": "info", "message": message},
    ).dumps()


def publish(c: mqtt.Client, topic: str, payload: bytes, retain: bool = False) -> None:
    c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)


EV = contract.event("field-01", "device.notice")


def malformed() -> list[tuple[str, bytes]]:
    good = json.loads(event(1))
    cases: list[tuple[str, bytes]] = []
    for i in range(40):
        cases.append((EV, b"{not json" + str(i).encode()))
        cases.append((EV, bytes([0xFF, 0xFE, i % 256]) * 20))  # binary junk
        wrong = dict(good, seq=f"s{i}")  # wrong type
        cases.append((EV, json.dumps(wrong).encode()))
        missing = {k: v for k, v in good.items() if k != ("id", "data", "created")[i % 3]}
        cases.append((EV, json.dumps(missing).encode()))
        if i % 2:
            cases.append((EV, json.dumps([good]).encode()))  # not an object
        else:
            cases.append(
                (contract.event("field-01", "wildlife.sighting"), json.dumps(good).encode())
            )
    cases[0] = (EV, b"{" + b" " * (contract.MAX_EVENT_BYTES + 10) + b"}")  # oversized
    cases[1] = (contract.state("field-01"), b'{"v": 1, "online": "yes"}')
    cases[2] = (contract.tele("field-01"), b'{"v": 1, "load1": -1}')
    cases[3] = (contract.birth("field-01"), b"null")
    return cases


def test_200_malformed_messages_are_counted_and_ingest_goes_on(
    fleet: Fleet, broker: MosquittoProcess, hub: Hub, dev: mqtt.Client
) -> None:
    cases = malformed()
    assert len(cases) == 200
    # what the broker already stops from a device (oversized, a kind outside the device's
    # rules) comes in through the hub account, so the hub's own checks are exercised too
    admin = client(hub_identity(fleet))
    admin.connect(broker.host, hub_port(fleet))
    admin.loop_start()
    wait_until(admin.is_connected, 5, "admin session")
    for topic, payload in cases:
        stopped = (
            len(payload) > contract.device_limit("event") or topic != EV and "/event/" in topic
        )
        publish(admin if stopped else dev, topic, payload)
    # wrong topic levels only the hub account may write (the ACL stops a device)
    for topic in (
        "mimamori/v1/field-01/event/a.b/extra",
        "mimamori/v1/Bad_Dev/tele",
        "mimamori/v1/field-01/twin/reported",
    ):
        publish(admin, topic, event(1))
    admin.loop_stop()
    admin.disconnect()
    good_id = uuid.uuid4().hex
    publish(dev, EV, event(7, good_id))
    wait_until(
        lambda: (
            ("field-01", good_id)
            in {(e["device"], e["event_id"]) for e in hub.store.events("field-01")}
        ),
        15,
        "the good event",
    )
    wait_until(lambda: hub.ingest.counters["rejected"] >= 202, 10, "all rejects counted")
    counts = hub.store.reject_counts()
    assert sum(counts.values()) == hub.ingest.counters["rejected"]
    assert {"not_json", "schema", "oversized", "not_object", "kind_mismatch"} <= set(counts)
    assert hub.store.count_events() == 1
    assert hub.ingest.connected
    recent = hub.store.recent_rejects(500)
    assert any("seq" in r["detail"] and r["topic"] == EV for r in recent)


def test_duplicate_event_ids_are_stored_once(hub: Hub, dev: mqtt.Client) -> None:
    same = uuid.uuid4().hex
    for _ in range(3):
        publish(dev, EV, event(1, same))
    publish(dev, EV, event(2))
    wait_until(lambda: hub.store.count_events() == 2, 10, "two events")
    wait_until(lambda: hub.ingest.counters["duplicates"] == 2, 10, "duplicates counted")


def test_presence_honours_bdseq(hub: Hub, dev: mqtt.Client) -> None:
    st = contract.state("field-01")

    def online() -> bool | None:
        d = hub.store.device("field-01")
        return None if d is None else bool(d["online"])

    publish(dev, st, contract.StatePayload(online=True, bdseq=5).dumps(), retain=True)
    wait_until(lambda: online() is True, 10, "online")
    publish(dev, st, contract.StatePayload(online=False, bdseq=4).dumps(), retain=True)
    wait_until(lambda: hub.ingest.counters["stale_wills"] == 1, 10, "stale will seen")
    assert online() is True  # an older session's will is ignored
    publish(dev, st, contract.StatePayload(online=False, bdseq=5).dumps(), retain=True)
    wait_until(lambda: online() is False, 10, "offline")
    publish(dev, st, contract.StatePayload(online=True, bdseq=0).dumps(), retain=True)
    wait_until(lambda: online() is True, 10, "a re-imaged device (bdseq 0) is back online")


def test_events_published_while_the_hub_is_down_are_stored_when_it_returns(
    fleet: Fleet, hub: Hub, dev: mqtt.Client
) -> None:
    publish(dev, EV, event(1))
    wait_until(lambda: hub.store.count_events() == 1, 10, "first event")
    hub.stop()
    for seq in range(2, 102):
        publish(dev, EV, event(seq))  # the broker queues them for the hub's session
    again = build(fleet.hub_config).start(web=False)
    try:
        wait_until(lambda: again.store.count_events() == 101, 15, "queued events")
        assert [s for _, s in stored_events(again.store, "field-01")] == list(range(1, 102))
    finally:
        again.stop()
