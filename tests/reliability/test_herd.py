"""Thundering herd: every device loses the broker at once and comes back."""

from __future__ import annotations

import time
from collections import Counter

from edge.config import load_config
from edge.service import Service
from provisioning.fleet import Fleet
from provisioning.mosquitto import MosquittoProcess
from tests.mqtt_probe import wait_until
from tests.reliability.conftest import report, scale


def test_devices_reconnect_spread_out_after_the_broker_comes_back(
    fleet: Fleet, broker: MosquittoProcess
) -> None:
    n = scale(100, 500)
    services = []
    for i in range(n):
        cfg = load_config(fleet.add_device(f"dev-{i:03d}", "wildlife"))
        cfg.mqtt.reconnect_min_s = 1.0
        cfg.mqtt.reconnect_max_s = 30.0
        services.append(Service(cfg))
    try:
        for s in services:
            s.link.start()
        wait_until(lambda: all(s.link.connected for s in services), 60, "all connected")
        broker.kill()  # the broker's host loses power: every device loses it at once
        wait_until(lambda: not any(s.link.connected for s in services), 20, "all see it gone")
        time.sleep(5)  # down for a while: devices back off
        broker.start()
        back = time.monotonic()
        when: dict[int, float] = {}
        deadline = back + 90
        while len(when) < n and time.monotonic() < deadline:
            now = time.monotonic() - back
            for i, s in enumerate(services):
                if i not in when and s.link.stats.connects >= 2:
                    when[i] = now
            time.sleep(0.05)
        assert len(when) == n, f"only {len(when)} of {n} reconnected within 90 s"
        assert broker.running, "the broker fell over under the herd"
    finally:
        for s in services:
            s.link.stop(timeout=2)
            s.outbox.close()
    times = sorted(when.values())
    per_s = Counter(int(t) for t in times)
    histogram = " ".join(f"{s}s:{per_s.get(s, 0)}" for s in range(int(times[-1]) + 1))
    busiest = max(per_s.values())
    assert busiest < n * 0.4, f"{busiest} of {n} devices reconnected in the same second"
    report(
        "thundering herd",
        f"{n} devices lose the broker at once; it is back after 5 s",
        sent=n,
        stored=len(when),
        lost=n - len(when),
        reconnect_p50_s=round(times[len(times) // 2], 2),
        worst_latency_s=round(times[-1], 2),
        busiest_second=busiest,
        histogram=histogram,
    )
