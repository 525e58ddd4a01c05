"""People detection with OpenCV's HOG + linear SVM pedestrian model (Dalal & Triggs).

Sees standing and walking people from the side or at an angle, not from straight above, and
costs far more CPU than background subtraction; kept as a choice for angled cameras where
blobs of people merge. Boxes are in full-frame pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from mimamori.edge.vision.blobs import Box


class HogDetector:
    def __init__(self, work_width: int = 480, min_score: float = 0.3) -> None:
        self.work_width, self.min_score = work_width, min_score
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector()))

    def learn(self, image: np.ndarray) -> None:
        """No background model to keep up."""

    def detect(self, image: np.ndarray, busy: bool = False) -> list[Box]:
        h, w = image.shape[:2]
        scale = self.work_width / w if w > self.work_width else 1.0
        small = cv2.resize(image, (round(w * scale), round(h * scale))) if scale != 1 else image
        rects, weights = self._hog.detectMultiScale(
            small, winStride=(8, 8), padding=(8, 8), scale=1.05
        )
        boxes: list[Box] = []
        for (x, y, bw, bh), score in zip(rects, np.ravel(weights), strict=False):
            if float(score) < self.min_score:
                continue
            boxes.append(
                (int(x / scale), int(y / scale), int((x + bw) / scale), int((y + bh) / scale))
            )
        return boxes
