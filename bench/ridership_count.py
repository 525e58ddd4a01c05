"""Bus-ridership figures on this machine.

* Count error for every hand-labelled truth file (``tests/data/vtest_truth*.json``: lines
  placed differently on the OpenCV walking clip), for each detector, per direction: totals,
  and per 10-second window the share exactly right and within ±1 — the same settings for
  every line (the defaults a door gets).
* Frames/s of the door-counting pipeline (detector → tracker → line) pinned to one core, at
  640x480, for each detector; YOLOX with the motion gate on and off, on the busy clip and on a
  quiet doorway (a still frame of it with sensor noise), with the share of frames the
  detector ran; peak RSS.
* Stop and trip matching on simulated days of door openings (GPS noise 8 m, stops across
  the road 15 m apart, a stop course noise of 15°), with and without the course.

Usage: python bench/ridership_count.py [--no-hog]   (HOG takes a few minutes)
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mimamori.edge.camera import Frame  # noqa: E402
from mimamori.edge.ridership import accuracy  # noqa: E402
from mimamori.edge.ridership.count import DetectorName, DoorCounter, count_lines  # noqa: E402
from mimamori.edge.ridership.gtfs import load_feed  # noqa: E402
from mimamori.edge.ridership.sim import drive, write_feed  # noqa: E402
from mimamori.edge.ridership.stops import StopMatcher  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
VTEST = ROOT.parent / "shared" / "media" / "opencv" / "vtest.avi"
TRUTHS = sorted((ROOT / "tests" / "data").glob("vtest_truth*.json"))
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def frames_640() -> list[Frame]:
    cap = cv2.VideoCapture(str(VTEST))
    out = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        out.append(
            Frame(cv2.resize(img, (640, 480)), T0 + timedelta(seconds=len(out) / 10), len(out))
        )
    return out


def quiet(still: np.ndarray, n: int) -> list[Frame]:
    """An open door nobody walks through: one frame with sensor noise."""
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        noise = rng.integers(-4, 5, still.shape, dtype=np.int16)
        img = np.clip(still.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        out.append(Frame(img, T0 + timedelta(seconds=i / 10), i))
    return out


def speed(frames: list[Frame], detector: DetectorName, gate: bool = True) -> tuple[float, str]:
    line = (267.0, 275.0, 267.0, 100.0)  # the x = 320 truth line, scaled to 640x480
    counter = DoorCounter(line, detector=detector, gate=gate)
    t = time.perf_counter()
    for f in frames:
        counter.process(f)
    fps = len(frames) / (time.perf_counter() - t)
    runs = getattr(counter.detector, "runs", None)
    ran = f"{runs / len(frames):.0%}" if runs is not None else "100%"
    return fps, ran


def main() -> None:
    hog = "--no-hog" not in sys.argv
    truths = [(p.name, accuracy.load_truth(p)) for p in TRUTHS]
    lines = [t.line for _, t in truths if t.line is not None]
    assert len(lines) == len(truths), "every truth file here names its line"
    print("count error on vtest.avi (768x576), windows of 100 frames = 10 s, same settings")
    print("set                          detector  dir  truth  counted   error  exact  ±1")
    detectors: list[DetectorName] = ["blobs", "yolox"] + (["hog"] if hog else [])
    for det in detectors:
        results = count_lines(VTEST, lines, detector=det)
        for (name, truth), result in zip(truths, results, strict=True):
            for s in accuracy.score(truth.crossings, result.marks, result.frames, 100):
                print(
                    f"{name:<28} {det:<8}  {s.direction:<3}  {s.truth:>5}  {s.counted:>7}"
                    f"  {s.error:>+6.1%}  {s.exact:>5.0%}  {s.within_one:>3.0%}"
                )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS after counting (streamed, as on a bus): {rss:.0f} MB\n")

    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    frames = frames_640()
    still = quiet(frames[0].image, 200)
    print(f"counting pipeline on one core, 640x480: vtest.avi ({len(frames)} frames, someone")
    print("walking nearly all the time) and a quiet open door (200 frames, nobody)")
    print("detector  gate  clip    frames/s  detector ran on")
    runs: list[tuple[DetectorName, bool, int]] = [
        ("blobs", True, len(frames)),
        ("yolox", True, len(frames)),
        ("yolox", False, len(frames)),
    ]
    if hog:
        runs.append(("hog", True, 120))
    for det, gate, n in runs:
        for clip, fr in (("vtest", frames[:n]), ("quiet", still)):
            fps, ran = speed(fr, det, gate)
            g = ("on" if gate else "off") if det == "yolox" else "-"
            print(f"{det:<8}  {g:<4}  {clip:<6}  {fps:>8.1f}  {ran:>15}")

    with tempfile.TemporaryDirectory() as tmp:
        feed = load_feed(write_feed(Path(tmp), across_m=15))
        print("\nstop matching, 5 simulated days, GPS noise 8 m, stops 15 m across the road")
        print("course   door openings  right stop  right trip  ms/match")
        for use_course in (True, False):
            n = ok_stop = ok_trip = 0
            t = time.perf_counter()
            for seed in range(1, 6):
                m = StopMatcher(feed)
                for o in drive(feed, date(2026, 11, 25), seed=seed, gps_sigma_m=8.0):
                    r = m.match(o.fix, o.course if use_course else None, o.when)
                    n += 1
                    ok_stop += r.stop_id == o.stop_id and r.stop_sequence == o.stop_sequence
                    ok_trip += r.trip_id == o.trip_id
            ms = (time.perf_counter() - t) / n * 1000
            print(
                f"{'yes' if use_course else 'no ':<7}  {n:>13}  {ok_stop / n:>10.2%}"
                f"  {ok_trip / n:>10.2%}  {ms:>8.2f}"
            )


if __name__ == "__main__":
    main()
