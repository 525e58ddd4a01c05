"""The dusk and night converters: same geometry (labels still hold), repeatable, and each
does what its name says."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mimamori.edge.wildlife.app import is_night
from mimamori.edge.wildlife.conditions import CONDITIONS, NIGHT
from tests.conftest import MEDIA

pytestmark = pytest.mark.skipif(not MEDIA.is_dir(), reason="../shared/media not present")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    img = cv2.imread(str(MEDIA / "monkeys" / "images" / "monkey_16.jpg"))
    assert img is not None
    return img


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_conditions_keep_geometry_and_repeat(photo: np.ndarray, name: str) -> None:
    conv = CONDITIONS[name]
    a, b = conv(photo, "x"), conv(photo, "x")
    assert a.shape[:2] == photo.shape[:2] and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert is_night(a) == (name in NIGHT)


def test_conditions_darken_add_noise_and_smear(photo: np.ndarray) -> None:
    lum = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY).astype(float)
    dusk = cv2.cvtColor(CONDITIONS["dusk"](photo, "x"), cv2.COLOR_BGR2GRAY).astype(float)
    assert dusk.mean() < lum.mean() / 2
    ir = CONDITIONS["ir_dark"](photo, "x").astype(float)
    assert ir.mean() < lum.mean() * 0.6
    # noise differs per name (seeded by it), the scene does not
    assert not np.array_equal(CONDITIONS["ir_dark"](photo, "y"), ir)
    blur = CONDITIONS["blur"](photo, "x")
    dx = np.abs(np.diff(photo.astype(float), axis=1)).mean()
    assert np.abs(np.diff(blur.astype(float), axis=1)).mean() < dx / 2
