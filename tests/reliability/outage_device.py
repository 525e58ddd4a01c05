"""A device process for the long-outage test: records 72 h worth of events (time compressed)
while the broker is unreachable, then drains when it returns, and reports what it saw.

Usage: python -m tests.reliability.outage_device CONFIG HOURS
Prints one JSON line when filled ({"filled": ...}) and one when drained ({"drained": ...}).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from edge.config import load_config
from edge.contract import Priority
from edge.service import Service
from tests.reliability.conftest import rss_mb


def main() -> int:
    cfg = load_config(Path(sys.argv[1]))
    hours = int(sys.argv[2])
    svc = Service(cfg)
    threading.Thread(target=svc.run, daemon=True).start()
    puts = {"LOW": 0, "NORMAL": 0, "ALARM": 0}
    # per simulated hour: one incursion alarm, a notice a minute, a low-priority status
    # every 10 seconds
    for h in range(hours):
        for s in range(0, 3600, 10):
            prio = Priority.LOW
            if s == 1800:
                prio = Priority.ALARM
            elif s % 60 == 0:
                prio = Priority.NORMAL
            svc.emit(
                "device.notice",
                {
                    "level": "warning" if prio == Priority.ALARM else "info",
                    "message": f"h{h} s{s} {prio.name}",
                },
                prio,
            )
            puts[prio.name] += 1
    print(
        json.dumps(
            {
                "filled": puts,
                "outbox_bytes": svc.outbox.bytes,
                "outbox_rows": svc.outbox.depth(),
                "dropped": svc.outbox.dropped(),
                "rss_mb": rss_mb(),
            }
        ),
        flush=True,
    )
    sys.stdin.readline()  # the broker is back
    t0 = time.monotonic()
    while svc.outbox.depth() > 0 and time.monotonic() - t0 < 300:
        time.sleep(0.2)
    print(
        json.dumps(
            {
                "drained": svc.outbox.depth() == 0,
                "drain_s": round(time.monotonic() - t0, 1),
                "disconnects": svc.link.stats.disconnects,
                "connects": svc.link.stats.connects,
                "rss_mb": rss_mb(),
            }
        ),
        flush=True,
    )
    svc.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
