"""Frames from files: a video, one image, or a folder of images (sorted by name)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from mimamori.edge.camera import CameraError, Frame

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class FileSource:
    """Replays recorded media as a camera would deliver it.

    ``fps`` paces the frames on the wall clock (0 = as fast as read); timestamps advance by
    1/fps from ``start`` so replays are deterministic. Unreadable images in a folder are
    skipped with a count, an unreadable video or empty folder is a CameraError.
    """

    def __init__(
        self,
        path: Path,
        *,
        loop: bool = False,
        fps: float = 0.0,
        start: datetime | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path, self.loop, self.fps, self._sleep = path, loop, fps, sleep
        self._start = start or datetime.now(UTC)
        self._index = 0
        self.skipped = 0
        self._cap: cv2.VideoCapture | None = None
        self._images: list[Path] = []
        self._pos = 0
        if path.is_dir():
            self._images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXT)
            if not self._images:
                raise CameraError(f"{path}: no images ({', '.join(sorted(IMAGE_EXT))})")
        elif path.suffix.lower() in IMAGE_EXT:
            if not path.is_file():
                raise CameraError(f"{path}: file not found")
            self._images = [path]
        else:
            self._open_video()
        step = 1.0 / fps if fps else 0.1
        self._step = timedelta(seconds=step)
        self._next_wall = time.monotonic()

    def _open_video(self) -> None:
        if not self.path.is_file():
            raise CameraError(f"{self.path}: file not found")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise CameraError(f"{self.path}: not a readable video")

    def _next_image(self) -> np.ndarray | None:
        if self._cap is not None:
            ok, img = self._cap.read()
            if ok:
                return np.asarray(img)
            if not self.loop or self._index == 0:
                return None
            self._cap.release()
            self._open_video()
            ok, img = self._cap.read()
            return np.asarray(img) if ok else None
        tries = 0
        while tries < len(self._images):
            if self._pos >= len(self._images):
                if not self.loop:
                    return None
                self._pos = 0
            path = self._images[self._pos]
            self._pos += 1
            tries += 1
            raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if raw is not None:
                return np.asarray(raw[:, :, :3]) if raw.ndim == 3 else np.asarray(raw)
            self.skipped += 1
        return None

    def read(self) -> Frame | None:
        img = self._next_image()
        if img is None:
            return None
        if self.fps:
            delay = self._next_wall - time.monotonic()
            if delay > 0:
                self._sleep(delay)
            self._next_wall = max(self._next_wall, time.monotonic()) + 1.0 / self.fps
        frame = Frame(img, self._start + self._index * self._step, self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
