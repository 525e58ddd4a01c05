"""The monkey-watch app: frames → (motion gate) → model → incursion → one alarm per visit.

At an incursion's start the app records a ``wildlife.incursion`` alarm at once (the hunters
want to know now), with the best snapshot so far; at its end a ``wildlife.incursion_end`` with
the totals and the best frame. Both go through the outbox, so a coverage gap delays them but
loses nothing; the hub shows a late one as late.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from mimamori.edge.app import App, Meter, Telemetry
from mimamori.edge.camera import CameraError, Frame, FrameSource
from mimamori.edge.contract import Priority
from mimamori.edge.vision.onnx import Finding
from mimamori.edge.wildlife.deterrent import Deterrent, Pir
from mimamori.edge.wildlife.incursion import Rules, Tracker
from mimamori.edge.wildlife.watch import MonkeyWatch

log = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any], Priority], Any]
SNAPSHOT_WIDTH = 640


Box = tuple[int, int, int, int]


class Model(Protocol):
    def monkey(self, image: np.ndarray) -> Finding: ...


@dataclass(frozen=True)
class Shot:
    """A positive frame kept for the snapshot: at most ``SNAPSHOT_WIDTH`` wide (the
    full-resolution frame is never kept), with the monkey's and any people's boxes in its
    pixels."""

    image: np.ndarray
    ts: datetime
    index: int
    finding: Finding
    people: tuple[Box, ...] = field(default=())

    @classmethod
    def of(cls, frame: Frame, finding: Finding, people: list[Box] | None = None) -> Shot:
        img = frame.image
        scale = min(1.0, SNAPSHOT_WIDTH / img.shape[1])
        if scale < 1.0:
            size = (SNAPSHOT_WIDTH, max(1, int(round(img.shape[0] * scale))))
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        else:
            img = img.copy()

        def sc(b: Box) -> Box:
            return (int(b[0] * scale), int(b[1] * scale), int(b[2] * scale), int(b[3] * scale))

        moved = Finding(finding.score, sc(finding.box), finding.label)
        return cls(img, frame.ts, frame.index, moved, tuple(sc(p) for p in people or ()))


def is_night(image: np.ndarray) -> bool:
    """Infrared frames are grayscale: one channel, or three nearly equal ones."""
    if image.ndim == 2 or image.shape[2] == 1:
        return True
    small = cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA).astype(np.int16)
    spread = np.abs(small[:, :, 0] - small[:, :, 1]) + np.abs(small[:, :, 1] - small[:, :, 2])
    return float(spread.mean()) < 4.0


def blur_boxes(img: np.ndarray, boxes: tuple[Box, ...] | list[Box], margin: float = 0.15) -> None:
    """Blur each box (grown by ``margin``) in place, hard enough that nobody is recognisable:
    a Gaussian a sixth of the box wide."""
    h, w = img.shape[:2]
    for x1, y1, x2, y2 in boxes:
        mx, my = int((x2 - x1) * margin), int((y2 - y1) * margin)
        x1, y1, x2, y2 = max(0, x1 - mx), max(0, y1 - my), min(w, x2 + mx), min(h, y2 + my)
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        sigma = max(2.0, max(x2 - x1, y2 - y1) / 6)
        img[y1:y2, x1:x2] = cv2.GaussianBlur(img[y1:y2, x1:x2], (0, 0), sigma)


def snapshot(shot: Shot, *, blur_people: bool = True, quality: int = 80) -> str:
    """The shot with the monkey's box drawn, as base64 JPEG; people pixelated unless
    ``blur_people`` is off (the unblurred one stays on the device)."""
    img = shot.image
    img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img.copy()
    if blur_people and shot.people:
        blur_boxes(img, shot.people)
    x1, y1, x2, y2 = shot.finding.box
    thick = max(2, img.shape[1] // 300)
    cv2.rectangle(img, (x1, y1), (x2, y2), (0, 0, 255), thick)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode the snapshot")
    return base64.b64encode(buf.tobytes()).decode()


class SnapshotLog:
    """Snapshots and a one-line-per-event log on the device's own disk, bounded in size."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder, self.max_bytes = folder, max_bytes
        folder.mkdir(parents=True, exist_ok=True)

    def record(self, what: str, shot: Shot, frames: int) -> Path:
        """Keep the shot unblurred: this folder never leaves the device."""
        stamp = shot.ts.strftime("%Y%m%d-%H%M%S")
        path = self.folder / f"{stamp}-{what}-{shot.index:06d}.jpg"
        path.write_bytes(base64.b64decode(snapshot(shot, blur_people=False)))
        with (self.folder / "events.jsonl").open("a") as f:
            f.write(
                json.dumps(
                    {
                        "ts": shot.ts.isoformat(),
                        "what": what,
                        "score": round(shot.finding.score, 4),
                        "frames": frames,
                        "box": list(shot.finding.box),
                        "file": path.name,
                    }
                )
                + "\n"
            )
        self.prune()
        return path

    def prune(self) -> None:
        shots = sorted(self.folder.glob("*.jpg"))
        total = sum(p.stat().st_size for p in shots)
        while shots and total > self.max_bytes:
            oldest = shots.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink()
        events = self.folder / "events.jsonl"
        if events.exists() and events.stat().st_size > self.max_bytes // 10:
            lines = events.read_text().splitlines()
            events.write_text("\n".join(lines[len(lines) // 2 :]) + "\n")


class MotionGate:
    """Background subtraction (MOG2): is anything moving that is worth showing the model?"""

    def __init__(self, min_area: float = 0.002) -> None:
        self.min_area = min_area
        self._bg = cv2.createBackgroundSubtractorMOG2(history=200, detectShadows=False)

    def moving(self, image: np.ndarray) -> bool:
        small = cv2.resize(image, (320, int(320 * image.shape[0] / image.shape[1])))
        mask = self._bg.apply(small)
        return float((mask > 0).mean()) >= self.min_area


class WildlifeApp(App):
    def __init__(
        self,
        source: FrameSource,
        model: Model,
        emit: Emit,
        *,
        rules: Rules,
        night_threshold: float,
        motion: MotionGate | None = None,
        deterrent: Deterrent | None = None,
        pir: Pir | None = None,
        ignore: list[tuple[float, float, float, float]] | None = None,
        log: SnapshotLog | None = None,
        camera: str = "cam0",
        location: str = "",
        reopen: Callable[[], FrameSource] | None = None,
        blur_people: bool = True,
    ) -> None:
        #: pixelate people in snapshots that leave the device (alarms to the hub)
        self.blur_people = blur_people
        self.camera, self.location = camera, location
        #: opens the camera again when it fails (a live camera); None: a recording, whose
        #: end is the end
        self.reopen = reopen
        self._lost_since: float | None = None
        self._retry_at = 0.0
        self._attempt = 0
        self.ignore = ignore or []
        self.log = log
        self.source, self.model, self.emit = source, model, emit
        self.deterrent, self.pir = deterrent, pir
        self.rules, self.night_threshold = rules, night_threshold
        self.motion = motion
        self.tracker: Tracker[Shot | None] = Tracker(rules)
        self._id: str | None = None
        self.frames = 0
        self.scored = 0
        self.exhausted = False
        self.meter = Meter()
        self.commands = {"deterrent-hold": self._cmd_deterrent_hold}

    def step(self, now: float) -> None:
        if self.exhausted:
            return
        if self.pir is not None and not self.pir.awake and self.tracker.current is None:
            return  # asleep until the PIR sees something: camera and model stay idle
        if self._lost_since is not None and not self._reopen_camera(now):
            return
        try:
            frame = self.source.read()
        except CameraError as e:
            self._camera_lost(now, str(e))
            return
        if frame is None:
            self._camera_lost(now, "the camera stopped delivering frames")
            return
        self.frames += 1
        self.meter.frame()
        self.process(frame)

    def _camera_lost(self, now: float, why: str) -> None:
        if self.reopen is None:
            log.info("camera: %s; the recording is over", why)
            self.exhausted = True
            return
        log.error("camera lost (%s); reopening it, with backoff", why)
        self.emit(
            "device.notice",
            {"level": "error", "message": f"camera lost: {why}"[:500]},
            Priority.NORMAL,
        )
        with contextlib.suppress(Exception):
            self.source.close()
        self._lost_since, self._attempt, self._retry_at = now, 0, now + 1.0

    def _reopen_camera(self, now: float) -> bool:
        if now < self._retry_at or self.reopen is None or self._lost_since is None:
            return False
        try:
            self.source = self.reopen()
        except (CameraError, OSError) as e:
            self._attempt += 1
            self._retry_at = now + min(30.0, 2.0**self._attempt)
            log.debug("camera still missing: %s", e)
            return False
        away = now - self._lost_since
        self._lost_since = None
        log.warning("camera back after %.0f s", away)
        self.emit(
            "device.notice",
            {"level": "info", "message": f"camera back after {away:.0f} s"},
            Priority.NORMAL,
        )
        return True

    def masked(self, image: np.ndarray) -> np.ndarray:
        """The frame with the ignored zones painted flat grey."""
        if not self.ignore:
            return image
        out = image.copy()
        h, w = image.shape[:2]
        for x1, y1, x2, y2 in self.ignore:
            out[int(y1 * h) : int(y2 * h), int(x1 * w) : int(x2 * w)] = 127
        return out

    def process(self, frame: Frame) -> str | None:
        night = is_night(frame.image)
        if self.ignore:
            frame = Frame(self.masked(frame.image), frame.ts, frame.index)
        if (
            self.motion is not None
            and not self.motion.moving(frame.image)
            and self.tracker.current is None
        ):
            finding, people = Finding(0.0, (0, 0, 0, 0), ""), []
        elif isinstance(self.model, MonkeyWatch):
            with self.meter.inference():
                look = self.model.look(frame.image)
            finding, people = look.finding, look.blur
            self.scored += 1
        else:
            with self.meter.inference():
                finding, people = self.model.monkey(frame.image), []
            self.scored += 1
        threshold = self.night_threshold if night else self.rules.threshold
        keep = Shot.of(frame, finding, people) if finding.score >= threshold else None
        what = self.tracker.feed(frame.ts, finding.score, keep, threshold)
        cur = self.tracker.current
        if what == "start" and cur is not None and cur.best is not None:
            self._id = uuid.uuid4().hex
            log.info("monkeys! incursion %d started (score %.2f)", cur.number, cur.max_score)
            if self.log is not None:
                self.log.record("start", cur.best, cur.frames)
            if self.deterrent is not None:
                self.deterrent.fire(night=night)
            self.emit(
                "wildlife.incursion",
                {
                    "incursion": self._id,
                    "camera": self.camera,
                    "location": self.location,
                    "started": cur.started.isoformat(),
                    "score": round(cur.max_score, 4),
                    "label": cur.best.finding.label,
                    "box": list(cur.best.finding.box),
                    "frames": cur.frames,
                    "night": night,
                    "snapshot_jpeg": snapshot(cur.best, blur_people=self.blur_people),
                },
                Priority.ALARM,
            )
        elif what == "end":
            done = self.tracker.last_ended
            if done is not None and done.best is not None and self._id is not None:
                log.info("incursion %d ended after %d frames", done.number, done.frames)
                if self.log is not None:
                    self.log.record("end", done.best, done.frames)
                self.emit(
                    "wildlife.incursion_end",
                    {
                        "incursion": self._id,
                        "started": done.started.isoformat(),
                        "ended": (done.ended or done.last_seen).isoformat(),
                        "frames": done.frames,
                        "max_score": round(done.max_score, 4),
                        "snapshot_jpeg": snapshot(done.best, blur_people=self.blur_people),
                    },
                    Priority.NORMAL,
                )
            self._id = None
        return what

    def hold_deterrent(self, seconds: float) -> bool:
        if self.deterrent is None:
            return False
        self.deterrent.hold(seconds)
        return True

    def _cmd_deterrent_hold(self, args: dict[str, Any]) -> dict[str, Any]:
        """A hunter is on the way (or a trap is set): keep the deterrent silent."""
        minutes = float(args.get("minutes", 60))
        if not 0 < minutes <= 24 * 60:
            raise ValueError(f"minutes: expected 1..1440 (got {minutes})")
        return {"held": self.hold_deterrent(minutes * 60), "minutes": minutes}

    def telemetry(self) -> Telemetry:
        return self.meter.read()

    def close(self) -> None:
        self.source.close()
        for part in (self.deterrent, self.pir):
            if part is not None:
                part.close()
