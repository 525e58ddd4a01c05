"""The camera seam: every app reads ``Frame``s from a ``FrameSource``.

Adapters, named for their backend (``open_source`` picks one from config):

* ``files.FileSource``      a video file, one image, or a folder of images; looping or not
* ``opencv.OpenCvSource``   a USB/V4L2 device or an RTSP/HTTP URL through OpenCV
* ``picam.PicameraSource``  the Raspberry Pi camera through picamera2, imported only on a Pi

Hardware libraries are imported inside their adapter, lazily, never at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np


class CameraError(RuntimeError):
    """The camera or file cannot be opened or has stopped delivering frames."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # BGR (or grayscale for infrared), as OpenCV uses
    ts: datetime  # UTC wall-clock time the frame was taken
    index: int  # frame number since the source was opened


class FrameSource(Protocol):
    def read(self) -> Frame | None:
        """The next frame, or None when a non-looping source is exhausted."""
        ...

    def close(self) -> None: ...
