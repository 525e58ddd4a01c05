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


def is_file_source(source: str) -> bool:
    """A recorded file or folder, not 'picamera', a camera index or a stream URL."""
    return not (source.split(":")[0] == "picamera" or source.isdigit() or "://" in source)


def open_source(
    source: str, *, loop: bool = False, fps: float = 0.0, full_res: bool = False
) -> FrameSource:
    """'picamera' (or 'picamera:1' for the second camera port), a camera index ('0'), an
    rtsp:// or http:// URL, or a file/folder path. ``full_res``: a Pi camera keeps its
    sensor at full resolution for ``still()`` and streams a downscaled copy."""
    if source.split(":")[0] == "picamera":
        from mimamori.edge.camera.picam import PicameraSource

        _, _, index = source.partition(":")
        if index and not index.isdigit():
            raise CameraError(f"camera {source!r}: expected 'picamera' or 'picamera:N'")
        return PicameraSource(camera=int(index or 0), full_res=full_res)
    if not is_file_source(source):
        from mimamori.edge.camera.opencv import OpenCvSource

        return OpenCvSource(int(source) if source.isdigit() else source)
    from pathlib import Path

    from mimamori.edge.camera.files import FileSource

    return FileSource(Path(source), loop=loop, fps=fps)
