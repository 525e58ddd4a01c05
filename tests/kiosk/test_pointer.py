"""Staff point at the form: the mark reaches the kiosk's screen through the real hub relay,
sits on the same spot of the paper when the paper moves, is audited, and clears in one go."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import requests
from playwright.sync_api import Browser

from bench.kiosk_desks import _content, render
from mimamori.hub.auth import Accounts
from mimamori.hub.cli import Hub
from mimamori.hub.counter.relay import CounterError
from mimamori.kiosk.document import find_page
from mimamori.kiosk.pointer import COLOUR, UNIT, Mark, draw, pin, where
from tests.conftest import MEDIA
from tests.kiosk.conftest import Kiosk, staff_account
from tests.kiosk.test_browser import chromium, staff_page, view_ts  # noqa: F401 (fixture)
from tests.kiosk.test_counter import answer
from tests.mqtt_probe import wait_until


def page_point(corners: np.ndarray, u: float, v: float) -> tuple[float, float]:
    m = cv2.getPerspectiveTransform(UNIT, corners.astype(np.float32))
    p = cv2.perspectiveTransform(np.array([[[u, v]]], np.float32), m)[0, 0]
    return float(p[0]), float(p[1])


def marked(image: np.ndarray) -> np.ndarray:
    """Pixels in the mark's colour."""
    diff = np.abs(image.astype(int) - np.array(COLOUR)).sum(axis=2)
    return np.argwhere(diff < 60)


@pytest.mark.skipif(not MEDIA.is_dir(), reason="../shared/media not present")
def test_a_mark_stays_on_the_same_spot_of_the_paper_when_the_paper_moves() -> None:
    rng = np.random.default_rng(4)
    sample = render("plain", rng, _content())
    frame = sample.image
    h, w = frame.shape[:2]
    x, y = page_point(sample.corners, 0.3, 0.7)  # "write your name here"
    mark = pin(frame, "dot", x / w, y / h, "view")
    assert mark.on_page and abs(mark.u - 0.3) < 0.01 and abs(mark.v - 0.7) < 0.01
    # the resident nudges the paper: turned 4 degrees and slid 60 px right, 30 down
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 4, 1.0)
    m[:, 2] += (60, 30)
    moved = cv2.warpAffine(frame, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    expected = m @ np.array([x, y, 1.0])
    at = where(moved, mark)
    assert at is not None
    diagonal = float(np.hypot(w, h))
    assert np.hypot(at[0] - expected[0], at[1] - expected[1]) < 0.01 * diagonal, (at, expected)
    # and it is drawn there
    shown = draw(moved, mark)
    scale = shown.shape[1] / w
    pts = marked(shown)
    assert len(pts) > 20
    cy, cx = pts.mean(axis=0)
    assert np.hypot(cx / scale - expected[0], cy / scale - expected[1]) < 0.015 * diagonal
    # a mark put on a still is already in page fractions; with no page in view, the frame's
    assert pin(None, "circle", 0.2, 0.4, "page") == Mark("circle", 0.2, 0.4, True)
    assert not pin(np.full((480, 640, 3), 60, np.uint8), "dot", 0.5, 0.5, "view").on_page


def test_staff_point_through_the_hub_the_kiosk_shows_it_audited_and_cleared(
    web_hub: Hub, kiosk: Kiosk
) -> None:
    kiosk.app.press()
    call = answer(web_hub, kiosk)
    wait_until(lambda: kiosk.app.views["doc"].last_full is not None, 5, "desk frame")
    frame = kiosk.app.views["doc"].last_full
    assert frame is not None
    corners = find_page(frame)
    assert corners is not None
    h, w = frame.shape[:2]
    x, y = page_point(corners, 0.5, 0.5)
    assert requests.get(f"{kiosk.screen_url}/api/desk.jpg", timeout=5).status_code == 204
    web_hub.relay.point(call, "suzuki", "circle", x / w, y / h)
    mark = wait_until(lambda: kiosk.app.mark, 5, "the mark at the kiosk")
    assert mark.kind == "circle" and mark.on_page
    assert abs(mark.u - 0.5) < 0.02 and abs(mark.v - 0.5) < 0.02
    r = requests.get(f"{kiosk.screen_url}/api/desk.jpg", timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    shown = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert len(marked(shown)) > 50
    assert requests.get(f"{kiosk.screen_url}/api/state", timeout=5).json()["mark"] == "circle"
    # one click clears it
    web_hub.relay.point(call, "suzuki", "clear", 0, 0)
    wait_until(lambda: kiosk.app.mark is None, 5, "the mark cleared")
    assert requests.get(f"{kiosk.screen_url}/api/desk.jpg", timeout=5).status_code == 204
    audit = [e for e in Accounts(web_hub.store).audit_log() if e["action"] == "counter.point"]
    assert len(audit) == 2 and audit[0]["user"] == "suzuki"
    # bad marks are refused with the reason; another member of staff cannot point
    with pytest.raises(CounterError, match="mark"):
        web_hub.relay.point(call, "suzuki", "laser", 0.5, 0.5)
    with pytest.raises(CounterError, match="x"):
        web_hub.relay.point(call, "suzuki", "dot", 1.5, 0.5)
    with pytest.raises(CounterError, match="answered by suzuki"):
        web_hub.relay.point(call, "tanaka", "dot", 0.5, 0.5)
    # a mark lives for the call only
    web_hub.relay.point(call, "suzuki", "dot", x / w, y / h)
    wait_until(lambda: kiosk.app.mark, 5, "a second mark")
    web_hub.relay.end(call, "suzuki")
    wait_until(lambda: kiosk.app.machine.current.state == "ended", 5, "hung up")
    wait_until(lambda: kiosk.app.mark is None, 2, "the mark gone with the call")
    assert requests.get(f"{kiosk.screen_url}/api/desk.jpg", timeout=5).status_code == 204


def test_a_click_on_the_desk_view_in_the_console_shows_on_the_kiosk_screen(
    chromium: Browser,  # noqa: F811
    web_hub: Hub,
    kiosk: Kiosk,
) -> None:
    staff_account(web_hub, "suzuki")
    console = staff_page(chromium, web_hub, "suzuki")
    screen = chromium.new_context().new_page()
    screen.goto(kiosk.screen_url)
    screen.click("#call")
    console.wait_for_selector("#queue li button", timeout=5000)
    console.click("#queue li button")
    wait_until(lambda: view_ts(console, "doc")[0] >= 2, 10, "desk frames in the console")
    console.click("#marks [data-mark=circle]")
    console.click("#view-doc")  # the middle of the desk view: on the page
    mark = wait_until(lambda: kiosk.app.mark, 5, "the mark at the kiosk")
    assert mark.kind == "circle" and mark.on_page
    screen.wait_for_selector("#desk-fig:visible", timeout=5000)
    wait_until(lambda: screen.get_attribute("#desk", "src"), 5, "the desk shown")
    console.click("#mark-clear")
    wait_until(lambda: kiosk.app.mark is None, 5, "cleared")
    screen.wait_for_selector("#desk-fig", state="hidden", timeout=5000)
