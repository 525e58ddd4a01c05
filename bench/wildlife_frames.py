"""Monkey-watch per-frame cost on this machine.

For 640x480 and 1280x720 frames made from the sample photographs, measures the per-frame
latency (p50 / p95) of
* the full path: whole frame + 3x3 tiles through EfficientNet-Lite0 (10 crops per frame),
* the motion-gated path on a still scene: background subtraction only, the model not run,
and frames/s sustained with onnxruntime on 1 and 2 threads, plus peak RSS.

Usage: python bench/wildlife_frames.py [--frames 40]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mimamori.edge.vision.manifest import DEFAULT_MODEL, load_manifest  # noqa: E402
from mimamori.edge.vision.onnx import OnnxModel  # noqa: E402
from mimamori.edge.wildlife.app import MotionGate  # noqa: E402

MEDIA = Path(__file__).resolve().parent.parent.parent / "shared" / "media"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--frames", type=int, default=40)
    args = ap.parse_args()
    photos = sorted((MEDIA / "monkeys" / "images").glob("*.jpg"))[:8]
    if not photos:
        print(f"no sample photographs under {MEDIA}", file=sys.stderr)
        return 1
    manifest = load_manifest(DEFAULT_MODEL)
    print(f"{'path':<34}{'size':>10}{'threads':>8}{'p50 ms':>9}{'p95 ms':>9}{'fps':>7}")
    for w, h in ((640, 480), (1280, 720)):
        frames = [cv2.resize(cv2.imread(str(p)), (w, h)) for p in photos]
        for threads in (1, 2):
            model = OnnxModel(manifest, threads=threads)
            model.monkey(frames[0])  # warm-up
            lat = []
            t0 = time.perf_counter()
            for i in range(args.frames):
                t = time.perf_counter()
                model.monkey(frames[i % len(frames)])
                lat.append((time.perf_counter() - t) * 1000)
            fps = args.frames / (time.perf_counter() - t0)
            print(
                f"{'full frame + 3x3 tiles':<34}{f'{w}x{h}':>10}{threads:>8}"
                f"{statistics.median(lat):>9.1f}{pct(lat, 0.95):>9.1f}{fps:>7.1f}"
            )
        gate = MotionGate()
        still = frames[0]
        lat = []
        for _ in range(args.frames * 5):
            t = time.perf_counter()
            gate.moving(still)
            lat.append((time.perf_counter() - t) * 1000)
        print(
            f"{'motion-gated, still scene':<34}{f'{w}x{h}':>10}{1:>8}"
            f"{statistics.median(lat):>9.2f}{pct(lat, 0.95):>9.2f}{1000 / statistics.mean(lat):>7.0f}"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS with the model loaded: {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
