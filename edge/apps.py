"""Which app a device runs: one table from role to the factory that builds it.

The service never imports an app: it looks the role up here and imports the factory's
module by name (``importlib``), so `edge/` does not depend on `kiosk/` and a device loads
only its own app's libraries. A factory takes the app's config section and a ``Device``.
A device whose role has no section configured runs the demo ``SimApp`` if ``[sim]`` is set.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mimamori.edge.app import App, Device, Emitter
from mimamori.edge.config import DeviceConfig


@dataclass(frozen=True)
class AppEntry:
    #: the config section the app is built from; a change to it from the hub restarts the app
    section: str
    #: "module:function" taking (section, Device) and returning the App
    factory: str


APPS = {
    "wildlife": AppEntry("wildlife", "mimamori.edge.wildlife.build:build_wildlife"),
    "ridership": AppEntry("ridership", "mimamori.edge.ridership.build:build_ridership"),
    "kiosk": AppEntry("kiosk", "mimamori.kiosk.app:build_kiosk"),
}
#: config sections that belong to an app: a change restarts it with the new config
APP_SECTIONS = ("sim", *(e.section for e in APPS.values()))


class SimApp(App):
    """A stand-in app for demos: records a ``device.notice`` every few seconds."""

    def __init__(self, emit: Emitter, interval_s: float) -> None:
        self.emit, self.interval_s = emit, interval_s
        self._next = 0.0
        self._count = 0

    def step(self, now: float) -> None:
        if now >= self._next:
            self._next = now + self.interval_s
            self._count += 1
            self.emit("device.notice", {"level": "info", "message": f"sample {self._count}"})

    def close(self) -> None:
        pass


def create_app(cfg: DeviceConfig, emit: Emitter) -> App | None:
    """The app for the device's role, built from its section; None when nothing is set up."""
    entry = APPS.get(cfg.device.role)
    section = getattr(cfg, entry.section) if entry is not None else None  # a config field
    if entry is not None and section is not None:
        module, _, name = entry.factory.partition(":")
        build: Callable[[Any, Device], App] = getattr(importlib.import_module(module), name)
        return build(section, Device(cfg.device.id, cfg.device.location, cfg.device.data_dir, emit))
    if cfg.sim is not None:
        return SimApp(emit, cfg.sim.event_interval_s)
    return None
