"""Offline scan: is there a monkey in these images and videos (e.g. an SD-card dump)?"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from mimamori.edge.vision.onnx import Finding
from mimamori.edge.wildlife.app import Model

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXT = {".mp4", ".avi", ".mov", ".mkv", ".h264", ".mjpeg"}


class MediaError(ValueError):
    """A file that is not a readable image or video."""


@dataclass
class Result:
    file: str
    monkey: bool
    score: float
    box: tuple[int, int, int, int]
    label: str
    frame: int | None = None  # for videos: the frame with the best score


def files(paths: list[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXT | VIDEO_EXT)
        else:
            yield p


def truncated_jpeg(data: bytes) -> bool:
    """A JPEG whose last scan never reaches its end marker (a card pulled mid-write).

    OpenCV decodes such a file anyway, greying out the missing rows, so the check is ours:
    after the last start-of-scan there must be an end-of-image marker.
    """
    if data[:2] != b"\xff\xd8":
        return False
    return data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")


def read_image(path: Path) -> np.ndarray:
    """An image as 8-bit BGR, turned upright by its EXIF orientation (CMYK JPEGs converted).

    Grayscale (infrared) images come back with three equal channels, which the watch
    recognises as night.
    """
    if not path.is_file():
        raise MediaError(f"{path}: file not found (expected an image or a video)")
    raw = path.read_bytes()
    if not raw:
        raise MediaError(f"{path}: empty file (expected an image)")
    if truncated_jpeg(raw):
        raise MediaError(f"{path}: truncated JPEG (the file ends before the image does)")
    # IMREAD_COLOR applies the EXIF orientation and converts CMYK, 16-bit and gray to BGR
    img = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError(
            f"{path}: not a readable image (corrupt, or not one of {', '.join(sorted(IMAGE_EXT))})"
        )
    return img


def scan_file(model: Model, path: Path, threshold: float, every_s: float = 1.0) -> Result:
    if path.suffix.lower() in VIDEO_EXT:
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise MediaError(f"{path}: not a readable video")
        step = max(1, int(round((cap.get(cv2.CAP_PROP_FPS) or 10) * every_s)))
        best: tuple[Finding, int] | None = None
        index = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if index % step == 0:
                f = model.monkey(frame)
                if best is None or f.score > best[0].score:
                    best = (f, index)
            index += 1
        cap.release()
        if best is None:
            raise MediaError(f"{path}: no frame could be decoded")
        f, frame_no = best
        return Result(str(path), f.score >= threshold, round(f.score, 4), f.box, f.label, frame_no)
    f = model.monkey(read_image(path))
    return Result(str(path), f.score >= threshold, round(f.score, 4), f.box, f.label)


def truth(labels: Path, path: Path) -> bool:
    """YOLO label file with at least one box of class 0 means a monkey is there."""
    label = labels / f"{path.stem}.txt"
    if not label.is_file():
        return False
    return any(line.split()[:1] == ["0"] for line in label.read_text().splitlines())


@dataclass
class Scores:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def evaluate(results: list[Result], labels: Path) -> Scores:
    s = Scores()
    for r in results:
        actual = truth(labels, Path(r.file))
        if r.monkey and actual:
            s.tp += 1
        elif r.monkey:
            s.fp += 1
        elif actual:
            s.fn += 1
        else:
            s.tn += 1
    return s


def run_scan(
    model: Model, paths: list[Path], threshold: float, *, as_json: bool, labels: Path | None
) -> int:
    """Scan everything under ``paths``; exit status 0 if at least one file was read (the
    unreadable ones are reported on stderr and skipped), 2 if none could be, or there was
    nothing to scan."""
    results: list[Result] = []
    failed = 0
    try:
        items = list(files(paths))
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not items:
        where = ", ".join(str(p) for p in paths)
        print(
            f"error: no images or videos under {where} (looked for "
            f"{', '.join(sorted(IMAGE_EXT | VIDEO_EXT))})",
            file=sys.stderr,
        )
        return 2
    for n, path in enumerate(items, 1):
        try:
            r = scan_file(model, path, threshold)
        except MediaError as e:
            failed += 1
            print(f"error: {e}", file=sys.stderr)
            continue
        results.append(r)
        if not as_json:
            where = f" frame {r.frame}" if r.frame is not None else ""
            mark = "MONKEY" if r.monkey else "-     "
            print(
                f"[{n}/{len(items)}] {mark} {r.score:.2f}  box {r.box}{where}  {r.label}  {path}",
                flush=True,
            )
    scores = evaluate(results, labels) if labels else None
    if as_json:
        out: dict[str, object] = {"threshold": threshold, "results": [asdict(r) for r in results]}
        if scores:
            out["scores"] = {
                **asdict(scores),
                "precision": scores.precision,
                "recall": scores.recall,
                "f1": scores.f1,
            }
        print(json.dumps(out, indent=2))
    elif scores:
        print(
            f"\nthreshold {threshold}: precision {scores.precision:.3f}  recall "
            f"{scores.recall:.3f}  F1 {scores.f1:.3f}  (TP {scores.tp}, FP {scores.fp}, "
            f"FN {scores.fn}, TN {scores.tn})"
        )
    if failed:
        print(f"{failed} of {len(items)} files could not be read", file=sys.stderr)
    return 2 if not results else 0
