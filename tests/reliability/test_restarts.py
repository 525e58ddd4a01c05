"""Soak: random restarts of Mosquitto and of the hub while devices of all three roles record."""

from __future__ import annotations

import random
import sqlite3
import time

from hub.cli import Hub, build
from provisioning.fleet import Fleet
from provisioning.mosquitto import MosquittoProcess
from tests.reliability.conftest import RunningService, device_config, report, scale


def outbox_seqs(svc: RunningService) -> tuple[int, set[int]]:
    """The last seq the device ever recorded, and the seqs still queued in its outbox."""
    with sqlite3.connect(svc.service.outbox.path) as db:
        last = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return (last[0] if last else 0), {r[0] for r in db.execute("SELECT seq FROM outbox")}


def test_restarts_of_broker_and_hub_lose_nothing(
    fleet: Fleet, broker: MosquittoProcess, services: list[RunningService]
) -> None:
    n_dev = scale(12, 50)
    soak_s = scale(45, 600)
    rng = random.Random(5)
    roles = ["wildlife", "ridership", "kiosk"]
    for i in range(n_dev):
        cfg = device_config(fleet, f"dev-{i:02d}", roles[i % 3], sim={"event_interval_s": 1.0})
        services.append(RunningService(cfg))
    hub: Hub = build(fleet.hub_config).start(web=False)
    duplicates = 0
    restarts = {"broker": 0, "hub": 0}
    try:
        end = time.monotonic() + soak_s
        while time.monotonic() < end:
            time.sleep(rng.uniform(3, 8))
            if rng.random() < 0.5:
                broker.restart()
                restarts["broker"] += 1
            else:
                duplicates += hub.ingest.counters["duplicates"]
                hub.stop()
                time.sleep(rng.uniform(0.5, 3))
                hub = build(fleet.hub_config).start(web=False)
                restarts["hub"] += 1
        time.sleep(15)  # let the outboxes drain
        for s in services:
            s.stop()
        time.sleep(2)
        duplicates += hub.ingest.counters["duplicates"]
        recorded = lost = stored_total = 0
        for s in services:
            dev = s.service.cfg.device.id
            last, queued = outbox_seqs(s)
            at_hub = {e["seq"] for e in hub.store.events(dev, limit=1_000_000)}
            recorded += last
            stored_total += len(at_hub)
            lost += len(set(range(1, last + 1)) - at_hub - queued)
    finally:
        hub.stop()
    assert restarts["broker"] and restarts["hub"], restarts
    assert lost == 0, f"{lost} recorded events are neither at the hub nor queued"
    assert stored_total >= recorded * 0.95, "most events should have reached the hub"
    report(
        "broker and hub restarts",
        f"{restarts['broker']} Mosquitto and {restarts['hub']} hub restarts in {soak_s} s, "
        f"{n_dev} devices of 3 roles",
        sent=recorded,
        stored=stored_total,
        lost=lost,
        duplicates=duplicates,
        still_queued=recorded - stored_total,
    )
