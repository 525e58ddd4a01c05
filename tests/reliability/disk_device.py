"""A device process for the disk-full test, run inside a mount namespace whose data dir is
a small tmpfs. Records a day of mixed events with room to spare, fills the disk to FREE_KB,
records another day, then waits for the test.

Usage: python -m tests.reliability.disk_device CONFIG FREE_KB
Reads commands on stdin ("space", "drain"); answers each with one JSON line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

from mimamori.edge.config import load_config
from mimamori.edge.service import Service
from tests.reliability.conftest import record_hours, rss_mb


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def main() -> int:
    cfg = load_config(Path(sys.argv[1]))
    free_kb = int(sys.argv[2])
    errors = Errors()
    logging.getLogger().addHandler(errors)
    data = Path(cfg.device.data_dir)
    svc = Service(cfg)
    runner = threading.Thread(target=svc.run, daemon=True)
    runner.start()
    time.sleep(0.5)
    filler = data / "filler"

    def leave_free(kb: int) -> None:
        st = os.statvfs(data)
        extra = st.f_bavail * st.f_frsize - kb * 1024
        if extra > 0:
            with filler.open("ab") as f:
                f.write(b"\0" * extra)

    leave_free(12_000)
    before = record_hours(svc, 24, "a")  # a day offline with room to spare
    leave_free(free_kb)  # then something else fills the disk
    stored = record_hours(svc, 24, "b")
    out = svc.outbox
    print(
        json.dumps(
            {
                "before": before,
                "stored": stored,
                "held": out.held,
                "full_dropped": out.full_dropped,
                "disk_full": out.disk_full,
                "alive": runner.is_alive(),
                "errors": errors.lines,
            }
        ),
        flush=True,
    )
    sys.stdin.readline()  # "space"
    filler.unlink()
    after = record_hours(svc, 1, "space")
    print(
        json.dumps(
            {
                "stored": after,
                "held": out.held,
                "disk_full": out.disk_full,
                "alive": runner.is_alive(),
                "errors": errors.lines,
            }
        ),
        flush=True,
    )
    sys.stdin.readline()  # "drain": the broker is up
    t0 = time.monotonic()
    while out.depth() and time.monotonic() - t0 < 120:
        time.sleep(0.2)
    print(
        json.dumps({"drained": out.depth() == 0, "alive": runner.is_alive(), "rss_mb": rss_mb()}),
        flush=True,
    )
    svc.stop()
    runner.join(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
