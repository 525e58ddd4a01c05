"""Bus-ridership figures on this machine.

* Frames/s of the door-counting pipeline (detector → tracker → line) on the OpenCV walking
  clip scaled to 640x480, with OpenCV on 1 and on 2 threads, for each detector; peak RSS.
* Count error against the hand-labelled truth (tests/data/vtest_truth.json), per direction:
  totals, and per 10-second window the share exactly right, within ±1, and the MAE.
* Stop and trip matching on simulated days of door openings (GPS noise 8 m, stops across
  the road 15 m apart, a stop course noise of 15°), with and without the course.

Usage: python bench/ridership_count.py
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.camera import Frame  # noqa: E402
from edge.ridership import accuracy  # noqa: E402
from edge.ridership.count import DoorCounter, count_video  # noqa: E402
from edge.ridership.gtfs import load_feed  # noqa: E402
from edge.ridership.sim import drive, write_feed  # noqa: E402
from edge.ridership.stops import StopMatcher  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
VTEST = ROOT.parent / "shared" / "media" / "opencv" / "vtest.avi"
TRUTH = ROOT / "tests" / "data" / "vtest_truth.json"


def frames_640() -> list[Frame]:
    cap = cv2.VideoCapture(str(VTEST))
    out = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        out.append(Frame(cv2.resize(img, (640, 480)), datetime.now(UTC), len(out)))
    return out


def speed(frames: list[Frame], detector: str, threads: int) -> float:
    cv2.setNumThreads(threads)
    line = (267.0, 275.0, 267.0, 100.0)  # the truth line, scaled to 640x480
    counter = DoorCounter(line, detector=detector)  # type: ignore[arg-type]
    t = time.perf_counter()
    for f in frames:
        counter.process(f)
    return len(frames) / (time.perf_counter() - t)


def main() -> None:
    truth = accuracy.load_truth(TRUTH)
    assert truth.line is not None
    result = count_video(VTEST, truth.line)
    scores = accuracy.score(truth.crossings, result.marks, result.frames, 100)
    print("\ncount error on vtest.avi (768x576, blobs, windows of 100 frames = 10 s)")
    print(accuracy.table(scores))

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS while counting the clip (streamed, as on a bus): {rss:.0f} MB\n")
    frames = frames_640()
    print(f"counting pipeline, {len(frames)} frames at 640x480")
    print("detector  threads  frames/s")
    for det, n in (("blobs", len(frames)), ("hog", 120)):
        for threads in (1, 2):
            print(f"{det:<8}  {threads:>7}  {speed(frames[:n], det, threads):>8.1f}")

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
