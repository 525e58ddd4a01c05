"""Our centroid tracker against ByteTrack (Roboflow ``trackers``), both feeding the same line
counter, on every hand-labelled truth file of vtest.avi.

YOLOX-nano runs once per frame (boxes from person score 0.3 kept, so ByteTrack gets its
low-score second pass); our tracker gets the boxes at the counter's person threshold.
Prints per set and direction the count, the share of 10-second windows exactly right, and
the tracker's time per frame.

``trackers`` is not a dependency of the project (with ``supervision``, SciPy, matplotlib and
PyAV it is about 110 MB of wheels); install it in a scratch directory to run this:
    pip install --target /tmp/trk trackers && PYTHONPATH=/tmp/trk python bench/ridership_trackers.py
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mimamori.edge.ridership import accuracy  # noqa: E402
from mimamori.edge.ridership.line import LineCounter  # noqa: E402
from mimamori.edge.vision.persons import PERSON_THRESHOLD  # noqa: E402
from mimamori.edge.vision.tracking import Track, Tracker  # noqa: E402
from mimamori.edge.vision.yolox import YoloxDetector  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
VTEST = ROOT.parent / "shared" / "media" / "opencv" / "vtest.avi"
TRUTHS = sorted((ROOT / "tests" / "data").glob("vtest_truth*.json"))
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
Boxes = list[tuple[tuple[int, int, int, int], float]]


def detections() -> list[Boxes]:
    model = YoloxDetector(threads=2)
    cap = cv2.VideoCapture(str(VTEST))
    out: list[Boxes] = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        out.append([(d.box, d.score) for d in model.detect(img, score_threshold=0.3)])
    return out


def ours(frames: list[Boxes]) -> list[list[Track]]:
    tracker = Tracker()
    out = []
    for boxes in frames:
        tracker.update([b for b, s in boxes if s >= PERSON_THRESHOLD])
        out.append([replace(t) for t in tracker.trusted()])  # as they were in this frame
    return out


def bytetrack(frames: list[Boxes], **settings: float) -> list[list[Track]]:
    import supervision as sv
    import trackers

    bt = trackers.ByteTrackTracker(frame_rate=10, **settings)  # type: ignore[arg-type]
    first: dict[int, tuple[int, int, int, int]] = {}
    out = []
    for boxes in frames:
        det = sv.Detections(
            xyxy=np.array([b for b, _ in boxes], dtype=float).reshape(-1, 4),
            confidence=np.array([s for _, s in boxes], dtype=float),
            class_id=np.zeros(len(boxes), dtype=int),
        )
        tracks = []
        res = bt.update(det)
        for xyxy, tid in zip(res.xyxy, res.tracker_id, strict=True):
            if tid < 0:
                continue
            box = (int(xyxy[0]), int(xyxy[1]), int(xyxy[2]), int(xyxy[3]))
            first.setdefault(int(tid), box)
            tracks.append(Track(int(tid), box, 0, 0, hits=3, first_box=first[int(tid)]))
        out.append(tracks)
    return out


def main() -> None:
    truths = [(p.name, accuracy.load_truth(p)) for p in TRUTHS]
    frames = detections()
    candidates = {"centroid (ours)": lambda: ours(frames)}
    try:
        import trackers  # noqa: F401
    except ImportError:
        print("trackers is not installed: only our tracker is measured (see the docstring)")
    else:
        candidates["ByteTrack defaults"] = lambda: bytetrack(frames)
        candidates["ByteTrack 0.62"] = lambda: bytetrack(
            frames, track_activation_threshold=0.62, high_conf_det_threshold=0.62
        )
        candidates["ByteTrack 0.62, iou 0.05"] = lambda: bytetrack(
            frames,
            track_activation_threshold=0.62,
            high_conf_det_threshold=0.62,
            minimum_iou_threshold=0.05,
        )
    print("tracker                    set                          dir  truth  counted  exact")
    for name, run in candidates.items():
        t = time.perf_counter()
        per_frame = run()
        ms = (time.perf_counter() - t) / len(frames) * 1000
        for set_name, truth in truths:
            assert truth.line is not None
            lc = LineCounter(truth.line)
            marks = []
            for i, tracks in enumerate(per_frame):
                for c in lc.update(tracks, T0 + timedelta(seconds=i / 10)):
                    marks.append((i, c.direction))
            for s in accuracy.score(truth.crossings, marks, len(frames), 100):
                print(
                    f"{name:<26} {set_name:<28} {s.direction:<3}  {s.truth:>5}  {s.counted:>7}"
                    f"  {s.exact:>5.0%}"
                )
        print(f"{name}: {ms:.2f} ms per frame for tracking")


if __name__ == "__main__":
    main()
