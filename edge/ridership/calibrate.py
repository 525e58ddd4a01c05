"""Choose a door's counter settings from a few hand-labelled crossings.

``mimamori ridership calibrate VIDEO --truth FILE`` counts the clip with every candidate
setting — detector (blobs with each person size, yolox with each person score), anchor
(centre, feet) and hysteresis band — and keeps the one with the smallest error: first the
worst direction's total error, then the mean absolute error per window (so errors that
cancel out in the totals still cost). Detection and tracking run once per detector setting;
every anchor and band is a line counter fed the same tracks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mimamori.edge.camera.files import FileSource
from mimamori.edge.ridership import accuracy
from mimamori.edge.ridership.count import DetectorName, DoorCounter
from mimamori.edge.ridership.line import Anchor, LineCounter

DETECTORS: tuple[DetectorName, ...] = ("blobs", "yolox")
ANCHORS: tuple[Anchor, ...] = ("center", "bottom")
BANDS: tuple[float, ...] = (6.0, 12.0, 20.0)
#: blobs: one person's size as a share of the frame, to split blobs of two or more (None:
#: never split; 0.017 is a person seen from 2.2 m above a door at 62°)
PERSON_AREAS: tuple[float | None, ...] = (None, 0.01, 0.017, 0.03)
#: yolox: the lowest score taken as a person (None: the manifest's 0.65)
PERSON_SCORES: tuple[float | None, ...] = (0.5, None, 0.8)
DEFAULT = ("blobs", "center", 12.0, None, None)


@dataclass(frozen=True)
class Setting:
    """One way of finding people: the detector and its knob."""

    detector: DetectorName
    person_area: float | None = None
    person_score: float | None = None


def settings(detectors: tuple[DetectorName, ...]) -> list[Setting]:
    out: list[Setting] = []
    for det in detectors:
        if det == "blobs":
            out += [Setting(det, person_area=a) for a in PERSON_AREAS]
        elif det == "yolox":
            out += [Setting(det, person_score=s) for s in PERSON_SCORES]
        else:
            out.append(Setting(det))
    return out


@dataclass(frozen=True)
class Trial:
    setting: Setting
    anchor: Anchor
    band_px: float
    scores: list[accuracy.DirectionScore]

    @property
    def detector(self) -> DetectorName:
        return self.setting.detector

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
    for setting in settings(detectors):
        source = FileSource(video)
        counter = DoorCounter(
            line,
            detector=setting.detector,
            person_area=setting.person_area,
            person_score=setting.person_score,
        )
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
            scores = accuracy.score(truth.crossings, m, frames, window)
            trials.append(Trial(setting, a, b, scores))
    trials.sort(key=lambda t: t.cost)
    return trials


def default_trial(trials: list[Trial]) -> Trial | None:
    return next(
        (
            t
            for t in trials
            if (t.detector, t.anchor, t.band_px, t.setting.person_area, t.setting.person_score)
            == DEFAULT
        ),
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
            *([f"person_area = {best.setting.person_area:g}"] if best.setting.person_area else []),
            *(
                [f"person_score = {best.setting.person_score:g}"]
                if best.setting.person_score
                else []
            ),
            f'anchor = "{best.anchor}"',
            f"band_px = {best.band_px:g}",
            "# pin = 17                 # the door relay (or schedule = [[open_s, close_s]])",
        ]
    )
