"""Japanese renders as Japanese, not as empty boxes, on the staff pages and the kiosk screen
(headless Chromium with the fonts ./run.sh installs)."""

from __future__ import annotations

from playwright.sync_api import Browser, Page

from mimamori.hub.cli import Hub
from tests.kiosk.conftest import Kiosk, web_url
from tests.kiosk.conftest import kiosk as kiosk  # noqa: F401  (fixture)
from tests.kiosk.conftest import web_hub as web_hub  # noqa: F401  (fixture)
from tests.kiosk.test_browser import chromium as chromium  # noqa: F401  (fixture)

#: draws two different characters in the font the element uses; with no font that has them,
#: both come out as the same empty box
DISTINCT_GLYPHS = """(sel) => {
  const el = document.querySelector(sel);
  const text = [...el.textContent].filter(ch => /[\\u3040-\\u30ff\\u4e00-\\u9fff]/.test(ch));
  const font = getComputedStyle(el).fontSize + ' ' + getComputedStyle(el).fontFamily;
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 96;
  const c = canvas.getContext('2d');
  c.font = font.replace(/^[0-9.]+px/, '48px');
  const pixels = ch => {
    c.clearRect(0, 0, 96, 96);
    c.fillText(ch, 8, 64);
    return Array.from(c.getImageData(0, 0, 96, 96).data).join(',');
  };
  return {text: text.join(''), font, distinct: new Set(text.slice(0, 4).map(pixels)).size};
}"""


def glyphs(page: Page, selector: str) -> dict:
    return dict(page.evaluate(DISTINCT_GLYPHS, selector))


def test_japanese_is_drawn_with_a_japanese_font(
    chromium: Browser,  # noqa: F811
    web_hub: Hub,  # noqa: F811
    kiosk: Kiosk,  # noqa: F811
) -> None:
    page = chromium.new_context(bypass_csp=True).new_page()
    page.goto(f"{web_url(web_hub)}/login")
    brand = glyphs(page, ".brand")
    assert brand["text"] == "見守り"
    assert brand["distinct"] == 3, f"見守り drawn as empty boxes in {brand['font']}"
    screen = chromium.new_context().new_page()
    screen.goto(kiosk.screen_url)
    button = glyphs(screen, "#call")
    assert len(button["text"]) >= 4, button
    assert button["distinct"] == min(4, len(set(button["text"][:4]))), (
        f"the call button's Japanese drawn as empty boxes in {button['font']}"
    )
    # the opening hours as people say them (this kiosk is open all day, every day), drawn
    screen.wait_for_selector("#hours:not(:empty)")
    assert screen.inner_text("#hours") == "毎日 24時間"
    assert screen.inner_text("#hours-en") == "Open every day, 24 hours"
    hours = glyphs(screen, "#hours")
    assert hours["distinct"] == 4, f"毎日 24時間 drawn as empty boxes in {hours['font']}"
