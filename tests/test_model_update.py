"""A signed model update from the admin machine, through the hub, to a live device."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from onnx import TensorProto, helper

from mimamori.edge.service import Service
from mimamori.hub.cli import Hub
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
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


def tiny_classifier(side: int, bias: float) -> bytes:
    """A real classifier graph (mean colour -> 4 classes) taking 1x3xSIDExSIDE."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, side, side])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 4], [0.1] * 12)
    b = helper.make_tensor("b", TensorProto.FLOAT, [4], [bias, 0.0, 0.0, 0.0])
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w", "b"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "tiny-classifier", [x], [y], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def test_the_watch_runs_the_update_it_installed_and_goes_back_when_it_cannot(
    fleet: Fleet, hub: Hub, tmp_path: Path
) -> None:
    models = tmp_path / "image-models"
    models.mkdir()
    base = tiny_classifier(32, 0.0)
    (models / "monkey.onnx").write_bytes(base)
    (models / "labels.txt").write_text("macaque\nsquirrel\ndog\nperson\n")
    (models / "monkey.toml").write_text(
        'name = "monkey"\nfile = "monkey.onnx"\n'
        f'sha256 = "{hashlib.sha256(base).hexdigest()}"\n'
        'task = "classify"\ninput_size = [32, 32]\nlabels = "labels.txt"\n'
        'positive_classes = [0]\nlicence = "test"\nprovenance = "built by the test"\n'
    )
    frame = tmp_path / "field.jpg"
    cv2.imwrite(str(frame), np.full((240, 320, 3), 90, np.uint8))
    section = {"source": str(frame), "loop": True, "fps": 5, "motion": False}
    section |= {"proposer": False, "model": str(models / "monkey.toml")}
    cfg = add_device(fleet, "field-01", wildlife=section)

    def loaded() -> tuple[str | None, int | None]:
        info = svc.app.model_info if svc.app is not None else None
        return (info.source, info.version) if info else (None, None)

    def push(version: int, model: bytes) -> None:
        path = tmp_path / f"monkey-v{version}.onnx"
        path.write_bytes(model)
        signed = cli(
            "provision", "sign-model", str(path), "--name", "monkey",
            "--version", str(version), "--fleet", str(fleet.root),
        )  # fmt: skip
        assert signed.returncode == 0, signed.stderr
        pushed = cli("hub", "push-model", "field-01", str(path), "--config", str(fleet.hub_config))
        assert pushed.returncode == 0, pushed.stderr

    with RunningService(cfg) as svc:
        wait_until(lambda: svc.link.connected and loaded() == ("local", None), 20, "app on v0")
        push(1, tiny_classifier(32, 1.0))
        wait_until(lambda: loaded() == ("update", 1), 20, "the app restarted on version 1")
        push(2, tiny_classifier(32, 2.0))
        wait_until(lambda: loaded() == ("update", 2), 20, "the app restarted on version 2")
        # staff roll it back from the hub: the app loads version 1 again
        hub.ingest.send_command("field-01", "model-rollback", {"name": "monkey"})
        wait_until(lambda: loaded() == ("update", 1), 20, "the app back on version 1")
        # a model that passes its own self-test but not the watch's manifest (16 px input for
        # a 32 px manifest): the app cannot start on it, so the device goes back on its own
        push(3, tiny_classifier(16, 3.0))
        wait_until(lambda: svc.models.installed_version("monkey") == 1, 20, "undone to version 1")
        wait_until(lambda: loaded() == ("update", 1), 20, "the app running version 1 again")
        wait_until(
            lambda: any(
                "back to version 1" in str(e["data"].get("message"))
                for e in hub.store.events("field-01")
            ),
            20,
            "the hub told why",
        )


def test_the_bus_counter_and_the_proposer_run_the_detector_update_installed(
    fleet: Fleet, broker: MosquittoProcess, tmp_path: Path
) -> None:
    from mimamori.edge.config import load_config
    from mimamori.edge.updates import ModelStore, onnx_self_test
    from mimamori.edge.vision.yolox import DEFAULT_YOLOX
    from mimamori.provisioning.signing import sign_model

    frame = tmp_path / "view.jpg"
    cv2.imwrite(str(frame), np.full((240, 320, 3), 90, np.uint8))
    door = {"name": "front", "source": str(frame), "loop": True, "fps": 5, "detector": "yolox"}
    door |= {"line": [40, 120, 280, 120], "schedule": [[0.0, 1.0]]}
    bus = add_device(fleet, "bus-01", "ridership", ridership={"doors": [door]})
    field = add_device(
        fleet, "field-01", wildlife={"source": str(frame), "loop": True, "motion": False}
    )
    # version 1 of the detector, signed and installed on each as a job would leave it
    model = DEFAULT_YOLOX.with_suffix(".onnx").read_bytes()
    signed = sign_model(fleet.signing_key, model, name="yolox-nano", version=1)
    installed = {}
    for cfg in (bus, field):
        store = ModelStore(Path(load_config(cfg).device.data_dir) / "models")
        store.slot("yolox-nano").mkdir(parents=True)
        staged = store.slot("yolox-nano") / ".v1.partial"
        staged.write_bytes(model)
        installed[cfg] = store.install(signed.manifest, staged, onnx_self_test).resolve()
    with RunningService(bus) as svc:
        wait_until(lambda: svc.app is not None, 20, "the bus app")
        app = svc.app
        assert app is not None and app.model_info is not None
        info = app.model_info
        assert (info.name, info.source, info.version) == ("yolox-nano", "update", 1)
        detector = app.doors[0].counter.detector  # type: ignore[attr-defined]
        assert detector.model.manifest.file == installed[bus]
    with RunningService(field) as svc:
        wait_until(lambda: svc.app is not None, 30, "the watch")
        watch = svc.app.model  # type: ignore[union-attr]
        assert watch.proposer.manifest.file == installed[field]
