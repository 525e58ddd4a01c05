"""The offline scan on what a real camera card holds: truncated, CMYK and EXIF-rotated JPEGs,
empty folders; it never stops at one bad file."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimamori.edge.vision.manifest import DEFAULT_MODEL, load_manifest
from mimamori.edge.vision.onnx import OnnxModel
from mimamori.edge.wildlife.scan import MediaError, read_image, run_scan, truncated_jpeg
from tests.conftest import MEDIA

pytestmark = pytest.mark.skipif(not MEDIA.is_dir(), reason="../shared/media not present")
DATA = Path(__file__).parent / "data"
BABOON = MEDIA / "opencv" / "baboon.jpg"


def with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an EXIF block (APP1) saying how the camera was held."""
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = b"MM\x00*" + struct.pack(">I", 8) + ifd + struct.pack(">I", 0)
    body = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def jpeg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def model() -> OnnxModel:
    return OnnxModel(load_manifest(DEFAULT_MODEL), threads=2)


def test_exif_rotated_jpeg_is_turned_upright_before_scoring(
    tmp_path: Path, model: OnnxModel
) -> None:
    upright = cv2.resize(cv2.imread(str(BABOON)), (320, 240))
    # a camera held on its side stores the pixels turned and says "rotate 90 cw" (6)
    stored = cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE)
    (tmp_path / "side.jpg").write_bytes(with_orientation(jpeg(stored), 6))
    img = read_image(tmp_path / "side.jpg")
    assert img.shape == upright.shape
    assert np.abs(img.astype(int) - upright).mean() < 6  # JPEG loss only
    assert model.monkey(img).score >= model.manifest.score_threshold


def test_cmyk_jpeg_reads_as_the_same_colours(model: OnnxModel) -> None:
    img = read_image(DATA / "baboon-cmyk.jpg")
    ref = cv2.resize(cv2.imread(str(BABOON)), (160, 160), interpolation=cv2.INTER_AREA)
    assert img.shape == (160, 160, 3)
    assert np.abs(img.astype(int) - ref).mean() < 12
    assert model.monkey(img).score >= model.manifest.score_threshold


def test_truncated_jpeg_is_an_error_naming_the_file(tmp_path: Path) -> None:
    data = BABOON.read_bytes()
    assert not truncated_jpeg(data)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert truncated_jpeg(cut.read_bytes())
    with pytest.raises(MediaError, match=r"cut\.jpg: truncated JPEG"):
        read_image(cut)
    (tmp_path / "zero.jpg").write_bytes(b"")
    with pytest.raises(MediaError, match=r"zero\.jpg: empty file"):
        read_image(tmp_path / "zero.jpg")


def test_a_card_with_bad_files_is_scanned_to_the_end(
    tmp_path: Path, model: OnnxModel, capsys: pytest.CaptureFixture[str]
) -> None:
    card = tmp_path / "DCIM"
    card.mkdir()
    data = BABOON.read_bytes()
    (card / "0001.jpg").write_bytes(data[: len(data) // 2])  # pulled mid-write
    shutil.copy(BABOON, card / "0002.jpg")
    (card / "0003.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    shutil.copy(DATA / "baboon-cmyk.jpg", card / "0004.jpg")
    assert run_scan(model, [card], 0.7, as_json=True, labels=None) == 0
    out = capsys.readouterr()
    assert "0001.jpg: truncated JPEG" in out.err
    assert "0003.jpg: not a readable image" in out.err
    assert "2 of 4 files could not be read" in out.err
    results = json.loads(out.out)["results"]
    assert [(Path(r["file"]).name, r["monkey"]) for r in results] == [
        ("0002.jpg", True),
        ("0004.jpg", True),
    ]


def test_nothing_readable_or_nothing_there_exits_2(
    tmp_path: Path, model: OnnxModel, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    assert run_scan(model, [tmp_path / "empty"], 0.7, as_json=False, labels=None) == 2
    assert "no images or videos under" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"garbage")
    assert run_scan(model, [tmp_path / "bad"], 0.7, as_json=False, labels=None) == 2
    assert "a.jpg: not a readable image" in capsys.readouterr().err


def test_scan_command_exit_status(tmp_path: Path) -> None:
    (tmp_path / "card").mkdir()
    cmd = [sys.executable, "-m", "mimamori.edge.cli", "wildlife", "scan", str(tmp_path / "card")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "no images or videos under" in res.stderr
    shutil.copy(BABOON, tmp_path / "card" / "a.jpg")
    (tmp_path / "card" / "b.jpg").write_bytes(BABOON.read_bytes()[:5000])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "b.jpg: truncated JPEG" in res.stderr and "MONKEY" in res.stdout


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=4000), st.integers(0, 100))
def test_any_bytes_give_an_image_or_a_media_error(data: bytes, cut: int) -> None:
    import tempfile

    head = BABOON.read_bytes()[: 200 + cut * 40]  # a real JPEG start, then anything
    with tempfile.TemporaryDirectory() as d:
        for body in (data, head + data):
            p = Path(d) / "x.jpg"
            p.write_bytes(body)
            try:
                img = read_image(p)
            except MediaError as e:
                assert str(p) in str(e)
            else:
                assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
