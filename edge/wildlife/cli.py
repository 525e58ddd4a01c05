"""`mimamori wildlife ...` commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mimamori.edge.cli import command_group
from mimamori.edge.vision.manifest import DEFAULT_MODEL, ModelError, load_manifest


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wsub = command_group(
        sub,
        "wildlife",
        help="monkey-watch tools",
        description="Monkey-watch tools that run without a broker or camera.",
    )
    scan = wsub.add_parser(
        "scan",
        help="find monkeys in images and videos (e.g. an SD-card dump)",
        description="Print per file whether a monkey is present, the score and the box "
        "(x1, y1, x2, y2). Folders are searched recursively; videos are sampled once a second. "
        "With --labels (YOLO .txt files, class 0 = monkey) also print precision, recall and F1; "
        "images without a label file count as having no monkey. JPEGs are turned upright by "
        "their EXIF orientation. A file that cannot be read (truncated, corrupt) is reported "
        "on stderr and skipped: exits 0 if at least one file was scanned, 2 if none could be.",
    )
    scan.add_argument("paths", nargs="+", type=Path, help="images, videos or folders")
    scan.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help="model manifest (default: %(default)s)"
    )
    scan.add_argument(
        "--threshold",
        type=float,
        help="score that counts as a monkey (default: the watch's operating point, 0.8, for a "
        "classifier; the manifest's score_threshold for a detector)",
    )
    scan.add_argument(
        "--single-stage",
        action="store_true",
        help="classifier on the whole frame and tiles only (no YOLOX proposals)",
    )
    scan.add_argument("--labels", type=Path, help="folder of YOLO label files for scoring")
    scan.add_argument("--json", action="store_true", help="machine-readable output")
    scan.set_defaults(func=_scan)


def _scan(args: argparse.Namespace) -> int:
    from mimamori.edge.vision.onnx import OnnxModel
    from mimamori.edge.wildlife.scan import run_scan
    from mimamori.edge.wildlife.watch import THRESHOLD, MonkeyWatch, load_watch

    model: OnnxModel | MonkeyWatch
    try:
        manifest = load_manifest(args.model)
        if manifest.task == "classify":
            model = load_watch(args.model, threads=2, two_stage=not args.single_stage)
            default = THRESHOLD
        else:
            model = OnnxModel(manifest)
            default = manifest.score_threshold
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    threshold = args.threshold if args.threshold is not None else default
    return run_scan(model, args.paths, threshold, as_json=args.json, labels=args.labels)
