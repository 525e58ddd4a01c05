"""`mimamori ridership ...` commands."""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict
from pathlib import Path

from mimamori.edge.camera import CameraError
from mimamori.edge.cli import command_group
from mimamori.edge.ridership import accuracy

NUMBERS = re.compile(r"^-\d[\d.,\s-]*$")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rsub = command_group(
        sub,
        "ridership",
        help="bus-ridership tools",
        description="Bus-ridership tools that run without a broker, camera or bus.",
    )
    count = rsub.add_parser(
        "count",
        help="count people crossing a line in a recorded clip",
        description="Run the door counter over a recorded clip and print how many people "
        "crossed the line each way. 'in' is crossing toward the side the line points to when "
        "turned clockwise on screen: a line drawn left to right counts downward movement as in. "
        "With --annotate, also write a video with the line, boxes, tracks and running totals, "
        "to check the counter by eye. With --truth (a hand-labelled JSON file), print the "
        "error per direction, in total and per window.",
    )
    count.add_argument("video", type=Path, help="video file (anything OpenCV reads)")
    count.add_argument(
        "--line",
        metavar="x1,y1,x2,y2",
        help="the counting line in frame pixels, e.g. 320,330,320,120 (negative numbers are "
        "fine: --line -4,300,640,300); may be left out with a --truth file that has a line",
    )
    count.add_argument(
        "--detector",
        choices=["blobs", "yolox", "hog"],
        default="blobs",
        help="blobs (overhead door camera) or yolox (people seen at an angle or from the "
        "side); default %(default)s",
    )
    count.add_argument(
        "--no-gate",
        dest="gate",
        action="store_false",
        help="yolox: run the detector on every frame, not only while something moves",
    )
    count.add_argument(
        "--anchor",
        choices=["center", "bottom"],
        default="center",
        help="point of a person that crosses: center (overhead camera) or bottom (feet, "
        "angled camera); default %(default)s",
    )
    count.add_argument(
        "--band", type=float, default=12.0, help="hysteresis each side of the line, px"
    )
    count.add_argument(
        "--person-area",
        type=float,
        metavar="FRACTION",
        help="blobs: one person's blob as a fraction of the frame (e.g. 0.017); blobs of "
        "two or more are split (overhead cameras)",
    )
    count.add_argument(
        "--person-score",
        type=float,
        metavar="SCORE",
        help="yolox: the lowest score taken as a person (default: the model's, 0.65)",
    )
    count.add_argument("--annotate", type=Path, metavar="OUT.mp4", help="write a checking video")
    count.add_argument("--truth", type=Path, help="hand-labelled crossings (JSON) to score against")
    count.add_argument(
        "--window",
        type=int,
        default=100,
        help="frames per scoring window with --truth (default %(default)s)",
    )
    count.add_argument("--json", action="store_true", help="machine-readable output")
    count.set_defaults(func=_count)
    # "--line -4,300,640,300" is a value, not an option: argparse only knows plain negative
    # numbers (it reads "-4,300,..." as an unknown option and says "expected one argument")
    count._negative_number_matcher = NUMBERS
    cal = rsub.add_parser(
        "calibrate",
        help="choose a door's counter settings from a labelled clip",
        description="Count a clip recorded at the door with every candidate setting "
        "(detector, anchor, hysteresis band) and print the one with the smallest error "
        "against the hand-labelled crossings, before (the defaults) and after, as a "
        "[[ridership.doors]] config block.",
    )
    cal.add_argument("video", type=Path, help="video file (anything OpenCV reads)")
    cal.add_argument(
        "--truth", type=Path, required=True, help="hand-labelled crossings (JSON, with line)"
    )
    cal.add_argument(
        "--line", metavar="x1,y1,x2,y2", help="the counting line (default: the truth file's)"
    )
    cal.add_argument("--door", default="front", help="door name for the block")
    cal.add_argument("--source", default="picamera", help="camera source for the block")
    cal.add_argument("--window", type=int, default=100, help="frames per scoring window")
    cal.set_defaults(func=_calibrate)
    cal._negative_number_matcher = NUMBERS


def _count(args: argparse.Namespace) -> int:
    from mimamori.edge.ridership.count import count_video, print_progress

    try:
        truth = accuracy.load_truth(args.truth) if args.truth else None
        line = counting_line(args.line, truth, args.truth)
        result = count_video(
            args.video,
            line,
            detector=args.detector,
            anchor=args.anchor,
            band_px=args.band,
            gate=args.gate,
            person_area=args.person_area,
            person_score=args.person_score,
            annotate=args.annotate,
            progress=None if args.json else print_progress,
        )
    except (ValueError, CameraError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    scores = None
    if truth is not None:
        scores = accuracy.score(truth.crossings, result.marks, result.frames, args.window)
    if args.json:
        out = {
            "video": result.path,
            "frames": result.frames,
            "in": result.ins,
            "out": result.outs,
            "fps": round(result.fps, 1),
            "crossings": [asdict(c) for c in result.crossings],
        }
        if scores is not None:
            out["accuracy"] = [asdict(s) | {"error": round(s.error, 4)} for s in scores]
        print(json.dumps(out, indent=2))
        return 0
    print(f"{result.path}: {result.frames} frames at {result.fps:.0f} frames/s")
    print(f"in   {result.ins}")
    print(f"out  {result.outs}")
    if args.annotate:
        print(f"annotated video: {args.annotate}")
    if scores is not None:
        print()
        print(accuracy.table(scores))
    return 0


def counting_line(
    given: str | None, truth: accuracy.Truth | None, truth_file: Path | None
) -> tuple[float, float, float, float]:
    """The line to count on: --line, or the truth file's; ValueError when neither is given or
    the two differ (hand counts made on one line say nothing about another)."""
    from mimamori.edge.ridership.line import parse_line  # imports OpenCV: only when counting

    line = parse_line(given) if given else None
    known = truth.line if truth is not None else None
    if line is None and known is None:
        raise ValueError(
            "--line: give the counting line x1,y1,x2,y2"
            + (f' (the truth file {truth_file} has no "line")' if truth_file else "")
        )
    if line is not None and known is not None and line != known:
        raise ValueError(
            f"--line {given} differs from the line in {truth_file} "
            f"({','.join(f'{v:g}' for v in known)}): its crossings were counted on that line; "
            "leave --line out or label the clip again for this one"
        )
    return line or known  # type: ignore[return-value]


def _calibrate(args: argparse.Namespace) -> int:
    from mimamori.edge.ridership.calibrate import calibrate, config_block, default_trial

    try:
        truth = accuracy.load_truth(args.truth)
        line = counting_line(args.line, truth, args.truth)
        trials = calibrate(args.video, truth, line, window=args.window)
    except (ValueError, CameraError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    before, best = default_trial(trials), trials[0]
    for name, t in (("before (defaults)", before), ("after", best)):
        if t is None:
            continue
        knob = (
            f" (person score {t.setting.person_score:g})"
            if t.setting.person_score
            else f" (person size {t.setting.person_area:g} of the frame)"
            if t.setting.person_area
            else ""
        )
        print(f"{name}: detector {t.detector}{knob}, anchor {t.anchor}, band {t.band_px:g} px")
        print(accuracy.table(t.scores))
        print()
    print(config_block(best, line, args.door, args.source))
    return 0
