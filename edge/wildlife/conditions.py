"""What a field camera sees at dusk and at night, made from daylight photographs.

Field cameras switch to grayscale infrared at dusk, their sensor gain rises (noise), their
exposure lengthens (an animal that moves is smeared). These converters turn a labelled
daylight photograph into the same scene under those conditions; they change no geometry, so
the photograph's box labels still hold. Each is deterministic (the noise is seeded from a
name), so a figure measured on a converted set can be measured again.

``day``         the photograph as it is
``gray``        infrared night: one channel (luminance), as the camera delivers it
``dusk``        colour, exposure cut to a quarter (gamma 1.6), sensor noise sigma 6
``ir_dark``     grayscale, dim (x0.45), noise sigma 10: a poorly lit IR scene
``blur``        colour, horizontal motion blur over 2 % of the frame width (a running animal
                under a long exposure)
``ir_dark_blur`` all of the night problems at once: grayscale, dim, noisy, blurred
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import cv2
import numpy as np

Converter = Callable[[np.ndarray, str], np.ndarray]


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def _gray(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def _noise(img: np.ndarray, sigma: float, name: str) -> np.ndarray:
    n = _rng(name).normal(0.0, sigma, img.shape)
    return np.clip(img.astype(np.float32) + n, 0, 255).astype(np.uint8)


def _dim(img: np.ndarray, gain: float, gamma: float = 1.0) -> np.ndarray:
    x = (img.astype(np.float32) / 255.0) ** gamma * gain
    return np.clip(x * 255.0, 0, 255).astype(np.uint8)


def _motion_blur(img: np.ndarray, frac: float = 0.02) -> np.ndarray:
    k = max(3, int(img.shape[1] * frac) | 1)
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, :] = 1.0 / k
    return cv2.filter2D(img, -1, kernel)


def day(img: np.ndarray, name: str) -> np.ndarray:
    return img


def gray(img: np.ndarray, name: str) -> np.ndarray:
    return _gray(img)


def dusk(img: np.ndarray, name: str) -> np.ndarray:
    return _noise(_dim(img, 0.25, 1.6), 6.0, name)


def ir_dark(img: np.ndarray, name: str) -> np.ndarray:
    return _noise(_dim(_gray(img), 0.45), 10.0, name)


def blur(img: np.ndarray, name: str) -> np.ndarray:
    return _motion_blur(img)


def ir_dark_blur(img: np.ndarray, name: str) -> np.ndarray:
    return _noise(_motion_blur(_dim(_gray(img), 0.45)), 10.0, name)


CONDITIONS: dict[str, Converter] = {
    "day": day,
    "gray": gray,
    "dusk": dusk,
    "ir_dark": ir_dark,
    "blur": blur,
    "ir_dark_blur": ir_dark_blur,
}
NIGHT = ("gray", "ir_dark", "ir_dark_blur")
