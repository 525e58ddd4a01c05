"""Frames from the Raspberry Pi camera through picamera2 (only on a Pi).

picamera2 imports libcamera and probes devices at import time, so it is imported here, when a
``PicameraSource`` is made, never when this module is imported. Off a Pi this raises a
CameraError saying so; tests cover the other adapters and this module's import safety.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from edge.camera import CameraError, Frame


class PicameraSource:
    def __init__(self, *, width: int = 1280, height: int = 720, camera: int = 0) -> None:
        try:
            from picamera2 import Picamera2  # noqa: PLC0415 - hardware library, lazily
        except ImportError as e:
            raise CameraError(
                f"picamera2 is not available ({e}); it runs only on a Raspberry Pi with "
                "python3-picamera2 installed"
            ) from None
        self._cam: Any = Picamera2(camera)
        config = self._cam.create_video_configuration(
            main={"size": (width, height), "format": "BGR888"}
        )
        self._cam.configure(config)
        self._cam.start()
        self._index = 0

    def read(self) -> Frame | None:
        img = self._cam.capture_array("main")
        frame = Frame(np.asarray(img), datetime.now(UTC), self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        self._cam.stop()
        self._cam.close()
