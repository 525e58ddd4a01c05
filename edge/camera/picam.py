"""Frames from the Raspberry Pi camera through picamera2 (only on a Pi).

picamera2 imports libcamera and probes devices at import time, so it is imported here, when a
``PicameraSource`` is made, never when this module is imported. Off a Pi this raises a
CameraError saying so; tests cover the other adapters and this module's import safety.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np

from mimamori.edge.camera import CameraError, Frame


class PicameraSource:
    """``read()`` gives ``width`` x ``height`` BGR frames.

    With ``full_res`` the sensor runs at its full resolution on the main stream and
    ``read()`` takes the ISP's downscaled copy (the lores stream), so ``still()`` can hand
    out a full-resolution frame at any moment without a mode switch (a document camera:
    ~280 dpi over A4 from a 12 MP module instead of ~120 dpi from 1080p).
    """

    def __init__(
        self, *, width: int = 1280, height: int = 720, camera: int = 0, full_res: bool = False
    ) -> None:
        try:
            from picamera2 import Picamera2  # noqa: PLC0415 - hardware library, lazily
        except ImportError as e:
            raise CameraError(
                f"picamera2 is not available ({e}); it runs only on a Raspberry Pi with "
                "python3-picamera2 installed"
            ) from None
        self._cam: Any = Picamera2(camera)
        self._full_res = full_res
        if full_res:
            config = self._cam.create_video_configuration(
                main={"size": self._cam.sensor_resolution, "format": "BGR888"},
                lores={"size": (width, height), "format": "YUV420"},
                buffer_count=3,
            )
        else:
            config = self._cam.create_video_configuration(
                main={"size": (width, height), "format": "BGR888"}
            )
        self._cam.configure(config)
        self._cam.start()
        self._index = 0

    def read(self) -> Frame | None:
        if self._full_res:
            yuv = self._cam.capture_array("lores")
            img = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)
        else:
            img = np.asarray(self._cam.capture_array("main"))
        frame = Frame(img, datetime.now(UTC), self._index)
        self._index += 1
        return frame

    def still(self) -> np.ndarray:
        """The newest frame at the sensor's full resolution (BGR)."""
        return np.asarray(self._cam.capture_array("main"))

    def close(self) -> None:
        self._cam.stop()
        self._cam.close()
