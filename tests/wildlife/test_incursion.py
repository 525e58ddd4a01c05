"""Incursions from scored frames, and the app on a replayed field sequence."""

from __future__ import annotations

import base64
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from mimamori.edge import contract
from mimamori.edge.camera.files import FileSource
from mimamori.edge.contract import Priority
from mimamori.edge.outbox import Outbox
from mimamori.edge.vision.manifest import DEFAULT_MODEL, load_manifest
from mimamori.edge.vision.onnx import OnnxModel
from mimamori.edge.wildlife.app import WildlifeApp, is_night
from mimamori.edge.wildlife.incursion import Rules, Tracker
from tests.conftest import MEDIA

T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def run(scores: list[float], rules: Rules, step_s: float = 1.0) -> list[str | None]:
    tracker: Tracker[int] = Tracker(rules)
    return [tracker.feed(T0 + timedelta(seconds=i * step_s), s, i) for i, s in enumerate(scores)]


def test_one_incursion_for_a_visit_and_none_for_a_stray_positive() -> None:
    rules = Rules(threshold=0.7, start_frames=3, window_s=5, quiet_s=3, cooldown_s=10)
    visit = [0.1] * 3 + [0.9, 0.95, 0.8, 0.2, 0.9, 0.85] + [0.1] * 6
    events = run(visit, rules)
    assert events.count("start") == 1 and events.count("end") == 1
    assert events.index("start") == 5  # the third positive within the window
    assert run([0.1, 0.9, 0.1, 0.1, 0.1, 0.1], rules).count("start") == 0  # a stray frame
    # two positives too far apart (outside the window) start nothing either
    assert run([0.9] + [0.1] * 6 + [0.9] + [0.1] * 6 + [0.9], rules).count("start") == 0


def test_cooldown_keeps_a_milling_troop_one_visit() -> None:
    rules = Rules(threshold=0.7, start_frames=2, window_s=5, quiet_s=2, cooldown_s=10)
    back_soon = [0.9, 0.9, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9] + [0.1] * 3 + [0.9] * 3
    assert run(back_soon, rules).count("start") == 1
    back_later = [0.9, 0.9] + [0.1] * 14 + [0.9, 0.9]
    assert run(back_later, rules).count("start") == 2


@pytest.mark.skipif(not MEDIA.is_dir(), reason="../shared/media not present")
def test_night_frames_are_recognised() -> None:
    gray = np.full((60, 80), 90, np.uint8)
    assert is_night(gray) and is_night(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    assert not is_night(cv2.imread(str(MEDIA / "opencv" / "fruits.jpg")))


@pytest.mark.skipif(not MEDIA.is_dir(), reason="../shared/media not present")
def test_replayed_field_gives_one_alarm_with_snapshot(tmp_path: Path) -> None:
    field = tmp_path / "field"
    field.mkdir()
    sequence = (
        [MEDIA / "camera-trap" / "sample-dzf-01.jpg"] * 4  # empty field
        + [
            MEDIA / "monkeys" / "images" / n
            for n in (
                "monkey_21.jpg",
                "monkey_49.jpg",
                "monkey_76.jpg",
                "monkey_16.jpg",
                "monkey_27.jpg",
            )
        ]
        + [MEDIA / "camera-trap" / "sample-dzf-01.jpg"] * 6  # they left
        + [MEDIA / "opencv" / "baboon.jpg"]  # one stray positive: no second alarm
        + [MEDIA / "camera-trap" / "sample-dzf-01.jpg"] * 3
    )
    for i, src in enumerate(sequence):
        shutil.copy(src, field / f"{i:03d}{src.suffix}")
    box = Outbox(tmp_path / "outbox.sqlite")
    app = WildlifeApp(
        FileSource(field, fps=1, start=T0, sleep=lambda s: None),
        OnnxModel(load_manifest(DEFAULT_MODEL)),
        lambda kind, data, prio: box.put(kind, data, prio=prio),
        rules=Rules(threshold=0.7, start_frames=3, window_s=10, quiet_s=4, cooldown_s=5),
        night_threshold=0.8,
    )
    while not app.exhausted:
        app.step(0)
    rows = box.pending(100)
    assert [r.kind for r in rows] == ["wildlife.incursion", "wildlife.incursion_end"]
    start, end = (r.payload() for r in rows)
    assert rows[0].prio == Priority.ALARM
    data = contract.IncursionData.model_validate(start.data)
    assert data.started == T0 + timedelta(seconds=4) and data.frames == 3
    assert data.score >= 0.7 and data.label
    jpeg = cv2.imdecode(np.frombuffer(base64.b64decode(data.snapshot_jpeg), np.uint8), 1)
    assert jpeg is not None and jpeg.shape[1] <= 640
    x1, y1, x2, y2 = data.box
    assert 0 <= x1 < x2 <= jpeg.shape[1] and 0 <= y1 < y2 <= jpeg.shape[0]
    done = contract.IncursionEndData.model_validate(end.data)
    assert done.incursion == data.incursion and done.frames == 5
    assert done.ended == T0 + timedelta(seconds=8)


@pytest.mark.skipif(not MEDIA.is_dir(), reason="../shared/media not present")
def test_ignored_zone_hides_monkeys_and_snapshot_log_is_bounded(tmp_path: Path) -> None:
    from mimamori.edge.wildlife.app import SnapshotLog

    monkey = cv2.imread(str(MEDIA / "monkeys" / "images" / "monkey_21.jpg"))
    model = OnnxModel(load_manifest(DEFAULT_MODEL))
    rules = Rules(threshold=0.7, start_frames=2, window_s=10, quiet_s=1, cooldown_s=0)

    def replay(app: WildlifeApp, visit: int = 0) -> list[str | None]:
        from mimamori.edge.camera import Frame

        frames = [monkey] * 3 + [np.full_like(monkey, 90)] * 3
        start = T0 + timedelta(minutes=visit)
        return [
            app.process(Frame(img, start + timedelta(seconds=i), i)) for i, img in enumerate(frames)
        ]

    seen: list[str] = []
    everywhere = WildlifeApp(
        FileSource(MEDIA / "opencv" / "fruits.jpg"),
        model,
        lambda k, d, p: seen.append(k),
        rules=rules,
        night_threshold=0.8,
        ignore=[(0.0, 0.0, 1.0, 1.0)],
    )
    assert "start" not in replay(everywhere) and seen == []  # the whole frame is ignored
    log = SnapshotLog(tmp_path / "log", max_bytes=60_000)
    watched = WildlifeApp(
        FileSource(MEDIA / "opencv" / "fruits.jpg"),
        model,
        lambda k, d, p: seen.append(k),
        rules=rules,
        night_threshold=0.8,
        log=log,
    )
    for visit in range(4):  # four visits: more snapshots than the log may keep
        replay(watched, visit)
    assert seen.count("wildlife.incursion") == 4
    kept = list((tmp_path / "log").glob("*.jpg"))
    assert 0 < len(kept) < 8 and sum(p.stat().st_size for p in kept) <= 60_000
    lines = (tmp_path / "log" / "events.jsonl").read_text().splitlines()
    assert lines and '"what": "start"' in lines[0]
