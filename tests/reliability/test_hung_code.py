"""Hung code and lost cameras: a stuck camera read stops the watchdog pings (so systemd's
WatchdogSec= restarts the service); a camera that disappears and comes back is reopened."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

import cv2
import pytest

from mimamori.edge.app import Emitter
from mimamori.edge.camera import CameraError, Frame
from mimamori.edge.config import DeviceConfig
from mimamori.edge.service import Service
from mimamori.edge.vision.manifest import DEFAULT_MODEL, load_manifest
from mimamori.edge.vision.onnx import OnnxModel
from mimamori.edge.wildlife.app import WildlifeApp
from mimamori.edge.wildlife.incursion import Rules
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import MEDIA
from tests.mqtt_probe import wait_until
from tests.reliability.conftest import device_config, report
from tests.running import RunningService

FIELD = MEDIA / "camera-trap" / "sample-dzf-01.jpg"


class Camera:
    """The camera seam: a field picture, until it fails after ``frames`` reads (raises, or
    blocks as a wedged driver does, until ``release`` is set)."""

    def __init__(self, frames: int, fail: str = "raise") -> None:
        if not FIELD.exists():
            pytest.skip("needs the shared sample media")
        self.image = cv2.imread(str(FIELD))
        self.left, self.fail = frames, fail
        self.release = threading.Event()
        self.closed = False

    def read(self) -> Frame | None:
        if self.left <= 0:
            if self.fail == "block":
                self.release.wait()
            raise CameraError("cam0: the camera stopped answering")
        self.left -= 1
        return Frame(self.image, datetime.now(UTC), 0)

    def close(self) -> None:
        self.closed = True


def app_with(camera: Camera, emitted: list[tuple[str, dict]], reopen: Any = None) -> WildlifeApp:
    return WildlifeApp(
        camera,
        OnnxModel(load_manifest(DEFAULT_MODEL), threads=1),
        lambda kind, data, prio: emitted.append((kind, data)),
        rules=Rules(threshold=0.7, start_frames=3),
        night_threshold=0.8,
        reopen=reopen,
    )


def test_a_camera_that_disappears_and_comes_back_is_reopened() -> None:
    emitted: list[tuple[str, dict]] = []
    opens = {"tries": 0}

    def reopen() -> Camera:
        opens["tries"] += 1
        if opens["tries"] < 3:  # unplugged for a while
            raise CameraError("cam0: no camera on the port")
        return Camera(frames=1000)

    first = Camera(frames=3)
    app = app_with(first, emitted, reopen)
    now = 0.0
    while app.frames < 8 and now < 60:
        app.step(now)
        now += 0.25
    assert first.closed, "the failed camera was not closed"
    assert opens["tries"] == 3 and app.frames == 8 and not app.exhausted
    notices = [d["message"] for k, d in emitted if k == "device.notice"]
    assert notices[0].startswith("camera lost") and notices[1].startswith("camera back")
    # backoff between attempts: 1 s, then 2 s, then 4 s
    assert 6.5 <= now <= 9, now

    recording = app_with(Camera(frames=2), [])
    for t in range(5):
        recording.step(float(t))
    assert recording.exhausted, "a recording (no reopen) simply ends"


class Pings:
    """sd_notify at the seam: records what systemd would receive, with times."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str]] = []

    def notify(self, message: str) -> None:
        self.sent.append((time.monotonic(), message))

    def watchdog(self, since: float) -> int:
        return sum(m == "WATCHDOG=1" and t >= since for t, m in self.sent)


def test_a_stuck_camera_read_stops_the_watchdog_pings(
    fleet: Fleet, broker: MosquittoProcess
) -> None:
    cfg: DeviceConfig = device_config(fleet, "field-01")
    camera = Camera(frames=10, fail="block")
    pings = Pings()

    def factory(c: DeviceConfig, emit: Emitter) -> WildlifeApp:
        return app_with(camera, [])

    svc = Service(cfg, app_factory=factory, notifier=pings, watchdog_s=0.2)
    with RunningService(svc), ExitStack() as unstick:
        unstick.callback(camera.release.set)  # on the way out, before the service stops
        wait_until(lambda: svc.app is not None and svc.app.frames >= 10, 30, "frames")  # type: ignore[attr-defined]
        start = time.monotonic()
        healthy = pings.watchdog(start - 1.0)
        time.sleep(1.5)  # the read is stuck: 7 intervals
        stuck = pings.watchdog(start + 0.3)
    assert healthy >= 3, "the service did not ping the watchdog while healthy"
    assert stuck == 0, "pings went on although the camera read was stuck"
    report(
        "hung code",
        "camera read stuck (a wedged driver); camera unplugged then back",
        watchdog_pings_when_stuck=stuck,
        watchdog_interval_s=0.2,
        reopened_after_s="1 + 2 + 4 (backoff)",
    )
