"""Shared pieces of the field-reliability suite: scale, a device service, the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mimamori.edge.config import DeviceConfig, load_config
from mimamori.edge.contract import Priority
from mimamori.edge.service import Service
from mimamori.provisioning.fleet import Fleet
from tests.conftest import ROOT, add_device
from tests.running import RunningService

#: ``MIMAMORI_SOAK=1`` runs the full-size faults (the numbers in the issue and README);
#: CI runs the same tests shortened
SOAK = os.environ.get("MIMAMORI_SOAK") == "1"
REPORT = ROOT / "var" / "reliability.jsonl"


def scale(ci: int, soak: int) -> int:
    return soak if SOAK else ci


def report(test: str, injected: str, **figures: Any) -> None:
    """One row of the reliability table (bench/reliability.py prints them)."""
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    row = {"test": test, "injected": injected, "soak": SOAK, **figures}
    with REPORT.open("a") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(json.dumps(row, ensure_ascii=False))


def device_config(
    fleet: Fleet, name: str, role: str = "wildlife", *, port: int | None = None, **sections: Any
) -> DeviceConfig:
    cfg = load_config(add_device(fleet, name, role, **sections))
    if port is not None:
        cfg.mqtt.port = port
    return cfg


@pytest.fixture
def services() -> Iterator[list[RunningService]]:
    running: list[RunningService] = []
    yield running
    for r in running:
        r.stop()


def rss_mb(pid: int | None = None) -> float:
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def record_hours(svc: Service, hours: int, tag: str) -> dict[str, int]:
    """Record ``hours`` of a field device's day, time compressed: per hour one alarm, a
    notice a minute and a low-priority status every 10 s. Returns how many of each the
    outbox took (``seq`` > 0)."""
    stored = {"LOW": 0, "NORMAL": 0, "ALARM": 0}
    for h in range(hours):
        for s in range(0, 3600, 10):
            prio = Priority.ALARM if s == 1800 else Priority.NORMAL if s % 60 == 0 else Priority.LOW
            row = svc.emit(
                "device.notice", {"level": "info", "message": f"{tag} h{h} s{s} {prio.name}"}, prio
            )
            stored[prio.name] += row.seq > 0
    return stored


class DeviceScript:
    """A helper device process (``python -m tests.reliability.NAME``) driven by lines on
    stdin and answering with one JSON line each; ``wrap`` goes before it (e.g. unshare)."""

    def __init__(self, module: str, *args: str, wrap: tuple[str, ...] = ()) -> None:
        self.proc = subprocess.Popen(
            [*wrap, sys.executable, "-m", f"tests.reliability.{module}", *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def answer(self, say: str | None = None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if say is not None:
            self.proc.stdin.write(say + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"{self.proc.args[-3:]}: the device process died"
        return dict(json.loads(line))

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
