"""Document stills: find the paper on the desk, flatten it upright, judge if it is readable.

``rectify(image)`` takes a full-resolution frame of the document camera and returns a
``Still``: the page warped to a flat, upright rectangle (A4 proportions when the page is
close to them) at up to ``TARGET_DPI``, the corners it found in the camera frame, the
resolution it reached, and warnings for glare and blur. A frame without a page is not an
error: ``found`` is False, the whole frame comes back, and ``warnings`` says why.

Page finding tries two cues and keeps the largest plausible quadrilateral: a bright sheet
on a darker desk (Otsu threshold), and strong edges (Canny) for a page that fills the view,
where the printed frame of the form is the largest quadrilateral.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

#: what staff need to read small print on a form
TARGET_DPI = 200.0
A4_IN = (8.27, 11.69)
A4_RATIO = A4_IN[1] / A4_IN[0]
#: a quadrilateral this much of the frame or more can be the page
MIN_AREA = 0.15
#: paper is light and nearly colourless (median grey level and HSV saturation inside)
PAPER_MIN_GRAY = 100
PAPER_MAX_SAT = 60
#: work on this many pixels along the long side when searching (speed; corners are refined)
SEARCH_PX = 1000
#: a rectified page whose Laplacian variance is below this reads as blurred
BLUR_VAR = 60.0
#: share of blown-out pixels on the page that reads as glare
GLARE_SHARE = 0.01


@dataclass(frozen=True)
class Still:
    image: np.ndarray  # BGR, the flattened page (or the whole frame when no page was found)
    found: bool
    corners: list[tuple[float, float]] = field(default_factory=list)  # TL, TR, BR, BL
    dpi: float | None = None  # over an A4 page, when a page was found
    warnings: list[str] = field(default_factory=list)


def order_corners(pts: np.ndarray) -> np.ndarray:
    """Four points as top-left, top-right, bottom-right, bottom-left."""
    pts = pts.reshape(4, 2).astype(np.float32)
    s, d = pts.sum(axis=1), np.diff(pts, axis=1).ravel()
    return np.array(
        [pts[np.argmin(s)], pts[np.argmin(d)], pts[np.argmax(s)], pts[np.argmax(d)]],
        dtype=np.float32,
    )


def _quads(mask: np.ndarray) -> list[np.ndarray]:
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in sorted(contours, key=cv2.contourArea, reverse=True)[:10]:
        hull = cv2.convexHull(c)
        peri = cv2.arcLength(hull, True)
        for eps in (0.02, 0.03, 0.05):
            approx = cv2.approxPolyDP(hull, eps * peri, True)
            if len(approx) == 4:
                out.append(approx.reshape(4, 2))
                break
    return out


def _plausible(q: np.ndarray, w: int, h: int) -> bool:
    """Big enough, convex, no side collapsed, and not just the frame's own border."""
    area = cv2.contourArea(q.astype(np.float32))
    if area < MIN_AREA * w * h or not cv2.isContourConvex(q.astype(np.int32)):
        return False
    o = order_corners(q)
    sides = [float(np.linalg.norm(o[i] - o[(i + 1) % 4])) for i in range(4)]
    if min(sides) < 0.25 * max(sides):
        return False
    margin = 0.01 * max(w, h)
    on_edge = sum(
        1 for x, y in o if x < margin or y < margin or x > w - 1 - margin or y > h - 1 - margin
    )
    return on_edge < 3


def _paper(q: np.ndarray, gray: np.ndarray, hsv: np.ndarray | None) -> bool:
    """Inside looks like paper: mostly light and without strong colour."""
    mask = np.zeros(gray.shape, np.uint8)
    cv2.fillConvexPoly(mask, q.astype(np.int32), 255)
    inside = mask > 0
    if np.median(gray[inside]) < PAPER_MIN_GRAY:
        return False
    return hsv is None or float(np.median(hsv[..., 1][inside])) <= PAPER_MAX_SAT


