"""1,000 events (200 in CI) over a rural link: 800 ± 400 ms delay, 64 kbit/s, stalls and cut sessions."""

from __future__ import annotations

import time

from mimamori.edge.contract import Priority
from mimamori.hub.cli import Hub
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import stored_events
from tests.mqtt_probe import wait_until
from tests.reliability.badlink import BadLink
from tests.reliability.conftest import RunningService, device_config, report, scale


def test_events_cross_a_bad_rural_link_exactly_once_and_in_order(
    fleet: Fleet, broker: MosquittoProcess, hub: Hub, services: list[RunningService]
) -> None:
    n = scale(200, 1000)
    link = BadLink(
        (broker.host, broker.port),
        delay_s=0.8,
        jitter_s=0.4,
        kbit_s=64,
        cut_every_s=30,
        stall_every_s=15,
        stall_s=(2.0, 5.0),
    ).start()
    try:
        cfg = device_config(fleet, "field-01", port=link.port)
        cfg.mqtt.keepalive_s = 20  # rural setting: a stall must not look like a dead device
        cfg.mqtt.reconnect_max_s = 5
        running = RunningService(cfg)
        services.append(running)
        svc = running.service
        wait_until(lambda: svc.link.hub_online, 60, "device online through the bad link")
        start = time.monotonic()
        ids = [
            svc.emit("device.notice", {"level": "info", "message": f"e{i}"}, Priority.NORMAL).id
            for i in range(n)
        ]
        wait_until(lambda: hub.store.count_events() >= n, scale(240, 600), f"{n} events stored")
        drained = time.monotonic() - start
        stored = stored_events(hub.store, "field-01")
        assert len(stored) == n, "exactly once"
        assert {e for e, _ in stored} == set(ids)
        seqs = [s for _, s in stored]
        assert seqs == sorted(seqs), "in order"
        wait_until(lambda: svc.outbox.depth() == 0, 60, "outbox empty")
    finally:
        link.stop()
    report(
        "rural link",
        f"{link.delay_s * 1000:.0f} ± {link.jitter_s * 1000:.0f} ms, {link.kbit_s:.0f} kbit/s, "
        f"{link.stats.stalls} stalls, {link.stats.cuts} cut sessions",
        sent=n,
        stored=len(stored),
        lost=n - len(stored),
        duplicates=hub.ingest.counters["duplicates"],
        worst_latency_s=round(drained, 1),
        sessions=link.stats.connections,
    )
