"""Document stills: find the paper on the desk, flatten it upright, judge if it is readable.

``rectify(image)`` takes a full-resolution frame of the document camera and returns a
``Still``: the page warped to a flat, upright rectangle in the page's own proportions (A4,
B5, a folded A3, a receipt: measured, never forced) at up to ``TARGET_DPI``, the corners it
found in the camera frame, the page's aspect, the resolution it reached, and warnings for
glare, blur, distance and a page partly out of view. A frame without a page is not an error:
``found`` is False, the whole frame comes back, and ``warnings`` says why.

How the page is found (``locate``), on a copy downscaled to ``SEARCH_PX``:

1. Candidate quadrilaterals from four cues: bright regions (Otsu), paper-coloured regions
   (light and nearly colourless), regions unlike the desk (colour distance from the frame's
   border) and edges (Canny), each contour's convex hull approximated to four corners.
2. A candidate is the page only if it *is* paper against a desk: along every side that is
   not the frame's own border, the colour just inside differs from the colour just outside
   along most of its length (a quad cutting through a handwritten sheet, or a box printed
   inside a page, has paper on both sides), and the inside, print removed, holds almost
   nothing of the outside's colour (a quad that takes in part of the desk). The largest such
   quad wins.
3. No such quad, but the frame's border is paper all round: the page fills the frame (a flat
   scan, a camera close over the form); the whole frame is the page.
4. Otherwise a printed frame on the paper (strong straight edges on every side, paper
   inside), as on a newspaper page larger than the view; else no page.
5. Each side is then refined on the full-resolution frame: the strongest brightness step
   across the side is found at points along it and a line fitted through them (robust to
   print near the edge and to a hand's shadow); the corners are the lines' crossings.

The page's aspect is measured with the camera model (Zhang & He, "Whiteboard scanning and
image enhancement", 2007: the focal length and the rectangle's true width/height follow from
the four corners with the principal point at the frame's centre), falling back to the mean
side lengths when the view is nearly straight down.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

#: what staff need to read small print on a form
TARGET_DPI = 200.0
A4_IN = (8.27, 11.69)
A4_RATIO = A4_IN[1] / A4_IN[0]
#: named paper shapes (long side / short side) and the long side in inches assumed for dpi
PAPERS = (
    ("A/B series (A4, B5, A3 folded)", A4_RATIO, A4_IN[1]),
    ("US letter", 11.0 / 8.5, 11.0),
)
#: a long, narrow slip is a receipt: 80 mm thermal paper
RECEIPT_RATIO = 2.0
RECEIPT_SHORT_IN = 80 / 25.4
#: a quadrilateral this much of the frame or more can be the page
MIN_AREA = 0.1
#: a page under this share of the frame reads as "too far"
NEAR_AREA = 0.25
#: paper is light and nearly colourless (HSV saturation, grey level)
PAPER_MAX_SAT = 60
PAPER_MIN_GRAY = 90
#: work on this many pixels along the long side when searching (corners are refined)
SEARCH_PX = 800
#: at least this share of a page's inside is paper-coloured once print is closed away
PAPER_INSIDE = 0.6
#: a side is a page edge when inside and outside differ (Lab distance) along this share of it
SIDE_CONTRAST = 12.0
SIDE_SHARE = 0.6
#: ... compared this far (search pixels) either side, on the image with print closed away
BAND_PX = (5, 9)
#: just inside each corner (this share of the shortest side) must be paper, not desk
CORNER_IN = 0.03
#: a page fully in view is preferred over a larger one running out of the frame when at
#: least this share of its area
IN_VIEW_SHARE = 0.35
#: the border counts as paper all round (page fills the frame) at this share
BORDER_PAPER = 0.9
#: a printed frame's sides must lie on edges along this share of their length
EDGE_SUPPORT = 0.8
EDGE_SUPPORT_MIN = 0.5
#: a side is refined within this share of its length either side of where it was found
REACH = 0.04
#: a rectified page whose Laplacian variance is below this reads as blurred
BLUR_VAR = 60.0
#: share of blown-out pixels on the page that reads as glare
GLARE_SHARE = 0.01
#: ... blown out and this much brighter than the paper around it (white paper with sensor
#: noise or brighter towards the lamp is not glare; paper white all over, a scan, shows none)
GLARE_ABOVE_PAPER = 10


class DocumentError(ValueError):
    """An image that cannot be a desk camera's frame (empty, unreadable)."""


