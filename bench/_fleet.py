"""Shared set-up for benchmarks: a throwaway fleet and broker on a free loopback port."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def throwaway_fleet(devices: tuple[tuple[str, str], ...] = ()) -> Fleet:
    """A fleet in a temporary folder, every port free, with ``devices`` (name, role)."""
    root = Path(tempfile.mkdtemp(prefix="mimamori-bench-")) / "fleet"
    fleet = Fleet.init(
        root,
        broker_host="127.0.0.1",
        port=free_port(),
        hub_port=free_port(),
        web_port=free_port(),
        models_port=free_port(),
        broker_user="root" if os.geteuid() == 0 else None,
    )
    for name, role in devices:
        fleet.add_device(name, role)
    return fleet


def fleet_and_broker(
    devices: tuple[tuple[str, str], ...] = (),
) -> tuple[Fleet, MosquittoProcess]:
    fleet = throwaway_fleet(devices)
    return fleet, fleet.broker_process().start()


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set size of a running process (Linux VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
