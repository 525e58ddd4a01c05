"""Counter accuracy the way the field reports it, against a hand-labelled truth file.

Totals per direction alone hide errors that cancel out (a missed boarding and a phantom one
sum to zero), so windows of ``window`` frames (e.g. one per door opening) are compared too:
the share exactly right, the share within ±1 and the mean absolute error per window.

Truth file (JSON): ``{"line": [x1, y1, x2, y2], "crossings": [[frame, "in"|"out"], ...]}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DIRECTIONS = ("in", "out")


@dataclass(frozen=True)
class DirectionScore:
    direction: str
    truth: int
    counted: int
    windows: int
    exact: float  # share of windows counted exactly right
    within_one: float  # share within ±1
    mae: float  # mean absolute error per window

    @property
    def error(self) -> float:
        """Signed total error as a fraction of the truth (0.05 = 5 % over)."""
        return (self.counted - self.truth) / self.truth if self.truth else 0.0


@dataclass(frozen=True)
class Truth:
    line: tuple[float, float, float, float] | None  # the line it was counted on, if given
    crossings: list[tuple[int, str]]  # (frame, "in" | "out")


def load_truth(path: Path) -> Truth:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable truth file ({e})") from None
    crossings = data.get("crossings") if isinstance(data, dict) else None
    if not isinstance(crossings, list) or not all(
        isinstance(c, list) and len(c) == 2 and isinstance(c[0], int) and c[1] in DIRECTIONS
        for c in crossings
    ):
        raise ValueError(f'{path}: "crossings" must be a list of [frame, "in"|"out"] pairs')
    line = data.get("line")
    if line is not None and not (
        isinstance(line, list) and len(line) == 4 and all(isinstance(v, int | float) for v in line)
    ):
        raise ValueError(f'{path}: "line" must be [x1, y1, x2, y2]')
    return Truth(tuple(line) if line else None, [(f, d) for f, d in crossings])


def score(
    truth: list[tuple[int, str]], counted: list[tuple[int, str]], frames: int, window: int
) -> list[DirectionScore]:
    n = max(1, -(-frames // window))
    out = []
    for d in DIRECTIONS:
        t = [0] * n
        c = [0] * n
        for f, dd in truth:
            if dd == d:
                t[min(n - 1, f // window)] += 1
        for f, dd in counted:
            if dd == d:
                c[min(n - 1, f // window)] += 1
        diffs = [abs(a - b) for a, b in zip(t, c, strict=True)]
        out.append(
            DirectionScore(
                d,
                sum(t),
                sum(c),
                n,
                sum(1 for x in diffs if x == 0) / n,
                sum(1 for x in diffs if x <= 1) / n,
                sum(diffs) / n,
            )
        )
    return out


def table(scores: list[DirectionScore]) -> str:
    lines = [
        "direction  truth  counted  error    windows  exact  within±1  MAE/window",
    ]
    for s in scores:
        lines.append(
            f"{s.direction:<9}  {s.truth:>5}  {s.counted:>7}  {s.error:>+6.1%}  {s.windows:>7}"
            f"  {s.exact:>5.0%}  {s.within_one:>8.0%}  {s.mae:>10.2f}"
        )
    return "\n".join(lines)
