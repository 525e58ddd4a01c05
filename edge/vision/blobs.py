"""Moving-object detection by background subtraction: the cheap detector for fixed cameras.

MOG2 models the empty scene; what differs from it, cleaned by morphology and filtered by
size and shape, is a candidate person. It runs on a downscaled copy (``work_width``) and
reports boxes in full-frame pixels.

Light is not a person: MOG2 already drops soft shadows (darker by up to half, same colour);
what remains of a lighting change or a deep shadow keeps the floor's texture, only scaled,
so a blob whose brightness ratio to the background is nearly constant (``light_cv``) and
whose brightness still follows the background's texture (``light_texture``) is dropped.

On an overhead door camera two people side by side touch and make one blob: with the
person's blob size known (``person_area``, from calibration), a blob of two or more
persons' area is split by k-means on its pixels into that many boxes.
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
    history: int = 300  # frames the background remembers: it learns at 1/history...
    var_threshold: float = 24.0  # MOG2 sensitivity: lower sees fainter differences
    # light, not a person: the spread (std/mean) of frame/background brightness inside the
    # blob below this (rendered deep shadows 0.13-0.18; rendered people 0.24+, people on
    # vtest.avi 0.58+; 0 turns the check off) ...
    light_cv: float = 0.2
    # MOG2 takes a pixel as shadow down to this share of the background's brightness (its
    # default 0.5); 0.35 on an overhead door camera, so a person's own shadow stays a shadow
    # when the light drops (on the angled sample clip it loses dark-clad walkers)
    shadow_ratio: float = 0.5
    # ... and the blob's brightness correlated with the background's above this (the floor's
    # texture shows through: rendered deep shadows 0.14-0.57, rendered people -0.2-0.13)
    light_texture: float = 0.1
    person_area: float | None = None  # one person's blob, fraction of the frame: split
    # blobs of two or more people (overhead cameras; None = never split)

    @property
    def busy_learning_rate(self) -> float:
        """... and ~6x slower while people are in view (0.0005 at 300 frames), so someone
        standing still (paying the fare, waiting on the line) does not fade away."""
        return 0.15 / self.history


class BlobDetector:
    def __init__(self, settings: BlobSettings | None = None) -> None:
        self.s = settings or BlobSettings()
        self._bg = cv2.createBackgroundSubtractorMOG2(
            history=self.s.history, varThreshold=self.s.var_threshold, detectShadows=True
        )
        self._bg.setShadowThreshold(self.s.shadow_ratio)
        self._open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self._close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))

    def learn(self, image: np.ndarray) -> None:
        """Update the background only (door closed: nothing to count, keep the model fresh)."""
        self._mask(image, busy=False)

    def _mask(self, image: np.ndarray, busy: bool) -> tuple[np.ndarray, float]:
        mask, scale, _ = self._mask_small(image, busy)
        return mask, scale

    def _mask_small(self, image: np.ndarray, busy: bool) -> tuple[np.ndarray, float, np.ndarray]:
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
        return mask, scale, small

    def _is_light(self, gray: np.ndarray, bg: np.ndarray, inside: np.ndarray) -> bool:
        """The floor lit differently (or in a deep shadow), not something on it: the
        brightness ratio to the background nearly constant and the floor's texture still
        showing through (correlated with the background)."""
        a, b = gray[inside], bg[inside]
        ratio = (a + 1.0) / (b + 1.0)
        if float(ratio.std() / ratio.mean()) >= self.s.light_cv:
            return False
        if a.std() < 1e-3 or b.std() < 1e-3:
            return True  # nothing to correlate: a flat patch of light
        return float(np.corrcoef(a, b)[0, 1]) > self.s.light_texture

    def _split(self, contour: np.ndarray, area: float, area_total: int) -> list[Box] | None:
        """Boxes (work pixels) of the people in a blob too big for one, or None."""
        if self.s.person_area is None:
            return None
        k = int(round(area / (self.s.person_area * area_total)))
        if k < 2:
            return None
        x, y, bw, bh = cv2.boundingRect(contour)
        m = np.zeros((bh, bw), np.uint8)
        cv2.drawContours(m, [contour], -1, 255, -1, offset=(-x, -y))
        ys, xs = np.nonzero(m)
        pts = np.column_stack((xs, ys)).astype(np.float32)
        if len(pts) < k:
            return None
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
        _, labels, _ = cv2.kmeans(pts, k, None, criteria, 3, cv2.KMEANS_PP_CENTERS)  # type: ignore[call-overload]
        boxes: list[Box] = []
        for i in range(k):
            p = pts[labels.ravel() == i]
            if len(p):
                x1, y1 = p.min(axis=0)
                x2, y2 = p.max(axis=0)
                boxes.append((int(x + x1), int(y + y1), int(x + x2 + 1), int(y + y2 + 1)))
        return boxes

    def detect(self, image: np.ndarray, busy: bool = False) -> list[Box]:
        """Boxes of moving things; ``busy``: someone is being tracked, learn slowly."""
        mask, scale, small = self._mask_small(image, busy)
        area_total = mask.shape[0] * mask.shape[1]
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        gray = bg = None
        boxes: list[Box] = []
        for c in contours:
            area = cv2.contourArea(c)
            if not (self.s.min_area * area_total <= area <= self.s.max_area * area_total):
                continue
            x, y, bw, bh = cv2.boundingRect(c)
            if area < self.s.min_fill * bw * bh:
                continue
            inside = np.zeros((bh, bw), np.uint8)
            cv2.drawContours(inside, [c], -1, 255, -1, offset=(-x, -y))
            if self.s.light_cv > 0:
                if gray is None or bg is None:
                    gray = self._gray(small)
                    bg = self._gray(self._bg.getBackgroundImage())
                if self._is_light(
                    gray[y : y + bh, x : x + bw], bg[y : y + bh, x : x + bw], inside > 0
                ):
                    continue
            parts = self._split(c, area, area_total)
            for x1, y1, x2, y2 in parts or [(x, y, x + bw, y + bh)]:
                if parts and gray is not None and bg is not None:
                    part = inside[y1 - y : y2 - y, x1 - x : x2 - x] > 0
                    roi = np.s_[y1:y2, x1:x2]
                    # each part: a person's own shadow, once deep enough to count as
                    # foreground, would otherwise become a second person
                    if part.sum() < 16 or self._is_light(gray[roi], bg[roi], part):
                        continue
                boxes.append((int(x1 / scale), int(y1 / scale), int(x2 / scale), int(y2 / scale)))
        return boxes

    @staticmethod
    def _gray(image: np.ndarray) -> np.ndarray:
        g = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        return g.astype(np.float32)