def find_page(image: np.ndarray) -> np.ndarray | None:
    """The page's corners (TL, TR, BR, BL) in ``image`` pixels, or None."""
    h0, w0 = image.shape[:2]
    scale = min(1.0, SEARCH_PX / max(h0, w0))
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
    gray = cv2.GaussianBlur(gray, (5, 5), 0)
    h, w = gray.shape
    _, bright = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    bright = cv2.morphologyEx(bright, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
    canny = cv2.Canny(gray, 40, 120)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV) if small.ndim == 3 else None
    # the tight cues first; dilated edges only when they find nothing (they can merge the
    # page's border with print next to it)
    candidates: list[np.ndarray] = []
    for masks in ((bright, canny), (cv2.dilate(canny, np.ones((3, 3), np.uint8)),)):
        candidates = [
            q
            for mask in masks
            for q in _quads(mask)
            if _plausible(q, w, h) and _paper(q, gray, hsv)
        ]
        if candidates:
            break
    if not candidates:
        return None
    best = max(candidates, key=lambda q: cv2.contourArea(q.astype(np.float32)))
    corners = order_corners(best) / scale
    # refine on the full-resolution frame: the search image was downscaled
    full = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    win = max(2, int(round(2 / scale)))
    refined = cv2.cornerSubPix(
        full,
        corners.reshape(-1, 1, 2).copy(),
        (win, win),
        (-1, -1),
        (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.1),
    ).reshape(4, 2)
    # keep a refinement only if it stayed close (corner detectors can jump to print)
    moved = np.linalg.norm(refined - corners, axis=1)
    return np.where((moved < 2 * win)[:, None], refined, corners).astype(np.float32)


def page_size(corners: np.ndarray, max_long_px: int) -> tuple[int, int, float]:
    """Output width, height and the dpi reached over an A4 page.

    The measured proportions are kept unless they are within 8 % of A4's, which are then
    used exactly (a form is A4; perspective makes the measurement a little off). The long
    side is the camera's own resolution along the page, capped at ``max_long_px``:
    upscaling adds no detail.
    """
    tl, tr, br, bl = corners
    width = float(np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2
    height = float(np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2
    long_px = max(width, height)
    ratio = long_px / max(1.0, min(width, height))
    if abs(ratio - A4_RATIO) / A4_RATIO < 0.08:
        ratio = A4_RATIO
    out_long = min(long_px, float(max_long_px))
    out_short = out_long / ratio
    w, h = (out_short, out_long) if height >= width else (out_long, out_short)
    dpi = long_px / A4_IN[1]
    return int(round(w)), int(round(h)), round(min(dpi, out_long / A4_IN[1]), 1)


def quality_warnings(page: np.ndarray, dpi: float | None) -> list[str]:
    gray = cv2.cvtColor(page, cv2.COLOR_BGR2GRAY) if page.ndim == 3 else page
    warnings = []
    if dpi is not None and dpi < TARGET_DPI:
        warnings.append(
            f"low resolution: {dpi:.0f} dpi over A4 ({TARGET_DPI:.0f} wanted); bring the "
            "camera closer or use a higher-resolution camera"
        )
    # measure sharpness at a fixed scale so the threshold does not depend on resolution
    probe = cv2.resize(gray, (800, int(800 * gray.shape[0] / gray.shape[1])))
    if cv2.Laplacian(probe, cv2.CV_64F).var() < BLUR_VAR:
        warnings.append("blurred: ask the resident to hold the paper still and flat")
    if page.ndim == 3:
        hsv = cv2.cvtColor(page, cv2.COLOR_BGR2HSV)
        blown = (hsv[..., 2] >= 250) & (hsv[..., 1] <= 25)
    else:
        blown = gray >= 250
    if blown.mean() > GLARE_SHARE:
        warnings.append("glare: a light reflects on the paper; tilt it or dim the lamp")
    return warnings


def rectify(image: np.ndarray, target_dpi: float = TARGET_DPI) -> Still:
    if image is None or image.size == 0:
        raise ValueError("document still: the camera gave an empty frame")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    corners = find_page(image)
    if corners is None:
        return Still(
            image,
            found=False,
            warnings=["no page found: lay the form flat, fully in view, on the darker desk mat"],
        )
    max_long = int(round(target_dpi * A4_IN[1]))
    w, h, dpi = page_size(corners, max_long)
    dst = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(corners, dst)
    page = cv2.warpPerspective(image, m, (w, h), flags=cv2.INTER_CUBIC)
    return Still(
        page,
        found=True,
        corners=[(round(float(x), 1), round(float(y), 1)) for x, y in corners],
        dpi=dpi,
        warnings=quality_warnings(page, dpi),
    )
