"""A town broker bridged to a prefecture broker: two real Mosquittos with provisioning's config."""

from __future__ import annotations

import base64
import getpass
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mimamori.edge import contract
from mimamori.edge.cli import main
from mimamori.provisioning.bridge import PREFIX, Prefecture, render_bridge, topic_lines
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import add_device, device_identity, free_port
from tests.mqtt_probe import Identity, client, wait_until

TINY_JPEG = base64.b64encode(b"\xff\xd8\xff\xd9").decode()


def test_only_alarms_and_ridership_summaries_are_bridged() -> None:
    assert set(contract.BRIDGED_KINDS) == {
        "wildlife.incursion",
        "wildlife.incursion_end",
        "ridership.stop_visit",
    }
    filters = contract.bridged_filters()
    assert filters == [f"+/event/{k}" for k in contract.BRIDGED_KINDS]
    for f in filters:
        t = contract.parse_topic(f"{contract.ROOT}/{f.replace('+', 'dev-1')}")
        assert t.row.name == "event"


def test_no_kiosk_channel_can_be_bridged() -> None:
    kiosk_only = {c.channel for c in contract.CHANNELS if c.publishers == {"kiosk"}}
    assert kiosk_only == {"call", "view", "still", "signal"}
    for kind in contract.BRIDGED_KINDS:
        assert contract.role_may_publish("wildlife", "event", kind) or contract.role_may_publish(
            "ridership", "event", kind
        )
        assert not contract.role_may_publish("kiosk", "event", kind)
    for line in topic_lines("sakae"):
        pattern = line.split()[1]
        assert pattern.split("/")[1] == "event"
        assert not set(pattern.split("/")) & kiosk_only


def test_bridge_config_lines(tmp_path: Path) -> None:
    text = render_bridge("sakae", "pref.example.jp", 8883, tmp_path)
    lines = text.splitlines()
    assert "address pref.example.jp:8883" in lines
    assert "cleansession false" in lines
    assert "bridge_protocol_version mqttv311" in lines
    assert f"bridge_certfile {tmp_path.resolve() / 'town.crt'}" in lines
    topics = [ln for ln in lines if ln.startswith("topic ")]
    assert topics == [
        f"topic +/event/{k} out 1 mimamori/v1/ {PREFIX}/sakae/mimamori/v1/"
        for k in contract.BRIDGED_KINDS
    ]
    with pytest.raises(ValueError, match="town name"):
        topic_lines("Sakae/#")


@dataclass
class PrefectureReader:
    """A persistent-session subscriber at the prefecture; counts every delivery."""

    port: int
    identity: Identity
    received: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> PrefectureReader:
        c = self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="prefecture-reader", protocol=mqtt.MQTTv5
        )
        c.tls_set(self.identity.ca_file, self.identity.cert_file, self.identity.key_file)
        c.reconnect_delay_set(0.05, 0.5)
        c.on_message = self._on_message
        subscribed = threading.Event()
        c.on_connect = lambda cl, *a: cl.subscribe(f"{PREFIX}/#", qos=1)
        c.on_subscribe = lambda *a: subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        c.connect("127.0.0.1", self.port, clean_start=False, properties=props)
        c.loop_start()
        assert subscribed.wait(5), "reader could not subscribe at the prefecture"
        return self

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.received.append((msg.topic, json.loads(msg.payload)))

    def ids(self) -> list[str]:
        with self.lock:
            return [str(p.get("id")) for _, p in self.received]

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _event(kind: str, seq: int, data: dict[str, object]) -> bytes:
    now = datetime.now(UTC)
    return contract.EventPayload(
        id=uuid.uuid4().hex, seq=seq, kind=kind, created=now, data=data
    ).dumps()


def _alarm(seq: int) -> tuple[str, bytes]:
    now = datetime.now(UTC)
    if seq % 2:
        data: dict[str, object] = {
            "incursion": uuid.uuid4().hex,
            "started": now.isoformat(),
            "score": 0.9,
            "label": "monkey",
            "box": [1, 2, 3, 4],
            "frames": 3,
            "snapshot_jpeg": TINY_JPEG,
        }
        return "wildlife.incursion", _event("wildlife.incursion", seq, data)
    data = {
        "incursion": uuid.uuid4().hex,
        "started": now.isoformat(),
        "ended": now.isoformat(),
        "frames": 3,
        "max_score": 0.9,
    }
    return "wildlife.incursion_end", _event("wildlife.incursion_end", seq, data)


