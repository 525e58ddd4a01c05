"""Attacks through the broker with one stolen device certificate: joining the hub's shared
subscription, taking over client ids, publishing outside the device's role, growing the
broker's memory while the hub is away. Real Mosquitto with the generated config, real hub."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mimamori.edge import contract
from mimamori.hub.cli import Hub, build
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import device_identity, hub_identity, hub_port
from tests.mqtt_probe import Identity, wait_until

DEV = "field-01"
ATTACKER = "field-09"


def session(
    identity: Identity, port: int, client_id: str = "", clean: bool = True
) -> tuple[mqtt.Client, dict[str, list]]:
    """A raw paho session; ``seen`` records subacks, disconnects and messages."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=identity.ca_file, certfile=identity.cert_file, keyfile=identity.key_file)
    seen: dict[str, list] = {"suback": [], "disconnect": [], "message": []}
    c.on_subscribe = lambda cl, u, mid, rcs, p: seen["suback"].extend(rcs)
    c.on_disconnect = lambda cl, u, f, rc, p: seen["disconnect"].append(rc)
    c.on_message = lambda cl, u, m: seen["message"].append(m)
    c.reconnect_delay_set(30, 30)
    c.connect("127.0.0.1", port, clean_start=clean)
    c.loop_start()
    wait_until(c.is_connected, 5, f"session as {identity.cert_file}")
    return c, seen


def close(*clients: mqtt.Client) -> None:
    for c in clients:
        c.loop_stop()
        c.disconnect()


def notice(seq: int) -> bytes:
    return contract.EventPayload(
        id=uuid.uuid4().hex,
        seq=seq,
        kind="device.notice",
        created=contract.utcnow(),
        data={"level": "info", "message": f"n{seq}"},
    ).dumps()


def publish_all(c: mqtt.Client, topic: str, payloads: list[bytes]) -> None:
    for info in [c.publish(topic, p, qos=1) for p in payloads]:
        info.wait_for_publish(10)


@pytest.fixture
def devices(fleet: Fleet, broker: MosquittoProcess) -> Fleet:
    fleet.add_device(DEV, "wildlife")
    fleet.add_device("field-02", "wildlife")
    fleet.add_device(ATTACKER, "wildlife")
    fleet.add_device("bus-01", "ridership")
    fleet.add_device("kiosk-01", "kiosk")
    return fleet


def stored(hub: Hub, dev: str) -> int:
    return len(hub.store.events(dev, limit=100_000))


@pytest.mark.parametrize("group", ["hub", "x", "hub2"])
def test_device_cannot_join_a_shared_subscription_and_no_event_is_lost(
    devices: Fleet, broker: MosquittoProcess, hub: Hub, group: str
) -> None:
    attackers = [session(device_identity(devices, ATTACKER), broker.port) for _ in range(1)]
    c, seen = attackers[0]
    c.subscribe(
        [
            (f"$share/{group}/{contract.ROOT}/+/event/+", 1),
            (f"$share/{group}/{contract.ROOT}/{ATTACKER}/cmd/+", 1),
            (f"{contract.ROOT}/+/event/+", 1),
        ]
    )
    wait_until(lambda: len(seen["suback"]) == 3, 5, "suback")
    assert all(rc.is_failure for rc in seen["suback"]), seen["suback"]
    victim, _ = session(device_identity(devices, DEV), broker.port)
    publish_all(victim, contract.event(DEV, "device.notice"), [notice(i) for i in range(1, 21)])
    wait_until(lambda: stored(hub, DEV) == 20, 15, "all 20 events stored")
    assert seen["message"] == []
    close(victim, c)


def test_device_cannot_take_the_hubs_or_another_devices_client_id(
    devices: Fleet, broker: MosquittoProcess, hub: Hub
) -> None:
    victim, vseen = session(device_identity(devices, DEV), broker.port, client_id=DEV)
    connects = hub.ingest.counters["connects"]
    takeovers = [
        session(device_identity(devices, ATTACKER), broker.port, client_id=cid, clean=False)
        for cid in ("hub-ingest", "hub-ingest-counter", DEV)
    ]
    # on the devices' listener every session is named by its certificate: the last one of
    # the attacker's three replaced the attacker's own earlier ones, nobody else's
    time.sleep(1.0)
    assert hub.ingest.connected and hub.ingest.counters["connects"] == connects
    assert vseen["disconnect"] == [] and victim.is_connected()
    # the hub's listener does not open for a device certificate at all
    with pytest.raises(Exception):  # noqa: B017 - TLS refusal surfaces as ssl or OS error
        session(device_identity(devices, ATTACKER), hub_port(devices), client_id="hub-ingest")
    publish_all(victim, contract.event(DEV, "device.notice"), [notice(i) for i in range(1, 39)])
    wait_until(lambda: stored(hub, DEV) == 38, 15, "all 38 events stored")
    assert hub.ingest.counters["connects"] == connects
    close(victim, *(c for c, _ in takeovers))


