"""Things a test starts and must stop, as context managers (one ``with`` instead of a
``try``/``finally`` in every test)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt

from mimamori.edge.config import DeviceConfig, load_config
from mimamori.edge.service import Service


class RunningService:
    """A device service running on a thread of this process, so tests can look inside.

    ``with RunningService(cfg) as svc:`` stops it (and waits for its thread) on the way out."""

    def __init__(self, cfg: DeviceConfig | Service | Path, **run: float) -> None:
        if isinstance(cfg, Path):
            cfg = load_config(cfg)
        self.service = cfg if isinstance(cfg, Service) else Service(cfg)
        self.thread = threading.Thread(target=self.service.run, kwargs=run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.service.stop()
        self.thread.join(15)

    def __enter__(self) -> Service:
        return self.service

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def killed_after(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """A child process that is killed (and reaped) however the test leaves the block."""
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(30)


@contextmanager
def looping(client: mqtt.Client) -> Iterator[mqtt.Client]:
    """A connected paho client whose network loop runs for the block, then stops."""
    client.loop_start()
    try:
        yield client
    finally:
        client.loop_stop()
        client.disconnect()
