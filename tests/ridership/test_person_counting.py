"""The YOLOX person detector in the door counter: threshold, motion gate, fallback, and the
count on every hand-labelled line of the real clip."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import pytest

from mimamori.edge.ridership import accuracy
from mimamori.edge.ridership.count import count_lines, make_detector
from mimamori.edge.vision.blobs import BlobDetector
from mimamori.edge.vision.persons import PERSON_THRESHOLD, GatedPersonDetector
from mimamori.edge.vision.yolox import YoloxDetector
from tests.ridership.scenes import pad, render, walk

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
VTEST = ROOT.parent / "shared" / "media" / "opencv" / "vtest.avi"
needs_clip = pytest.mark.skipif(not VTEST.is_file(), reason="../shared/media not present")


@pytest.fixture(scope="module")
def model() -> YoloxDetector:
    return YoloxDetector(threads=1)


def overlaps(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@needs_clip
def test_the_threshold_keeps_the_labelled_non_people_out(model: YoloxDetector) -> None:
    labels = json.loads((DATA / "vtest_person_frames.json").read_text(encoding="utf-8"))
    wrong = {(n["frame"], tuple(n["box"])) for n in labels["not_people"]}
    cap = cv2.VideoCapture(str(VTEST))
    false_at = {PERSON_THRESHOLD: 0, 0.3: 0}
    people = 0
    index = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        if index in labels["frames"]:
            for thr in false_at:
                for d in model.detect(img, score_threshold=thr):
                    bad = any(f == index and overlaps(d.box, b) for f, b in wrong)
                    false_at[thr] += bad
                    people += thr == PERSON_THRESHOLD and not bad
        index += 1
    assert false_at[PERSON_THRESHOLD] == 0
    assert false_at[0.3] >= 30  # the sign post, nearly every frame, at the sample's default
    assert people >= 4 * len(labels["frames"])  # four or more walkers a frame on average


def test_the_detector_runs_only_while_something_moves(model: YoloxDetector) -> None:
    frames = render([pad(walk(((100, 30), 0), ((100, 220), 30)), 60)], 100)
    gated = GatedPersonDetector(model, gate=True)
    for f in frames[:60]:  # the empty floor: the background settles, nothing moves
        assert gated.detect(f.image) == []
    idle = gated.runs
    for f in frames[60:]:
        gated.detect(f.image)
    assert idle <= 3  # the first frames, before the background model has settled
    assert gated.runs - idle >= 20  # the walker's frames
    always = GatedPersonDetector(model, gate=False)
    for f in frames[:20]:
        always.detect(f.image)
    assert always.runs == 20


def test_a_missing_model_falls_back_to_blobs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        d = make_detector("yolox", model=tmp_path / "nothing.toml")
    assert isinstance(d, BlobDetector)
    assert "nothing.toml" in caplog.text and "blobs" in caplog.text


# Lines where the counter is known to miss NTD's ±5 % per direction with every window within ±1,
# with the figures measured and stated in docs/ridership.md ("Accuracy to expect"). On the short
# horizontal line (y = 190) people cross at a shallow angle and leave the 12-px band late: the
# counter counts a pair walking down 10-11 frames after their labels, across the window edge at
# frame 300, so its totals are right but one window is 2 short and the next 2 over.
# Each entry: direction → (largest |error|, smallest share of windows within ±1).
KNOWN_MISSES = {
    "vtest_truth_y190_right.json": {"in": (0.05, 0.75)},
}


@pytest.mark.slow  # an accuracy run over the whole clip with YOLOX (about 25 s on 2 cores)
@needs_clip
def test_every_labelled_line_of_the_clip_with_one_setting() -> None:
    """Every truth file (x = 320 over y 120-330, x = 300 whole height, a horizontal line, a
    diagonal on the left and a held-out diagonal in the lower right), one pass, the same settings: NTD's ±5 % per direction and every window within
    ±1 (README, Bus ridership), except the measured misses above."""
    paths = sorted(DATA.glob("vtest_truth*.json"))
    truths = [accuracy.load_truth(p) for p in paths]
    lines = [t.line for t in truths if t.line is not None]
    results = count_lines(VTEST, lines, detector="yolox")
    for path, truth, result in zip(paths, truths, results, strict=True):
        scores = accuracy.score(truth.crossings, result.marks, result.frames, 100)
        for s in scores:
            error, within_one = KNOWN_MISSES.get(path.name, {}).get(s.direction, (0.05, 1.0))
            assert abs(s.error) <= error + 1e-9, (path.name, accuracy.table(scores))
            assert s.within_one >= within_one, (path.name, accuracy.table(scores))
