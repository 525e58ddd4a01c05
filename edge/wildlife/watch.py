"""Find the animal, then ask what it is: the two-stage monkey watch.

Stage 1, the **proposer** (YOLOX-nano, COCO-80), boxes whatever it sees; a macaque comes out
as "bear", "dog", "bird", "person", ... so every class is a proposal. Stage 2, the primate
**classifier** (EfficientNet-Lite0), scores a square crop around each proposal cut from the
full-resolution frame, so a 60-px monkey is seen at its own size rather than shrunk with the
whole frame. The whole frame and its 3x3 tiles are still scored for what the proposer misses.

A region the proposer calls a person (score >= ``person_score``) is never a monkey: it is not
cropped for the classifier and it is painted grey before the tiles are scored. Its box is
kept so that snapshots sent off the device can blur it.

``MonkeyWatch.monkey(image)`` answers like ``OnnxModel.monkey`` (a ``Finding``), so the
device app and the offline scan use either; ``look(image)`` also gives each stage's score.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

from mimamori.edge.vision.manifest import Manifest, ModelError
from mimamori.edge.vision.onnx import Finding, OnnxModel, tiles

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]

#: The operating point, day and night (``bench/wildlife_curves.py``): the lowest threshold
#: at which no negative frame of any set, under any condition, is a false alarm. The closest
#: negative is the squirrel photograph: 0.68 by day, 0.75 at dusk, 0.79 in IR and blurred.
THRESHOLD = 0.8
NIGHT_THRESHOLD = 0.8
#: A proposer box at or above this person score is a person, never a monkey. YOLOX-nano
#: calls dim IR macaques "person" at up to 0.80 (0.65 for small ones by day) and the people
#: of vtest.avi at up to 0.88: at 0.8 a person is still seen, a dark monkey is still cropped.
PERSON_SCORE = 0.8
#: Boxes blurred in snapshots that leave the device: anything YOLOX-nano calls a person at
#: its manifest's person threshold (0.5, chosen on vtest.avi), except the monkey's own box.
BLUR_SCORE = 0.5


class Detected(Protocol):
    """What a proposer reports per object (``edge.vision.yolox.Detection`` fits)."""

    @property
    def box(self) -> Box: ...
    @property
    def score(self) -> float: ...
    @property
    def name(self) -> str: ...


class Proposer(Protocol):
    def detect(
        self, frame_bgr: np.ndarray, *, classes: list[int] | None | bool = ...
    ) -> Sequence[Detected]: ...


def lean_session(manifest: Manifest, threads: int) -> ort.InferenceSession:
    """An onnxruntime session for a 512 MB solar node: no CPU arena and no memory patterns
    (they keep the largest activations ever seen), one inter-op thread, and worker threads
    that sleep instead of spinning between frames (spinning burns battery)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.enable_cpu_mem_arena = False
    opts.enable_mem_pattern = False
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(
            str(manifest.file), sess_options=opts, providers=["CPUExecutionProvider"]
        )
    except Exception as e:  # onnxruntime raises its own exception types
        raise ModelError(f"{manifest.file}: onnxruntime cannot load it ({e})") from None


class Classifier(OnnxModel):
    """The primate classifier on a lean session; crops go through one at a time (the
    activations of one crop, not ten)."""

    def __init__(self, manifest: Manifest, *, threads: int = 1) -> None:
        if manifest.task != "classify":
            raise ModelError(f"{manifest.file}: the watch's classifier must be task = 'classify'")
        self.manifest = manifest
        self.session = lean_session(manifest, threads)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        size = tuple(inp.shape[-1:-3:-1]) if len(inp.shape) == 4 else None
        if size is None or (all(isinstance(v, int) for v in size) and size != manifest.input_size):
            raise ModelError(
                f"{manifest.file}: takes input {inp.shape}, but the manifest of "
                f"{manifest.name} says 1x3x{manifest.input_size[1]}x{manifest.input_size[0]}"
            )
        self.dynamic_batch = False  # one crop at a time: activations for one, not ten
        self.labels = manifest.labels.read_text(encoding="utf-8").splitlines()
        self._mean = np.array(manifest.mean, np.float32)
        self._std = np.array(manifest.std, np.float32)
        self.last_ms = 0.0

    def primate(self, crops: list[np.ndarray]) -> list[tuple[float, str]]:
        """Summed primate probability and the best primate class name of each crop."""
        pos = self.manifest.positive_classes
        out = []
        for p in self.probabilities(crops):
            out.append((float(p[pos].sum()), self.labels[pos[int(p[pos].argmax())]]))
        return out


