"""A link too thin for video: the kiosk holds both views and the call goes on as voice plus
stills, both sides are told why, and video comes back once the link is good for a while."""

from __future__ import annotations

import math
import threading
import time

import pytest
from playwright.sync_api import Browser

from mimamori.edge import contract
from mimamori.hub.cli import Hub
from mimamori.kiosk.uplink import Uplink
from mimamori.kiosk.views import View
from tests.kiosk.conftest import Kiosk, ringing_call, staff_account
from tests.kiosk.test_browser import chromium, staff_page  # noqa: F401 (the fixture)
from tests.kiosk.test_call import Clock, Still
from tests.kiosk.test_drops import screen_state
from tests.mqtt_probe import wait_until

KB = 1000


def uplink(clock: Clock) -> Uplink:
    return Uplink(clock, thin_after_s=6, good_after_s=30, min_samples=3)


def feed(link: Uplink, clock: Clock, kbit_s: float, seconds: float, every: float = 1.0) -> None:
    """One 20 kB frame every ``every`` seconds, delivered at ``kbit_s``; judged after each."""
    for _ in range(round(seconds / every)):
        clock.t += every
        link.delivered(20 * KB, 20 * KB * 8 / (kbit_s * 1000))
        link.judge()


def test_thin_only_when_every_measurement_of_a_while_is_low() -> None:
    clock = Clock()
    link = uplink(clock)
    feed(link, clock, 100, 5)
    assert not link.thin, "slow for four seconds is not yet thin"
    clock.t += 1
    link.delivered(20 * KB, 0.05)  # one quick frame among slow ones starts the wait again
    feed(link, clock, 100, 6)
    assert not link.thin
    feed(link, clock, 100, 1)  # six seconds of slow frames only
    assert link.thin


def test_good_again_only_after_a_while_well_above_the_thin_mark() -> None:
    clock = Clock()
    link = uplink(clock)
    feed(link, clock, 100, 7)
    assert link.thin
    # just above the thin mark but below the good one: stays thin, however long
    feed(link, clock, 400, 60, every=5)
    assert link.thin
    feed(link, clock, 2000, 30, every=5)  # good, but not yet for thirty seconds
    assert link.thin
    feed(link, clock, 2000, 5, every=5)
    assert not link.thin
    # a stalled link gives no measurements: after a while thin it never turns good
    feed(link, clock, 100, 7)
    assert link.thin
    clock.t += 120
    assert not link.judge() and link.thin
    link.reset()  # a new call starts from good
    assert not link.thin


def test_a_held_view_trickles_or_stops_and_reports_each_delivery() -> None:
    sent: list[contract.ViewMeta] = []
    delivered: list[tuple[int, float]] = []
    lock = threading.Lock()

    def send(jpeg: bytes, meta: str) -> bool:
        with lock:
            sent.append(contract.ViewMeta.model_validate_json(meta))
        return True

    camera = Still()
    view = View(
        "face", lambda: camera, send, fps=50, on_delivery=lambda n, s: delivered.append((n, s))
    )
    call = "c" * 32
    view.start(call)
    wait_until(lambda: len(sent) >= 1, 5, "a frame")
    view.ack(call, sent[-1].seq)
    assert delivered and delivered[0][0] > 0 and 0 <= delivered[0][1] < 5
    view.hold(0.3)  # a frame every 0.3 s, of the lowest quality
    for _ in range(4):
        with lock:
            view.ack(call, sent[-1].seq)
        time.sleep(0.3)
    with lock:
        held = [m for m in sent if m.q == 30]
    assert 2 <= len(held) <= 6, [m.seq for m in sent]
    view.hold(math.inf)  # none at all, the camera still open
    time.sleep(0.2)
    count = len(sent)
    with lock:
        view.ack(call, sent[-1].seq)
    time.sleep(0.5)
    assert len(sent) == count and view.sending and not camera.closed
    assert view.last_full is not None, "the desk camera still gives stills"
    view.hold(None)
    wait_until(lambda: len(sent) > count, 5, "streaming again")
    view.stop()


@pytest.mark.slow  # 8-20 s: the default run keeps its margin under five minutes
def test_too_thin_for_video_voice_and_stills_go_on_and_both_sides_hear_why(
    web_hub: Hub, kiosk: Kiosk
) -> None:
    """The staff side takes no frame: no acknowledgement comes, each view gives up after two
    seconds, and the measured rate is far below the thin mark."""
    link = kiosk.app.uplink
    link.thin_after_s, link.good_after_s, link.probe_s = 2.0, 2.0, 0.3
    relay = web_hub.relay
    kiosk.app.press()
    call = wait_until(lambda: ringing_call(web_hub, kiosk.dev), 5, "ringing")
    relay.answer(call, "suzuki")

    def mine() -> dict:
        return dict(relay.console("suzuki")["mine"] or {})

    wait_until(lambda: mine().get("state") == "connected", 10, "connected")
    wait_until(lambda: mine().get("thin"), 20, "the hub hears the link is thin")
    assert kiosk.app.screen is not None
    port = kiosk.app.screen.port
    state = screen_state(port)
    assert state["thin"] and state["state"] == "connected" and state["camera_on"]
    # the desk view has stopped; a still still comes on request
    doc = relay.calls[call].frames.get("doc")
    last_doc = doc.seq if doc else -1
    relay.capture(call, "suzuki")
    wait_until(lambda: mine().get("stills"), 15, "a still while thin")
    assert relay.frame(call, "suzuki", "doc", last_doc, 1.5) is None, "desk frames while thin"

    # staff take every frame at once: quick acknowledgements, the link is good again
    stop = threading.Event()

    def take_face() -> None:
        seq = 0
        while not stop.is_set():
            f = relay.frame(call, "suzuki", "face", seq, 1.0)
            seq = f.seq if f else seq

    taker = threading.Thread(target=take_face, daemon=True)
    taker.start()
    try:
        wait_until(lambda: not mine().get("thin"), 20, "video back")
        assert relay.frame(call, "suzuki", "doc", last_doc, 5) is not None, "no desk frame"
    finally:
        stop.set()
        taker.join(5)
    assert not screen_state(port)["thin"]


def test_the_console_says_why_the_picture_stopped_and_takes_a_still(
    chromium: Browser,  # noqa: F811
    web_hub: Hub,
    kiosk: Kiosk,
) -> None:
    staff_account(web_hub, "suzuki")
    console = staff_page(chromium, web_hub, "suzuki")
    # every delivery measures below the thin mark: the seam is the kiosk's measured rate
    kiosk.app.uplink.thin_bps, kiosk.app.uplink.thin_after_s = 1e12, 1.0
    kiosk.app.press()
    console.click("#queue li button", timeout=5000)
    console.wait_for_selector("#thin:visible", timeout=20000)
    assert "Link too thin for video: voice and stills only" in console.inner_text("#thin")
    console.click("#thin-still")
    console.wait_for_selector("#stills figure", timeout=15000)