def _incursion(seq: int, started: str = "2099-01-01T00:00:00Z") -> bytes:
    import base64

    return contract.EventPayload(
        id=uuid.uuid4().hex,
        seq=seq,
        kind="wildlife.incursion",
        prio=contract.Priority.ALARM,
        created=contract.utcnow(),
        data={
            "incursion": uuid.uuid4().hex,
            "started": started,
            "score": 0.99,
            "label": "macaque",
            "box": [0, 0, 10, 10],
            "frames": 3,
            "snapshot_jpeg": base64.b64encode(b"\xff\xd8\xff\xd9").decode(),
        },
    ).dumps()


def test_events_outside_the_devices_role_are_refused_by_broker_and_hub(
    devices: Fleet, broker: MosquittoProcess, hub: Hub
) -> None:
    bus, _ = session(device_identity(devices, "bus-01"), broker.port)
    kiosk, _ = session(device_identity(devices, "kiosk-01"), broker.port)
    camera, _ = session(device_identity(devices, ATTACKER), broker.port)
    # the broker: a bus may not raise a monkey alarm, a kiosk may not report stop visits,
    # a camera may not publish call state
    bus.publish(contract.event("bus-01", "wildlife.incursion"), _incursion(1), qos=1)
    kiosk.publish(contract.event("kiosk-01", "ridership.stop_visit"), b"{}", qos=1)
    camera.publish(contract.call(ATTACKER), b"{}", qos=1, retain=True)
    # the hub too, should a message get past the broker (here through the hub's account)
    admin, _ = session(hub_identity(devices), hub_port(devices))
    admin.publish(contract.event("bus-01", "wildlife.incursion"), _incursion(2), qos=1)
    admin.publish(
        contract.birth(ATTACKER),
        contract.BirthPayload(
            role="kiosk", bdseq=1, sw_version="x", config_version=0, boot_id="b"
        ).dumps(),
        qos=1,
    )
    admin.publish(contract.event("nobody-99", "device.notice"), notice(1), qos=1)
    wait_until(lambda: hub.ingest.counters["rejected.not_allowed"] == 2, 10, "hub refusals")
    wait_until(lambda: hub.ingest.counters["rejected.unknown_device"] == 1, 10, "unknown")
    assert hub.alerts.recent() == []
    assert stored(hub, "bus-01") == 0 and stored(hub, "kiosk-01") == 0
    close(bus, kiosk, camera, admin)


def test_bus_cannot_report_for_another_bus(
    devices: Fleet, broker: MosquittoProcess, hub: Hub
) -> None:
    devices.add_device("bus-02", "ridership")
    bus, _ = session(device_identity(devices, "bus-02"), broker.port)

    def visit(vehicle: str, seq: int) -> bytes:
        now = contract.utcnow()
        return contract.EventPayload(
            id=uuid.uuid4().hex,
            seq=seq,
            kind="ridership.stop_visit",
            created=now,
            data=contract.StopVisitData(
                visit=uuid.uuid4().hex,
                vehicle=vehicle,
                service_date=now.date(),
                arrival=now,
                departure=now,
                boardings=500,
                alightings=0,
                doors=[contract.DoorCount(door="front", boardings=500, alightings=0)],
            ).model_dump(mode="json"),
        ).dumps()

    publish_all(bus, contract.event("bus-02", "ridership.stop_visit"), [visit("bus-01", 1)])
    publish_all(bus, contract.event("bus-02", "ridership.stop_visit"), [visit("bus-02", 2)])
    wait_until(lambda: stored(hub, "bus-02") == 1, 10, "its own visit")
    assert hub.ingest.counters["rejected.not_allowed"] == 1
    assert hub.store.events("bus-02")[0]["data"]["vehicle"] == "bus-02"
    close(bus)


