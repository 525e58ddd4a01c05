"""10,000 generated MQTT messages at the real hub: nothing crashes it, nothing valid is lost,
nothing invalid is stored, every reject is counted by reason."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter

from mimamori.edge import contract
from mimamori.hub.cli import Hub
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import hub_identity, hub_port
from tests.mqtt_probe import client, wait_until
from tests.reliability.conftest import report, scale

DEVS = ["field-01", "bus-01", "kiosk-01"]


def valid_event(rng: random.Random, dev: str, seq: int) -> tuple[str, bytes]:
    ev = contract.EventPayload(
        id=uuid.UUID(int=rng.getrandbits(128)).hex,
        seq=seq,
        kind="device.notice",
        created=contract.utcnow(),
        data={"level": "info", "message": f"fuzz {seq}"},
    )
    return contract.event(dev, "device.notice"), ev.dumps()


def garbage(rng: random.Random, dev: str) -> tuple[str, bytes, dict | None]:
    """One hostile or broken message of a random sort; the dict is a 'meta' user property."""
    base = json.loads(valid_event(rng, dev, rng.randint(1, 10**6))[1])
    sort = rng.randrange(14)
    junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
    if sort == 0:
        return contract.event(dev, "device.notice"), junk, None
    if sort == 1:
        base["data"] = {"level": "shout"}
        return contract.event(dev, "device.notice"), json.dumps(base).encode(), None
    if sort == 2:
        base["kind"] = "wildlife.incursion"
        return contract.event(dev, "device.notice"), json.dumps(base).encode(), None
    if sort == 3:
        return (
            contract.event(dev, "no.such_kind"),
            json.dumps({**base, "kind": "no.such_kind"}).encode(),
            None,
        )
    if sort == 4:
        return contract.event(dev, "device.notice"), b"[" * 200_000, None  # nested too deeply
    if sort == 5:
        return contract.tele(dev), json.dumps({"v": 1, "ts": "yesterday"}).encode(), None
    if sort == 6:
        return contract.state(dev), json.dumps({"v": 1, "online": "maybe"}).encode(), None
    if sort == 7:
        return contract.reply(dev, "ping"), junk, None
    if sort == 8:
        return contract.call(dev), json.dumps({"v": 1, "state": "dancing"}).encode(), None
    if sort == 9:
        return contract.view(dev, "face"), junk, {"meta": "{}"}
    if sort == 10:
        return contract.view(dev, "face"), b"\xff\xd8" + junk, None
    if sort == 11:
        return (
            contract.signal(dev),
            json.dumps({"v": 1, "call": "x", "type": "offer"}).encode(),
            None,
        )
    if sort == 12:
        return f"{contract.ROOT}/{dev}/nonsense", junk, None
    return f"{contract.ROOT}/BAD ID/event/device.notice", json.dumps(base).encode(), None


def test_ten_thousand_generated_messages_at_the_hub(
    fleet: Fleet, broker: MosquittoProcess, hub: Hub
) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    n = scale(10_000, 10_000)
    rng = random.Random(2026)
    for dev, role in zip(DEVS, ("wildlife", "ridership", "kiosk"), strict=True):
        fleet.add_device(dev, role)  # in the roster: their messages are judged on content
    assert hub.relay.wait_connected(10)
    pub = client(hub_identity(fleet))
    pub.connect(broker.host, hub_port(fleet))
    pub.loop_start()
    sent_valid: Counter[str] = Counter()
    seqs = Counter[str]()
    try:
        for i in range(n):
            dev = rng.choice(DEVS)
            if rng.random() < 0.2:
                seqs[dev] += 1
                topic, body = valid_event(rng, dev, seqs[dev])
                props = None
                sent_valid[dev] += 1
            else:
                topic, body, user = garbage(rng, dev)
                props = None
                if user:
                    props = Properties(PacketTypes.PUBLISH)
                    props.UserProperty = list(user.items())
            info = pub.publish(topic, body, qos=1, properties=props)
            if i % 500 == 0:
                info.wait_for_publish(10)
        info.wait_for_publish(30)
    finally:
        pub.loop_stop()
        pub.disconnect()
    total_valid = sum(sent_valid.values())
    wait_until(lambda: hub.store.count_events() >= total_valid, 120, "valid events stored")
    wait_until(lambda: hub.ingest._queue.empty(), 60, "ingest caught up")
    assert hub.store.count_events() == total_valid, "garbage was stored, or valid events lost"
    for dev, count in sent_valid.items():
        assert len(hub.store.events(dev, limit=100_000)) == count
    assert hub.ingest.healthy and hub.relay._watchdog.is_alive(), "a hub thread died"
    rejects = {
        k.split(".", 1)[1]: v for k, v in hub.ingest.counters.items() if k.startswith("rejected.")
    }
    relay_rejects = {
        k.split(".", 1)[1]: v for k, v in hub.relay.counters.items() if k.startswith("rejected.")
    }
    assert sum(rejects.values()) > n * 0.3, rejects
    assert "internal" not in rejects, f"a message hit an unexpected error in ingest: {rejects}"
    assert relay_rejects, "the counter relay saw no bad call/view/signal message"
    report(
        "hub fuzz",
        f"{n} generated MQTT messages ({n - total_valid} malformed) at ingest and the relay",
        sent=n,
        stored=hub.store.count_events(),
        lost=0,
        duplicates=hub.ingest.counters["duplicates"],
        rejects_by_reason=rejects,
        relay_rejects_by_reason=relay_rejects,
    )
