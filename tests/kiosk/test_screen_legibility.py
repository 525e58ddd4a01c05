"""The resident's screen is readable at arm's length by someone with poor eyesight: no text
smaller than ``MIN_TEXT_PX`` and WCAG AAA contrast (7:1, 4.5:1 for large text), measured in
headless Chromium on the kiosk's 7-inch screen (800x480) and a larger one, in every state a
call passes through."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from mimamori.hub.cli import Hub
from tests.kiosk.conftest import Kiosk, ringing_call, staff_account
from tests.kiosk.test_browser import chromium  # noqa: F401 (the fixture)
from tests.mqtt_probe import wait_until

#: the smallest text on the screen, CSS px (24 px is the body text on a 7-inch screen)
MIN_TEXT_PX = 20.0

#: every visible element with text of its own: size, weight, colour, the background behind it
TEXTS = """() => {
  const out = [];
  const bg = (el) => {
    for (; el; el = el.parentElement) {
      const c = getComputedStyle(el).backgroundColor;
      if (c && !c.startsWith("rgba(0, 0, 0, 0)") && c !== "transparent") return c;
    }
    return "rgb(255, 255, 255)";
  };
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].filter((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own.length || !el.getClientRects().length) continue;
    const st = getComputedStyle(el);
    if (st.visibility === "hidden" || st.display === "none") continue;
    out.push({text: own.map((n) => n.textContent.trim()).join(" ").slice(0, 40),
              id: el.id, size: parseFloat(st.fontSize), weight: parseInt(st.fontWeight),
              color: st.color, background: bg(el)});
  }
  return out;
}"""


def rgb(css: str) -> tuple[float, float, float]:
    parts = css[css.index("(") + 1 : css.index(")")].split(",")
    r, g, b = (float(v) for v in parts[:3])
    return r, g, b


def luminance(css: str) -> float:
    def lin(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = rgb(css)
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def check(page: Page, where: str) -> list[dict[str, Any]]:
    texts = page.evaluate(TEXTS)
    assert texts, f"{where}: no text found"
    problems = []
    for t in texts:
        large = t["size"] >= 24 or (t["size"] >= 18.66 and t["weight"] >= 700)
        need = 4.5 if large else 7.0
        ratio = contrast(t["color"], t["background"])
        if t["size"] < MIN_TEXT_PX or ratio < need:
            problems.append({**t, "contrast": round(ratio, 2), "needs": need})
    assert not problems, f"{where}: {problems}"
    return texts


@pytest.mark.parametrize("size", [(800, 480), (1280, 800)])
def test_screen_text_is_large_and_contrasted_in_every_state(
    chromium: Browser,  # noqa: F811
    web_hub: Hub,
    kiosk: Kiosk,
    size: tuple[int, int],
) -> None:
    staff_account(web_hub, "suzuki")
    page = chromium.new_context(viewport={"width": size[0], "height": size[1]}).new_page()
    page.goto(kiosk.screen_url)
    page.wait_for_selector("#call:visible")
    check(page, f"idle {size}")
    page.click("#call")
    call = wait_until(lambda: ringing_call(web_hub, kiosk.dev), 5, "ringing at the hub")
    page.wait_for_selector("#cancel:visible")
    check(page, f"ringing {size}")
    web_hub.relay.answer(call, "suzuki")
    page.wait_for_selector("#camera:visible", timeout=5000)
    texts = check(page, f"connected {size}")
    # the camera sign is among what was checked
    assert any("カメラ" in t["text"] for t in texts)
    # nobody takes the views here, so the link soon measures too thin for video
    kiosk.app.uplink.thin_after_s = 1.0
    page.wait_for_selector("#msg-ja >> text=映像を止めています", timeout=15000)
    check(page, f"too thin for video {size}")
    page.click("#cancel")
