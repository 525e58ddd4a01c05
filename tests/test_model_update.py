"""A signed model update from the admin machine, through the hub, to a live device."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mimamori.edge.service import Service
from mimamori.hub.cli import Hub
from mimamori.provisioning.fleet import Fleet
from tests.conftest import add_device
from tests.edge.test_updates import tiny_model
from tests.mqtt_probe import wait_until
from tests.running import RunningService


@pytest.fixture
def device(fleet: Fleet, hub: Hub) -> Iterator[Service]:
    with RunningService(add_device(fleet, "field-01")) as svc:
        wait_until(lambda: svc.link.connected, 15, "device link")
        yield svc


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mimamori.edge.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def job_states(hub: Hub) -> dict[str, str]:
    return {j["job_id"]: j["status"] for j in hub.store.jobs("field-01")}


def test_sign_push_apply_and_see_it_at_the_hub(
    fleet: Fleet, hub: Hub, device: Service, tmp_path: Path
) -> None:
    model = tmp_path / "monkey.onnx"
    model.write_bytes(tiny_model(2.0))
    signed = cli(
        "provision",
        "sign-model",
        str(model),
        "--name",
        "monkey",
        "--version",
        "1",
        "--fleet",
        str(fleet.root),
    )
    assert signed.returncode == 0, signed.stderr
    pushed = cli("hub", "push-model", "field-01", str(model), "--config", str(fleet.hub_config))
    assert pushed.returncode == 0, pushed.stderr
    wait_until(lambda: "SUCCEEDED" in job_states(hub).values(), 20, "SUCCEEDED at the hub")
    assert device.models.installed_version("monkey") == 1

    # the same manifest with other bytes: the device refuses, the hub shows why
    model.write_bytes(tiny_model(-1.0))
    tampered = cli(
        "hub",
        "push-model",
        "field-01",
        str(model),
        "--manifest",
        str(tmp_path / "monkey.onnx.manifest.json"),
        "--config",
        str(fleet.hub_config),
    )
    assert tampered.returncode == 0, tampered.stderr
    wait_until(lambda: "REJECTED" in job_states(hub).values(), 20, "REJECTED at the hub")
    rejected = next(j for j in hub.store.jobs("field-01") if j["status"] == "REJECTED")
    assert "sha256" in rejected["reason"]
    assert device.models.installed_version("monkey") == 1  # the old model still serving
    # finished jobs are remembered on disk: the retained job seen again is not re-run
    assert set(device._finished_jobs()) == set(job_states(hub))
