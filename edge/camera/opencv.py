"""Frames from a USB/V4L2 camera or a network stream (RTSP, HTTP MJPEG) through OpenCV."""

from __future__ import annotations

from datetime import UTC, datetime

import cv2
import numpy as np

from mimamori.edge.camera import CameraError, Frame


class OpenCvSource:
    def __init__(self, device: int | str, *, width: int = 0, height: int = 0) -> None:
        self.device = device
        self._cap = cv2.VideoCapture(device)
        if not self._cap.isOpened():
            raise CameraError(f"camera {device!r}: cannot open (unplugged, busy or wrong URL)")
        if width and height:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self._index = 0

    def read(self) -> Frame | None:
        ok, img = self._cap.read()
        if not ok:
            raise CameraError(f"camera {self.device!r}: stopped delivering frames")
        frame = Frame(np.asarray(img), datetime.now(UTC), self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        self._cap.release()
