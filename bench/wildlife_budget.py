"""Monkey watch speed and memory budget for a field node.

Speed, at 1280x720 on frames made from the sample photographs and vtest.avi:
* the full two-stage path (motion gate says "moving" on every frame: the worst case):
  YOLOX-nano proposals, the classifier on each crop, whole frame and 3x3 tiles;
* the classifier-only path (``proposer = false``);
* a still scene, where the motion gate keeps the models idle;
per-frame wall-clock p50 / p95 and frames/s with onnxruntime on 2 threads here (target
>= 5 fps), and the CPU time per frame (all threads; onnxruntime's threads do not spin), which
a busy machine does not inflate: ``fps (2 cores)`` = 2 x 1000 / CPU ms is what the path does
with both cores to itself. The Raspberry Pi 4-class estimate runs onnxruntime on its 4
cores: CPU ms scaled by clock frequency (this CPU's MHz / 1500) and by ``--ipc`` (a
Cortex-A72 does about 0.5 of this core's work per clock; a guess to replace by a
measurement on the Pi), spread over 4 threads at x2.4, not x4.

Memory: each configuration is loaded in a fresh Python process that then looks at 40 frames;
its peak RSS is printed (target < 200 MB for a 512 MB board):
* ``before``: the previous path (one onnxruntime session with its default arena, all ten
  tiles as one batch);
* ``watch``: the field node's path (lean classifier session, YOLOX-nano proposer, shots at
  640 px).

Usage: python bench/wildlife_budget.py [--frames 30] [--ipc 0.5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.wildlife_sets import MEDIA, video_frames  # noqa: E402
from mimamori.edge.wildlife.app import MotionGate  # noqa: E402
from mimamori.edge.wildlife.watch import load_watch  # noqa: E402

MEMORY = {
    "before": """
from mimamori.edge.vision.manifest import DEFAULT_MODEL, load_manifest
from mimamori.edge.vision.onnx import OnnxModel
model = OnnxModel(load_manifest(DEFAULT_MODEL), threads=2)
""",
    "watch": """
from mimamori.edge.wildlife.watch import load_watch
model = load_watch(threads=2)
""",
}
LOOK = """
import glob, resource, cv2
paths = sorted(glob.glob({photos!r}))[:10]
for i in range(40):  # one frame at a time, as a camera delivers them
    model.monkey(cv2.resize(cv2.imread(paths[i % len(paths)]), (1280, 720)))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def cpu_mhz() -> float:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                return float(line.split(":")[1])
    except OSError:
        pass
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--ipc", type=float, default=0.5)
    args = ap.parse_args()
    photos = sorted((MEDIA / "monkeys" / "images").glob("*.jpg"))[:6]
    frames = [cv2.resize(cv2.imread(str(p)), (1280, 720)) for p in photos]
    frames += [
        cv2.resize(f, (1280, 720))
        for f in video_frames(MEDIA / "opencv" / "vtest.avi", every=50, limit=6)
    ]
    mhz = cpu_mhz()
    pi_factor = (mhz / 1500) / args.ipc / 2.4
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    print(f"this CPU: {mhz:.0f} MHz, load average {load}; Pi 4 ms = CPU ms x {pi_factor:.2f}\n")
    print(
        f"{'path at 1280x720':<32}{'p50 ms':>8}{'p95 ms':>8}{'fps':>6}{'CPU ms':>8}"
        f"{'fps (2 cores)':>15}{'Pi4 ms':>8}{'Pi4 fps':>8}"
    )
    for name, two_stage in (("two-stage (proposals + tiles)", True), ("classifier only", False)):
        watch = load_watch(threads=2, two_stage=two_stage)
        gate = MotionGate()
        watch.look(frames[0])
        lat = []
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(args.frames):
            t = time.perf_counter()
            gate.moving(frames[i % len(frames)])
            watch.look(frames[i % len(frames)])
            lat.append((time.perf_counter() - t) * 1000)
        fps = args.frames / (time.perf_counter() - t0)
        cpu = (time.process_time() - c0) * 1000 / args.frames
        print(
            f"{name:<32}{statistics.median(lat):>8.1f}{pct(lat, 0.95):>8.1f}{fps:>6.1f}"
            f"{cpu:>8.1f}{2000 / cpu:>15.1f}{cpu * pi_factor:>8.0f}{1000 / (cpu * pi_factor):>8.1f}"
        )
    gate = MotionGate()
    lat = []
    c0 = time.process_time()
    for _ in range(args.frames * 5):
        t = time.perf_counter()
        gate.moving(frames[0])
        lat.append((time.perf_counter() - t) * 1000)
    cpu = (time.process_time() - c0) * 1000 / (args.frames * 5)
    print(
        f"{'still scene (motion gate only)':<32}{statistics.median(lat):>8.2f}"
        f"{pct(lat, 0.95):>8.2f}{1000 / statistics.mean(lat):>6.0f}{cpu:>8.2f}{2000 / cpu:>15.0f}"
        f"{cpu * pi_factor:>8.1f}{1000 / (cpu * pi_factor):>8.0f}"
    )
    print("\npeak RSS, fresh process, model(s) loaded and 40 frames at 1280x720 looked at")
    glob = str(MEDIA / "monkeys" / "images" / "*.jpg")
    print("(three runs each: glibc and onnxruntime's thread pools make it vary)")
    for name, setup in MEMORY.items():
        code = f"import sys; sys.path.insert(0, {str(ROOT)!r})\n{setup}{LOOK.format(photos=glob)}"
        peaks = []
        for _ in range(3):
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{name}: failed: {out.stderr.strip()[-300:]}", file=sys.stderr)
                return 1
            peaks.append(int(out.stdout.strip()))
        print(f"{name:<10} median {statistics.median(peaks):.0f} MB  (runs: {sorted(peaks)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
