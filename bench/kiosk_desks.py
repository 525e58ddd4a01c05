"""How well the desk camera's page finder works: labelled desk sets, corner error and IoU.

Usage: python bench/kiosk_desks.py [--per-set 20] [--seed 2] [--dump DIR]

How the sets are made and labelled (every image is rendered, so its corners are known):

A page is drawn on paper of a known shape (A4/B5 portrait or landscape, US letter, an A3
folded to A4, an 80 mm receipt) in an off-white chosen at random, with the printed content of
``opencv/sudoku.png`` or ``opencv/imageTextN.png`` (the shared sample pages) inside its
margins and, on some, a printed frame. The page lies on a desk texture (dark mat, walnut, pale
beech - little contrast with paper, checked cloth) and is seen by a pinhole camera (focal
length 0.9-1.6 x the frame's width, principal point at the centre) tilted 0-35 deg and turned
up to +-30 deg, from a distance at which the page covers 20-70 % of the 1600x1200 frame. Its
four corners are projected with the same camera: that is the label (TL, TR, BR, BL of the
page as printed). Then, per set:

``plain``        desk and page, a gentle light gradient
``lighting``     strong light gradients and vignetting (0.45-1.2 x across the frame)
``glare_hand``   one or two blown-out glare spots on the page and the blurred shadow of a hand
                 reaching over one edge
``second_sheet`` another sheet (a different white) beside or under the page, running out of
                 the frame
``shapes``       receipts, landscape pages, US letter (the finder must not force A4)
``pale_desk``    pale beech and light cloth only: the paper differs little from the desk
``fills_frame``  flat scans: the page is the whole frame (label: the frame's corners), some
                 with a printed box inside that must not be taken for the page

Every image gets sensor noise, a slight blur and JPEG compression (q 80). Seed 1 is the set
the finder's settings were chosen on; the default seed 2 is held out. The real photographs
(``sudoku.png``: the printed grid, corners read off 5x crops; ``imageTextN.png``: a flat
scan, the whole frame) are scored on their own.

Figures per set: pages found, corner error (the worst corner of each image, as % of the
page's diagonal: median and p95), IoU (mean and worst), aspect error (median), ms per image.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mimamori.kiosk.document import locate  # noqa: E402

MEDIA = Path(__file__).resolve().parent.parent.parent / "shared" / "media" / "opencv"
FRAME = (1600, 1200)
SETS = ("plain", "lighting", "glare_hand", "second_sheet", "shapes", "pale_desk", "fills_frame")
#: paper shapes in mm (width, height as printed)
PAPERS_MM = {
    "A4": (210, 297),
    "B5": (182, 257),
    "A3 folded": (210, 297),
    "A4 landscape": (297, 210),
    "letter": (216, 279),
    "receipt": (80, 220),
    "A5 landscape": (210, 148),
}
#: the real photographs and their labels (TL, TR, BR, BL)
REAL = {
    "sudoku.png": [[72, 84], [492, 69], [520, 520], [37, 514]],  # the grid, read off 5x crops
    "imageTextN.png": None,  # a flat scan: the whole frame
}


@dataclass
class Sample:
    name: str
    image: np.ndarray
    corners: np.ndarray  # TL, TR, BR, BL
    aspect: float  # true width / height as printed


def _content() -> list[np.ndarray]:
    out = []
    for name in ("sudoku.png", "imageTextN.png"):
        im = cv2.imread(str(MEDIA / name))
        if im is None:
            raise SystemExit(f"{MEDIA / name}: expected the shared sample page (PNG)")
        out.append(im)
    return out


def _paper(
    rng: np.random.Generator, size_mm: tuple[int, int], content: list[np.ndarray], px_mm: float
) -> np.ndarray:
    w, h = int(size_mm[0] * px_mm), int(size_mm[1] * px_mm)
    tone = rng.uniform(222, 250)
    tint = rng.uniform(-6, 6, 3)
    page = np.empty((h, w, 3), np.float32)
    page[:] = np.clip(tone + tint, 0, 255)
    src = content[int(rng.integers(len(content)))].astype(np.float32)
    m = int(0.08 * min(w, h))
    cw, ch = w - 2 * m, h - 2 * m
    s = min(cw / src.shape[1], ch / src.shape[0])
    rw, rh = max(1, int(src.shape[1] * s)), max(1, int(src.shape[0] * s))
    ink = cv2.resize(src, (rw, rh), interpolation=cv2.INTER_AREA)
    # the sample's own paper becomes this paper (multiply: ink darkens)
    ink = ink / max(1.0, float(np.percentile(ink, 90)))
    y0 = m + int(rng.integers(0, max(1, ch - rh + 1)))
    page[y0 : y0 + rh, m : m + rw] *= np.clip(ink, 0, 1)
    if rng.random() < 0.4:  # a form's printed frame
        cv2.rectangle(
            page, (m // 2, m // 2), (w - m // 2, h - m // 2), (40, 40, 40), max(2, w // 250)
        )
    return page


def _desk(rng: np.random.Generator, kind: str) -> np.ndarray:
    w, h = FRAME
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    noise = cv2.resize(rng.normal(0, 1, (h // 16, w // 16)).astype(np.float32), (w, h))
    if kind == "mat":
        base = np.array(rng.choice([[60, 70, 60], [70, 70, 72], [90, 60, 50]]), np.float32)
        return base + 6 * noise[..., None]
    if kind in ("walnut", "beech"):
        ang = rng.uniform(0, np.pi)
        u = xx * np.cos(ang) + yy * np.sin(ang)
        grain = np.sin(u / rng.uniform(6, 14) + 3 * noise) * 0.5 + 0.5
        base = np.array([40, 70, 110] if kind == "walnut" else [150, 190, 215], np.float32)
        return base * (0.85 + 0.25 * grain[..., None])
    # checked cloth
    c = ((xx // 24 + yy // 24) % 2)[..., None]
    a, b = (
        (np.array([160, 170, 175]), np.array([120, 150, 170]))
        if rng.random() < 0.5
        else (np.array([70, 60, 130]), np.array([40, 40, 90]))
    )
    return a * c + b * (1 - c) + 5 * noise[..., None]


def _camera(rng: np.random.Generator, size_mm: tuple[int, int], cover: float) -> np.ndarray:
    """Project the page's corners (centred, mm) with a tilted, turned pinhole camera."""
    w, h = FRAME
    for _ in range(200):
        f = w * rng.uniform(0.9, 1.6)
        tilt, turn = np.radians(rng.uniform(0, 35)), np.radians(rng.uniform(-30, 30))
        pw, ph = size_mm
        world = np.array(
            [[-pw / 2, -ph / 2, 0], [pw / 2, -ph / 2, 0], [pw / 2, ph / 2, 0], [-pw / 2, ph / 2, 0]]
        )
        rz = np.array(
            [[np.cos(turn), -np.sin(turn), 0], [np.sin(turn), np.cos(turn), 0], [0, 0, 1]]
        )
        rx = np.array(
            [[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]]
        )
        dist = f * np.sqrt(pw * ph / (cover * w * h))
        t = np.array(
            [rng.uniform(-0.15, 0.15) * dist * w / f, rng.uniform(-0.15, 0.15) * dist * h / f, dist]
        )
        cam = (rx @ rz @ world.T).T + t
        pts = np.stack(
            [f * cam[:, 0] / cam[:, 2] + w / 2, f * cam[:, 1] / cam[:, 2] + h / 2], axis=1
        )
        if pts.min() > 0.03 * w and (pts[:, 0] < 0.97 * w).all() and (pts[:, 1] < 0.97 * h).all():
            return pts.astype(np.float32)
        cover *= 0.97  # too big for the frame this way round: a little farther
    raise RuntimeError("no camera pose keeps the page in view")


