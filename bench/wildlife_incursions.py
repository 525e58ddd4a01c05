"""Monkey watch at the level hunters see: incursions found, missed, and false ones per hour.

Frames go through the real watch (YOLOX-nano proposals + primate classifier, operating point
of ``edge/wildlife/watch.py``) and the real incursion rule (``edge/wildlife/incursion.py``:
``start_frames`` positives within ``window_s``) at 2 frames/s, with **no motion gate** (every
frame is scored: the gate only removes frames, so this is the worst case for false alarms).

Footage, per condition (day, gray, ir_dark):

* **visits**: each labelled macaque photograph, and each rendered small monkey 80 px and
  wider, becomes a visit of ``--visit-frames`` frames (2 frames/s) in which the animal moves:
  each frame shifted by up to 12 px and given fresh sensor noise (sigma 3), seeded by the
  frame. A visit is found if an incursion starts before it ends.
* **empty and people footage**: every 5th frame of ``opencv/vtest.avi`` (people walking, 2
  frames/s) and the 6 camera-trap frames in three noise variants, looped for ``--hours``.
  Every distinct frame is scored once and the loop replays those scores, so the figure says
  that none of these frames can build an incursion however long they play; the variety of
  the footage, not the hours, is what bounds it.

The incursion rule is compared at k = 1, 2, 3 positives within the window (the device's
default is 3): found visits and false incursions per hour for each.

Usage: python bench/wildlife_incursions.py [--hours 24] [--visit-frames 8]
       [--conditions day,gray,ir_dark]
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.wildlife_sets import MEDIA, Sample, macaques, negatives, small, video_frames  # noqa: E402
from mimamori.edge.wildlife.app import is_night  # noqa: E402
from mimamori.edge.wildlife.conditions import CONDITIONS  # noqa: E402
from mimamori.edge.wildlife.incursion import Rules, Tracker  # noqa: E402
from mimamori.edge.wildlife.watch import NIGHT_THRESHOLD, THRESHOLD, MonkeyWatch, load_watch  # noqa: E402

FPS = 2.0
T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def jitter(img: np.ndarray, name: str, sigma: float = 3.0, shift: int = 12) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    dx, dy = (int(v) for v in rng.integers(-shift, shift + 1, 2))
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    moved = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)
    noisy = moved.astype(np.float32) + rng.normal(0, sigma, moved.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def score(watch: MonkeyWatch, img: np.ndarray) -> tuple[float, float]:
    """(score, threshold that applies to this frame)."""
    return watch.look(img).finding.score, NIGHT_THRESHOLD if is_night(img) else THRESHOLD


def run_rule(scores: list[tuple[float, float]], rules: Rules) -> list[int]:
    """Frame indices at which an incursion starts."""
    tracker: Tracker[int] = Tracker(rules)
    starts = []
    for i, (s, thr) in enumerate(scores):
        if tracker.feed(T0 + timedelta(seconds=i / FPS), s, i, thr) == "start":
            starts.append(i)
    return starts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--visit-frames", type=int, default=8)
    ap.add_argument("--conditions", default="day,gray,ir_dark")
    ap.add_argument("--window-s", type=float, default=10.0)
    args = ap.parse_args()
    ks = (1, 2, 3)  # start_frames compared: the device default is 3
    rules = {
        k: Rules(
            threshold=THRESHOLD, start_frames=k, window_s=args.window_s, quiet_s=30, cooldown_s=60
        )
        for k in ks
    }
    watch = load_watch(threads=2)
    animals: list[Sample] = list(macaques()) + [
        s
        for i, s in enumerate(small())
        if i % 4 >= 2  # the 80- and 110-px ones
    ]
    walking = list(video_frames(MEDIA / "opencv" / "vtest.avi", every=5))
    empty = [s.image for s in negatives() if "/sample-" in s.name]  # the camera-trap frames
    print(
        f"rule: k positives within {args.window_s:.0f} s at {FPS:.0f} frames/s (k = 1, 2, 3; "
        f"the device uses 3); thresholds day {THRESHOLD}, night {NIGHT_THRESHOLD}; no motion "
        "gate\n"
    )
    print(
        f"{'condition':<10}{'footage':<26}{'frames':>8}{'visits':>7}"
        + "".join(f"{f'found k={k}':>11}" for k in ks)
        + "".join(f"{f'false/h k={k}':>13}" for k in ks)
    )
    for cond in args.conditions.split(","):
        conv = CONDITIONS[cond]
        t0 = time.perf_counter()
        for group in ("macaques", "small"):
            visits = [s for s in animals if s.name.startswith(group)]
            found = dict.fromkeys(ks, 0)
            frames = 0
            for s in visits:
                base = conv(s.image, s.name)
                scores = [
                    score(watch, jitter(base, f"{s.name}/{i}")) for i in range(args.visit_frames)
                ]
                frames += len(scores)
                for k in ks:
                    found[k] += bool(run_rule(scores, rules[k]))
            print(
                f"{cond:<10}{group + ' visits':<26}{frames:>8}{len(visits):>7}"
                + "".join(f"{found[k]:>11}" for k in ks)
            )
        for label, loop in (
            ("people walking (vtest)", [conv(f, f"vtest/{i}") for i, f in enumerate(walking)]),
            (
                "empty camera-trap scenes",
                [
                    jitter(conv(img, f"empty/{i}"), f"empty/{i}/{v}", shift=0)
                    for i, img in enumerate(empty)
                    for v in range(3)
                ],
            ),
        ):
            distinct = [score(watch, f) for f in loop]
            n = int(args.hours * 3600 * FPS)
            looped = [distinct[i % len(distinct)] for i in range(n)]
            false = {k: len(run_rule(looped, rules[k])) / args.hours for k in ks}
            print(
                f"{cond:<10}{label:<26}{n:>8}{'':>7}{'':>33}"
                + "".join(f"{false[k]:>13.2f}" for k in ks)
                + f"   ({len(distinct)} distinct frames, best {max(s for s, _ in distinct):.2f})"
            )
        print(f"{'':<10}({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
