"""Remote-counter figures on this machine.

Starts a local Mosquitto (fleet config, TLS), the real hub in this process (relay + staff
pages on a free port) and the kiosk as its own process (`mimamori device run`), with both
views replaying 1280x720 clips made from the shared sample media (the walking clip as the
face camera, the photographed page as the desk camera). A staff client signs in to the hub
and takes frames exactly as the console page does (one long-poll per frame per view), and
measures:

* button → ring: the resident's button (the screen's /api/call) until the call is in the
  hub's queue, p50 / max over several presses,
* frame latency kiosk → staff client (capture time on the kiosk vs arrival at the client,
  same clock), p50 / p95 / max, frames/s and kbit/s per view, JPEG quality in use,
* kiosk CPU (% of one core) idle, and during the call (both views), per view,
* the same with a slow staff link (each frame takes --slow-ms to arrive): the kiosk lowers
  rate and quality instead of queueing, so latency stays flat.

Target: p95 frame latency < 300 ms.
Usage: python bench/kiosk_latency.py [--seconds 20] [--slow-ms 400]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._fleet import fleet_and_broker, free_port  # noqa: E402
from mimamori.hub.auth import Accounts  # noqa: E402
from mimamori.hub.cli import build  # noqa: E402
from mimamori.provisioning.fleet import Fleet  # noqa: E402
from mimamori.provisioning.mosquitto import MosquittoProcess  # noqa: E402

MEDIA = Path(__file__).resolve().parent.parent.parent / "shared" / "media" / "opencv"
HZ = os.sysconf("SC_CLK_TCK")


def kiosk_fleet(work: Path) -> tuple[Fleet, MosquittoProcess, Path, int]:
    """A fleet with a running broker and one kiosk on the sample clips, open around the clock:
    the fleet, the broker, the kiosk's config file and its screen port."""
    face, doc = make_clips(work)
    screen_port = free_port()
    fleet, broker = fleet_and_broker()
    cfg = fleet.add_device(
        "kiosk-01",
        "kiosk",
        extra={
            "kiosk": {
                "phone": "0120-000-000",
                "face_source": str(face),
                "doc_source": str(doc),
                "days": [0, 1, 2, 3, 4, 5, 6],
                "opens": "00:00",
                "closes": "24:00",
                "screen_port": screen_port,
                "ended_show_s": 3,
            }
        },
    )
    return fleet, broker, cfg, screen_port


def make_clips(folder: Path) -> tuple[Path, Path]:
    """1280x720 sources: the walking clip (motion, like a face at a desk) and the page."""
    face = folder / "face.avi"
    cap = cv2.VideoCapture(str(MEDIA / "vtest.avi"))
    out = cv2.VideoWriter(str(face), cv2.VideoWriter_fourcc(*"MJPG"), 10, (1280, 720))
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.write(cv2.resize(frame, (1280, 720)))
    out.release()
    page = cv2.imread(str(MEDIA / "sudoku.png"))
    desk = np.full((720, 1280, 3), 70, np.uint8)  # a dark desk mat with the page on it
    h = 680
    w = int(page.shape[1] * h / page.shape[0])
    desk[20 : 20 + h, (1280 - w) // 2 : (1280 - w) // 2 + w] = cv2.resize(page, (w, h))
    doc = folder / "desk.png"
    cv2.imwrite(str(doc), desk)
    return face, doc


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def pct(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * p))]


