"""Staff pointing at the resident's form: a mark pinned to the paper, drawn on the desk view.

Staff click on the desk view (or on a flattened still); the kiosk pins the mark to the page:
its place is kept as a fraction of the page (``u``, ``v``), found through the page's corners
in the desk frame at that moment. Each time the resident's screen shows the desk, the page is
found again in the newest frame and the mark drawn where that point of the paper now is, so
it stays on the same line of the form when the paper moves a little. Without a page in view
the mark stays where it was put in the frame. Nothing is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mimamori.kiosk.document import find_page

UNIT = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
#: drawn in this colour (BGR) with a dark outline, sized to the frame
COLOUR = (0, 140, 255)
OUTLINE = (20, 20, 20)
#: the resident's screen shows the desk this wide at most
SHOW_PX = 960


@dataclass(frozen=True)
class Mark:
    kind: str  # dot, circle or arrow
    u: float
    v: float
    on_page: bool  # (u, v) on the page; else fractions of the frame


def _apply(m: np.ndarray, x: float, y: float) -> tuple[float, float]:
    p = cv2.perspectiveTransform(np.array([[[x, y]]], np.float32), m)[0, 0]
    return float(p[0]), float(p[1])


def pin(frame: np.ndarray | None, kind: str, x: float, y: float, on: str) -> Mark:
    """The mark for a click at (``x``, ``y``): fractions of the desk frame or of the page."""
    if on == "page":
        return Mark(kind, x, y, True)
    if frame is not None:
        corners = find_page(frame)
        if corners is not None:
            h, w = frame.shape[:2]
            u, v = _apply(cv2.getPerspectiveTransform(corners, UNIT), x * w, y * h)
            if -0.05 <= u <= 1.05 and -0.05 <= v <= 1.05:  # on the paper
                return Mark(kind, u, v, True)
    return Mark(kind, x, y, False)


def where(frame: np.ndarray, mark: Mark) -> tuple[float, float] | None:
    """The mark's place in ``frame`` pixels (the page found again), or None."""
    h, w = frame.shape[:2]
    if not mark.on_page:
        return mark.u * w, mark.v * h
    corners = find_page(frame)
    if corners is None:
        return None
    return _apply(cv2.getPerspectiveTransform(UNIT, corners), mark.u, mark.v)


def draw(frame: np.ndarray, mark: Mark) -> np.ndarray:
    """A copy of ``frame``, at most ``SHOW_PX`` wide, with the mark on it."""
    at = where(frame, mark)
    scale = min(1.0, SHOW_PX / frame.shape[1])
    out = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    if at is None:
        return out
    x, y = int(round(at[0] * scale)), int(round(at[1] * scale))
    r = max(12, out.shape[1] // 28)
    for colour, extra in ((OUTLINE, 4), (COLOUR, 0)):
        t = max(3, r // 4) + extra
        if mark.kind == "circle":
            cv2.circle(out, (x, y), 2 * r, colour, t, cv2.LINE_AA)
        elif mark.kind == "arrow":  # a short arrow from the lower right, pointing at the spot
            cv2.arrowedLine(out, (x + 3 * r, y + 3 * r), (x, y), colour, t, cv2.LINE_AA, 0, 0.35)
        else:
            cv2.circle(out, (x, y), r // 2 + extra // 2, colour, -1, cv2.LINE_AA)
    return out
