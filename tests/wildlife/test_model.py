"""The default monkey model on real photographs, a YOLO detector through the same manifest,
and the offline scan command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, save_model

from bench.wildlife_sets import NEGATIVE_SAMPLES
from mimamori.edge.vision.manifest import DEFAULT_MODEL, ModelError, load_manifest, sha256_of
from mimamori.edge.vision.onnx import OnnxModel
from mimamori.edge.wildlife.scan import MediaError, read_image
from tests.conftest import MEDIA

pytestmark = pytest.mark.skipif(not MEDIA.is_dir(), reason="../shared/media not present")

MONKEYS = sorted((MEDIA / "monkeys" / "images").glob("*.jpg"))
NEGATIVES = sorted((MEDIA / "camera-trap").glob("*.jpg")) + [
    MEDIA / "opencv" / n for n in NEGATIVE_SAMPLES
]


@pytest.fixture(scope="module")
def model() -> OnnxModel:
    return OnnxModel(load_manifest(DEFAULT_MODEL))


def test_default_model_flags_macaques_and_the_baboon_not_the_negatives(model: OnnxModel) -> None:
    t = model.manifest.score_threshold
    flagged = [p.name for p in MONKEYS if model.monkey(read_image(p)).score >= t]
    false_alarms = [p.name for p in NEGATIVES if model.monkey(read_image(p)).score >= t]
    assert model.monkey(read_image(MEDIA / "opencv" / "baboon.jpg")).score >= t
    assert false_alarms == []  # precision 1.0 on the negatives
    assert len(flagged) >= 19  # recall >= 0.79 on the 24 labelled macaque photographs


def test_grayscale_night_frames_are_accepted(model: OnnxModel) -> None:
    import cv2

    gray = cv2.cvtColor(read_image(MEDIA / "opencv" / "baboon.jpg"), cv2.COLOR_BGR2GRAY)
    assert model.monkey(gray).score > 0.5


def test_wrong_sha256_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    for f in ("efficientnet-lite0.toml", "imagenet-1k.labels.txt"):
        shutil.copy(DEFAULT_MODEL.parent / f, tmp_path / f)
    with pytest.raises(ModelError, match="model file .* not found"):
        load_manifest(tmp_path / "efficientnet-lite0.toml")
    (tmp_path / "efficientnet-lite0.onnx").write_bytes(b"not the model")
    with pytest.raises(ModelError, match="sha256 is .* the manifest expects"):
        load_manifest(tmp_path / "efficientnet-lite0.toml")
    with pytest.raises(ModelError, match="manifest not found"):
        load_manifest(tmp_path / "nope.toml")


def yolo_graph(path: Path, n_classes: int = 2) -> None:
    """A YOLOv5-shaped detector built here: constant boxes, so the answer is known."""
    # rows: cx, cy, w, h, objectness, class scores (input 64x64)
    rows = np.array(
        [
            [32, 16, 20, 10, 0.9, 0.95, 0.05],  # a monkey (class 0), top middle
            [33, 17, 20, 10, 0.8, 0.90, 0.10],  # the same monkey again: merged by NMS
            [10, 50, 8, 8, 0.9, 0.10, 0.90],  # a crow (class 1)
        ],
        np.float32,
    )[None]
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 5 + n_classes])
    const = helper.make_tensor("rows", TensorProto.FLOAT, rows.shape, rows.flatten().tolist())
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])
    nodes = [
        helper.make_node("ReduceSum", ["images"], ["s"], keepdims=0),
        helper.make_node("Mul", ["s", "zero"], ["z"]),
        helper.make_node("Add", ["rows", "z"], ["output"]),
    ]
    graph = helper.make_graph(nodes, "yolo", [x], [y], [const, zero])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    save_model(m, str(path))


def test_yolo_detector_loads_through_the_same_manifest(tmp_path: Path) -> None:
    yolo_graph(tmp_path / "det.onnx")
    (tmp_path / "det.labels.txt").write_text("monkey\ncrow\n")
    (tmp_path / "det.toml").write_text(f"""
name = "test-yolo"
file = "det.onnx"
sha256 = "{sha256_of(tmp_path / "det.onnx")}"
task = "detect"
input_size = [64, 64]
labels = "det.labels.txt"
positive_classes = [0]
score_threshold = 0.5
licence = "test"
provenance = "built in the test"
""")
    det = OnnxModel(load_manifest(tmp_path / "det.toml"))
    f = det.monkey(np.zeros((128, 256, 3), np.uint8))  # frame twice as wide, twice as tall
    assert f.label == "monkey"
    assert f.score == pytest.approx(0.9 * 0.95, abs=1e-4)
    assert f.box == (88, 22, 168, 42)  # x: (32 ± 10) * 4, y: (16 ± 5) * 2


def test_scan_cli_prints_scores_and_precision_recall(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    pick = [MONKEYS[0], MONKEYS[1], NEGATIVES[0]]
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "mimamori.edge.cli",
            "wildlife",
            "scan",
            *map(str, pick),
            str(tmp_path / "broken.jpg"),
            "--labels",
            str(MEDIA / "monkeys" / "labels"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0  # one file could not be read; the others were scanned
    assert "broken.jpg: not a readable image" in res.stderr
    out = json.loads(res.stdout)
    assert [Path(r["file"]).name for r in out["results"]] == [p.name for p in pick]
    s = out["scores"]
    assert s["tp"] + s["fn"] == 2 and s["fp"] + s["tn"] == 1
    assert 0 <= s["f1"] <= 1


def test_read_image_errors(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="file not found"):
        read_image(tmp_path / "none.jpg")
