"""Offline scan: is there a monkey in these images and videos (e.g. an SD-card dump)?"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.vision.onnx import Finding, OnnxModel

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


def read_image(path: Path) -> np.ndarray:
    data = np.fromfile(str(path), dtype=np.uint8) if path.exists() else None
    if data is None:
        raise MediaError(f"{path}: file not found")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise MediaError(f"{path}: not a readable image (corrupt or unsupported format)")
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def scan_file(model: OnnxModel, path: Path, threshold: float, every_s: float = 1.0) -> Result:
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
    model: OnnxModel, paths: list[Path], threshold: float, *, as_json: bool, labels: Path | None
) -> int:
    results: list[Result] = []
    failed = 0
    items = list(files(paths))
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
    return 2 if failed else 0
