"""The camera seam on recorded media: files, folders and videos behave like a camera."""

from __future__ import annotations

import importlib
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mimamori.edge.camera import CameraError
from mimamori.edge.camera.files import FileSource
from mimamori.edge.camera.opencv import OpenCvSource
from tests.conftest import MEDIA

pytestmark = pytest.mark.skipif(not MEDIA.is_dir(), reason="../shared/media not present")


def test_video_frames_carry_index_and_paced_timestamps() -> None:
    start = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    src = FileSource(MEDIA / "opencv" / "vtest.avi", fps=10, start=start, sleep=lambda s: None)
    frames = [src.read() for _ in range(3)]
    assert [f.index for f in frames if f] == [0, 1, 2]
    assert frames[2] is not None and frames[2].ts == start + timedelta(seconds=0.2)
    assert frames[0] is not None and frames[0].image.shape == (576, 768, 3)
    src.close()


def test_folder_skips_unreadable_images_and_loops(tmp_path: Path) -> None:
    shutil.copy(MEDIA / "opencv" / "baboon.jpg", tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes(b"garbage")
    shutil.copy(MEDIA / "opencv" / "fruits.jpg", tmp_path / "c.jpg")
    once = FileSource(tmp_path)
    shapes = []
    while (f := once.read()) is not None:
        shapes.append(f.image.shape)
    assert len(shapes) == 2 and once.skipped == 1
    looping = FileSource(tmp_path, loop=True)
    assert all(looping.read() is not None for _ in range(7))


def test_missing_or_broken_media_are_camera_errors(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="file not found"):
        FileSource(tmp_path / "none.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"\0" * 1000)
    with pytest.raises(CameraError, match="not a readable video"):
        FileSource(tmp_path / "bad.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CameraError, match="no images"):
        FileSource(tmp_path / "empty")
    with pytest.raises(CameraError, match="cannot open"):
        OpenCvSource(str(tmp_path / "no-such-stream.mjpeg"))


def test_picamera_adapter_imports_nothing_until_used() -> None:
    sys.modules.pop("picamera2", None)
    module = importlib.import_module("mimamori.edge.camera.picam")
    assert "picamera2" not in sys.modules  # safe to import off a Pi
    with pytest.raises(CameraError, match="only on a Raspberry Pi"):
        module.PicameraSource()
