"""Time from the first frame showing a monkey to the alert stored at the hub.

A real device service (monkey watch replaying photographs at 5 fps in real time) and the real
hub, over TLS to a local Mosquitto. Each cycle is an empty field, then monkeys for a few
frames; the figure per incursion is hub ``received`` minus the first positive frame's time.
Target: p95 < 3 s.

Usage: python bench/wildlife_alert.py [--incursions 10]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._fleet import fleet_and_broker  # noqa: E402
from mimamori.edge.config import load_config  # noqa: E402
from mimamori.edge.service import Service  # noqa: E402
from mimamori.hub.cli import build  # noqa: E402

MEDIA = Path(__file__).resolve().parent.parent.parent / "shared" / "media"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--incursions", type=int, default=10)
    args = ap.parse_args()
    field = Path(tempfile.mkdtemp(prefix="mimamori-field-"))
    empty = MEDIA / "camera-trap" / "sample-dzf-01.jpg"
    monkeys = sorted((MEDIA / "monkeys" / "images").glob("*.jpg"))
    sequence = []
    for i in range(args.incursions):
        sequence += [empty] * 6 + [
            monkeys[(2 * i) % len(monkeys)],
            monkeys[(2 * i + 1) % len(monkeys)],
        ] * 2
    for i, src in enumerate(sequence + [empty] * 6):
        shutil.copyfile(src, field / f"{i:04d}.jpg")

    fleet, broker = fleet_and_broker()
    fleet.add_device(
        "field-01",
        "wildlife",
        extra={
            "wildlife": {
                "source": str(field),
                "fps": 5,
                "start_frames": 2,
                "window_s": 2,
                "quiet_s": 0.6,
                "cooldown_s": 0.1,
                "motion": False,
            }
        },
    )
    hub = build(fleet.hub_config).start(web=False)
    hub.ingest.wait_connected(10)
    svc = Service(load_config(fleet.device_config("field-01")))
    t = threading.Thread(target=svc.run, kwargs={"tick_s": 0.01}, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 30 + len(sequence) / 5 * 2
        while time.monotonic() < deadline:
            if svc.app is not None and getattr(svc.app, "exhausted", False):
                break
            time.sleep(0.2)
        time.sleep(2)
        alarms = [
            e for e in hub.store.events("field-01", limit=1000) if e["kind"] == "wildlife.incursion"
        ]
    finally:
        svc.stop()
        t.join(10)
        hub.stop()
        broker.stop()
    from datetime import datetime

    lat = sorted(
        (e["received"] - datetime.fromisoformat(e["data"]["started"])).total_seconds()
        for e in alarms
    )
    if not lat:
        print("no alert arrived", file=sys.stderr)
        return 1
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
    print(f"{'figure':<44}{'value':>10}  target")
    print(f"{'incursions replayed / alerts stored':<44}{f'{args.incursions} / {len(lat)}':>10}")
    print(f"{'first monkey frame -> alert stored, p50':<44}{statistics.median(lat):>9.2f}s")
    print(f"{'first monkey frame -> alert stored, p95':<44}{p95:>9.2f}s  < 3 s")
    print(f"{'... max':<44}{lat[-1]:>9.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