class Staff:
    """Takes frames as the console page does: one request per frame, per view."""

    def __init__(self, base: str, name: str, password: str) -> None:
        self.base, self.s = base, requests.Session()
        page = self.s.get(f"{base}/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token, "no CSRF token on the login page"
        self.s.post(
            f"{base}/login", data={"name": name, "password": password, "csrf_token": token[1]}
        )
        page = self.s.get(f"{base}/counter").text
        meta = re.search(r'name="csrf-token" content="([^"]+)"', page)
        assert meta, "not signed in"
        self.csrf = meta[1]

    def post(self, path: str) -> requests.Response:
        return self.s.post(f"{self.base}{path}", json={}, headers={"X-CSRFToken": self.csrf})

    def state(self) -> dict:
        return dict(self.s.get(f"{self.base}/counter/state.json").json())

    def take(self, call: str, view: str, seconds: float, delay_s: float, out: list[tuple]) -> None:
        seq, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            r = self.s.get(f"{self.base}/counter/calls/{call}/view/{view}?after={seq}")
            if r.status_code != 200:
                continue
            if delay_s:
                time.sleep(delay_s)  # a slow link: the frame takes this long to arrive
            got = datetime.now(UTC)
            seq = int(r.headers["X-Seq"])
            taken = datetime.fromisoformat(r.headers["X-Captured"])
            out.append(((got - taken).total_seconds(), len(r.content), int(r.headers["X-Quality"])))


def ring(screen: str, staff: Staff) -> tuple[float, str]:
    req = urllib.request.Request(
        f"{screen}/api/call", method="POST", headers={"X-Kiosk": "1"}, data=b"{}"
    )
    t0 = time.monotonic()
    urllib.request.urlopen(req, timeout=5).read()
    while True:
        q = staff.state()["queue"]
        if q:
            return time.monotonic() - t0, q[0]["call"]
        if time.monotonic() - t0 > 10:
            raise SystemExit("the hub never heard the ring")
        time.sleep(0.002)


def run_call(
    screen: str, staff: Staff, pid: int, seconds: float, delay_s: float
) -> dict[str, list[tuple]]:
    _, call = ring(screen, staff)
    staff.post(f"/counter/calls/{call}/answer")
    while (staff.state().get("mine") or {}).get("state") != "connected":
        time.sleep(0.05)
    time.sleep(1.0)  # cameras open
    frames: dict[str, list[tuple]] = {"face": [], "doc": []}
    c0 = cpu_s(pid)
    threads = [
        threading.Thread(target=staff.take, args=(call, v, seconds, delay_s, frames[v]))
        for v in frames
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu = (cpu_s(pid) - c0) / seconds * 100
    staff.post(f"/counter/calls/{call}/end")
    frames["cpu"] = [(cpu,)]
    time.sleep(1.5)
    return frames


def report(title: str, result: dict[str, list[tuple]], seconds: float) -> None:
    print(f"\n{title}")
    print("  view  frames/s  kbit/s  quality  latency p50 / p95 / max (ms)")
    for view in ("face", "doc"):
        rows = result[view]
        if not rows:
            print(f"  {view:5} no frames")
            continue
        lat = [r[0] * 1000 for r in rows]
        kbit = sum(r[1] for r in rows) * 8 / 1000 / seconds
        q = statistics.median(r[2] for r in rows)
        print(
            f"  {view:5} {len(rows) / seconds:8.1f} {kbit:7.0f} {q:8.0f}"
            f"  {pct(lat, 0.5):5.0f} / {pct(lat, 0.95):4.0f} / {max(lat):4.0f}"
        )
    cpu = result["cpu"][0][0]
    print(f"  kiosk CPU during the call: {cpu:.0f} % of a core ({cpu / 2:.0f} % per view)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20, help="measuring time per call")
    ap.add_argument("--presses", type=int, default=10, help="button presses timed")
    ap.add_argument("--slow-ms", type=float, default=400, help="slow staff link: ms per frame")
    args = ap.parse_args()
    if not (MEDIA / "vtest.avi").is_file():
        print(f"error: needs the shared sample media in {MEDIA}", file=sys.stderr)
        return 1

    work = Path(tempfile.mkdtemp(prefix="mimamori-kiosk-bench-"))
    fleet, broker, cfg, screen_port = kiosk_fleet(work)
    hub = build(fleet.hub_config)
    hub.app.config["SESSION_COOKIE_SECURE"] = False  # plain http on loopback for the client
    hub.start(web=True)
    Accounts(hub.store).add("bench", "bench password 1", "counter")
    kiosk = subprocess.Popen(
        [sys.executable, "-m", "mimamori.edge.cli", "device", "run", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    screen = f"http://127.0.0.1:{screen_port}"
    try:
        staff = Staff(f"http://127.0.0.1:{hub.cfg.web.port}", "bench", "bench password 1")
        while True:
            try:
                state = requests.get(f"{screen}/api/state", timeout=2).json()
                if state["online"]:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        print(f"kiosk → hub → staff client on loopback, 1280x720 sources, {os.cpu_count()} cores")
        idle0 = cpu_s(kiosk.pid)
        time.sleep(5)
        print(f"kiosk CPU idle: {(cpu_s(kiosk.pid) - idle0) / 5 * 100:.1f} % of a core")

        rings = []
        for _ in range(args.presses):
            took, _call = ring(screen, staff)
            rings.append(took * 1000)
            requests.post(f"{screen}/api/cancel", headers={"X-Kiosk": "1"}, timeout=5)
            time.sleep(0.3)
        print(
            f"button → ring at the hub: p50 {statistics.median(rings):.0f} ms, "
            f"max {max(rings):.0f} ms over {len(rings)} presses"
        )
        time.sleep(3.5)  # the goodbye screen clears
        report("fast staff link", run_call(screen, staff, kiosk.pid, args.seconds, 0), args.seconds)
        time.sleep(3.5)
        report(
            f"slow staff link ({args.slow_ms:.0f} ms per frame)",
            run_call(screen, staff, kiosk.pid, args.seconds, args.slow_ms / 1000),
            args.seconds,
        )
    finally:
        kiosk.terminate()
        kiosk.wait(10)
        hub.stop()
        broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
