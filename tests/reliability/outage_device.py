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

from mimamori.edge.config import load_config
from mimamori.edge.service import Service
from tests.reliability.conftest import record_hours, rss_mb


def main() -> int:
    cfg = load_config(Path(sys.argv[1]))
    hours = int(sys.argv[2])
    svc = Service(cfg)
    threading.Thread(target=svc.run, daemon=True).start()
    puts = record_hours(svc, hours, "out")
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
