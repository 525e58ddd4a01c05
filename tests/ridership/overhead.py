"""Rendered overhead door scenes: people seen from straight above as head and shoulders.

Each person is a textured shoulder ellipse (clothing with a stripe pattern) and a head
(hair), with a soft shadow offset as from a light near the door that moves with them. The
floor is a tiled, textured mat; ``light`` gives the scene's brightness frame by frame (a step
when the sun comes out or the door opens into daylight), applied to floor, people and shadows
alike, with sensor noise on top. Paths are frame-by-frame positions (``walk``, ``pad`` from
``scenes``); the truth of every scene is known by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import cv2
import numpy as np

from mimamori.edge.camera import Frame
from tests.ridership.scenes import T0

W, H = 320, 240
Path = list[tuple[float, float] | None]


@dataclass(frozen=True)
class Person:
    path: Path
    coat: tuple[int, int, int] = (60, 50, 120)  # BGR
    hair: tuple[int, int, int] = (25, 25, 30)
    shoulders: tuple[int, int] = (24, 13)  # half-widths, px


def floor(seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((H, W, 3), (150, 155, 160), np.float32)
    for y in range(0, H, 40):
        img[y : y + 1] *= 0.8
    for x in range(0, W, 40):
        img[:, x : x + 1] *= 0.8
    img += rng.normal(0, 9, (H, W, 1))
    return cv2.GaussianBlur(img, (3, 3), 0)


def _heading(path: Path, i: int) -> float:
    """Degrees the person faces (shoulders across the direction of travel)."""
    here = path[i]
    for j in (i + 2, i + 1, i - 1, i - 2):
        if 0 <= j < len(path) and path[j] is not None and here is not None and j != i:
            (x0, y0), (x1, y1) = (here, path[j]) if j > i else (path[j], here)  # type: ignore[misc]
            if abs(x1 - x0) + abs(y1 - y0) > 0.3:
                return float(np.degrees(np.arctan2(y1 - y0, x1 - x0)))
    return 90.0


def render(
    people: list[Person],
    frames: int,
    *,
    light: Callable[[int], float | np.ndarray] = lambda i: 1.0,
    shadow: tuple[int, int] = (14, 10),
    seed: int = 7,
) -> list[Frame]:
    rng = np.random.default_rng(seed)
    base = floor()
    stripes = (np.indices((H, W)).sum(axis=0) // 4 % 2).astype(np.float32)[..., None]
    out = []
    for i in range(frames):
        img = base.copy()
        shade = np.ones((H, W, 1), np.float32)
        for p in people:
            if i < len(p.path) and p.path[i] is not None:
                x, y = p.path[i]  # type: ignore[misc]
                ang = _heading(p.path, i) + 90
                c = (int(x + shadow[0]), int(y + shadow[1]))
                cv2.ellipse(
                    shade, c, (p.shoulders[0] + 2, p.shoulders[1] + 4), ang, 0, 360, 0.55, -1
                )
        shade = cv2.GaussianBlur(shade, (9, 9), 0)[..., None] if shade.ndim == 3 else shade
        img *= shade.reshape(H, W, 1)
        for p in people:
            if i < len(p.path) and p.path[i] is not None:
                x, y = p.path[i]  # type: ignore[misc]
                ang = _heading(p.path, i) + 90
                body = np.zeros((H, W), np.uint8)
                cv2.ellipse(body, (int(x), int(y)), p.shoulders, ang, 0, 360, 255, -1)
                coat = np.array(p.coat, np.float32) * (0.85 + 0.3 * stripes)
                m = body > 0
                img[m] = coat[m]
                cv2.circle(img, (int(x), int(y)), 10, p.hair, -1)
        gain = light(i)
        img *= gain if np.isscalar(gain) else np.asarray(gain, np.float32).reshape(H, W, 1)
        img += rng.normal(0, 3, img.shape)
        out.append(Frame(np.clip(img, 0, 255).astype(np.uint8), T0 + timedelta(seconds=i / 10), i))
    return out


def light_step(at: int, gain: float) -> Callable[[int], float | np.ndarray]:
    """The whole scene brightens (or darkens) by ``gain`` from frame ``at`` on."""
    return lambda i: 1.0 if i < at else gain


def sun_patch(at: int, gain: float = 1.5) -> Callable[[int], float | np.ndarray]:
    """A patch of sunlight through the door's window falls across the line at ``at``."""
    mask = np.ones((H, W), np.float32)
    cv2.fillConvexPoly(mask, np.array([[60, 80], [150, 70], [170, 170], [80, 180]]), gain)
    mask = cv2.GaussianBlur(mask, (15, 15), 0)
    return lambda i: 1.0 if i < at else mask


def shadow_sweep(
    start: int, speed: float = 4.0, depth: float = 0.6
) -> Callable[[int], float | np.ndarray]:
    """The shadow of something outside (a passing bus, a cloud's edge) sweeps down across
    the whole doorway: a soft dark band 60 px tall moving ``speed`` px a frame."""
    ys = np.arange(H, dtype=np.float32)[:, None]

    def gain(i: int) -> float | np.ndarray:
        if i < start:
            return 1.0
        top = -60 + (i - start) * speed
        inside = ((ys >= top) & (ys < top + 60)).astype(np.float32)
        band = cv2.GaussianBlur(np.repeat(inside, W, axis=1), (1, 21), 0)
        return 1.0 - (1.0 - depth) * band

    return gain
