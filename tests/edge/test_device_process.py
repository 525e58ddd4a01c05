"""The device service as a real process: killed, frozen and restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mimamori.edge import contract
from mimamori.edge.config import load_config
from mimamori.edge.outbox import Outbox
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import FAST_LINK, add_device, sqlite_integrity_ok
from tests.mqtt_probe import Probe, wait_until

KEEPALIVE = FAST_LINK["keepalive_s"]
N = 10_000
MOSQUITTO_KEEPALIVE_CHECK_S = 6  # src/keepalive.c: `if(last_keepalive_check + 5 < now)`


class DeviceProcess:
    def __init__(self, cfg: Path) -> None:
        self.cfg = cfg
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DeviceProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mimamori.edge.cli", "device", "run", str(self.cfg)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def device(fleet: Fleet, broker: MosquittoProcess) -> Iterator[DeviceProcess]:
    proc = DeviceProcess(add_device(fleet, "field-01"))
    yield proc
    if proc.proc and proc.proc.poll() is None:
        proc.signal(signal.SIGCONT)
    proc.kill()


def states(probe: Probe) -> list[contract.StatePayload]:
    return [
        contract.StatePayload.model_validate_json(m.payload) for m in probe.on("field-01/state")
    ]


@pytest.mark.parametrize(
    "how",
    ["SIGKILL", pytest.param("SIGSTOP", marks=pytest.mark.slow)],  # a frozen one: 1.5 keepalives
)
def test_dead_or_frozen_device_goes_offline_within_one_and_a_half_keepalives(
    device: DeviceProcess, hub_probe: Probe, how: str
) -> None:
    device.start()
    online = wait_until(lambda: [s for s in states(hub_probe) if s.online], 20, "online")[-1]
    t0 = time.monotonic()
    device.signal(getattr(signal, how))  # SIGSTOP: the socket stays open, only keepalive tells
    offline = wait_until(lambda: [s for s in states(hub_probe) if not s.online], 60, "will")
    elapsed = time.monotonic() - t0
    assert offline[-1].bdseq == online.bdseq  # the will belongs to that session
    if how == "SIGKILL":  # the kernel closes the socket: the broker sends the will at once
        assert elapsed <= 1.5 * KEEPALIVE
    else:  # only the keepalive tells; Mosquitto 2.0 checks keepalives every 5 s, in seconds
        assert elapsed <= 1.5 * KEEPALIVE + MOSQUITTO_KEEPALIVE_CHECK_S + 1


@pytest.mark.slow  # 8-20 s: the default run keeps its margin under five minutes
def test_sigkill_mid_drain_loses_nothing_recorded(
    device: DeviceProcess, hub_probe: Probe, fleet: Fleet
) -> None:
    cfg = load_config(device.cfg)
    box = Outbox(Path(cfg.device.data_dir) / "outbox.sqlite")
    ids = [box.put("device.notice", {"level": "info", "message": f"e{i}"}).id for i in range(N)]
    box.close()
    device.start()
    wait_until(lambda: len(hub_probe.on("/event/device.notice")) >= 100, 30, "drain under way")
    device.kill()  # SIGKILL mid-drain
    box = Outbox(Path(cfg.device.data_dir) / "outbox.sqlite")
    assert sqlite_integrity_ok(Path(cfg.device.data_dir) / "outbox.sqlite")
    left = {r.id for r in box.pending(10_000)}
    box.close()
    assert 0 < len(left) < N

    def delivered() -> set[str]:
        return {e.id for e in hub_probe.events("field-01")}

    # every row is either still queued or was delivered (acked rows may still be in flight)
    wait_until(lambda: set(ids) == left | delivered(), 10, "acked rows delivered")
    device.start()
    wait_until(lambda: delivered() >= set(ids), 60, f"all {N}")
    seqs = [e.seq for e in hub_probe.events("field-01")]
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == sorted(first_seen)  # in seq order, duplicates only as resends
