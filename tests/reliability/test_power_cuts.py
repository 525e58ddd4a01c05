"""Power cuts: the device process is SIGKILLed at random moments while it records and drains."""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

from mimamori.hub.cli import Hub
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import add_device, sqlite_integrity_ok, stored_events
from tests.edge.test_device_process import DeviceProcess
from tests.mqtt_probe import wait_until
from tests.reliability.conftest import report, rss_mb, scale


def online(hub: Hub, dev: str) -> bool:
    d = hub.store.device(dev)
    return bool(d and d["online"])


def test_power_cuts_keep_the_outbox_sound_and_lose_no_recorded_event(
    fleet: Fleet, broker: MosquittoProcess, hub: Hub
) -> None:
    cuts = scale(15, 200)
    rng = random.Random(11)
    cfg = add_device(fleet, "field-01", sim={"event_interval_s": 0.1})
    outbox = Path(fleet.root / "devices" / "field-01" / "data" / "outbox.sqlite")
    proc = DeviceProcess(cfg)
    to_online: list[float] = []
    peak = 0.0
    try:
        for _ in range(cuts):
            started = time.monotonic()
            proc.start()
            wait_until(lambda: online(hub, "field-01"), 15, "device online after a power cut")
            to_online.append(time.monotonic() - started)
            time.sleep(rng.uniform(0.05, 1.5))  # recording at 10 events/s and draining
            assert proc.proc is not None
            peak = max(peak, rss_mb(proc.proc.pid))
            proc.kill()  # SIGKILL: no clean shutdown, as when the power goes
            assert sqlite_integrity_ok(outbox), "outbox damaged by a power cut"
            wait_until(lambda: not online(hub, "field-01"), 10, "offline after the cut")
        # power back for good: everything recorded reaches the hub
        proc.start()
        wait_until(lambda: online(hub, "field-01"), 15, "online")
        time.sleep(1.0)
        proc.kill()
        proc.start()
        wait_until(lambda: online(hub, "field-01"), 15, "online")
        import sqlite3

        def outbox_depth() -> int:
            with sqlite3.connect(outbox) as db:
                return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

        wait_until(lambda: outbox_depth() == 0, 30, "outbox drained")
    finally:
        proc.kill()
    stored = stored_events(hub.store, "field-01")
    seqs = sorted(s for _, s in stored)
    assert len(seqs) == len(set(seqs)), "an event stored twice"
    missing = sorted(set(range(1, seqs[-1] + 1)) - set(seqs))
    assert missing == [], f"recorded events lost: seq {missing[:20]}"
    assert max(to_online) < 10, f"restart to online took {max(to_online):.1f} s"
    report(
        "power cuts",
        f"{cuts} × SIGKILL of the device process while recording and draining",
        sent=seqs[-1],
        stored=len(seqs),
        lost=len(missing),
        duplicates=hub.ingest.counters["duplicates"],
        integrity_checks_passed=cuts,
        restart_to_online_p50_s=round(statistics.median(to_online), 2),
        worst_latency_s=round(max(to_online), 2),
        peak_rss_mb=round(peak, 1),
    )
