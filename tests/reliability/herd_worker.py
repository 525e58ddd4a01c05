"""One process of simulated devices for the thundering-herd test (paho's select() loop cannot
serve more than about 150 devices in one process; a real device has one link per process).

Usage: python -m tests.reliability.herd_worker CONFIG...
Prints {"connected": N} once every device is connected, then, when all have reconnected
after losing the broker (or after 120 s), {"reconnected_at": [unix times]}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from mimamori.edge.config import load_config
from mimamori.edge.service import Service


def main() -> int:
    services = []
    for path in sys.argv[1:]:
        cfg = load_config(Path(path))
        cfg.mqtt.reconnect_min_s = 1.0
        cfg.mqtt.reconnect_max_s = 30.0
        services.append(Service(cfg))
    for s in services:
        s.link.start()
    while not all(s.link.connected for s in services):
        time.sleep(0.05)
    print(json.dumps({"connected": len(services)}), flush=True)
    when: dict[int, float] = {}
    deadline = None
    while len(when) < len(services):
        if deadline is None and any(s.link.stats.disconnects for s in services):
            deadline = time.monotonic() + 120
        if deadline is not None and time.monotonic() > deadline:
            break
        for i, s in enumerate(services):
            if i not in when and s.link.stats.connects >= 2:
                when[i] = time.time()
        time.sleep(0.02)
    print(json.dumps({"reconnected_at": sorted(when.values())}), flush=True)
    for s in services:
        s.link.stop(timeout=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