@dataclass(frozen=True)
class Page:
    corners: np.ndarray  # 4x2 float32, TL TR BR BL, in the full image's pixels
    aspect: float  # the page's width / height as it lies (measured, not forced)
    how: str  # "desk", "fills_frame" or "printed_frame"
    out_of_view: bool = False  # a side lies on the frame's border


@dataclass(frozen=True)
class Still:
    image: np.ndarray  # BGR, the flattened page (or the whole frame when no page was found)
    found: bool
    corners: list[tuple[float, float]] = field(default_factory=list)  # TL, TR, BR, BL
    dpi: float | None = None  # over the page (its paper size assumed from its aspect)
    warnings: list[str] = field(default_factory=list)
    aspect: float | None = None  # width / height of the page as it lies
    paper: str | None = None  # the named paper shape the aspect matches, if any
    how: str | None = None
    camera_dpi: float | None = None  # what the camera resolves over the page (uncapped)


def order_corners(pts: np.ndarray) -> np.ndarray:
    """Four points as top-left, top-right, bottom-right, bottom-left."""
    pts = pts.reshape(4, 2).astype(np.float32)
    c = pts.mean(axis=0)
    ang = np.arctan2(pts[:, 1] - c[1], pts[:, 0] - c[0])
    pts = pts[np.argsort(ang)]  # clockwise in image coordinates (y down), from -pi
    start = int(np.argmin(pts.sum(axis=1)))  # top-left: smallest x + y
    return np.roll(pts, -start, axis=0)


# -- candidates ---------------------------------------------------------------------------


def _quads(mask: np.ndarray) -> list[np.ndarray]:
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in sorted(contours, key=cv2.contourArea, reverse=True)[:8]:
        hull = cv2.convexHull(c)
        peri = cv2.arcLength(hull, True)
        for eps in (0.01, 0.02, 0.03, 0.05, 0.08):
            approx = cv2.approxPolyDP(hull, eps * peri, True)
            if len(approx) == 4:
                out.append(order_corners(approx))
                break
    return out


def _plausible(q: np.ndarray, w: int, h: int) -> bool:
    """Big enough, convex, no side collapsed, not just the frame's own border."""
    area = cv2.contourArea(q)
    if area < MIN_AREA * w * h or not cv2.isContourConvex(q.astype(np.int32)):
        return False
    sides = [float(np.linalg.norm(q[i] - q[(i + 1) % 4])) for i in range(4)]
    if min(sides) < 0.15 * max(sides):
        return False
    return sum(_on_border(q, w, h)) < 3


def _on_border(q: np.ndarray, w: int, h: int) -> list[bool]:
    """Which sides (TL-TR, TR-BR, BR-BL, BL-TL) lie along the frame's border."""
    m = 0.012 * max(w, h)
    out = []
    for i in range(4):
        a, b = q[i], q[(i + 1) % 4]
        out.append(
            bool(
                (a[0] < m and b[0] < m)
                or (a[1] < m and b[1] < m)
                or (a[0] > w - 1 - m and b[0] > w - 1 - m)
                or (a[1] > h - 1 - m and b[1] > h - 1 - m)
            )
        )
    return out


def _side_samples(
    q: np.ndarray, i: int, offset: float, n: int = 40
) -> tuple[np.ndarray, np.ndarray]:
    """Points along side ``i`` shifted ``offset`` px inwards (negative: outwards)."""
    a, b = q[i], q[(i + 1) % 4]
    d = b - a
    normal = np.array([-d[1], d[0]], np.float32) / max(1e-6, float(np.linalg.norm(d)))
    if np.dot(q.mean(axis=0) - a, normal) < 0:
        normal = -normal
    t = np.linspace(0.08, 0.92, n, dtype=np.float32)[:, None]
    pts = a + t * d + offset * normal
    return pts[:, 0], pts[:, 1]


