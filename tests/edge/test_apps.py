"""The app registry: every role's factory resolves, and the service imports no app."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

from mimamori.edge.app import Meter, Telemetry
from mimamori.edge.apps import APP_SECTIONS, APPS
from mimamori.edge.config import DeviceConfig
from tests.conftest import ROOT


def test_every_role_has_a_factory_taking_its_section_and_the_device() -> None:
    assert set(APPS) == {"wildlife", "ridership", "kiosk"}
    for role, entry in APPS.items():
        module, _, name = entry.factory.partition(":")
        factory = getattr(importlib.import_module(module), name)
        assert list(inspect.signature(factory).parameters)[:2] == ["cfg", "device"], role
        assert entry.section in DeviceConfig.model_fields, role
    assert set(APP_SECTIONS) == {"sim", "wildlife", "ridership", "kiosk"}


def test_the_service_imports_no_app() -> None:
    code = (
        "import sys, edge.service, edge.cli; "
        "print(sorted(m for m in sys.modules "
        "if m.startswith(('kiosk', 'mimamori.edge.wildlife', 'mimamori.edge.ridership'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_meter_gives_rates_since_the_last_reading() -> None:
    now = [0.0]
    meter = Meter(clock=lambda: now[0])
    for _ in range(4):
        meter.frame()
        with meter.inference():
            now[0] += 0.05
        now[0] += 0.2
    assert meter.read() == Telemetry(fps=4.0, inference_ms=50.0)
    now[0] += 2.0
    assert meter.read() == Telemetry(fps=0.0, inference_ms=None)  # idle: nothing ran
