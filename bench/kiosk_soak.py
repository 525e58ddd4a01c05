"""A long call, measured: does anything grow, does anything degrade?

Starts a local Mosquitto (fleet config, TLS), the real hub as its own process (relay + staff
pages), the kiosk as its own process (`mimamori device run`) with both views replaying
1280x720 clips from the shared sample media, the resident's screen in one headless Chromium
and the staff console in another (fake camera and microphone on both, so the voice is real
WebRTC). The resident presses the button, staff answer in the console, and the call runs
for ``--minutes`` with both views at the kiosk's default rate. Every ``--window-s`` it
prints one row:

* frames/s and frames dropped per view (kiosk numbers skipped before the console took them),
* frame latency kiosk capture -> drawn in the console, p50 / p95 per view (same clock),
* RSS of the kiosk and hub processes, the console browser's renderer and all its processes,
  and the console's JS heap,
* audio received at each side: packets, packets lost, jitter (WebRTC inbound-rtp stats).

After the call it waits ``--after-s`` and prints memory again (what was given back), then
the growth over the call's second half in MiB per 10 minutes per process.

Usage: python bench/kiosk_soak.py [--minutes 120] [--window-s 300] [--after-s 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.kiosk_latency import MEDIA, kiosk_fleet  # noqa: E402

CHROMIUM = Path("/usr/lib/chromium/chromium")
FAKE_MEDIA = [
    "--no-sandbox",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]
PASSWORD = "soak password 1"
MIB = 1024 * 1024


def serve_hub(config: Path) -> None:
    """The hub in a process of its own (so its memory is measured alone)."""
    from mimamori.hub.auth import Accounts
    from mimamori.hub.cli import build

    hub = build(config)
    hub.app.config["SESSION_COOKIE_SECURE"] = False  # plain http on loopback
    Accounts(hub.store).add("soak", PASSWORD, "counter")
    hub.start(web=True)
    if os.environ.get("MIMAMORI_TRACEMALLOC"):
        import threading
        import tracemalloc

        def trace() -> None:  # where the hub's Python memory grows, every minute, to stderr
            tracemalloc.start(8)
            time.sleep(60)
            first = tracemalloc.take_snapshot()
            while True:
                time.sleep(60)
                diff = tracemalloc.take_snapshot().compare_to(first, "traceback")
                print(f"--- tracemalloc {time.strftime('%H:%M:%S')}", file=sys.stderr)
                for stat in diff[:8]:
                    print(stat, file=sys.stderr)
                    for line in stat.traceback.format()[-8:]:
                        print("   ", line, file=sys.stderr)
                sys.stderr.flush()

        threading.Thread(target=trace, daemon=True).start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        hub.stop()


def rss(pid: int) -> float:
    try:
        return psutil.Process(pid).memory_info().rss / MIB
    except psutil.Error:
        return float("nan")


def tree(pid: int) -> list[psutil.Process]:
    try:
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    except psutil.Error:
        return []


def chromium_roots() -> set[int]:
    """Chromium browser processes (not their helpers) under this process."""
    out = set()
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = p.cmdline()
        except psutil.Error:
            continue
        if cmd and "chromium" in cmd[0] and not any(a.startswith("--type=") for a in cmd):
            out.add(p.pid)
    return out


def browser_memory(root: int) -> tuple[float, float]:
    """(the renderers' RSS, every process of this browser), MiB."""
    renderer = total = 0.0
    for p in tree(root):
        try:
            m = p.memory_info().rss / MIB
            cmd = p.cmdline()
        except psutil.Error:
            continue
        total += m
        if "--type=renderer" in cmd:
            renderer += m
    return renderer, total


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))]


@dataclass
class Row:
    t_min: float
    fps: dict[str, float]
    dropped: dict[str, int]
    p50: dict[str, float]
    p95: dict[str, float]
    kiosk_mb: float
    hub_mb: float
    renderer_mb: float
    browser_mb: float
    heap_mb: float
    audio: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Result:
    rows: list[Row]
    after: Row | None
    growth: dict[str, float]  # MiB per 10 min over the call's second half
    ended_ok: bool


