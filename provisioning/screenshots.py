"""Screenshots of the main pages for the README, taken from the real running demo.

Starts `mimamori demo` in a temporary folder on free ports, waits until the devices have
reported (a stop visit, an incursion alarm, the kiosk online), signs in as the demo's
``admin`` in headless Chromium (Debian's) and saves one PNG per page, cropped to the
viewport; the kiosk's resident screen at its own size. For the counter console the kiosk's
button is pressed first, so a call is waiting. A page whose PNG comes out over 300 KB (a
photograph on it) is saved again with fewer colour levels.

    .venv/bin/python -m mimamori.provisioning.screenshots --out docs/screens
"""

from __future__ import annotations

import argparse
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from mimamori.provisioning.demo import MEDIA

if TYPE_CHECKING:  # playwright comes with the test extras; `--help` works without it
    from playwright.sync_api import ViewportSize

CHROMIUM = Path("/usr/lib/chromium/chromium")  # Debian's; `./run.sh test` installs it
STAFF_SIZE: ViewportSize = {"width": 1280, "height": 800}
KIOSK_SIZE: ViewportSize = {"width": 800, "height": 480}  # the kiosk's 7-inch screen
MAX_BYTES = 300_000
STOP_VISITS = 3  # enough for the ridership page to show a few stops
#: file name, page of the hub
HUB_PAGES = [
    ("fleet.png", "/"),
    ("device.png", "/devices/field-01"),
    ("alerts.png", "/alerts"),
    ("ridership.png", "/ridership"),
]


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports nobody listens on right now."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"error: no {what} after {timeout:.0f} s")
        time.sleep(1)
    print(f"  {what}: yes", flush=True)


def start_demo(folder: Path, media: Path) -> tuple[subprocess.Popen[str], str, str, int]:
    """The demo process, its hub URL, the admin password and the resident screen's port."""
    port, web, screen = free_ports(3)
    argv = [
        sys.executable,
        "-m",
        "mimamori.edge.cli",
        "demo",
        "--dir",
        str(folder),
        "--media",
        str(media),
    ]
    argv += ["--port", str(port), "--web-port", str(web), "--screen-port", str(screen)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    out = ""
    while "Press Ctrl-C" not in out:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("error: the demo exited early:\n" + out)
        out += line
    print(out, flush=True)
    found = re.search(r"open (http://\S+?)/?\n.*sign in as admin / (\S+)", out, re.S)
    if found is None:
        raise SystemExit("error: the demo printed no URL and password")
    return proc, found[1], found[2], screen


def reported(db: Path, sql: str) -> bool:
    if not db.exists():
        return False
    with sqlite3.connect(db) as c:
        return c.execute(sql).fetchone() is not None


def shrink(path: Path) -> None:
    """Drop the low bits of each colour until the PNG is under ``MAX_BYTES``."""
    import cv2
    import numpy as np

    image = cv2.imread(str(path))
    if image is None:
        raise SystemExit(f"error: cannot read back {path}")
    for mask in (0xF8, 0xF0, 0xE0):
        if path.stat().st_size <= MAX_BYTES:
            return
        cv2.imwrite(str(path), np.bitwise_and(image, mask), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def take(out: Path, media: Path, timeout: float) -> list[Path]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise SystemExit(f"error: {CHROMIUM} is missing: apt-get install chromium")
    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "demo"
        proc, url, password, screen_port = start_demo(folder, media)
        stack.callback(proc.wait, 30)
        stack.callback(proc.terminate)
        db = folder / "hub" / "hub.db"
        event = "SELECT COUNT(*) FROM events WHERE kind = '{}' HAVING COUNT(*) >= {}"
        visits = event.format("ridership.stop_visit", STOP_VISITS)
        wait_for(f"{STOP_VISITS} stop visits", lambda: reported(db, visits), timeout)
        alarm = event.format("wildlife.incursion", 1)
        wait_for("incursion", lambda: reported(db, alarm), timeout)
        online = "SELECT 1 FROM devices WHERE id = 'kiosk-01' AND online"
        wait_for("kiosk online", lambda: reported(db, online), timeout)

        p = stack.enter_context(sync_playwright())
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        stack.callback(browser.close)
        staff = browser.new_context(viewport=STAFF_SIZE).new_page()
        staff.goto(f"{url}/login")
        staff.fill("input[name=name]", "admin")
        staff.fill("input[name=password]", password)
        staff.click("button[type=submit]")
        staff.wait_for_url(f"{url}/")
        for name, page in HUB_PAGES:
            staff.goto(url + page)
            staff.wait_for_load_state("networkidle")
            saved.append(out / name)
            staff.screenshot(path=saved[-1])

        kiosk = browser.new_context(viewport=KIOSK_SIZE).new_page()
        kiosk.goto(f"http://127.0.0.1:{screen_port}/")
        kiosk.wait_for_selector("#call:visible")
        saved.append(out / "kiosk.png")
        kiosk.screenshot(path=saved[-1])
        kiosk.click("#call")  # the screen's button posts /api/call, as the arcade button does
        staff.goto(f"{url}/counter")
        staff.wait_for_selector("text=kiosk-01")
        staff.wait_for_timeout(2000)  # the console polls its state
        saved.append(out / "counter.png")
        staff.screenshot(path=saved[-1])
    for path in saved:
        shrink(path)
    return saved


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m mimamori.provisioning.screenshots",
        description="Run the demo and save PNG screenshots of the fleet, device, alerts, "
        "ridership and counter pages (1280x800) and of the kiosk's resident screen (800x480).",
    )
    ap.add_argument("--out", type=Path, default=Path("docs/screens"), help="default: %(default)s")
    ap.add_argument(
        "--media", type=Path, default=MEDIA, help="sample media folder (default: %(default)s)"
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=300,
        help="seconds to wait for each device to report (default: %(default)s)",
    )
    args = ap.parse_args(argv)
    for path in take(args.out, args.media, args.timeout):
        print(f"{path}: {path.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
