"""The two-stage watch on real models: small monkeys found through proposals, people never a
monkey and pixelated in what leaves the device, snapshots never kept at full resolution."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from bench.wildlife_curves import hit
from bench.wildlife_sets import macaques, small, video_frames
from mimamori.edge.camera import Frame
from mimamori.edge.contract import Priority
from mimamori.edge.vision.manifest import DEFAULT_MODEL, load_manifest
from mimamori.edge.vision.onnx import Finding
from mimamori.edge.wildlife.app import SNAPSHOT_WIDTH, Shot, SnapshotLog, WildlifeApp, snapshot
from mimamori.edge.wildlife.incursion import Rules
from mimamori.edge.wildlife.watch import (
    NIGHT_THRESHOLD,
    THRESHOLD,
    Classifier,
    MonkeyWatch,
    load_watch,
    square,
)
from tests.conftest import MEDIA

pytestmark = pytest.mark.skipif(not MEDIA.is_dir(), reason="../shared/media not present")
T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def watch() -> MonkeyWatch:
    return load_watch(threads=2)


@pytest.fixture(scope="module")
def walkers() -> list[np.ndarray]:
    return list(video_frames(MEDIA / "opencv" / "vtest.avi", every=100, limit=4))


def test_square_crop_fits_the_frame() -> None:
    assert square((10, 10, 30, 20), 640, 480, 1.5, 48) == (0, 0, 48, 48)
    assert square((600, 400, 640, 480), 640, 480, 1.0, 48) == (560, 400, 640, 480)
    x1, y1, x2, y2 = square((100, 100, 300, 200), 640, 480, 1.4, 48)
    assert x2 - x1 == y2 - y1 == 280 and (x1 + x2) // 2 == 200


def test_small_distant_monkeys_are_proposed_and_scored_at_their_own_size(
    watch: MonkeyWatch,
) -> None:
    samples = [s for i, s in enumerate(small()) if i % 4 == 3]  # the 110-px monkeys
    looks = [watch.look(s.image) for s in samples]
    proposed = sum(
        any(hit(box, s.boxes[0]) for box, _ in lk.regions)
        for lk, s in zip(looks, samples, strict=True)
    )
    assert proposed >= 8  # stage 1: the proposer boxes most of them (10 of 12 measured)
    by_proposal = sum(lk.proposal is not None and lk.proposal.score >= 0.5 for lk in looks)
    by_tiles = sum(lk.tiles.score >= 0.5 for lk in looks)
    assert by_proposal > by_tiles  # a crop at the monkey's size beats a 432-px tile
    for lk, s in zip(looks, samples, strict=True):
        if lk.stage == "proposal" and lk.finding.score >= 0.5:
            assert hit(lk.finding.box, s.boxes[0])  # the box is where the monkey is


def test_people_walking_are_people_not_monkeys(
    watch: MonkeyWatch, walkers: list[np.ndarray]
) -> None:
    looks = [watch.look(frame) for frame in walkers]
    assert sum(len(lk.people) for lk in looks) >= len(walkers)
    assert max(lk.finding.score for lk in looks) < 0.3


@dataclass(frozen=True)
class Box:
    box: tuple[int, int, int, int]
    score: float
    name: str


class FixedProposer:
    """A proposer that always reports the same objects (the rule under test is ours)."""

    def __init__(self, *objects: Box) -> None:
        self.objects = list(objects)

    def detect(self, frame_bgr: np.ndarray, *, classes: object = True) -> Sequence[Box]:
        return self.objects


def test_a_region_called_person_is_never_a_monkey() -> None:
    classifier = Classifier(load_manifest(DEFAULT_MODEL), threads=2)
    photo = next(s for s in macaques() if s.name.endswith("/monkey_143.jpg"))
    img, where = photo.image, photo.boxes[0]  # one macaque, its hand-drawn box
    t = classifier.manifest.score_threshold
    as_animal = MonkeyWatch(classifier, FixedProposer(Box(where, 0.6, "dog")))
    assert as_animal.look(img).finding.score >= t  # the crop is a primate...
    as_person = MonkeyWatch(classifier, FixedProposer(Box(where, 0.9, "person")))
    look = as_person.look(img)
    assert look.people == [where]
    assert look.finding.score < t  # ...unless the detector is sure it is a person
    assert look.proposal is None


def test_snapshot_blurs_people_and_the_device_keeps_them(
    watch: MonkeyWatch, walkers: list[np.ndarray], tmp_path: Path
) -> None:
    frame = cv2.resize(walkers[0], (1280, 960))
    look = watch.look(frame)
    assert look.people
    corner = Finding(0.9, (0, 0, 4, 4), "macaque")  # the monkey's box away from the people
    assert set(look.people) <= set(look.blur)  # blurred: the sure people and the likely ones
    shot = Shot.of(Frame(frame, T0, 7), corner, look.blur)
    assert shot.image.shape[1] == SNAPSHOT_WIDTH  # never the full-resolution frame
    assert all(b[2] <= SNAPSHOT_WIDTH for b in shot.people)

    def decode(b64: str) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)

    sent, raw = decode(snapshot(shot)), decode(snapshot(shot, blur_people=False))
    for x1, y1, x2, y2 in shot.people:
        if (x2 - x1) * (y2 - y1) < 400:
            continue
        detail_sent = cv2.Laplacian(sent[y1:y2, x1:x2], cv2.CV_64F).var()
        detail_raw = cv2.Laplacian(raw[y1:y2, x1:x2], cv2.CV_64F).var()
        assert detail_sent < detail_raw / 3
    kept = SnapshotLog(tmp_path / "wildlife", 10_000_000).record("start", shot, 3)
    on_device = cv2.imread(str(kept))
    assert np.abs(on_device.astype(int) - raw).mean() < 3  # the device keeps the raw one


def test_shot_of_a_small_frame_is_a_copy() -> None:
    img = np.zeros((120, 160, 3), np.uint8)
    shot = Shot.of(Frame(img, T0, 1), Finding(0.9, (10, 10, 50, 50), "macaque"))
    img[:] = 255
    assert shot.image.max() == 0 and shot.finding.box == (10, 10, 50, 50)


class Frames:
    """Recorded frames as a camera (the camera is the hardware seam)."""

    def __init__(self, images: list[np.ndarray]) -> None:
        self.images = images
        self.i = 0

    def read(self) -> Frame | None:
        if self.i >= len(self.images):
            return None
        self.i += 1
        return Frame(self.images[self.i - 1], T0 + timedelta(seconds=self.i / 2), self.i)

    def close(self) -> None:
        pass


def test_people_walking_start_no_incursion_and_a_macaque_starts_one(
    watch: MonkeyWatch, walkers: list[np.ndarray]
) -> None:
    rules = Rules(threshold=THRESHOLD, start_frames=2, window_s=10, quiet_s=30, cooldown_s=60)
    sent: list[tuple[str, dict[str, Any]]] = []

    def emit(kind: str, data: dict[str, Any], prio: Priority) -> None:
        sent.append((kind, data))

    app = WildlifeApp(Frames(walkers), watch, emit, rules=rules, night_threshold=NIGHT_THRESHOLD)
    for _ in range(len(walkers) + 1):
        app.step(0.0)
    assert app.scored == len(walkers) and sent == []
    photo = next(s for s in macaques() if s.name.endswith("/monkey_143.jpg")).image
    app = WildlifeApp(Frames([photo] * 3), watch, emit, rules=rules, night_threshold=0.8)
    for _ in range(4):
        app.step(0.0)
    assert [k for k, _ in sent] == ["wildlife.incursion"]
    assert sent[0][1]["score"] >= THRESHOLD and sent[0][1]["label"]
