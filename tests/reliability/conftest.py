"""Shared pieces of the field-reliability suite: scale, a device service, the report."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.config import DeviceConfig, load_config
from edge.service import Service
from provisioning.fleet import Fleet
from tests.conftest import ROOT, add_device

#: ``MIMAMORI_SOAK=1`` runs the full-size faults (the numbers in the issue and README);
#: CI runs the same tests shortened
SOAK = os.environ.get("MIMAMORI_SOAK") == "1"
REPORT = ROOT / "var" / "reliability.jsonl"


def scale(ci: int, soak: int) -> int:
    return soak if SOAK else ci


def report(test: str, injected: str, **figures: Any) -> None:
    """One row of the reliability table (bench/reliability_report.py prints them)."""
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


class RunningService:
    """A device service running on a thread (in this process, so tests can look inside)."""

    def __init__(self, cfg: DeviceConfig | Service) -> None:
        self.service = cfg if isinstance(cfg, Service) else Service(cfg)
        self.thread = threading.Thread(target=self.service.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.service.stop()
        self.thread.join(15)


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
