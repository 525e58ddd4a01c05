"""A wildlife device replaying a field sequence: one alarm reaches the hub, even through a
coverage gap, and is marked late."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mimamori.edge import contract
from mimamori.edge.config import load_config
from mimamori.edge.vision.manifest import DEFAULT_MODEL, load_manifest
from mimamori.hub.cli import Hub
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import MEDIA, add_device
from tests.hub.conftest import staff_client
from tests.mqtt_probe import Probe, wait_until
from tests.running import RunningService

pytestmark = pytest.mark.skipif(not MEDIA.is_dir(), reason="../shared/media not present")


def field_sequence(folder: Path) -> Path:
    folder.mkdir()
    empty = MEDIA / "camera-trap" / "sample-dzf-01.jpg"
    monkeys = [MEDIA / "monkeys" / "images" / f"monkey_{n}.jpg" for n in (21, 49, 76, 16)]
    for i, src in enumerate([empty] * 3 + monkeys + [empty] * 5):
        shutil.copy(src, folder / f"{i:03d}.jpg")
    return folder


@pytest.mark.slow  # 8-20 s: the default run keeps its margin under five minutes
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
    from mimamori.edge.vision.manifest import DEFAULT_MODEL

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


def test_a_field_device_sends_its_location_keeps_its_log_and_reports_fps_inference_and_model(
    fleet: Fleet, broker: MosquittoProcess, hub_probe: Probe, tmp_path: Path
) -> None:
    cfg = load_config(
        add_device(
            fleet,
            "field-04",
            "wildlife",
            location="North paddy",
            telemetry={"interval_s": 1},
            wildlife={
                "source": str(field_sequence(tmp_path / "field")),
                "fps": 5,
                "loop": True,
                "quiet_s": 0.5,
                "motion": False,
            },
        )
    )
    cfg.device.data_dir = tmp_path / "var"  # where this Pi keeps its state
    with RunningService(cfg):
        alarms = wait_until(
            lambda: [e for e in hub_probe.events("field-04") if e.kind == "wildlife.incursion"],
            60,
            "an incursion at the hub",
        )
        assert alarms[0].data["location"] == "North paddy"
        log = tmp_path / "var" / "wildlife"
        assert (log / "events.jsonl").is_file() and list(log.glob("*-start-*.jpg"))

        def measured() -> list[contract.TelePayload]:
            teles = [
                contract.TelePayload.model_validate_json(m.payload)
                for m in hub_probe.on("field-04/tele")
            ]
            return [p for p in teles if p.fps and p.inference_ms]

        wait_until(lambda: len(measured()) >= 3, 20, "tele with fps and inference time")
        tele = measured()[-1]  # the first covers start-up, a moment of catching up
        assert tele.fps is not None and 1 <= tele.fps <= 6  # 5 frames/s asked
        assert tele.inference_ms is not None and tele.inference_ms > 1  # the real model ran
        shipped = load_manifest(DEFAULT_MODEL)  # the model that comes with the image
        assert tele.model == contract.ModelInfo(
            name=shipped.name, sha256=shipped.sha256, source="image"
        )

        corr = hub_probe.command("field-04", "deterrent-hold", {"minutes": 30})
        reply = wait_until(
            lambda: [
                contract.CommandReply.model_validate_json(m.payload)
                for m in hub_probe.on("field-04/reply/deterrent-hold")
                if getattr(m.properties, "CorrelationData", None) == corr
            ],
            10,
            "deterrent-hold reply",
        )[0]
        assert reply.ok and reply.result == {"held": False, "minutes": 30.0}  # no deterrent


def test_the_fleet_page_names_the_model_a_camera_runs(
    fleet: Fleet, broker: MosquittoProcess, hub: Hub, tmp_path: Path
) -> None:
    cfg = add_device(
        fleet,
        "field-05",
        "wildlife",
        telemetry={"interval_s": 1},
        wildlife={"source": str(field_sequence(tmp_path / "field")), "fps": 5, "motion": False},
    )
    with RunningService(cfg):
        wait_until(
            lambda: ((hub.store.device("field-05") or {}).get("tele") or {}).get("model"),
            30,
            "tele with the model at the hub",
        )
    page = staff_client(hub, "sato", "admin").web.get("/").get_data(as_text=True)
    assert "efficientnet-lite0 (with the image)" in page and "no model" not in page
