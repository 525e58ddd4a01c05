"""Choose a door's counter settings from a few hand-labelled crossings.

``mimamori ridership calibrate VIDEO --truth FILE`` counts the clip with every candidate
setting — detector (blobs, yolox), anchor (centre, feet) and hysteresis band — and keeps the
one with the smallest error: first the worst direction's total error, then the mean absolute
error per window (so errors that cancel out in the totals still cost). Detection and tracking
run once per detector; every anchor and band is a line counter fed the same tracks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge.camera.files import FileSource
from edge.ridership import accuracy
from edge.ridership.count import DetectorName, DoorCounter
from edge.ridership.line import Anchor, LineCounter

DETECTORS: tuple[DetectorName, ...] = ("blobs", "yolox")
ANCHORS: tuple[Anchor, ...] = ("center", "bottom")
BANDS: tuple[float, ...] = (6.0, 12.0, 20.0)
DEFAULT = ("blobs", "center", 12.0)


@dataclass(frozen=True)
class Trial:
    detector: DetectorName
    anchor: Anchor
    band_px: float
    scores: list[accuracy.DirectionScore]

    @property
    def cost(self) -> tuple[float, float]:
        return (
            max(abs(s.error) for s in self.scores),
            sum(s.mae for s in self.scores) / len(self.scores),
        )


def calibrate(
    video: Path,
    truth: accuracy.Truth,
    line: tuple[float, float, float, float],
    *,
    window: int = 100,
    detectors: tuple[DetectorName, ...] = DETECTORS,
) -> list[Trial]:
    """Every trial, best first. Raises CameraError if the clip cannot be read."""
    trials: list[Trial] = []
    for det in detectors:
        source = FileSource(video)
        counter = DoorCounter(line, detector=det)
        lcs = {(a, b): LineCounter(line, band_px=b, anchor=a) for a in ANCHORS for b in BANDS}
        marks: dict[tuple[Anchor, float], list[tuple[int, str]]] = {k: [] for k in lcs}
        frames = 0
        try:
            while (frame := source.read()) is not None:
                counter.process(frame)
                tracks = counter.tracker.trusted()
                for key, lc in lcs.items():
                    for c in lc.update(tracks, frame.ts):
                        marks[key].append((frame.index, c.direction))
                frames += 1
        finally:
            source.close()
        for (a, b), m in marks.items():
            trials.append(Trial(det, a, b, accuracy.score(truth.crossings, m, frames, window)))
    trials.sort(key=lambda t: t.cost)
    return trials


def default_trial(trials: list[Trial]) -> Trial | None:
    return next(
        (t for t in trials if (t.detector, t.anchor, t.band_px) == DEFAULT),
        None,
    )


def config_block(
    best: Trial, line: tuple[float, float, float, float], door: str, source: str
) -> str:
    """A ``[[ridership.doors]]`` block with the chosen settings (add the door signal)."""
    x1, y1, x2, y2 = (round(v) if float(v).is_integer() else v for v in line)
    worst, mae = best.cost
    return "\n".join(
        [
            f"# calibrated: worst direction {worst:+.1%} of the labelled crossings, "
            f"{mae:.2f} per window",
            "[[ridership.doors]]",
            f'name = "{door}"',
            f'source = "{source}"',
            f"line = [{x1}, {y1}, {x2}, {y2}]",
            f'detector = "{best.detector}"',
            f'anchor = "{best.anchor}"',
            f"band_px = {best.band_px:g}",
            "# pin = 17                 # the door relay (or schedule = [[open_s, close_s]])",
        ]
    )
