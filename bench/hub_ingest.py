"""Hub ingest throughput and latency.

Starts a local Mosquitto (fleet config, TLS) and the real hub as its own process
(`mimamori hub --no-web`, SQLite store), then publishes events for D simulated devices at
QoS 1 from a few publisher connections and measures:

* sustained events/s stored (first publish to last row committed),
* publish -> stored latency (event ``created`` vs the row's ``received``, both UTC on this
  machine), p50 / p95 / max.

Targets: >= 2,000 events/s on 2 cores; report p95.
Usage: python bench/hub_ingest.py [--devices 500] [--events 20000] [--publishers 4]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._fleet import fleet_and_broker, vm_hwm_mb  # noqa: E402
from mimamori.edge import contract  # noqa: E402
from tests.mqtt_probe import Identity, client  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--devices", type=int, default=500)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument(
        "--rate",
        type=float,
        default=0,
        help="total publish rate in events/s (0 = as fast as possible); latency is "
        "only meaningful below the ingest rate",
    )
    args = ap.parse_args()

    devices = [f"sim-{i:03d}" for i in range(args.devices)]
    print(f"issuing {len(devices)} simulated devices...", file=sys.stderr)
    fleet, broker = fleet_and_broker(tuple((d, "wildlife") for d in devices))
    hub_port = fleet.settings["broker"]["hub_port"]
    h = fleet.root / "hub"
    ident = Identity(str(h / "ca.crt"), str(h / "hub.crt"), str(h / "hub.key"))
    hub_log = fleet.root / "hub.log"
    hub = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mimamori.edge.cli",
            "hub",
            "--no-web",
            "--config",
            str(fleet.hub_config),
        ],
        stderr=hub_log.open("wb"),
    )
    db = sa.create_engine(f"sqlite:///{h / 'hub.db'}")

    def count() -> int:
        try:
            with db.connect() as c:
                return int(c.execute(sa.text("SELECT COUNT(*) FROM events")).scalar_one())
        except sa.exc.OperationalError:
            return -1

    deadline = time.monotonic() + 20
    while count() < 0 and time.monotonic() < deadline:  # tables created by the hub
        time.sleep(0.1)

    # publish only once the hub has subscribed (it announces itself on the retained hub state)
    ready = threading.Event()
    watcher = client(ident)
    watcher.on_message = lambda c, u, m: ready.set() if b'"online":true' in m.payload else None
    watcher.connect(broker.host, hub_port)
    watcher.subscribe(contract.HUB_STATE, qos=1)
    watcher.loop_start()
    if not ready.wait(30):
        print("the hub did not come online", file=sys.stderr)
        return 1
    watcher.loop_stop()
    watcher.disconnect()

    per = args.events // args.publishers

    def publish(k: int) -> None:
        c = client(ident)
        c.max_inflight_messages_set(200)
        c.connect(broker.host, hub_port)  # the hub identity speaks for the simulated devices
        c.loop_start()
        infos = []
        pace = args.publishers / args.rate if args.rate else 0.0
        start = time.perf_counter()
        for i in range(per):
            if pace:
                delay = start + i * pace - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            dev = devices[(k * per + i) % len(devices)]
            payload = contract.EventPayload(
                id=uuid.uuid4().hex,
                seq=i + 1,
                kind="device.notice",
                created=contract.utcnow(),
                data={"level": "info", "message": "bench"},
            ).dumps()
            infos.append(c.publish(contract.event(dev, "device.notice"), payload, qos=1))
        for info in infos:
            info.wait_for_publish(60)
        c.loop_stop()
        c.disconnect()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=publish, args=(k,)) for k in range(args.publishers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    publish_s = time.perf_counter() - t0
    total = per * args.publishers
    while count() < total and time.perf_counter() - t0 < 120:
        time.sleep(0.05)
    if count() < total:
        print(f"missing events; hub log: {hub_log}", file=sys.stderr)
    stored_s = time.perf_counter() - t0
    with db.connect() as c:
        rows = c.execute(sa.text("SELECT created, received FROM events")).all()
    rss = vm_hwm_mb(hub.pid)
    hub.terminate()
    hub.wait(20)
    broker.stop()

    def ts(v: str | datetime) -> datetime:
        d = datetime.fromisoformat(v) if isinstance(v, str) else v
        return d if d.tzinfo else d.replace(tzinfo=UTC)

    lat = sorted((ts(r) - ts(cr)).total_seconds() * 1000 for cr, r in rows)
    p95 = lat[int(0.95 * (len(lat) - 1))]
    print(f"{'figure':<40}{'value':>14}  target")
    print(f"{'simulated devices':<40}{args.devices:>14}")
    print(f"{'offered rate':<40}{(str(int(args.rate)) + '/s') if args.rate else 'max':>14}")
    print(f"{'events published (QoS 1)':<40}{total:>14}")
    print(f"{'events stored':<40}{len(rows):>14}")
    print(f"{'publish rate':<40}{total / publish_s:>12.0f}/s")
    print(f"{'sustained ingest into SQLite':<40}{total / stored_s:>12.0f}/s  >= 2000/s")
    print(f"{'publish -> stored latency p50':<40}{statistics.median(lat):>12.0f}ms")
    print(f"{'publish -> stored latency p95':<40}{p95:>12.0f}ms")
    print(f"{'publish -> stored latency max':<40}{lat[-1]:>12.0f}ms")
    print(f"{'hub process peak RSS':<40}{rss:>12.1f}MB")
    return 0 if len(rows) == total else 1


if __name__ == "__main__":
    raise SystemExit(main())
