"""YOLOX detectors (the COCO-80 ``models/yolox-nano.toml``) on onnxruntime.

Pre-processing as YOLOX exports expect it: the frame is resized keeping its aspect ratio and
placed top-left on a grey (114) square of the model's input size, BGR, 0-255, not normalised.
The raw output holds one row per grid cell of strides 8, 16 and 32 (52², 26² and 13² cells
at 416): box centre ``(raw_xy + cell) * stride``, size ``exp(raw_wh) * stride``, score
objectness × class probability (both already through a sigmoid). Boxes are scaled back to
frame pixels and overlapping boxes of one class merged with OpenCV's NMS.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from mimamori.edge.vision.manifest import MODELS_DIR, Manifest, ModelError, load_manifest

log = logging.getLogger(__name__)

DEFAULT_YOLOX = MODELS_DIR / "yolox-nano.toml"
STRIDES = (8, 16, 32)
PAD_VALUE = 114


@dataclass(frozen=True)
class Detection:
    """One object: box (x1, y1, x2, y2) in frame pixels, score in [0, 1], COCO class."""

    box: tuple[int, int, int, int]
    score: float
    class_id: int
    name: str


def grids(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell offsets (N, 2) and strides (N, 1) in the order the model writes its rows."""
    cells, strides = [], []
    for s in STRIDES:
        gw, gh = width // s, height // s
        xv, yv = np.meshgrid(np.arange(gw), np.arange(gh))
        cells.append(np.stack((xv, yv), axis=2).reshape(-1, 2))
        strides.append(np.full((gw * gh, 1), s))
    return (
        np.concatenate(cells).astype(np.float32),
        np.concatenate(strides).astype(np.float32),
    )


class YoloxDetector:
    """One onnxruntime session; ``detect(frame)`` → detections above ``score_threshold``.

    ``classes`` limits what is reported (default: the manifest's ``positive_classes``; pass
    ``None`` explicitly in ``detect`` for all 80). ``threads`` sets onnxruntime's intra-op
    threads (0 = onnxruntime's choice, one per core).
    """

    def __init__(
        self,
        manifest: Manifest | Path | str = DEFAULT_YOLOX,
        *,
        score_threshold: float | None = None,
        threads: int = 1,
    ) -> None:
        m = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
        if m.task != "detect" or m.output != "yolox":
            raise ModelError(
                f"{m.file}: manifest says task={m.task!r} output={m.output!r}; "
                "YoloxDetector needs task = 'detect' and output = 'yolox'"
            )
        self.manifest = m
        self.score_threshold = m.score_threshold if score_threshold is None else score_threshold
        if not 0 < self.score_threshold < 1:
            raise ValueError(f"score_threshold must be between 0 and 1 (got {score_threshold})")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(m.file), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelError(f"{m.file}: onnxruntime cannot load it ({e})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.labels = m.labels.read_text(encoding="utf-8").splitlines()
        self.width, self.height = m.input_size
        self._cells, self._strides = grids(self.width, self.height)
        self.last_ms = 0.0

    def letterbox(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """The (1, 3, H, W) float32 input and the resize ratio (model px per frame px)."""
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        h, w = image.shape[:2]
        r = min(self.width / w, self.height / h)
        rw, rh = int(w * r), int(h * r)
        canvas = np.full((self.height, self.width, 3), PAD_VALUE, np.uint8)
        canvas[:rh, :rw] = cv2.resize(image, (rw, rh), interpolation=cv2.INTER_LINEAR)
        if self.manifest.color == "rgb":
            canvas = canvas[:, :, ::-1]
        x = canvas.transpose(2, 0, 1).astype(np.float32)
        return x[None], r

    def detect(
        self,
        frame_bgr: np.ndarray,
        *,
        classes: list[int] | None | bool = True,
        score_threshold: float | None = None,
    ) -> list[Detection]:
        """Objects in a BGR (or grayscale) frame, best first.

        ``classes``: True = the manifest's positive classes, None = all, or a list of ids.
        """
        if frame_bgr is None or frame_bgr.size == 0:
            raise ValueError("empty image")
        t0 = time.perf_counter()
        x, r = self.letterbox(frame_bgr)
        raw = np.asarray(self.session.run(None, {self.input_name: x})[0])[0]
        if raw.shape != (len(self._cells), 5 + len(self.labels)):
            raise ModelError(
                f"{self.manifest.file}: output {raw.shape}, expected "
                f"({len(self._cells)}, {5 + len(self.labels)}) for a YOLOX grid"
            )
        wanted = self.manifest.positive_classes if classes is True else classes
        cls_prob = raw[:, 5:]
        if wanted is not None and wanted is not False:
            ids = np.asarray(wanted, dtype=np.int64)
            sub = cls_prob[:, ids]
            cls = ids[sub.argmax(axis=1)]
            best = sub.max(axis=1)
        else:
            cls = cls_prob.argmax(axis=1)
            best = cls_prob.max(axis=1)
        scores = raw[:, 4] * best
        thr = self.score_threshold if score_threshold is None else score_threshold
        keep = scores >= thr
        out: list[Detection] = []
        if keep.any():
            k = raw[keep]
            xy = (k[:, :2] + self._cells[keep]) * self._strides[keep] / r
            wh = np.exp(k[:, 2:4]) * self._strides[keep] / r
            rects = np.concatenate([xy - wh / 2, wh], axis=1)
            sc, cl = scores[keep], cls[keep]
            kept = cv2.dnn.NMSBoxesBatched(
                rects.tolist(), sc.tolist(), cl.tolist(), thr, self.manifest.nms_iou
            )
            h, w = frame_bgr.shape[:2]
            for i in np.asarray(kept, dtype=np.int64).flatten():
                x1, y1, bw, bh = rects[i]
                box = (
                    max(0, int(round(x1))),
                    max(0, int(round(y1))),
                    min(w, int(round(x1 + bw))),
                    min(h, int(round(y1 + bh))),
                )
                c = int(cl[i])
                out.append(Detection(box, float(sc[i]), c, self.labels[c]))
            out.sort(key=lambda d: -d.score)
        self.last_ms = (time.perf_counter() - t0) * 1000
        return out