def _cross(u: np.ndarray, v: np.ndarray) -> float:
    return float(u[0] * v[1] - u[1] * v[0])


def _at(img: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    xi = np.clip(np.round(xs).astype(int), 0, w - 1)
    yi = np.clip(np.round(ys).astype(int), 0, h - 1)
    return img[yi, xi].astype(np.float32)


@dataclass
class _Search:
    small: np.ndarray
    gray: np.ndarray
    lab: np.ndarray  # smoothed, float
    clean: np.ndarray  # lab with thin dark print closed away
    paper: np.ndarray  # bool: light and nearly colourless
    edges: np.ndarray

    @property
    def wh(self) -> tuple[int, int]:
        return self.gray.shape[1], self.gray.shape[0]


def _search_images(image: np.ndarray) -> tuple[_Search, float]:
    h0, w0 = image.shape[:2]
    scale = min(1.0, SEARCH_PX / max(h0, w0))
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    blur = cv2.GaussianBlur(small, (5, 5), 0)
    gray = cv2.cvtColor(blur, cv2.COLOR_BGR2GRAY)
    lab = cv2.cvtColor(blur, cv2.COLOR_BGR2LAB).astype(np.float32)
    closed = cv2.morphologyEx(blur, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    clean = cv2.cvtColor(closed, cv2.COLOR_BGR2LAB).astype(np.float32)
    hsv = cv2.cvtColor(closed, cv2.COLOR_BGR2HSV)
    paper = (hsv[..., 1] <= PAPER_MAX_SAT) & (
        cv2.cvtColor(closed, cv2.COLOR_BGR2GRAY) >= PAPER_MIN_GRAY
    )
    edges = cv2.Canny(gray, 30, 90)
    return _Search(small, gray, lab, clean, paper, edges), scale


def _masks(s: _Search) -> list[np.ndarray]:
    w, h = s.wh
    k = np.ones((7, 7), np.uint8)
    _, bright = cv2.threshold(s.gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    paper = s.paper.astype(np.uint8) * 255
    # the desk's colour: the frame's border (a page rarely covers all of it)
    b = max(2, int(0.02 * max(w, h)))
    border = np.concatenate(
        [
            s.clean[:b].reshape(-1, 3),
            s.clean[-b:].reshape(-1, 3),
            s.clean[:, :b].reshape(-1, 3),
            s.clean[:, -b:].reshape(-1, 3),
        ]
    )
    desk = np.median(border, axis=0)
    dist = np.linalg.norm(s.clean - desk, axis=2)
    unlike = (dist > max(20.0, float(np.percentile(dist, 60)))).astype(np.uint8) * 255
    masks = [cv2.morphologyEx(m, cv2.MORPH_OPEN, k) for m in (bright, paper, unlike)]
    masks = [cv2.morphologyEx(m, cv2.MORPH_CLOSE, k) for m in masks]
    masks += [s.edges, cv2.dilate(s.edges, np.ones((3, 3), np.uint8))]
    return masks


def _is_paper_on_desk(q: np.ndarray, s: _Search) -> float:
    """0 unless ``q`` is paper against something else along every free side; else a score."""
    w, h = s.wh
    border = _on_border(q, w, h)
    ins, outs, shares = [], [], []
    near: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {i: ([], []) for i in range(4)}
    for i in range(4):
        if border[i]:
            continue
        vin = np.median([_at(s.clean, *_side_samples(q, i, o)) for o in BAND_PX], axis=0)
        vout = np.median([_at(s.clean, *_side_samples(q, i, -o)) for o in BAND_PX], axis=0)
        diff = np.linalg.norm(vin - vout, axis=1)
        shares.append(float((diff > SIDE_CONTRAST).mean()))
        ins.append(vin)
        outs.append(vout)
        # the colours near each end, for the corners (light falls off across a frame)
        for corner, part in ((i, slice(0, 6)), ((i + 1) % 4, slice(-6, None))):
            near[corner][0].append(vin[part])
            near[corner][1].append(vout[part])
    if not shares or min(shares) < SIDE_SHARE:
        return 0.0
    paper_c = np.median(np.concatenate(ins), axis=0)
    desk_c = np.median(np.concatenate(outs), axis=0)
    # desk taken in beyond a corner: just inside each corner must be paper, not desk
    sides = [float(np.linalg.norm(q[i] - q[(i + 1) % 4])) for i in range(4)]
    step = max(4.0, CORNER_IN * min(sides))
    for i in range(4):
        if border[i] and border[(i - 1) % 4]:
            continue  # a corner out of the frame
        u = q[(i + 1) % 4] - q[i]
        v = q[(i - 1) % 4] - q[i]
        bis = u / np.linalg.norm(u) + v / np.linalg.norm(v)
        c = q[i] + step * bis / max(1e-6, float(np.linalg.norm(bis)))
        patch = s.clean[
            int(np.clip(c[1] - 2, 0, h - 1)) : int(np.clip(c[1] + 3, 1, h)),
            int(np.clip(c[0] - 2, 0, w - 1)) : int(np.clip(c[0] + 3, 1, w)),
        ].reshape(-1, 3)
        if len(patch) == 0:
            return 0.0
        colour = np.median(patch, axis=0)
        pin, pout = near[i]
        here_paper = np.median(np.concatenate(pin), axis=0) if pin else paper_c
        here_desk = np.median(np.concatenate(pout), axis=0) if pout else desk_c
        if np.linalg.norm(colour - here_desk) < np.linalg.norm(colour - here_paper):
            return 0.0
    return float(np.mean(shares))


def _step_signs(q: np.ndarray, s: _Search) -> list[int]:
    """Per side, +1 when the page is lighter than what lies outside it, -1 when darker."""
    out = []
    for i in range(4):
        vin = float(np.median(_at(s.gray, *_side_samples(q, i, BAND_PX[1]))))
        vout = float(np.median(_at(s.gray, *_side_samples(q, i, -BAND_PX[1]))))
        out.append(0 if abs(vin - vout) < 8 else (1 if vin > vout else -1))
    return out


def _edge_support(q: np.ndarray, s: _Search) -> bool:
    near = cv2.dilate(s.edges, np.ones((5, 5), np.uint8))
    on = [float((_at(near, *_side_samples(q, i, 0)) > 0).mean()) for i in range(4)]
    return float(np.mean(on)) >= EDGE_SUPPORT and min(on) >= EDGE_SUPPORT_MIN


def _paper_inside(q: np.ndarray, s: _Search) -> bool:
    w, h = s.wh
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, np.round(q).astype(np.int32), 255)
    return float(s.paper[mask > 0].mean()) >= PAPER_INSIDE


def _border_is_paper(s: _Search) -> bool:
    w, h = s.wh
    b = max(2, int(0.015 * max(w, h)))
    ring = np.ones((h, w), bool)
    ring[b:-b, b:-b] = False
    return float(s.paper[ring].mean()) >= BORDER_PAPER


# -- refinement and measurement --------------------------------------------------------------


def _fit_line(pts: np.ndarray, tol: float, rng: np.random.Generator) -> np.ndarray | None:
    """The inliers of the line through most of ``pts`` (RANSAC), or None if too few."""
    n = len(pts)
    best = np.zeros(n, bool)
    for _ in range(120):
        i, j = rng.choice(n, 2, replace=False)
        d = pts[j] - pts[i]
        norm = float(np.linalg.norm(d))
        if norm < 1e-3:
            continue
        dist = np.abs(d[0] * (pts[:, 1] - pts[i, 1]) - d[1] * (pts[:, 0] - pts[i, 0])) / norm
        inl = dist <= tol
        if inl.sum() > best.sum():
            best = inl
    return best if best.sum() >= max(5, 0.35 * n) else None


def _refine(
    image_gray: np.ndarray,
    corners: np.ndarray,
    scale: float,
    fixed: list[bool],
    sign: list[int],
    nearest: bool,
) -> np.ndarray:
    """Move each free side onto the straight brightness step along it, at full resolution.

    Across each side, at points along it, the step of the expected direction (paper
    lighter than the desk, when it is): for a page on a desk the strong step nearest to
    where the search found the side (a few search pixels), for a printed frame the strongest
    within ``REACH`` of the side's length (its coarse corners can be far off); a line
    through most of them (RANSAC, so print near the edge or a shadow does not pull it); the
    corners are where neighbouring lines cross."""
    rng = np.random.default_rng(0)
    tol = max(1.5, 0.8 / scale)
    lines = []
    for i in range(4):
        a, b = corners[i], corners[(i + 1) % 4]
        d = b - a
        length = float(np.linalg.norm(d))
        if fixed[i] or length < 10:
            lines.append((a, d))
            continue
        reach = max(3.0, 3.0 / scale) if nearest else max(3.0, 2.5 / scale, REACH * length)
        offs = np.arange(-reach, reach + 1, 1.0, dtype=np.float32)
        n = int(np.clip(length / 5, 24, 240))
        t = np.linspace(0.04, 0.96, n, dtype=np.float32)
        normal = np.array([-d[1], d[0]], np.float32) / max(1e-6, length)
        if np.dot(corners.mean(axis=0) - a, normal) < 0:
            normal = -normal  # pointing into the page
        pts = a + t[:, None] * d
        mapx = (pts[:, 0:1] + offs[None, :] * normal[0]).astype(np.float32)
        mapy = (pts[:, 1:2] + offs[None, :] * normal[1]).astype(np.float32)
        prof = cv2.remap(
            image_gray, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        ).astype(np.float32)
        prof = cv2.GaussianBlur(prof, (5, 1), 0).astype(np.float32)
        grad = np.diff(prof, axis=1).astype(np.float32)
        grad = grad * sign[i] if sign[i] else np.abs(grad)
        if nearest:  # the page's edge where the search put it, not print just inside
            top = grad.max(axis=1, keepdims=True)
            strong = grad >= np.maximum(3.0, 0.3 * top)
            away = np.abs(offs[:-1] + 0.5)[None, :] + np.where(strong, 0, 1e6)
            best = np.argmin(away, axis=1)
        else:  # a printed frame's line among other print: the strongest
            best = np.argmax(grad, axis=1)
        strength = grad[np.arange(n), best]
        ok = strength >= max(3.0, 0.3 * float(np.percentile(strength, 75)))
        found = (pts + (offs[best] + 0.5)[:, None] * normal)[ok]
        inl = _fit_line(found, tol, rng) if len(found) >= 5 else None
        if inl is None:
            lines.append((a, d))
            continue
        vx, vy, x0, y0 = cv2.fitLine(found[inl], cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
        lines.append((np.array([x0, y0], np.float32), np.array([vx, vy], np.float32)))
    out = []
    for i in range(4):
        (p, u), (r, v) = lines[(i - 1) % 4], lines[i]
        den = _cross(u, v)
        if abs(den) < 1e-6:
            out.append(corners[i])
            continue
        out.append(p + (_cross(r - p, v) / den) * u)
    res = np.array(out, np.float32)
    sides = [float(np.linalg.norm(corners[i] - corners[(i + 1) % 4])) for i in range(4)]
    if not np.isfinite(res).all() or np.linalg.norm(res - corners, axis=1).max() > 0.15 * min(
        sides
    ):
        return corners
    return res


def page_aspect(corners: np.ndarray, frame_wh: tuple[int, int]) -> float:
    """The page's true width / height from its corners in a pinhole camera's frame."""
    tl, tr, br, bl = (np.array([p[0], p[1], 1.0]) for p in corners)
    u0, v0 = frame_wh[0] / 2, frame_wh[1] / 2
    # Zhang & He's notation: m1 TL, m2 TR, m3 BL, m4 BR
    m1, m2, m3, m4 = tl, tr, bl, br
    k2 = np.dot(np.cross(m1, m4), m3) / np.dot(np.cross(m2, m4), m3)
    k3 = np.dot(np.cross(m1, m4), m2) / np.dot(np.cross(m3, m4), m2)
    n2 = k2 * m2 - m1
    n3 = k3 * m3 - m1
    w_side = float(np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2
    h_side = float(np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2
    fallback = w_side / max(1e-6, h_side)
    if abs(n2[2]) < 1e-4 or abs(n3[2]) < 1e-4:
        return fallback
    f2 = -(
        (n2[0] * n3[0] - (n2[0] * n3[2] + n2[2] * n3[0]) * u0 + n2[2] * n3[2] * u0 * u0)
        + (n2[1] * n3[1] - (n2[1] * n3[2] + n2[2] * n3[1]) * v0 + n2[2] * n3[2] * v0 * v0)
    ) / (n2[2] * n3[2])
    if not np.isfinite(f2) or f2 <= 0:
        return fallback
    f = np.sqrt(f2)
    # a focal length far outside any desk camera's (a nearly straight-down view): noise
    if not 0.3 * max(frame_wh) < f < 8 * max(frame_wh):
        return fallback
    a_inv = np.linalg.inv(np.array([[f, 0, u0], [0, f, v0], [0, 0, 1.0]]))
    g = a_inv.T @ a_inv
    ratio = np.sqrt((n2 @ g @ n2) / (n3 @ g @ n3))
    return float(ratio) if np.isfinite(ratio) and ratio > 0 else fallback


def paper_name(aspect: float) -> tuple[str | None, float]:
    """The named shape an aspect matches (within 4 %) and the long side in inches assumed."""
    r = max(aspect, 1 / aspect)
    for name, ratio, long_in in PAPERS:
        if abs(r - ratio) / ratio < 0.04:
            return name, long_in
    if r >= RECEIPT_RATIO:
        return "receipt", RECEIPT_SHORT_IN * r
    return None, A4_IN[1]


def locate(image: np.ndarray) -> Page | None:
    """Where the page lies in ``image`` (see the module's docstring), or None."""
    s, scale = _search_images(image)
    w, h = s.wh
    best: tuple[float, np.ndarray] | None = None
    seen: list[np.ndarray] = []
    pages: list[tuple[float, np.ndarray]] = []
    for mask in _masks(s):
        for q in _quads(mask):
            if not _plausible(q, w, h) or any(np.abs(q - o).max() < 2 for o in seen):
                continue
            seen.append(q)
            if _paper_inside(q, s) and _is_paper_on_desk(q, s) > 0:
                pages.append((cv2.contourArea(q), q))
    if pages:
        # the largest, but a sheet fully in view over a bigger shape running out of the frame
        # (the page merged with a second sheet beside it)
        best = max(pages, key=lambda p: p[0])
        whole = [p for p in pages if not any(_on_border(p[1], w, h))]
        if whole and any(_on_border(best[1], w, h)):
            inner = max(whole, key=lambda p: p[0])
            if inner[0] >= IN_VIEW_SHARE * best[0]:
                best = inner
    how = "desk"
    if best is None and _border_is_paper(s):
        q = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
        best, how = (float(w * h), q), "fills_frame"
    if best is None:
        framed = [q for q in seen if _edge_support(q, s) and _paper_inside(q, s)]
        if framed:
            q = max(framed, key=cv2.contourArea)
            best, how = (cv2.contourArea(q), q), "printed_frame"
    if best is None:
        return None
    h0, w0 = image.shape[:2]
    if how == "fills_frame":
        corners = np.array([[0, 0], [w0 - 1, 0], [w0 - 1, h0 - 1], [0, h0 - 1]], np.float32)
        return Page(corners, (w0 - 1) / (h0 - 1), how)
    fixed = _on_border(best[1], w, h)
    corners = ((best[1] + 0.5) / scale - 0.5).astype(np.float32)
    full = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    # a printed frame: paper outside, the dark line inside
    sign = _step_signs(best[1], s) if how == "desk" else [-1, -1, -1, -1]
    corners = _refine(full, corners.astype(np.float32), scale, fixed, sign, how == "desk")
    return Page(corners, page_aspect(corners, (w0, h0)), how, out_of_view=any(fixed))


def find_page(image: np.ndarray) -> np.ndarray | None:
    """The page's corners (TL, TR, BR, BL) in ``image`` pixels, or None."""
    page = locate(image)
    return None if page is None else page.corners


def page_size(corners: np.ndarray, aspect: float, max_long_px: int) -> tuple[int, int, float]:
    """Output width, height and the dpi reached over the page.

    The page keeps its own measured proportions. The long side is the camera's own
    resolution along the page, capped at ``max_long_px`` (upscaling adds no detail); the
    dpi assumes the paper size its shape names (A4 for a form of unknown shape).
    """
    tl, tr, br, bl = corners
    width = float(np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2
    height = float(np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2
    long_px = max(width, height)
    out_long = min(long_px, float(max_long_px))
    if aspect >= 1:
        w, h = out_long, out_long / aspect
    else:
        w, h = out_long * aspect, out_long
    _, long_in = paper_name(aspect)
    dpi = min(long_px, out_long) / long_in
    return max(1, int(round(w))), max(1, int(round(h))), round(dpi, 1)


def quality_warnings(page: np.ndarray, dpi: float | None) -> list[str]:
    gray = cv2.cvtColor(page, cv2.COLOR_BGR2GRAY) if page.ndim == 3 else page
    warnings = []
    if dpi is not None and dpi < TARGET_DPI:
        warnings.append(
            f"low resolution: {dpi:.0f} dpi over the page ({TARGET_DPI:.0f} wanted); bring the "
            "camera closer or use a higher-resolution camera"
        )
    # measure sharpness at a fixed scale so the threshold does not depend on resolution
    probe = cv2.resize(gray, (800, max(1, int(800 * gray.shape[0] / gray.shape[1]))))
    if cv2.Laplacian(probe, cv2.CV_64F).var() < BLUR_VAR:
        warnings.append("blurred: ask the resident to hold the paper still and flat")
    if page.ndim == 3:
        hsv = cv2.cvtColor(page, cv2.COLOR_BGR2HSV)
        level = hsv[..., 2]
        blown = (level >= 250) & (hsv[..., 1] <= 25)
    else:
        level = gray
        blown = gray >= 250
    # ... and brighter than the paper around it (a lamp's spot, not a bright half of the page)
    small = cv2.resize(level, (400, max(1, int(400 * level.shape[0] / level.shape[1]))))
    around = cv2.resize(cv2.medianBlur(small, 101), level.shape[::-1])
    blown &= level.astype(np.int16) >= around.astype(np.int16) + GLARE_ABOVE_PAPER
    if blown.mean() > GLARE_SHARE:
        warnings.append("glare: a light reflects on the paper; tilt it or dim the lamp")
    return warnings


def rectify(image: np.ndarray, target_dpi: float = TARGET_DPI) -> Still:
    if image is None or image.size == 0:
        raise DocumentError("document still: the camera gave an empty frame")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    page = locate(image)
    if page is None:
        return Still(
            image,
            found=False,
            warnings=["no page found: lay the form flat, fully in view, on the darker desk mat"],
        )
    corners = page.corners
    name, long_in = paper_name(page.aspect)
    w, h, dpi = page_size(corners, page.aspect, int(round(target_dpi * long_in)))
    _, _, camera_dpi = page_size(corners, page.aspect, 1_000_000)
    dst = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(corners, dst)
    flat = cv2.warpPerspective(image, m, (w, h), flags=cv2.INTER_CUBIC)
    warnings = quality_warnings(flat, dpi)
    fh, fw = image.shape[:2]
    share = cv2.contourArea(corners) / float(fw * fh)
    if page.how == "desk" and share < NEAR_AREA:
        warnings.append(
            f"too far: the page fills {share:.0%} of the view; lower the camera or zoom in"
        )
    if page.out_of_view:
        warnings.append("page partly out of view: move the form fully under the camera")
    return Still(
        flat,
        found=True,
        corners=[(round(float(x), 1), round(float(y), 1)) for x, y in corners],
        dpi=dpi,
        warnings=warnings,
        aspect=round(page.aspect, 3),
        paper=name,
        how=page.how,
        camera_dpi=camera_dpi,
    )
