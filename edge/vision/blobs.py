"""Moving-object detection by background subtraction: the cheap detector for fixed cameras.

MOG2 models the empty scene; what differs from it, cleaned by morphology and filtered by
size and shape, is a candidate person. It runs on a downscaled copy (``work_width``) and
reports boxes in full-frame pixels. On an overhead door camera people rarely overlap, so a
blob is a person; on an angled view two walkers side by side can merge into one blob, which
``persons_in`` estimates from the blob's area against the typical person area.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in full-frame pixels


@dataclass(frozen=True)
class BlobSettings:
    work_width: int = 320  # pixels the subtractor runs at
    min_area: float = 0.0015  # smallest blob, as a fraction of the frame
    max_area: float = 0.25  # largest blob (a bus, a lighting change) is ignored
    min_fill: float = 0.25  # blob area / box area: thin streaks are noise
    history: int = 300  # frames the background remembers
    var_threshold: float = 24.0  # MOG2 sensitivity: lower sees fainter differences
    busy_learning_rate: float = 0.0005  # while people are in view: learn ~6x slower, so
    # someone standing still (paying the fare, waiting on the line) does not fade away


class BlobDetector:
    def __init__(self, settings: BlobSettings | None = None) -> None:
        self.s = settings or BlobSettings()
        self._bg = cv2.createBackgroundSubtractorMOG2(
            history=self.s.history, varThreshold=self.s.var_threshold, detectShadows=True
        )
        self._open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self._close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))

    def learn(self, image: np.ndarray) -> None:
        """Update the background only (door closed: nothing to count, keep the model fresh)."""
        self._mask(image, busy=False)

    def _mask(self, image: np.ndarray, busy: bool) -> tuple[np.ndarray, float]:
        h, w = image.shape[:2]
        scale = self.s.work_width / w if w > self.s.work_width else 1.0
        small = (
            cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            if scale != 1.0
            else image
        )
        mask = self._bg.apply(small, learningRate=self.s.busy_learning_rate if busy else -1)
        # 127 marks shadows: a shadow is not a person
        _, mask = cv2.threshold(mask, 200, 255, cv2.THRESH_BINARY)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._open)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._close)
        mask = cv2.dilate(mask, self._open, iterations=2)
        return mask, scale

    def detect(self, image: np.ndarray, busy: bool = False) -> list[Box]:
        """Boxes of moving things; ``busy``: someone is being tracked, learn slowly."""
        mask, scale = self._mask(image, busy)
        area_total = mask.shape[0] * mask.shape[1]
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        boxes: list[Box] = []
        for c in contours:
            area = cv2.contourArea(c)
            if not (self.s.min_area * area_total <= area <= self.s.max_area * area_total):
                continue
            x, y, bw, bh = cv2.boundingRect(c)
            if area < self.s.min_fill * bw * bh:
                continue
            boxes.append(
                (
                    int(x / scale),
                    int(y / scale),
                    int((x + bw) / scale),
                    int((y + bh) / scale),
                )
            )
        return boxes