@dataclass
class Towns:
    fleet: Fleet
    town: MosquittoProcess
    prefecture: MosquittoProcess
    reader: PrefectureReader


@pytest.fixture
def bridged(fleet: Fleet, tmp_path: Path) -> Iterator[Towns]:
    add_device(fleet, "field-01", "wildlife")
    add_device(fleet, "desk-01", "kiosk")
    port = free_port()
    pref_dir = tmp_path / "prefecture"
    user = "root" if os.geteuid() == 0 else getpass.getuser()
    Prefecture.open_or_create(pref_dir, "127.0.0.1", port, user=user)
    args = ["provision", "bridge", "--fleet", str(fleet.root), "--town", "sakae"]
    args += ["--prefecture", str(pref_dir), "--prefecture-host", "127.0.0.1"]
    assert main([*args, "--prefecture-port", str(port)]) == 0
    pref = Prefecture(pref_dir.resolve())
    pref.add_reader("reader", tmp_path / "reader")
    reader_id = Identity(
        *(str(tmp_path / "reader" / n) for n in ("ca.crt", "reader.crt", "reader.key"))
    )
    prefecture = MosquittoProcess(pref.conf, port).start()
    town = fleet.broker_process().start()
    reader = PrefectureReader(port, reader_id).start()
    yield Towns(fleet, town, prefecture, reader)
    reader.stop()
    town.kill()
    prefecture.kill()


def _publisher(fleet: Fleet, broker: MosquittoProcess, name: str) -> mqtt.Client:
    c = client(device_identity(fleet, name))
    c.connect(broker.host, broker.port)
    c.loop_start()
    wait_until(c.is_connected, 5, f"{name} connected to the town broker")
    return c


def test_alarms_survive_a_cut_bridge_exactly_once_and_kiosk_channels_stay_home(
    bridged: Towns,
) -> None:
    cam = _publisher(bridged.fleet, bridged.town, "field-01")
    desk = _publisher(bridged.fleet, bridged.town, "desk-01")
    sent: list[str] = []

    def publish_alarms(first: int, n: int) -> None:
        for seq in range(first, first + n):
            kind, payload = _alarm(seq)
            cam.publish(contract.event("field-01", kind), payload, qos=1).wait_for_publish(5)
            sent.append(json.loads(payload)["id"])

    def publish_kiosk() -> None:
        """Every kiosk channel and the kiosk's own event kind (the town's hub reads them)."""
        doc = json.dumps({"v": 1, "ts": datetime.now(UTC).isoformat()}).encode()
        jpeg = b"\xff\xd8\xff\xd9"
        for topic, payload, retain in (
            (contract.call("desk-01"), doc, True),
            (contract.signal("desk-01"), doc, False),
            (contract.view("desk-01", "face"), jpeg, False),
            (contract.still("desk-01"), jpeg, False),
            (contract.event("desk-01", "kiosk.call"), _event("kiosk.call", 1, {}), False),
        ):
            desk.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    try:
        publish_kiosk()
        publish_alarms(1, 5)
        wait_until(lambda: set(bridged.reader.ids()) >= set(sent), 15, "live alarms bridged")

        bridged.prefecture.stop()  # the link to the prefecture is cut
        publish_kiosk()
        publish_alarms(6, 20)
        time.sleep(0.5)
        bridged.prefecture.start()
        wait_until(lambda: set(bridged.reader.ids()) >= set(sent), 30, "queued alarms bridged")
        time.sleep(1.0)  # room for a duplicate to show up
    finally:
        cam.loop_stop()
        desk.loop_stop()

    ids = bridged.reader.ids()
    # QoS 1 over the bridge is at-least-once; the event id makes it exactly once
    assert set(ids) == set(sent) and len(set(sent)) == 25
    topics = {t for t, _ in bridged.reader.received}
    prefix = f"{PREFIX}/sakae/{contract.ROOT}/field-01/event/"
    assert topics == {prefix + "wildlife.incursion", prefix + "wildlife.incursion_end"}
