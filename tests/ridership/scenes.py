"""Rendered door scenes: dark round walkers on a textured floor, with known paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cv2
import numpy as np

from mimamori.edge.camera import Frame

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def walk(*legs: tuple[tuple[float, float], int]) -> list[tuple[float, float]]:
    """Positions frame by frame: start point, then (target, frames to get there) legs."""
    (x, y), _ = legs[0]
    out = [(x, y)]
    for (tx, ty), n in legs[1:]:
        for i in range(1, n + 1):
            out.append((x + (tx - x) * i / n, y + (ty - y) * i / n))
        x, y = tx, ty
    return out


def render(paths: list[list[tuple[float, float] | None]], frames: int) -> list[Frame]:
    rng = np.random.default_rng(7)
    floor = rng.integers(90, 140, (240, 320, 3), dtype=np.uint8)  # a textured floor
    floor = cv2.GaussianBlur(floor, (5, 5), 0)
    out = []
    for i in range(frames):
        img = floor.copy()
        for p in paths:
            if i < len(p) and p[i] is not None:
                x, y = p[i]  # type: ignore[misc]
                cv2.ellipse(img, (int(x), int(y)), (16, 20), 0, 0, 360, (30, 30, 40), -1)
        noise = rng.integers(-4, 5, img.shape, dtype=np.int16)
        img = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        out.append(Frame(img, T0 + timedelta(seconds=i / 10), i))
    return out


def pad(path: list[tuple[float, float]], start: int) -> list[tuple[float, float] | None]:
    return [None] * start + list(path)
