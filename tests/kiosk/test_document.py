"""Document stills: the page's corners are found where they are, and the page comes out flat."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mimamori.kiosk.document import A4_RATIO, TARGET_DPI, find_page, rectify
from tests.conftest import MEDIA

SUDOKU = MEDIA / "opencv" / "sudoku.png"
#: the outer corners of the printed grid in sudoku.png (TL, TR, BR, BL), read off 5x crops
SUDOKU_GRID = np.array([[72, 84], [492, 69], [520, 520], [37, 514]], dtype=np.float32)

needs_media = pytest.mark.skipif(not SUDOKU.is_file(), reason="../shared/media not present")


def grid_lines(page: np.ndarray, axis: int) -> np.ndarray:
    """Positions of the 10 strongest dark lines across ``axis`` (0: rows, 1: columns)."""
    gray = cv2.cvtColor(page, cv2.COLOR_BGR2GRAY).astype(float)
    profile = (255 - gray).mean(axis=axis)
    n = len(profile)
    # one peak per ninth of the page (the grid's lines are evenly spaced when flat)
    peaks = []
    for k in range(10):
        centre = k * (n - 1) / 9
        lo, hi = int(max(0, centre - n / 30)), int(min(n, centre + n / 30 + 1))
        peaks.append(lo + int(np.argmax(profile[lo:hi])))
    return np.array(peaks, dtype=float)


@needs_media
def test_sudoku_page_corners_and_flat_grid() -> None:
    image = cv2.imread(str(SUDOKU))
    still = rectify(image)
    assert still.found
    corners = np.array(still.corners)
    err = np.linalg.norm(corners - SUDOKU_GRID, axis=1)
    diagonal = float(np.linalg.norm(SUDOKU_GRID[2] - SUDOKU_GRID[0]))
    # the grid's top border runs under the dark header bar: its corner is the hardest
    assert err.max() < 0.025 * diagonal, f"corners {corners.tolist()} vs {SUDOKU_GRID.tolist()}"
    assert still.how == "printed_frame"  # a newspaper larger than the view
    h, w = still.image.shape[:2]
    assert 0.93 < w / h < 1.07, "the grid is square once flattened"
    # flat: the grid's lines are straight and evenly spaced in both directions
    for axis, size in ((0, w), (1, h)):
        lines = grid_lines(still.image, axis)
        spacing = np.diff(lines)
        assert np.abs(spacing - size / 9).max() < 0.04 * size, (axis, lines.tolist())
    # a phone-sized photo cannot give 200 dpi over A4: said, not hidden
    assert still.dpi is not None and still.dpi < TARGET_DPI
    assert any("low resolution" in w for w in still.warnings)


def desk_with_page(page_w: int, page_h: int, corners: np.ndarray) -> np.ndarray:
    """A dark desk 4000x3000 with a printed A4 page lying at ``corners``."""
    page = np.full((page_h, page_w, 3), 235, np.uint8)
    cv2.rectangle(page, (60, 60), (page_w - 60, page_h - 60), (30, 30, 30), 4)
    for i, y in enumerate(range(200, page_h - 200, 90)):
        cv2.putText(
            page, f"line {i} name address", (100, y), cv2.FONT_HERSHEY_SIMPLEX, 2, (20, 20, 20), 3
        )
    desk = np.zeros((3000, 4000, 3), np.uint8)
    desk[:] = (60, 70, 80)
    src = np.array([[0, 0], [page_w - 1, 0], [page_w - 1, page_h - 1], [0, page_h - 1]], np.float32)
    m = cv2.getPerspectiveTransform(src, corners)
    warped = cv2.warpPerspective(page, m, (4000, 3000))
    mask = cv2.warpPerspective(np.full((page_h, page_w), 255, np.uint8), m, (4000, 3000))
    desk[mask > 0] = warped[mask > 0]
    return desk


def turned(w: float, h: float, degrees: float, centre: tuple[float, float]) -> np.ndarray:
    """A w x h page seen straight down, turned by ``degrees`` (TL, TR, BR, BL)."""
    a = np.radians(degrees)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    box = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    return (box @ rot.T + np.array(centre)).astype(np.float32)


#: an A4 page a little more than 200 dpi across, turned 4 degrees on a 12 MP frame
A4_CORNERS = turned(1700, 1700 * A4_RATIO, 4, (2000, 1500))


def test_a4_page_on_a_12mp_desk_comes_out_upright_at_200_dpi() -> None:
    corners = A4_CORNERS
    frame = desk_with_page(1654, 2339, corners)
    found = find_page(frame)
    assert found is not None
    assert np.linalg.norm(found - corners, axis=1).max() < 3
    still = rectify(frame)
    h, w = still.image.shape[:2]
    assert abs(h / w - A4_RATIO) < 0.01
    assert still.dpi is not None and still.dpi >= TARGET_DPI
    assert h == round(TARGET_DPI * 11.69)
    assert not any("low resolution" in x for x in still.warnings)
    # the printed frame, 60 px in on a 1654 px page, lands 60 px in on the flattened one
    gray = cv2.cvtColor(still.image, cv2.COLOR_BGR2GRAY)
    profile = gray[h // 4 : 3 * h // 4, :90].mean(axis=0)
    assert abs(int(np.argmin(profile)) - 60) <= 4


def test_blur_and_glare_are_warned() -> None:
    corners = A4_CORNERS
    frame = desk_with_page(1654, 2339, corners)
    assert rectify(frame).warnings == []
    blurred = cv2.GaussianBlur(frame, (0, 0), 9)
    assert any("blurred" in x for x in rectify(blurred).warnings)
    glare = frame.copy()
    cv2.circle(glare, (2000, 1500), 260, (255, 255, 255), -1)
    assert any("glare" in x for x in rectify(glare).warnings)


@pytest.mark.parametrize("name", ["baboon.jpg", "fruits.jpg", "home.jpg"])
def test_a_frame_without_a_page_says_so(name: str) -> None:
    path = MEDIA / "opencv" / name
    if not path.is_file():
        pytest.skip("../shared/media not present")
    still = rectify(cv2.imread(str(path)))
    assert not still.found
    assert still.warnings and "no page found" in still.warnings[0]
    assert still.image.shape == cv2.imread(str(path)).shape


def test_empty_frame_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="empty frame"):
        rectify(np.zeros((0, 0, 3), np.uint8))
