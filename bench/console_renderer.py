"""Does the staff console's renderer grow because of the page, or because a test drives it?

Serves JPEG frames cut from the sample clip on loopback (1280 px wide at 10 frames/s as the
desk view, 480 px at 8 frames/s as the face view) and a page that draws them the way the
Counter console does (`hub/static/counter.js`, `view()`: fetch, blob, createImageBitmap,
drawImage on a canvas, close). Two headless Chromiums show the page side by side for
``--minutes``: one driven by Playwright, as in `bench/kiosk_soak.py` (Playwright turns on
the DevTools network domain for the page), and one started plainly with the page's URL, as
a clerk's browser is. Every ``--window-s`` it prints, per browser, the frames drawn and its
renderer's resident memory (RSS) and private memory (USS: what the process alone holds).

Usage: python bench/console_renderer.py [--minutes 20] [--window-s 120]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.kiosk_soak import CHROMIUM, MIB, chromium_roots, tree  # noqa: E402

CLIP = Path(__file__).resolve().parents[2] / "shared" / "media" / "opencv" / "vtest.avi"
HEADLESS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGE = """<!doctype html><meta charset="utf-8"><title>views</title>
<canvas id="desk"></canvas><canvas id="face"></canvas>
<script>
// as hub/static/counter.js view(): decode, draw, close at once
async function view(name, fps) {
  const canvas = document.getElementById(name), ctx = canvas.getContext("2d");
  for (let seq = 0; ; seq++) {
    const t = performance.now();
    const resp = await fetch(`/frame/${name}/${seq}${location.search}`, {cache: "no-store"});
    const bitmap = await createImageBitmap(await resp.blob());
    try {
      if (canvas.width !== bitmap.width) { canvas.width = bitmap.width; canvas.height = bitmap.height; }
      ctx.drawImage(bitmap, 0, 0);
    } finally { bitmap.close(); }
    await new Promise((ok) => setTimeout(ok, Math.max(0, 1000 / fps - (performance.now() - t))));
  }
}
view("desk", 10); view("face", 8);
</script>"""


def frames() -> dict[str, list[bytes]]:
    """A few seconds of the clip as JPEGs at each view's width and quality."""
    cap = cv2.VideoCapture(str(CLIP))
    out: dict[str, list[bytes]] = {"desk": [], "face": []}
    while len(out["desk"]) < 60:
        ok, image = cap.read()
        if not ok:
            break
        for name, width, quality in (("desk", 1280, 70), ("face", 480, 60)):
            h = round(image.shape[0] * width / image.shape[1])
            small = cv2.resize(image, (width, h), interpolation=cv2.INTER_AREA)
            out[name].append(
                cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
            )
    cap.release()
    return out


def serve(jpegs: dict[str, list[bytes]], served: Counter[str]) -> ThreadingHTTPServer:
    """The page and the frames; ``served`` counts the frames each browser (``?who=``) took."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path, _, who = self.path.partition("?who=")
            parts = path.strip("/").split("/")
            if parts[0] == "frame" and len(parts) == 3 and parts[1] in jpegs:
                body, kind = jpegs[parts[1]][int(parts[2]) % len(jpegs[parts[1]])], "image/jpeg"
                served[who] += 1
            else:
                body, kind = PAGE.encode(), "text/html; charset=utf-8"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def renderer(root: int) -> tuple[float, float]:
    """(RSS, USS) of the browser's renderers, MiB."""
    rss = uss = 0.0
    for p in tree(root):
        try:
            if "--type=renderer" in p.cmdline():
                info = p.memory_full_info()
                rss += info.rss / MIB
                uss += info.uss / MIB
        except psutil.Error:
            continue
    return rss, uss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, default=20, help="how long both browsers draw")
    ap.add_argument("--window-s", type=float, default=120, help="one row per this many seconds")
    args = ap.parse_args()
    if not CLIP.is_file():
        raise SystemExit(f"needs the shared sample media: {CLIP}")
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing: install Debian's chromium")
    from playwright.sync_api import sync_playwright

    served: Counter[str] = Counter()
    server = serve(frames(), served)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        before = chromium_roots()
        driven = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        driven_root = next(iter(chromium_roots() - before))
        page = driven.new_page()
        page.goto(url + "?who=driven")
        plain = subprocess.Popen(
            [str(CHROMIUM), *HEADLESS, f"--user-data-dir={profile}", url + "?who=plain"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            print(
                " min | Playwright: frames  RSS  USS MiB | plain: frames  RSS  USS MiB", flush=True
            )
            t0 = time.monotonic()
            while (elapsed := time.monotonic() - t0) < args.minutes * 60:
                time.sleep(min(args.window_s, args.minutes * 60 - elapsed))
                d_rss, d_uss = renderer(driven_root)
                p_rss, p_uss = renderer(plain.pid)
                print(
                    f"{(time.monotonic() - t0) / 60:4.0f} | {served['driven']:>18} {d_rss:5.0f}"
                    f" {d_uss:5.0f}     | {served['plain']:>13} {p_rss:5.0f} {p_uss:5.0f}",
                    flush=True,
                )
        finally:
            plain.terminate()
            plain.wait(10)
            driven.close()
            server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