def growth_per_10min(rows: list[Row], attr: str) -> float:
    half = rows[len(rows) // 2 :]
    if len(half) < 2:
        return float("nan")
    xs = [r.t_min for r in half]
    ys = [getattr(r, attr) for r in half]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 10 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def run(minutes: float, window_s: float, after_s: float, out: Any = sys.stdout) -> Result:
    from playwright.sync_api import sync_playwright

    if not (MEDIA / "vtest.avi").is_file():
        raise SystemExit(f"needs the shared sample media in {MEDIA}")
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing: install Debian's chromium")
    work = Path(tempfile.mkdtemp(prefix="mimamori-kiosk-soak-"))
    fleet, broker, cfg, screen_port = kiosk_fleet(work)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    hub = subprocess.Popen(
        [sys.executable, __file__, "--serve-hub", str(fleet.hub_config)],
        stdout=subprocess.PIPE,
        stderr=(work / "hub.log").open("w"),  # noqa: SIM115 (kept open for the child)
        text=True,
        env=env,
    )
    kiosk = subprocess.Popen(
        [sys.executable, "-m", "mimamori.edge.cli", "device", "run", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=(work / "kiosk.log").open("w"),
        env=env,
    )
    import tomllib

    web_port = int(tomllib.loads(fleet.hub_config.read_text())["web"]["port"])
    rows: list[Row] = []
    after: Row | None = None
    ended_ok = False
    try:
        assert hub.stdout is not None
        if hub.stdout.readline().strip() != "ready":
            raise SystemExit(f"the hub did not start: see {work / 'hub.log'}")
        base = f"http://127.0.0.1:{web_port}"
        with sync_playwright() as p:
            before = chromium_roots()
            staff_browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FAKE_MEDIA)
            staff_root = next(iter(chromium_roots() - before))
            kiosk_browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FAKE_MEDIA)
            console = staff_browser.new_context().new_page()
            cdp = console.context.new_cdp_session(console)
            cdp.send("Performance.enable")
            console.goto(f"{base}/login?next=/counter")
            console.fill("input[name=name]", "soak")
            console.fill("input[name=password]", PASSWORD)
            console.click("button[type=submit]")
            console.wait_for_url("**/counter")
            screen = kiosk_browser.new_context().new_page()
            screen.goto(f"http://127.0.0.1:{screen_port}/")
            screen.wait_for_selector("#call:visible", timeout=30_000)
            screen.click("#call")
            console.wait_for_selector("#queue li button", timeout=10_000)
            console.click("#queue li button")
            screen.wait_for_selector("#camera:visible", timeout=10_000)
            console.evaluate("() => window.viewStats()")  # start counting from here
            t0 = time.monotonic()
            print(HEADER, file=out, flush=True)
            while time.monotonic() - t0 < minutes * 60:
                time.sleep(min(window_s, max(0.0, minutes * 60 - (time.monotonic() - t0))))
                row = sample(console, screen, cdp, kiosk.pid, hub.pid, staff_root, t0, window_s)
                rows.append(row)
                print(fmt(row), file=out, flush=True)
            console.click("#end")
            screen.wait_for_selector("#camera", state="hidden", timeout=10_000)
            console.wait_for_selector("#live", state="hidden", timeout=10_000)
            ended_ok = True
            time.sleep(after_s)
            after = sample(console, screen, cdp, kiosk.pid, hub.pid, staff_root, t0, after_s)
            print(f"{after_s:.0f} s after the call:", file=out)
            print(fmt(after), file=out, flush=True)
            staff_browser.close()
            kiosk_browser.close()
    finally:
        for proc in (kiosk, hub):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.stop()
    growth = {
        a: growth_per_10min(rows, a) for a in ("kiosk_mb", "hub_mb", "renderer_mb", "browser_mb")
    }
    print(
        "growth over the call's second half, MiB per 10 min: "
        + ", ".join(f"{k[:-3]} {v:+.1f}" for k, v in growth.items()),
        file=out,
        flush=True,
    )
    return Result(rows, after, growth, ended_ok)


HEADER = (
    "  min | fps face/doc | dropped | latency p50/p95 face, doc (ms) | kiosk hub MiB | "
    "renderer / browser MiB | heap MiB | audio staff<-kiosk lost/pkts jitter ms | kiosk<-staff"
)


def sample(
    console: Any, screen: Any, cdp: Any, kiosk: int, hub: int, root: int, t0: float, span: float
) -> Row:
    views = console.evaluate("() => window.viewStats()")
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    renderer, total = browser_memory(root)
    stats = "async () => await window.voiceStats()"
    audio = {"staff": console.evaluate(stats), "kiosk": screen.evaluate(stats)}
    return Row(
        t_min=(time.monotonic() - t0) / 60,
        fps={n: views[n]["frames"] / span for n in ("face", "doc")},
        dropped={n: int(views[n]["dropped"]) for n in ("face", "doc")},
        p50={n: pct(views[n]["ms"], 0.5) for n in ("face", "doc")},
        p95={n: pct(views[n]["ms"], 0.95) for n in ("face", "doc")},
        kiosk_mb=rss(kiosk),
        hub_mb=rss(hub),
        renderer_mb=renderer,
        browser_mb=total,
        heap_mb=metrics.get("JSHeapUsedSize", 0) / MIB,
        audio=audio,
    )


def fmt(r: Row) -> str:
    def a(side: str) -> str:
        s = r.audio.get(side) or {}
        return f"{s.get('lost', 0)}/{s.get('packets', 0)} {1000 * (s.get('jitter') or 0):.0f}"

    return (
        f"{r.t_min:5.1f} | {r.fps['face']:4.1f} / {r.fps['doc']:4.1f} | "
        f"{r.dropped['face']}/{r.dropped['doc']} | "
        f"{r.p50['face']:.0f}/{r.p95['face']:.0f}, {r.p50['doc']:.0f}/{r.p95['doc']:.0f} | "
        f"{r.kiosk_mb:.0f} {r.hub_mb:.0f} | {r.renderer_mb:.0f} / {r.browser_mb:.0f} | "
        f"{r.heap_mb:.1f} | {a('staff')} | {a('kiosk')}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, default=120, help="length of the call")
    ap.add_argument("--window-s", type=float, default=300, help="one row per this many seconds")
    ap.add_argument("--after-s", type=float, default=60, help="wait after the call, then measure")
    ap.add_argument("--serve-hub", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_hub:
        serve_hub(args.serve_hub)
        return 0
    run(args.minutes, args.window_s, args.after_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
