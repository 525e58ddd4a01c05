"""One door's counting pipeline: detector → tracker → counting line, and offline counting.

``DoorCounter`` is what the bus app runs per door camera; ``count_video`` runs the same
pipeline over a recorded clip (``mimamori ridership count``), optionally writing an annotated
video so staff can check the counter by eye.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np

from mimamori.edge.camera import Frame
from mimamori.edge.camera.files import IMAGE_EXT, FileSource
from mimamori.edge.ridership.line import Anchor, Crossing, LineCounter
from mimamori.edge.vision.blobs import BlobDetector, BlobSettings, Box
from mimamori.edge.vision.manifest import Manifest
from mimamori.edge.vision.tracking import Tracker

log = logging.getLogger(__name__)

DetectorName = Literal["blobs", "hog", "yolox"]


class Detector(Protocol):
    def detect(self, image: np.ndarray, busy: bool = False) -> list[Box]: ...

    def learn(self, image: np.ndarray) -> None: ...


def make_detector(
    name: DetectorName,
    *,
    gate: bool = True,
    model: Manifest | Path | None = None,
    person_area: float | None = None,
    shadow_ratio: float = 0.5,
    background_frames: int = 300,
    person_score: float | None = None,
) -> Detector:
    """The named detector; ``yolox`` falls back to blobs (logged) if its model cannot load.

    ``model``: the YOLOX manifest, or its path (default ``models/yolox-nano.toml``); ``person_area``: one
    person's blob as a fraction of the frame, to split blobs of several, and ``shadow_ratio``
    how dark a shadow may be (overhead cameras; see ``BlobSettings``), ``background_frames``
    how long the floor's model remembers (``BlobSettings.history``); ``person_score``:
    yolox's lowest person score (default: the manifest's).
    """
    if name == "hog":
        from mimamori.edge.vision.hog import HogDetector

        return HogDetector()
    if name == "yolox":
        from mimamori.edge.vision.manifest import ModelError
        from mimamori.edge.vision.persons import GatedPersonDetector
        from mimamori.edge.vision.yolox import DEFAULT_YOLOX, YoloxDetector

        try:
            yolox = YoloxDetector(model or DEFAULT_YOLOX, score_threshold=person_score)
            return GatedPersonDetector(yolox, gate=gate)
        except ModelError as e:
            log.error("person detector unavailable, counting with blobs instead: %s", e)
    return BlobDetector(
        BlobSettings(person_area=person_area, shadow_ratio=shadow_ratio, history=background_frames)
    )


class DoorCounter:
    def __init__(
        self,
        line: tuple[float, float, float, float],
        *,
        detector: DetectorName = "blobs",
        anchor: Anchor = "center",
        band_px: float = 12.0,
        gate: bool = True,
        person_area: float | None = None,
        shadow_ratio: float = 0.5,
        background_frames: int = 300,
        person_score: float | None = None,
        model: Manifest | None = None,
    ) -> None:
        self.detector = make_detector(
            detector,
            model=model,
            gate=gate,
            person_area=person_area,
            shadow_ratio=shadow_ratio,
            background_frames=background_frames,
            person_score=person_score,
        )
        self.tracker = Tracker()
        self.line = LineCounter(line, band_px=band_px, anchor=anchor)
        self.last_boxes: list[Box] = []

    def process(self, frame: Frame) -> list[Crossing]:
        self.last_boxes = self.detector.detect(frame.image, busy=bool(self.tracker.tracks))
        self.tracker.update(self.last_boxes)
        return self.line.update(self.tracker.trusted(), frame.ts)

    def learn(self, frame: Frame) -> None:
        """The door is shut: keep the floor's model current; whoever was being tracked is
        gone by the time it opens again (a track carried over would pair with somebody else
        at the next stop and count a crossing nobody made)."""
        self.detector.learn(frame.image)
        self.tracker.clear()

    def draw(self, image: np.ndarray) -> np.ndarray:
        out = image.copy()
        x1, y1, x2, y2 = (int(v) for v in self.line.line)
        cv2.line(out, (x1, y1), (x2, y2), (0, 255, 255), 2)
        nx, ny = self.line.normal
        mx, my = (x1 + x2) // 2, (y1 + y2) // 2
        cv2.arrowedLine(out, (mx, my), (int(mx + nx * 30), int(my + ny * 30)), (0, 255, 255), 2)
        for b in self.last_boxes:
            cv2.rectangle(out, b[:2], b[2:], (80, 80, 80), 1)
        for t in self.tracker.trusted():
            color = (0, 200, 0) if not t.missed else (0, 140, 255)
            cv2.rectangle(out, t.box[:2], t.box[2:], color, 2)
            pts = np.array(t.path[-30:], dtype=np.int32).reshape(-1, 1, 2)
            cv2.polylines(out, [pts], False, color, 1)
            cv2.putText(
                out, str(t.id), t.box[:2], cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA
            )
        cv2.putText(
            out,
            f"in {self.line.ins}  out {self.line.outs}",
            (10, 30),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.9,
            (0, 255, 255),
            2,
            cv2.LINE_AA,
        )
        return out


@dataclass(frozen=True)
class Counted:
    frame: int
    track: int  # the number drawn beside the box in the checking video
    dir: str  # "in" | "out"


@dataclass
class CountResult:
    path: str
    frames: int
    ins: int
    outs: int
    seconds: float
    crossings: list[Counted] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def marks(self) -> list[tuple[int, str]]:
        """(frame, direction) of each crossing, as a truth file lists them."""
        return [(c.frame, c.dir) for c in self.crossings]


def count_video(
    path: Path,
    line: tuple[float, float, float, float],
    *,
    detector: DetectorName = "blobs",
    anchor: Anchor = "center",
    band_px: float = 12.0,
    gate: bool = True,
    person_area: float | None = None,
    person_score: float | None = None,
    annotate: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> CountResult:
    """Count a clip from start to end. Raises CameraError if it cannot be read."""
    return count_lines(
        path,
        [line],
        detector=detector,
        anchor=anchor,
        band_px=band_px,
        gate=gate,
        person_area=person_area,
        person_score=person_score,
        annotate=annotate,
        progress=progress,
    )[0]


def count_lines(
    path: Path,
    lines: list[tuple[float, float, float, float]],
    *,
    detector: DetectorName = "blobs",
    anchor: Anchor = "center",
    band_px: float = 12.0,
    gate: bool = True,
    person_area: float | None = None,
    person_score: float | None = None,
    annotate: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[CountResult]:
    """Count a clip on several lines at once: one detector and tracker, one counter per line
    (the annotated video shows the first). Raises CameraError if the clip cannot be read."""
    if not lines:
        raise ValueError("lines: give at least one counting line")
    if path.is_dir() or path.suffix.lower() in IMAGE_EXT:
        raise ValueError(
            f"{path}: a still image{' folder' if path.is_dir() else ''}; counting needs a video "
            "of people passing the door (.mp4, .avi, .mkv, .h264, ...)"
        )
    source = FileSource(path)
    counter = DoorCounter(
        lines[0],
        detector=detector,
        anchor=anchor,
        band_px=band_px,
        gate=gate,
        person_area=person_area,
        person_score=person_score,
    )
    others = [LineCounter(ln, band_px=band_px, anchor=anchor) for ln in lines[1:]]
    writer: cv2.VideoWriter | None = None
    crossings: list[list[Counted]] = [[] for _ in lines]
    frames = 0
    started = time.perf_counter()
    try:
        while (frame := source.read()) is not None:
            if frames == 0:
                h, w = frame.image.shape[:2]
                for ln in lines:
                    check_in_frame(ln, w, h)
            for c in counter.process(frame):
                crossings[0].append(Counted(frame.index, c.track, c.direction))
            trusted = counter.tracker.trusted()
            for i, other in enumerate(others, 1):
                for c in other.update(trusted, frame.ts):
                    crossings[i].append(Counted(frame.index, c.track, c.direction))
            frames += 1
            if annotate is not None:
                if writer is None:
                    h, w = frame.image.shape[:2]
                    fourcc = cv2.VideoWriter.fourcc(*"mp4v")
                    writer = cv2.VideoWriter(str(annotate), fourcc, 10.0, (w, h))
                    if not writer.isOpened():
                        raise OSError(f"{annotate}: cannot write a video here")
                writer.write(counter.draw(frame.image))
            if progress is not None and frames % 100 == 0:
                progress(frames)
    finally:
        source.close()
        if writer is not None:
            writer.release()
    if frames == 0:
        raise ValueError(f"{path}: no frame could be read from this video")
    seconds = time.perf_counter() - started
    counters = [counter.line, *others]
    return [
        CountResult(str(path), frames, lc.ins, lc.outs, seconds, cs)
        for lc, cs in zip(counters, crossings, strict=True)
    ]


def check_in_frame(line: tuple[float, float, float, float], w: int, h: int) -> None:
    """ValueError unless both end points of the line lie in a ``w``×``h`` frame."""
    x1, y1, x2, y2 = line
    for x, y in ((x1, y1), (x2, y2)):
        if not (0 <= x <= w and 0 <= y <= h):
            raise ValueError(
                f"line {x1:g},{y1:g},{x2:g},{y2:g}: the point ({x:g}, {y:g}) is outside the "
                f"{w}×{h} frame (x 0–{w}, y 0–{h}); nobody could cross it there"
            )


def print_progress(frames: int) -> None:
    print(f"  {frames} frames…", file=sys.stderr, flush=True)