def _place(canvas: np.ndarray, page: np.ndarray, corners: np.ndarray) -> None:
    h, w = page.shape[:2]
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    m = cv2.getPerspectiveTransform(src, corners)
    warped = cv2.warpPerspective(page, m, FRAME, flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.ones((h, w), np.float32), m, FRAME, flags=cv2.INTER_LINEAR)
    canvas[:] = canvas * (1 - mask[..., None]) + warped * mask[..., None]


def _finish(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 1.2))
    img = img + rng.normal(0, rng.uniform(2, 4), img.shape).astype(np.float32)
    ok, buf = cv2.imencode(
        ".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 80]
    )
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def render(kind: str, rng: np.random.Generator, content: list[np.ndarray]) -> Sample:
    w, h = FRAME
    if kind == "fills_frame":
        size = PAPERS_MM[str(rng.choice(["A4 landscape", "A5 landscape"]))]
        page = _paper(rng, size, content, 8.0)
        if rng.random() < 0.6:  # a box printed inside (a form's table)
            ph, pw = page.shape[:2]
            x0, y0 = int(pw * rng.uniform(0.1, 0.3)), int(ph * rng.uniform(0.1, 0.3))
            cv2.rectangle(page, (x0, y0), (pw - x0, ph - y0), (30, 30, 30), 4)
        img = cv2.resize(page, FRAME, interpolation=cv2.INTER_AREA)
        corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
        return Sample(kind, _finish(rng, img), corners, (w - 1) / (h - 1))
    desks = {"pale_desk": ["beech", "cloth_light"]}.get(kind, ["mat", "walnut", "beech", "cloth"])
    desk_kind = str(rng.choice(desks))
    img = _desk(rng, "cloth" if desk_kind == "cloth_light" else desk_kind)
    if desk_kind == "cloth_light":
        img = (
            img * 0
            + np.array([175, 185, 190], np.float32)
            + rng.normal(0, 3, img.shape).astype(np.float32)
        )
    if kind == "shapes":
        paper = str(rng.choice(["receipt", "A4 landscape", "letter", "A5 landscape", "B5"]))
    else:
        paper = str(rng.choice(["A4", "A4", "B5", "A3 folded"]))
    size = PAPERS_MM[paper]
    corners = _camera(
        rng, size, rng.uniform(0.2, 0.7) if paper != "receipt" else rng.uniform(0.1, 0.25)
    )
    page = _paper(rng, size, content, 4.0)
    if kind == "second_sheet":
        other = np.full((400, 300, 3), rng.uniform(205, 245), np.float32)
        side = rng.integers(4)
        c = corners.mean(axis=0)
        span = np.ptp(corners, axis=0)
        shift = [(span[0] * 0.9, 0), (-span[0] * 0.9, 0), (0, span[1] * 0.9), (0, -span[1] * 0.9)][
            side
        ]
        oc = corners - c + c + np.array(shift, np.float32) * rng.uniform(0.8, 1.05)
        _place(img, other, oc.astype(np.float32))
    # a thin contact shadow under the page
    shadow = np.zeros((h, w), np.float32)
    cv2.fillConvexPoly(shadow, np.round(corners + 3).astype(np.int32), 1.0)
    img *= 1 - 0.25 * cv2.GaussianBlur(shadow, (0, 0), 3)[..., None]
    _place(img, page, corners)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "lighting":
        ang = rng.uniform(0, 2 * np.pi)
        g = (xx / w - 0.5) * np.cos(ang) + (yy / h - 0.5) * np.sin(ang)
        light = 0.82 + rng.uniform(0.5, 0.75) * g
        light *= 1 - 0.35 * (((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) * 2)
        img *= np.clip(light, 0.45, 1.2)[..., None]
    else:
        img *= (0.92 + 0.12 * (xx / w))[..., None]
    if kind == "glare_hand":
        for _ in range(int(rng.integers(1, 3))):
            t = rng.uniform(0.25, 0.75, 2)
            p = corners[0] + t[0] * (corners[1] - corners[0]) + t[1] * (corners[3] - corners[0])
            r = rng.uniform(20, 60)
            blob = np.exp(-(((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * r * r)))
            img += 400 * blob[..., None]
        i = int(rng.integers(4))
        a, b = corners[i], corners[(i + 1) % 4]
        m = a + rng.uniform(0.3, 0.7) * (b - a)
        out = m - (corners.mean(axis=0) - m) * 0.6
        hand = np.zeros((h, w), np.float32)
        cv2.ellipse(
            hand,
            tuple(int(v) for v in (m + out) / 2),
            (int(rng.uniform(60, 110)), int(rng.uniform(200, 320))),
            float(np.degrees(np.arctan2(*(out - m)[::-1])) + 90),
            0,
            360,
            1.0,
            -1,
        )
        img *= 1 - 0.45 * cv2.GaussianBlur(hand, (0, 0), 25)[..., None]
    return Sample(
        f"{kind}/{paper}/{desk_kind}",
        _finish(rng, np.clip(img, 0, 255)),
        corners,
        size[0] / size[1],
    )


def desk_set(kind: str, n: int, seed: int) -> Iterator[Sample]:
    rng = np.random.default_rng([seed, SETS.index(kind)])
    content = _content()
    for _ in range(n):
        yield render(kind, rng, content)


def real_set() -> Iterator[Sample]:
    for name, label in REAL.items():
        im = cv2.imread(str(MEDIA / name))
        if im is None:
            continue
        h, w = im.shape[:2]
        c = np.array(
            label if label else [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32
        )
        tl, tr, br, bl = c
        aspect = float(
            (np.linalg.norm(tr - tl) + np.linalg.norm(br - bl))
            / (np.linalg.norm(bl - tl) + np.linalg.norm(br - tr))
        )
        yield Sample(name, im, c, aspect)


def corner_error(found: np.ndarray, truth: np.ndarray) -> float:
    """The worst corner's distance, as % of the page's diagonal."""
    diag = float(max(np.linalg.norm(truth[2] - truth[0]), np.linalg.norm(truth[3] - truth[1])))
    return float(np.linalg.norm(found - truth, axis=1).max() / diag * 100)


def iou(a: np.ndarray, b: np.ndarray, shape: tuple[int, int]) -> float:
    ma, mb = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(ma, np.round(a).astype(np.int32), 1)
    cv2.fillConvexPoly(mb, np.round(b).astype(np.int32), 1)
    union = np.logical_or(ma, mb).sum()
    return float(np.logical_and(ma, mb).sum() / union) if union else 0.0


@dataclass
class Score:
    found: bool
    err: float  # % of diagonal (100 when not found)
    iou: float
    aspect_err: float  # %
    ms: float


def score(s: Sample) -> Score:
    t0 = time.perf_counter()
    page = locate(s.image)
    ms = (time.perf_counter() - t0) * 1000
    if page is None:
        return Score(False, 100.0, 0.0, 100.0, ms)
    return Score(
        True,
        corner_error(page.corners, s.corners),
        iou(page.corners, s.corners, s.image.shape[:2]),
        abs(page.aspect - s.aspect) / s.aspect * 100,
        ms,
    )


def summary(name: str, scores: list[Score]) -> str:
    n = len(scores)
    errs = sorted(x.err for x in scores)
    ious = [x.iou for x in scores]
    p95 = errs[min(n - 1, int(round(0.95 * (n - 1))))]
    asp = statistics.median(x.aspect_err for x in scores)
    good = sum(1 for x in scores if x.err < 2)
    return (
        f"| {name} | {sum(x.found for x in scores)}/{n} | {good}/{n} | "
        f"{statistics.median(errs):.2f} | {p95:.2f} | {statistics.mean(ious):.3f} | "
        f"{min(ious):.3f} | {asp:.1f} | {statistics.median(x.ms for x in scores):.0f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--per-set", type=int, default=20, help="images rendered per set")
    ap.add_argument(
        "--seed", type=int, default=2, help="1: the set settings were chosen on; 2: held out"
    )
    ap.add_argument("--dump", type=Path, help="write each rendered image with its label here")
    args = ap.parse_args()
    print(f"seed {args.seed}, {args.per_set} images per set, {FRAME[0]}x{FRAME[1]}")
    print(
        "| set | found | corners < 2 % | corner err median % | p95 % | IoU mean | IoU worst | aspect err median % | ms/image |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    every: list[Score] = []
    for kind in SETS:
        scores = []
        for i, s in enumerate(desk_set(kind, args.per_set, args.seed)):
            scores.append(score(s))
            if args.dump:
                args.dump.mkdir(parents=True, exist_ok=True)
                img = s.image.copy()
                cv2.polylines(img, [np.round(s.corners).astype(np.int32)], True, (0, 255, 0), 2)
                cv2.imwrite(str(args.dump / f"{kind}-{i:02d}.jpg"), img)
        every += scores
        print(summary(kind, scores))
    print(summary("all rendered", every))
    for s in real_set():
        print(summary(f"real: {s.name}", [score(s)]))


if __name__ == "__main__":
    main()
