"""Thundering herd: every device loses the broker at once and comes back."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter

from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import ROOT
from tests.reliability.conftest import report, scale

PER_PROCESS = 100


def test_devices_reconnect_spread_out_after_the_broker_comes_back(
    fleet: Fleet, broker: MosquittoProcess
) -> None:
    n = scale(100, 500)
    configs = [str(fleet.add_device(f"dev-{i:03d}", "wildlife")) for i in range(n)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.herd_worker", *configs[i : i + PER_PROCESS]],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(0, n, PER_PROCESS)
    ]
    try:
        for w in workers:
            assert w.stdout is not None
            line = w.stdout.readline()
            assert line and json.loads(line)["connected"] > 0, "a worker could not connect"
        broker.kill()  # the broker's host loses power: every device loses it at once
        time.sleep(5)  # down for a while: devices back off
        broker.start()
        back = time.time()
        times: list[float] = []
        for w in workers:
            assert w.stdout is not None
            times += [t - back for t in json.loads(w.stdout.readline())["reconnected_at"]]
            w.wait(30)
        assert broker.running, "the broker fell over under the herd"
    finally:
        for w in workers:
            w.kill()
    assert len(times) == n, f"only {len(times)} of {n} reconnected within 120 s"
    times.sort()
    per_s = Counter(max(0, int(t)) for t in times)
    histogram = " ".join(f"{s}s:{per_s.get(s, 0)}" for s in range(int(times[-1]) + 1))
    busiest = max(per_s.values())
    assert busiest < n * 0.4, f"{busiest} of {n} devices reconnected in the same second"
    report(
        "thundering herd",
        f"{n} devices ({len(workers)} processes) lose the broker at once; it is back after 5 s",
        sent=n,
        stored=len(times),
        lost=n - len(times),
        reconnect_p50_s=round(times[len(times) // 2], 2),
        worst_latency_s=round(times[-1], 2),
        busiest_second=busiest,
        histogram=histogram,
    )