def _broker_rss_mb(broker: MosquittoProcess) -> float:
    assert broker.proc is not None
    for line in Path(f"/proc/{broker.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


@pytest.fixture
def hub_away(devices: Fleet, broker: MosquittoProcess) -> Iterator[Fleet]:
    """The hub's persistent session exists at the broker, the hub process is gone."""
    running = build(devices.hub_config).start(web=False)
    assert running.ingest.wait_connected(10)
    running.stop()
    yield devices


@pytest.mark.slow
def test_broker_memory_stays_bounded_while_the_hub_is_away(
    hub_away: Fleet, broker: MosquittoProcess
) -> None:
    fleet = hub_away
    before = _broker_rss_mb(broker)
    c, _ = session(device_identity(fleet, ATTACKER), broker.port)
    big = os.urandom(2 * 1024 * 1024 - 1024)  # under the packet cap, over every channel's
    refused = threading.Event()
    acks: list[bool] = []

    def on_publish(cl: mqtt.Client, u: object, mid: int, rc: object, p: object) -> None:
        acks.append(not getattr(rc, "is_failure", False))
        if getattr(rc, "is_failure", False):
            refused.set()

    c.on_publish = on_publish
    for _ in range(300):
        c.publish(contract.event(ATTACKER, "device.notice"), big, qos=1).wait_for_publish(10)
    for i in range(250):
        c.publish(
            contract.job_status(ATTACKER, f"j{i}"), big[: 1900 * 1024], qos=1, retain=True
        ).wait_for_publish(10)
    # small retained job states pass the size rule, but the contract retains no job state
    for i in range(50):
        c.publish(
            contract.job_status(ATTACKER, f"small{i}"), b"{}", qos=1, retain=True
        ).wait_for_publish(10)
    wait_until(lambda: len(acks) == 600, 20, "every publish answered")
    assert acks.count(False) == 600  # every oversized or wrongly retained message refused
    grew = _broker_rss_mb(broker) - before
    close(c)
    broker.stop()  # saves its persistence file
    persisted = _dir_mb(fleet.root / "broker" / "data")
    broker.start()
    late, lseen = session(device_identity(fleet, "field-02"), broker.port)
    late.subscribe(f"{contract.ROOT}/{ATTACKER}/jobs/+/status", 1)
    time.sleep(1.0)
    close(late)
    assert lseen["message"] == []  # nothing retained for a new subscriber
    print(f"broker RSS +{grew:.1f} MB, persistence {persisted:.2f} MB after the flood")
    assert grew < 30, f"broker grew {grew:.0f} MB"
    assert persisted < 5, f"persistence {persisted:.1f} MB"


def test_a_last_will_cannot_leave_retained_messages(
    devices: Fleet, broker: MosquittoProcess
) -> None:
    """A will is published by the broker on the device's behalf when its link drops: the
    guard judges it like any publish (here: retained where the contract retains nothing)."""
    ident = device_identity(devices, ATTACKER)
    for i in range(5):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=ident.ca_file, certfile=ident.cert_file, keyfile=ident.key_file)
        c.will_set(contract.job_status(ATTACKER, f"w{i}"), os.urandom(60_000), qos=1, retain=True)
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        wait_until(c.is_connected, 5, "attacker session")
        if c._sock is not None:
            c._sock.close()  # drop the link without DISCONNECT: the will fires
        c.loop_stop()
    wait_until(lambda: "retained on a channel" in broker.log_file.read_text(), 5, "refusal")
    admin, seen = session(hub_identity(devices), hub_port(devices))
    admin.subscribe(f"{contract.ROOT}/{ATTACKER}/#", 1)
    time.sleep(1.0)
    close(admin)
    assert [m.topic for m in seen["message"] if m.retain] == []


def test_a_device_over_its_byte_budget_is_refused_and_others_are_not(
    hub_away: Fleet, broker: MosquittoProcess
) -> None:
    from mimamori.provisioning.guard import BURST_BYTES

    fleet = hub_away
    c, _ = session(device_identity(fleet, ATTACKER), broker.port)
    acks: list[bool] = []
    c.on_publish = lambda cl, u, mid, rc, p: acks.append(not rc.is_failure)
    chunk = os.urandom(contract.device_limit("event") - 1024)
    n = BURST_BYTES // len(chunk) + 20
    for _ in range(n):
        c.publish(contract.event(ATTACKER, "device.notice"), chunk, qos=1).wait_for_publish(10)
    wait_until(lambda: len(acks) == n, 30, "every publish answered")
    assert acks.count(False) >= 15  # the burst is spent: refused until it refills
    assert acks.count(True) >= BURST_BYTES // len(chunk) - 1
    # another device is not affected
    other, _ = session(device_identity(fleet, DEV), broker.port)
    ok: list[bool] = []
    other.on_publish = lambda cl, u, mid, rc, p: ok.append(not rc.is_failure)
    props = Properties(PacketTypes.PUBLISH)
    other.publish(contract.event(DEV, "device.notice"), notice(1), qos=1, properties=props)
    wait_until(lambda: ok, 5, "the other device's publish answered")
    assert ok == [True]
    close(c, other)
