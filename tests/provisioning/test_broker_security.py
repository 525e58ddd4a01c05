"""The generated broker config, enforced by a real Mosquitto."""

from __future__ import annotations

from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from mimamori.edge import contract
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from mimamori.provisioning.pki import Authority
from tests.conftest import can_connect, device_identity, hub_identity, hub_port
from tests.mqtt_probe import Identity, Probe, client, wait_until


@pytest.fixture
def two_devices(fleet: Fleet) -> Fleet:
    fleet.add_device("dev-a", "wildlife")
    fleet.add_device("dev-b", "ridership")
    return fleet


def test_device_with_its_certificate_connects(two_devices: Fleet, broker: MosquittoProcess) -> None:
    assert can_connect(broker, device_identity(two_devices, "dev-a"))
    assert can_connect(broker, hub_identity(two_devices), hub_port(two_devices))


def _session_opens(c: mqtt.Client, broker: MosquittoProcess) -> bool:
    try:
        c.connect(broker.host, broker.port)
    except OSError:
        return False
    c.loop_start()
    try:
        return bool(wait_until(c.is_connected, 2, "connection"))
    except AssertionError:
        return False
    finally:
        c.loop_stop()


def test_no_certificate_is_refused(two_devices: Fleet, broker: MosquittoProcess) -> None:
    tls_only = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    tls_only.tls_set(ca_certs=str(two_devices.root / "ca" / "ca.crt"))
    assert not _session_opens(tls_only, broker)
    plain = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    plain.username_pw_set("dev-a")
    assert not _session_opens(plain, broker)


def test_certificate_of_another_fleet_is_refused(
    two_devices: Fleet, broker: MosquittoProcess, tmp_path: Path
) -> None:
    other = Authority.create(tmp_path / "other-ca")
    other.issue("dev-a", tmp_path / "a.key", tmp_path / "a.crt")
    forged = Identity(
        str(two_devices.root / "ca" / "ca.crt"), str(tmp_path / "a.crt"), str(tmp_path / "a.key")
    )
    assert not can_connect(broker, forged)


def test_revoked_device_is_disconnected_and_refused_others_stay(
    two_devices: Fleet, broker: MosquittoProcess, hub_probe: Probe
) -> None:
    sessions = {}
    dropped: list[str] = []
    for name in ("dev-a", "dev-b"):
        c = sessions[name] = client(device_identity(two_devices, name))
        c.reconnect_delay_set(60, 60)  # a revoked device's retry must not race the check
        c.on_disconnect = lambda *a, name=name: dropped.append(name)  # type: ignore[misc]
        c.connect(broker.host, broker.port)
        c.loop_start()
        wait_until(c.is_connected, 5, f"{name} session")
    two_devices.revoke("dev-a")  # tells the running broker: the live session is dropped
    wait_until(lambda: "dev-a" in dropped, 5, "revoked session dropped")
    broker.reload()  # the CRL, for the next handshake
    wait_until(lambda: not can_connect(broker, device_identity(two_devices, "dev-a")), 5, "refusal")
    b = sessions["dev-b"]
    assert dropped == ["dev-a"]  # the revocation did not drop another device's session
    b.publish(contract.tele("dev-b"), b"{}", qos=1).wait_for_publish(5)
    wait_until(lambda: hub_probe.on("dev-b/tele"), 5, "dev-b still publishes")
    assert hub_probe.on("dev-a/tele") == []
    sessions["dev-a"].loop_stop()
    assert two_devices.inventory()["dev-a"]["revoked"]
    b.loop_stop()
    b.disconnect()


def _published_by(identity: Identity, broker: MosquittoProcess, topic: str) -> None:
    c = client(identity)
    c.connect(broker.host, broker.port)
    c.loop_start()
    wait_until(c.is_connected, 5, "publisher session")
    c.publish(topic, b"{}", qos=1).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


def test_device_writes_only_its_own_tree(
    two_devices: Fleet, broker: MosquittoProcess, hub_probe: Probe
) -> None:
    a = device_identity(two_devices, "dev-a")
    forbidden = [
        contract.event("dev-b", "device.notice"),  # another device's tree
        contract.state("dev-b"),
        contract.twin_desired("dev-a"),  # its own desired config is the hub's to write
        contract.cmd("dev-a", "ping"),
        contract.job("dev-a", "j1"),
        contract.HUB_STATE,
    ]
    for topic in forbidden:
        _published_by(a, broker, topic)
    allowed = contract.event("dev-a", "device.notice")
    _published_by(a, broker, allowed)
    wait_until(lambda: hub_probe.on(allowed), 5, "the allowed publish")
    got = {m.topic for m in hub_probe.messages} - {contract.HUB_STATE}
    assert got == {allowed}
    assert [m.payload for m in hub_probe.on(contract.HUB_STATE)] != [b"{}"]


def test_device_cannot_read_another_devices_commands(
    two_devices: Fleet, broker: MosquittoProcess, hub_probe: Probe
) -> None:
    a = Probe(broker.host, broker.port, device_identity(two_devices, "dev-a"))
    a.start(subscribe="mimamori/v1/+/cmd/+", hub_online=None)
    own = Probe(broker.host, broker.port, device_identity(two_devices, "dev-b"))
    own.start(subscribe=contract.cmd("dev-b", "ping").rsplit("/", 1)[0] + "/+", hub_online=None)
    try:
        hub_probe.command("dev-b", "ping")
        hub_probe.command("dev-a", "ping")
        wait_until(lambda: own.on("dev-b/cmd/ping"), 5, "dev-b gets its command")
        assert a.on("dev-b/cmd/ping") == []  # the wildcard subscription itself is refused
    finally:
        a.stop()
        own.stop()
