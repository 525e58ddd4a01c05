"""onnxruntime models loaded through a manifest: a classifier or a YOLO-style detector.

Both answer one question for the monkey watch — *is there a monkey here, how sure, where* —
through ``OnnxModel.monkey(image)``. A classifier scores the whole frame plus overlapping
tiles (so a small or distant monkey is not averaged away) and returns the best tile as the
box; a detector returns its best box of a positive class.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort

from mimamori.edge.vision.manifest import Manifest, ModelError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    """The model's answer for one image: a score in [0, 1] and where (x1, y1, x2, y2)."""

    score: float
    box: tuple[int, int, int, int]
    label: str


def tiles(
    width: int, height: int, grid: int = 3, frac: float = 0.6
) -> list[tuple[int, int, int, int]]:
    """The whole frame, then a grid x grid of overlapping squares of ``frac`` of the short side."""
    boxes = [(0, 0, width, height)]
    side = int(min(width, height) * frac)
    if side < 32 or grid < 2:
        return boxes
    for y in np.linspace(0, height - side, grid).astype(int):
        for x in np.linspace(0, width - side, grid).astype(int):
            boxes.append((int(x), int(y), int(x) + side, int(y) + side))
    return boxes


class OnnxModel:
    def __init__(self, manifest: Manifest, *, threads: int = 0) -> None:
        if manifest.output == "yolox":
            raise ModelError(
                f"{manifest.file}: a YOLOX grid output; load it with edge.vision.yolox.YoloxDetector"
            )
        self.manifest = manifest
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(manifest.file), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelError(f"{manifest.file}: onnxruntime cannot load it ({e})") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.dynamic_batch = not isinstance(inp.shape[0], int)
        self.labels = manifest.labels.read_text(encoding="utf-8").splitlines()
        self._mean = np.array(manifest.mean, np.float32)
        self._std = np.array(manifest.std, np.float32)
        self.last_ms = 0.0

    # -- preprocessing -------------------------------------------------------------------

    def _prep(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 2:  # infrared night frames arrive as grayscale
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        w, h = self.manifest.input_size
        x = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        if self.manifest.color == "rgb":
            x = x[:, :, ::-1]
        x = (x.astype(np.float32) - self._mean) / self._std
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def _run(self, batch: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        if self.dynamic_batch or len(batch) == 1:
            out = self.session.run(None, {self.input_name: batch})[0]
        else:
            out = np.concatenate(
                [self.session.run(None, {self.input_name: b[None]})[0] for b in batch]
            )
        self.last_ms = (time.perf_counter() - t0) * 1000
        return np.asarray(out)

    # -- classify ------------------------------------------------------------------------

    def probabilities(self, crops: list[np.ndarray]) -> np.ndarray:
        logits = self._run(np.stack([self._prep(c) for c in crops]))
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return np.asarray(e / e.sum(axis=1, keepdims=True))

    def _classify(self, image: np.ndarray) -> Finding:
        h, w = image.shape[:2]
        boxes = tiles(w, h)
        probs = self.probabilities([image[y1:y2, x1:x2] for x1, y1, x2, y2 in boxes])
        scores = probs[:, self.manifest.positive_classes].sum(axis=1)
        best = int(scores.argmax())
        cls = self.manifest.positive_classes[
            int(probs[best, self.manifest.positive_classes].argmax())
        ]
        return Finding(float(scores[best]), boxes[best], self.labels[cls])

    # -- detect (YOLO) -------------------------------------------------------------------

    def _detect(self, image: np.ndarray) -> Finding:
        h, w = image.shape[:2]
        iw, ih = self.manifest.input_size
        out = self._run(self._prep(image)[None])[0]
        n_classes = len(self.labels)
        if out.shape[0] == 4 + n_classes and out.shape[1] != 4 + n_classes:
            out = out.T  # YOLOv8 layout: (4 + C, N) -> (N, 4 + C)
        if out.shape[1] == 5 + n_classes:  # YOLOv5: cx, cy, w, h, objectness, classes
            cls_scores = out[:, 5:] * out[:, 4:5]
        elif out.shape[1] == 4 + n_classes:
            cls_scores = out[:, 4:]
        else:
            raise ModelError(
                f"{self.manifest.file}: detector output {out.shape} fits neither YOLOv5 "
                f"(N, 5+{n_classes}) nor YOLOv8 (4+{n_classes}, N)"
            )
        pos = self.manifest.positive_classes
        scores = cls_scores[:, pos].max(axis=1)
        cls = np.asarray(pos)[cls_scores[:, pos].argmax(axis=1)]
        keep = scores >= 0.05
        if not keep.any():
            return Finding(0.0, (0, 0, w, h), self.labels[pos[0]])
        cx, cy, bw, bh = (out[keep, i] for i in range(4))
        sx, sy = w / iw, h / ih
        rects = [
            [float((x - ww / 2) * sx), float((y - hh / 2) * sy), float(ww * sx), float(hh * sy)]
            for x, y, ww, hh in zip(cx, cy, bw, bh, strict=True)
        ]
        kept = cv2.dnn.NMSBoxes(rects, scores[keep].tolist(), 0.05, self.manifest.nms_iou)
        best = max((int(i) for i in np.asarray(kept).flatten()), key=lambda i: scores[keep][i])
        x, y, ww, hh = rects[best]
        box = (max(0, int(x)), max(0, int(y)), min(w, int(x + ww)), min(h, int(y + hh)))
        return Finding(float(scores[keep][best]), box, self.labels[int(cls[keep][best])])

    def monkey(self, image: np.ndarray) -> Finding:
        """How sure the model is that ``image`` (BGR or grayscale) shows a monkey, and where."""
        if image is None or image.size == 0:
            raise ValueError("empty image")
        if self.manifest.task == "classify":
            return self._classify(image)
        return self._detect(image)
