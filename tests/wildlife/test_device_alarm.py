"""A wildlife device replaying a field sequence: one alarm reaches the hub, even through a
coverage gap, and is marked late."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hub.cli import Hub
from provisioning.fleet import Fleet
from provisioning.mosquitto import MosquittoProcess
from tests.conftest import MEDIA, add_device
from tests.mqtt_probe import wait_until
from tests.running import RunningService

pytestmark = pytest.mark.skipif(not MEDIA.is_dir(), reason="../shared/media not present")


def field_sequence(folder: Path) -> Path:
    folder.mkdir()
    empty = MEDIA / "camera-trap" / "sample-dzf-01.jpg"
    monkeys = [MEDIA / "monkeys" / "images" / f"monkey_{n}.jpg" for n in (21, 49, 76, 16)]
    for i, src in enumerate([empty] * 3 + monkeys + [empty] * 5):
        shutil.copy(src, folder / f"{i:03d}.jpg")
    return folder


def test_alarm_held_through_a_coverage_gap_arrives_late_exactly_once(
    fleet: Fleet, broker: MosquittoProcess, hub: Hub, tmp_path: Path
) -> None:
    cfg = add_device(
        fleet,
        "field-02",
        "wildlife",
        wildlife={
            "source": str(field_sequence(tmp_path / "field")),
            "fps": 5,
            "start_frames": 2,
            "window_s": 5,
            "quiet_s": 0.5,
            "cooldown_s": 30,
            "motion": False,
        },
    )
    broker.stop()  # the hills: no coverage while the troop comes through
    with RunningService(cfg) as svc:
        wait_until(lambda: svc.app is not None and svc.app.exhausted, 60, "sequence replayed")
        kinds = [r.kind for r in svc.outbox.pending(100)]
        assert kinds == ["wildlife.incursion", "wildlife.incursion_end"]  # held on disk
        broker.start()
        wait_until(lambda: len(hub.store.events("field-02")) == 2, 30, "delivered")
        events = {e["kind"]: e for e in hub.store.events("field-02")}
        alarm = events["wildlife.incursion"]
        assert alarm["prio"] == 2 and alarm["hist"] is True  # an alarm, and marked late
        assert alarm["data"]["snapshot_jpeg"]
        assert alarm["received"] > alarm["created"]


def test_bad_model_file_is_reported_and_the_device_stays_up(
    fleet: Fleet, broker: MosquittoProcess, hub: Hub, tmp_path: Path
) -> None:
    from edge.vision.manifest import DEFAULT_MODEL

    models = tmp_path / "models"
    models.mkdir()
    for f in ("efficientnet-lite0.toml", "imagenet-1k.labels.txt"):
        shutil.copy(DEFAULT_MODEL.parent / f, models / f)
    (models / "efficientnet-lite0.onnx").write_bytes(b"truncated download")
    cfg = add_device(
        fleet,
        "field-03",
        "wildlife",
        wildlife={
            "source": str(MEDIA / "opencv" / "baboon.jpg"),
            "model": str(models / "efficientnet-lite0.toml"),
        },
    )
    with RunningService(cfg) as svc:
        wait_until(lambda: hub.store.events("field-03"), 20, "notice at the hub")
        notice = hub.store.events("field-03")[0]
        assert notice["kind"] == "device.notice" and notice["data"]["level"] == "error"
        assert "sha256" in notice["data"]["message"]
        assert svc.link.connected and svc.app is None  # up, reachable, waiting for a fix