def square(box: Box, width: int, height: int, context: float, min_side: int) -> Box:
    """A square around ``box`` with ``context`` extra side, moved (not cut) to fit the frame."""
    x1, y1, x2, y2 = box
    side = int(max(x2 - x1, y2 - y1) * context)
    side = min(max(side, min_side), width, height)
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    sx = min(max(0, cx - side // 2), width - side)
    sy = min(max(0, cy - side // 2), height - side)
    return (sx, sy, sx + side, sy + side)


@dataclass(frozen=True)
class Look:
    """What the watch saw in one frame: the answer and each stage's part in it."""

    finding: Finding  # the best region that is not a person: what the alarm uses
    stage: str  # "proposal" or "tiles": which stage gave the finding
    proposal: Finding | None  # best proposal crop (None: nothing proposed)
    tiles: Finding  # whole frame and 3x3 tiles, people painted out
    people: list[Box] = field(default_factory=list)
    regions: list[tuple[Box, float]] = field(default_factory=list)  # each crop, its score
    blur: list[Box] = field(default_factory=list)  # people to blur in a snapshot sent away


class MonkeyWatch:
    def __init__(
        self,
        classifier: Classifier,
        proposer: Proposer | None,
        *,
        proposal_score: float = 0.1,
        max_proposals: int = 6,
        person_score: float = PERSON_SCORE,
        context: float = 1.4,
        min_side: int = 48,
    ) -> None:
        self.classifier, self.proposer = classifier, proposer
        self.proposal_score, self.max_proposals = proposal_score, max_proposals
        self.person_score, self.context, self.min_side = person_score, context, min_side
        self.manifest = classifier.manifest

    def look(self, image: np.ndarray) -> Look:
        if image is None or image.size == 0:
            raise ValueError("empty image")
        h, w = image.shape[:2]
        people: list[Box] = []
        maybe: list[Box] = []
        crops: list[Box] = []
        if self.proposer is not None:
            dets = self.proposer.detect(image, classes=None)
            for d in dets:
                if d.name == "person" and d.score >= self.person_score:
                    people.append(d.box)
                elif d.name == "person" and d.score >= BLUR_SCORE:
                    maybe.append(d.box)
            for d in dets:
                if len(crops) >= self.max_proposals or d.score < self.proposal_score:
                    break
                if d.name == "person" and d.score >= self.person_score:
                    continue
                sq = square(d.box, w, h, self.context, self.min_side)
                if any(_inside(sq, p) for p in people):
                    continue  # a crop that is mostly a person is a person
                if any(_inside(sq, c, 0.8) and _inside(c, sq, 0.8) for c in crops):
                    continue  # the same place again
                crops.append(sq)
        proposal: Finding | None = None
        regions: list[tuple[Box, float]] = []
        if crops:
            scored = self.classifier.primate([image[y1:y2, x1:x2] for x1, y1, x2, y2 in crops])
            regions = [(c, s) for c, (s, _) in zip(crops, scored, strict=True)]
            i = int(np.argmax([s for s, _ in scored]))
            proposal = Finding(scored[i][0], crops[i], scored[i][1])
        seen = painted(image, people) if people else image
        boxes = tiles(w, h)
        scored = self.classifier.primate([seen[y1:y2, x1:x2] for x1, y1, x2, y2 in boxes])
        i = int(np.argmax([s for s, _ in scored]))
        tile = Finding(scored[i][0], boxes[i], scored[i][1])
        best, stage = (
            (proposal, "proposal") if proposal and proposal.score >= tile.score else (tile, "tiles")
        )
        blur = people + [b for b in maybe if not (stage == "proposal" and _crop_of(best.box, b))]
        return Look(best, stage, proposal, tile, people, regions, blur)

    def monkey(self, image: np.ndarray) -> Finding:
        return self.look(image).finding


def _crop_of(crop: Box, box: Box) -> bool:
    """Is ``crop`` the square cut around ``box`` (the box fills a good part of it)?"""
    area = (crop[2] - crop[0]) * (crop[3] - crop[1])
    return _inside(box, crop, 0.9) and (box[2] - box[0]) * (box[3] - box[1]) >= 0.2 * area


def _inside(box: Box, person: Box, frac: float = 0.6) -> bool:
    """Is at least ``frac`` of ``box`` covered by ``person``?"""
    ix = max(0, min(box[2], person[2]) - max(box[0], person[0]))
    iy = max(0, min(box[3], person[3]) - max(box[1], person[1]))
    area = max(1, (box[2] - box[0]) * (box[3] - box[1]))
    return ix * iy / area >= frac


def painted(image: np.ndarray, boxes: list[Box], value: int = 127) -> np.ndarray:
    out = image.copy()
    for x1, y1, x2, y2 in boxes:
        out[y1:y2, x1:x2] = value
    return out


def load_watch(
    classifier: Path | None = None,
    proposer: Path | None = None,
    *,
    threads: int = 1,
    two_stage: bool = True,
    person_score: float = PERSON_SCORE,
) -> MonkeyWatch:
    """The watch from its model manifests (defaults: EfficientNet-Lite0 and YOLOX-nano)."""
    from mimamori.edge.vision.manifest import DEFAULT_MODEL, load_manifest

    cls = Classifier(load_manifest(classifier or DEFAULT_MODEL), threads=threads)
    prop = lean_yolox(proposer, threads) if two_stage else None
    return MonkeyWatch(cls, prop, person_score=person_score)


def lean_yolox(manifest: Manifest | Path | None = None, threads: int = 1) -> Proposer:
    """YOLOX-nano as the proposer (every class, from score 0.05) on a lean session."""
    from mimamori.edge.vision.yolox import DEFAULT_YOLOX, YoloxDetector

    det = YoloxDetector(manifest or DEFAULT_YOLOX, score_threshold=0.05, threads=threads)
    det.session = lean_session(det.manifest, threads)
    return det
