"""Outbox drain rate and device memory.

Queues N events in a device's outbox while it is offline, starts the real device process
(`mimamori device run`) against a local Mosquitto with a hub-side subscriber, and measures
how fast the outbox empties (rows are deleted only after PUBACK) and the process's peak RSS.

Targets: >= 1,000 events/s drained; peak RSS < 80 MB without a model loaded.
Usage: python bench/outbox_drain.py [--events 10000]
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._fleet import fleet_and_broker, vm_hwm_mb  # noqa: E402
from mimamori.edge import contract  # noqa: E402
from mimamori.edge.config import load_config  # noqa: E402
from mimamori.edge.outbox import Outbox  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--inflight", type=int, default=100)
    args = ap.parse_args()

    fleet, broker = fleet_and_broker((("field-01", "wildlife"),))
    cfg_path = fleet.device_config("field-01")
    cfg_path.write_text(cfg_path.read_text() + f"\n[outbox]\ninflight = {args.inflight}\n")
    cfg = load_config(cfg_path)
    box = Outbox(Path(cfg.device.data_dir) / "outbox.sqlite")
    t0 = time.perf_counter()
    for i in range(args.events):
        box.put("device.notice", {"level": "info", "message": f"queued event {i}"}, offline=True)
    put_s = time.perf_counter() - t0
    box.close()

    received = 0
    lock = threading.Lock()

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal received
        with lock:
            received += 1

    hub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    h = fleet.root / "hub"
    hub.tls_set(ca_certs=str(h / "ca.crt"), certfile=str(h / "hub.crt"), keyfile=str(h / "hub.key"))
    hub.on_message = on_message
    hub.connect(broker.host, fleet.settings["broker"]["hub_port"])
    hub.subscribe("mimamori/v1/+/event/+", qos=1)
    hub.loop_start()
    hub.publish(contract.HUB_STATE, contract.HubState(online=True).dumps(), qos=1, retain=True)

    proc = subprocess.Popen(
        [sys.executable, "-m", "mimamori.edge.cli", "device", "run", str(cfg_path)],
        stderr=subprocess.DEVNULL,
    )
    db = sqlite3.connect(Path(cfg.device.data_dir) / "outbox.sqlite")
    try:
        started = None
        while True:
            depth = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            if started is None and depth < args.events:
                started = time.perf_counter()
            if depth == 0:
                break
            time.sleep(0.01)
        assert started is not None
        drain_s = time.perf_counter() - started
        rss = vm_hwm_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
        hub.loop_stop()
        broker.stop()

    print(f"{'figure':<36}{'value':>12}  target")
    print(f"{'events queued':<36}{args.events:>12}")
    print(f"{'enqueue rate (synchronous=FULL)':<36}{args.events / put_s:>10.0f}/s")
    print(f"{'drain rate (PUBACK then delete)':<36}{args.events / drain_s:>10.0f}/s  >= 1000/s")
    print(f"{'delivered to hub subscriber':<36}{received:>12}")
    print(f"{'device peak RSS':<36}{rss:>10.1f}MB  < 80 MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
