"""Device health figures for the ``tele`` topic."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import psutil

from mimamori.edge import contract

_THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")


def cpu_temp_c(path: Path = _THERMAL) -> float | None:
    """SoC temperature where the kernel exposes it (every Raspberry Pi does), else None."""
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def sample(
    data_dir: Path,
    *,
    outbox_depth: int,
    outbox_dropped: int = 0,
    fps: float | None = None,
    inference_ms: float | None = None,
    model: contract.ModelInfo | None = None,
) -> contract.TelePayload:
    disk = shutil.disk_usage(data_dir if data_dir.exists() else data_dir.parent)
    return contract.TelePayload(
        cpu_temp_c=cpu_temp_c(),
        load1=round(os.getloadavg()[0], 2),
        mem_used_pct=psutil.virtual_memory().percent,
        rss_mb=round(rss_mb(), 1),
        disk_free_mb=round(disk.free / 2**20, 1),
        uptime_s=round(time.time() - psutil.boot_time(), 0),
        outbox_depth=outbox_depth,
        outbox_dropped=outbox_dropped,
        fps=fps,
        inference_ms=inference_ms,
        model=model,
    )
