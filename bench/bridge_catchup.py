"""Catch-up of a town's bridge to the prefecture after a cut.

Starts a town broker (the fleet's generated config with `provision bridge`'s bridge) and a
prefecture broker (its generated config), a persistent subscriber at the prefecture, stops
the prefecture broker, publishes N alarms (`wildlife.incursion_end`) from a device on the town
broker, starts the prefecture broker again and measures how long until all N have arrived
(each counted once by its event id), and how many came twice (QoS 1 is at-least-once).

Usage: python bench/bridge_catchup.py [--alarms 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._fleet import fleet_and_broker, free_port  # noqa: E402
from mimamori.edge import contract  # noqa: E402
from mimamori.provisioning.bridge import PREFIX, Prefecture, bridge_town  # noqa: E402
from mimamori.provisioning.mosquitto import MosquittoProcess  # noqa: E402


def _client(folder: Path, stem: str, client_id: str = "") -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.tls_set(str(folder / "ca.crt"), str(folder / f"{stem}.crt"), str(folder / f"{stem}.key"))
    c.reconnect_delay_set(0.05, 0.5)
    return c


def _alarm(seq: int) -> bytes:
    now = datetime.now(UTC)
    data = {
        "incursion": uuid.uuid4().hex,
        "started": now.isoformat(),
        "ended": now.isoformat(),
        "frames": 3,
        "max_score": 0.9,
    }
    kind = "wildlife.incursion_end"
    return contract.EventPayload(
        id=uuid.uuid4().hex, seq=seq, kind=kind, created=now, data=data
    ).dumps()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--alarms", type=int, default=1000, help="alarms queued during the cut")
    args = ap.parse_args()

    fleet, town = fleet_and_broker((("field-01", "wildlife"),))
    port = free_port()
    user = "root" if os.geteuid() == 0 else None
    pref = Prefecture.open_or_create(
        Path(tempfile.mkdtemp(prefix="mimamori-pref-")), "127.0.0.1", port, user=user
    )
    bridge_town(fleet.broker_conf.parent, pref, "bench", "127.0.0.1", port)
    pref.add_reader("reader", pref.root / "reader")
    town.restart()  # reads the bridge config
    prefecture = MosquittoProcess(pref.conf, port).start()

    ids: list[str] = []
    lock = threading.Lock()

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with lock:
            ids.append(json.loads(msg.payload)["id"])

    reader = _client(pref.root / "reader", "reader", "bench-reader")
    reader.on_message = on_message
    reader.on_connect = lambda c, *a: c.subscribe(f"{PREFIX}/#", qos=1)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    reader.connect("127.0.0.1", port, clean_start=False, properties=props)
    reader.loop_start()
    cam = _client(fleet.root / "devices" / "field-01", "device")
    cam.connect(town.host, town.port)
    cam.loop_start()
    try:
        topic = contract.event("field-01", "wildlife.incursion_end")
        cam.publish(topic, _alarm(1), qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 15
        while not ids and time.monotonic() < deadline:  # the bridge is up
            time.sleep(0.02)
        if not ids:
            print("the bridge did not connect", file=sys.stderr)
            return 1
        prefecture.stop()  # the cut
        sent = set()
        for seq in range(2, args.alarms + 2):
            payload = _alarm(seq)
            cam.publish(topic, payload, qos=1).wait_for_publish(5)
            sent.add(json.loads(payload)["id"])
        started = time.monotonic()
        prefecture.start()
        while time.monotonic() - started < 120:
            with lock:
                if sent <= set(ids):
                    break
            time.sleep(0.01)
        took = time.monotonic() - started
        with lock:
            got = [i for i in ids if i in sent]
        missing = len(sent - set(got))
        print(f"alarms queued during the cut: {args.alarms}")
        print(f"catch-up after the prefecture broker restarts: {took:.2f} s")
        print(f"  {args.alarms / took:.0f} alarms/s, the broker's start and the bridge's reconnect")
        print("  (restart_timeout backoff) included")
        print(f"arrived twice: {len(got) - len(set(got))}; missing: {missing}")
        return 0 if missing == 0 else 1
    finally:
        cam.loop_stop()
        reader.loop_stop()
        town.kill()
        prefecture.kill()


if __name__ == "__main__":
    sys.exit(main())
