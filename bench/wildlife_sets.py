"""The labelled sets the monkey watch is measured on, built from ``../shared/media``.

How each set is labelled:

``macaques``   24 photographs of macaques, the shared set's own hand-drawn YOLO boxes
               (``monkeys/labels``): every image is a positive.
``negatives``  the 6 camera-trap frames (tortoise, deer, otter, empty scenes) and 6 OpenCV
               samples (squirrel, people, fruit, a room, two printed pages): no primate in
               any of them (checked by eye), every image is a negative.
``people``     every 20th frame of ``opencv/vtest.avi`` (40 frames of people walking, seen
               from above): negatives; the watch must never call a person a monkey.
``small``      rendered: each labelled macaque (its largest box) cut out, scaled to 40-110 px
               wide and pasted with a feathered edge into a camera-trap frame enlarged to
               1280x720, at a seeded random place in the lower two thirds; the pasted box is
               the label. Two per photograph (48): the small, distant monkey of a field camera.

Every set is then converted to each condition of ``edge.wildlife.conditions`` (day, gray,
dusk, ir_dark, blur, ir_dark_blur); the conversions move nothing, so the labels still hold.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mimamori.edge.wildlife.scan import read_image

MEDIA = Path(__file__).resolve().parent.parent.parent / "shared" / "media"
Box = tuple[int, int, int, int]


@dataclass
class Sample:
    name: str
    image: np.ndarray
    monkey: bool
    boxes: list[Box] = field(default_factory=list)


def yolo_boxes(label: Path, w: int, h: int) -> list[Box]:
    out = []
    for line in label.read_text().splitlines():
        parts = line.split()
        if len(parts) != 5 or parts[0] != "0":
            continue
        cx, cy, bw, bh = (float(v) for v in parts[1:])
        out.append(
            (
                int((cx - bw / 2) * w),
                int((cy - bh / 2) * h),
                int((cx + bw / 2) * w),
                int((cy + bh / 2) * h),
            )
        )
    return out


def macaques(media: Path = MEDIA) -> Iterator[Sample]:
    for p in sorted((media / "monkeys" / "images").glob("*.jpg")):
        img = read_image(p)
        h, w = img.shape[:2]
        label = media / "monkeys" / "labels" / f"{p.stem}.txt"
        yield Sample(f"macaques/{p.name}", img, True, yolo_boxes(label, w, h))


NEGATIVE_SAMPLES = (
    "squirrel_cls.jpg",
    "messi5.jpg",
    "fruits.jpg",
    "home.jpg",
    "sudoku.png",
    "imageTextN.png",
)


def negatives(media: Path = MEDIA) -> Iterator[Sample]:
    for p in sorted((media / "camera-trap").glob("*.jpg")):
        yield Sample(f"negatives/{p.name}", read_image(p), False)
    for n in NEGATIVE_SAMPLES:
        yield Sample(f"negatives/{n}", read_image(media / "opencv" / n), False)


def video_frames(path: Path, every: int = 20, limit: int | None = None) -> Iterator[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: not a readable video")
    i = n = 0
    try:
        while limit is None or n < limit:
            ok, frame = cap.read()
            if not ok:
                break
            if i % every == 0:
                n += 1
                yield frame
            i += 1
    finally:
        cap.release()


def people(media: Path = MEDIA, every: int = 20) -> Iterator[Sample]:
    for i, frame in enumerate(video_frames(media / "opencv" / "vtest.avi", every)):
        yield Sample(f"people/vtest-{i * every:04d}", frame, False)


def paste(
    background: np.ndarray, animal: np.ndarray, width: int, name: str
) -> tuple[np.ndarray, Box]:
    """``animal`` scaled to ``width`` and blended into ``background`` with a soft edge."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    h = max(8, int(animal.shape[0] * width / animal.shape[1]))
    small = cv2.resize(animal, (width, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    bh, bw = background.shape[:2]
    x = int(rng.integers(0, bw - width))
    y = int(rng.integers(bh // 3, max(bh // 3 + 1, bh - h)))
    mask = np.zeros((h, width), np.float32)
    cv2.ellipse(mask, (width // 2, h // 2), (width // 2, h // 2), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, width / 20))[:, :, None]
    out = background.copy()
    roi = out[y : y + h, x : x + width].astype(np.float32)
    out[y : y + h, x : x + width] = (small * mask + roi * (1 - mask)).astype(np.uint8)
    return out, (x, y, x + width, y + h)


def small(media: Path = MEDIA, per_photo: int = 2) -> Iterator[Sample]:
    scenes = [
        cv2.resize(read_image(p), (1280, 720), interpolation=cv2.INTER_LINEAR)
        for p in sorted((media / "camera-trap").glob("*.jpg"))
    ]
    widths = (40, 60, 80, 110)
    n = 0
    for s in macaques(media):
        if not s.boxes:
            continue
        x1, y1, x2, y2 = max(s.boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        animal = s.image[max(0, y1) : y2, max(0, x1) : x2]
        if animal.size == 0:
            continue
        for k in range(per_photo):
            name = f"small/{Path(s.name).stem}-{k}"
            img, box = paste(scenes[n % len(scenes)], animal, widths[n % len(widths)], name)
            n += 1
            yield Sample(name, img, True, [box])


SETS = {"macaques": macaques, "negatives": negatives, "people": people, "small": small}
