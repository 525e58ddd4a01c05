"""fp32 vs dynamically quantised int8 EfficientNet-Lite0: accuracy and speed.

Quantises models/efficientnet-lite0.onnx into a temporary file (onnxruntime.quantization),
then scores the 24 macaque photographs and 12 negatives at threshold 0.7 with each and times
the full path (whole frame + 3x3 tiles) on one thread. Run on the Pi before choosing: int8
speed depends on the CPU's integer dot-product support.

Usage: python bench/int8_vs_fp32.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.wildlife_sets import NEGATIVE_SAMPLES  # noqa: E402
from mimamori.edge.vision.manifest import DEFAULT_MODEL, load_manifest  # noqa: E402
from mimamori.edge.vision.onnx import OnnxModel  # noqa: E402

MEDIA = Path(__file__).resolve().parent.parent.parent / "shared" / "media"
NEGATIVES = list(NEGATIVE_SAMPLES)


def main() -> int:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    manifest = load_manifest(DEFAULT_MODEL)
    q8 = Path(tempfile.mkdtemp()) / "efficientnet-lite0.int8.onnx"
    quantize_dynamic(str(manifest.file), str(q8), weight_type=QuantType.QUInt8)
    pos = [cv2.imread(str(p)) for p in sorted((MEDIA / "monkeys" / "images").glob("*.jpg"))]
    neg = [cv2.imread(str(p)) for p in sorted((MEDIA / "camera-trap").glob("*.jpg"))]
    neg += [cv2.imread(str(MEDIA / "opencv" / n)) for n in NEGATIVES]
    print(f"{'model':<8}{'MB':>7}{'recall':>9}{'false alarms':>14}{'ms/frame':>10}")
    for name, path in (("fp32", manifest.file), ("int8", q8)):
        model = OnnxModel(manifest.model_copy(update={"file": path}), threads=1)
        t0 = time.perf_counter()
        tp = sum(model.monkey(img).score >= manifest.score_threshold for img in pos)
        fa = sum(model.monkey(img).score >= manifest.score_threshold for img in neg)
        ms = (time.perf_counter() - t0) / (len(pos) + len(neg)) * 1000
        print(
            f"{name:<8}{path.stat().st_size / 1e6:>7.1f}{f'{tp}/{len(pos)}':>9}"
            f"{f'{fa}/{len(neg)}':>14}{ms:>10.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
