"""A kiosk and the hub over a real broker: ring, answer, views, stills, hang-ups, drops."""

from __future__ import annotations

import re
import time
from pathlib import Path

import cv2
import numpy as np
from gpiozero.pins.mock import MockFactory

from mimamori.hub.auth import Accounts
from mimamori.hub.cli import Hub
from mimamori.hub.counter.relay import CounterError
from mimamori.kiosk.document import rectify
from mimamori.provisioning.fleet import Fleet
from tests.hub.conftest import staff_client
from tests.kiosk.conftest import (
    BUTTON,
    DESK,
    LIGHT,
    Kiosk,
    ended_call,
    idle_at_hub,
    ringing_call,
    start_kiosk,
)
from tests.mqtt_probe import wait_until


def led_samples(pins: MockFactory, seconds: float) -> set[bool]:
    seen = set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        seen.add(bool(pins.pin(LIGHT).state))
        time.sleep(0.02)
    return seen


def answer(hub: Hub, kiosk: Kiosk, staff: str = "suzuki") -> str:
    call = wait_until(lambda: ringing_call(hub, kiosk.dev), 5, "ringing at the hub")
    hub.relay.answer(call, staff)
    wait_until(lambda: kiosk.app.machine.current.state == "connected", 5, "connected")
    return str(call)


def test_button_rings_at_the_hub_within_a_second_light_follows_long_press_cancels(
    web_hub: Hub, kiosk: Kiosk, pins: MockFactory
) -> None:
    assert led_samples(pins, 0.3) == {False}
    pressed = time.monotonic()
    pins.pin(BUTTON).drive_low()  # the big button pulls its pin to ground
    call = wait_until(lambda: ringing_call(web_hub, kiosk.dev), 5, "ringing at the hub")
    ring_s = time.monotonic() - pressed
    pins.pin(BUTTON).drive_high()
    assert ring_s < 1.0, f"the hub heard the ring after {ring_s:.2f} s"
    assert led_samples(pins, 1.3) == {True, False}, "the light blinks while ringing"
    assert web_hub.relay.kiosks[kiosk.dev].state.state == "ringing"  # type: ignore[union-attr]

    web_hub.relay.answer(call, "suzuki")
    wait_until(lambda: kiosk.app.machine.current.state == "connected", 5, "connected")
    assert kiosk.app.machine.current.staff == "suzuki"
    assert led_samples(pins, 0.6) == {True}, "the light stays on while staff are connected"
    # both cameras are sending to the answering member of staff only
    for view in ("face", "doc"):
        frame = web_hub.relay.frame(call, "suzuki", view, 0, 5)
        assert frame is not None and frame.jpeg[:2] == b"\xff\xd8"
        assert frame.meta.call == call
    try:
        web_hub.relay.frame(call, "tanaka", "face", 0, 1)
        raise AssertionError("another member of staff got a frame")
    except CounterError as e:
        assert "suzuki" in str(e)

    # a short press during the call does nothing; holding the button hangs up
    pins.pin(BUTTON).drive_low()
    time.sleep(0.2)
    pins.pin(BUTTON).drive_high()
    time.sleep(0.3)
    assert kiosk.app.machine.current.state == "connected"
    pins.pin(BUTTON).drive_low()
    wait_until(lambda: kiosk.app.machine.current.state == "ended", 3, "long press hangs up")
    pins.pin(BUTTON).drive_high()
    assert kiosk.app.machine.current.reason == "cancelled"
    wait_until(lambda: kiosk.app.sending() == [], 2, "cameras off")
    wait_until(lambda: led_samples(pins, 0.3) == {False}, 3, "the light off")
    row = ended_call(web_hub, call, 5)
    assert row["staff"] == "suzuki" and row["reason"] == "cancelled"
    log = Accounts(web_hub.store).audit_log()
    assert any(e["action"] == "counter.call" and e["user"] == "suzuki" for e in log)


def test_first_answer_wins_and_a_queue_forms_when_two_kiosks_ring(
    web_hub: Hub, kiosk: Kiosk, fleet: Fleet, pins: MockFactory
) -> None:
    second = start_kiosk(fleet, pins, "kiosk-02", button_pin=None, led_pin=None)
    try:
        wait_until(lambda: idle_at_hub(web_hub, "kiosk-02"), 10, "second kiosk at the hub")
        kiosk.app.press()
        time.sleep(0.05)
        second.app.press()
        first_call = wait_until(lambda: ringing_call(web_hub, kiosk.dev), 5, "first rings")
        second_call = wait_until(lambda: ringing_call(web_hub, "kiosk-02"), 5, "second rings")
        wait_until(lambda: second.app.machine.current.position == 2, 5, "second is told #2")
        assert kiosk.app.machine.current.position == 1

        web_hub.relay.answer(first_call, "suzuki")
        try:
            web_hub.relay.answer(first_call, "tanaka")
            raise AssertionError("two people answered one call")
        except CounterError as e:
            assert "suzuki" in str(e)
        wait_until(lambda: second.app.machine.current.position == 1, 5, "the queue moves up")
        console = web_hub.relay.console("tanaka")
        assert [q["dev"] for q in console["queue"]] == ["kiosk-02"]
        assert console["taken"] == [{"dev": kiosk.dev, "staff": "suzuki"}]
        web_hub.relay.answer(second_call, "tanaka")
        wait_until(lambda: second.app.machine.current.state == "connected", 5, "connected")
    finally:
        second.stop()


def test_document_still_is_found_flattened_kept_only_when_saved(web_hub: Hub, kiosk: Kiosk) -> None:
    kiosk.app.press()
    call = answer(web_hub, kiosk)
    wait_until(lambda: web_hub.relay.frame(call, "suzuki", "doc", 0, 1), 5, "desk view")
    web_hub.relay.capture(call, "suzuki")
    stills = wait_until(lambda: web_hub.relay.console("suzuki")["mine"]["stills"], 10, "still")
    meta = web_hub.relay.still(call, "suzuki", stills[0]["still"]).meta
    expected = rectify(cv2.imread(str(DESK)))
    assert meta.found
    assert len(meta.corners) == 4
    for (x, y), (ex, ey) in zip(meta.corners, expected.corners, strict=True):
        assert abs(x - ex) < 3 and abs(y - ey) < 3, (meta.corners, expected.corners)
    assert (meta.w, meta.h) == expected.image.shape[1::-1]
    jpeg = web_hub.relay.still(call, "suzuki", meta.still).jpeg
    image = cv2.imdecode(np.frombuffer(jpeg, "uint8"), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (meta.h, meta.w)

    try:
        web_hub.relay.save_still(call, "suzuki", meta.still, "")
        raise AssertionError("a still was kept without a reason")
    except CounterError as e:
        assert "why" in str(e)
    web_hub.relay.save_still(call, "suzuki", meta.still, "application no. 42, signature check")
    web_hub.relay.capture(call, "suzuki")
    wait_until(lambda: len(web_hub.relay.console("suzuki")["mine"]["stills"]) == 2, 10, "2nd")
    web_hub.relay.end(call, "suzuki")
    wait_until(lambda: kiosk.app.machine.current.state == "ended", 5, "kiosk hung up")
    assert kiosk.app.machine.current.reason == "staff_ended"
    saved = web_hub.relay.book.saved()
    assert [s["still"] for s in saved] == [meta.still], "only the saved still is kept"
    assert saved[0]["reason"].startswith("application no. 42")
    assert web_hub.relay.book.saved_jpeg(meta.still) == jpeg
    audit = Accounts(web_hub.store).audit_log()
    assert any(e["action"] == "counter.still_save" for e in audit)


def test_a_desk_without_a_page_gives_staff_a_clear_message(
    web_hub: Hub, fleet: Fleet, pins: MockFactory, tmp_path: Path
) -> None:
    empty = tmp_path / "desk.png"
    cv2.imwrite(str(empty), np.full((720, 1280, 3), 60, np.uint8))
    k = start_kiosk(fleet, pins, doc_source=str(empty))
    try:
        k.app.press()
        call = answer(web_hub, k)
        wait_until(lambda: web_hub.relay.frame(call, "suzuki", "doc", 0, 1), 5, "desk view")
        web_hub.relay.capture(call, "suzuki")
        stills = wait_until(lambda: web_hub.relay.console("suzuki")["mine"]["stills"], 10, "still")
        assert stills[0]["found"] is False
        assert any("no page found" in w for w in stills[0]["warnings"])
        assert k.app.machine.current.state == "connected", "the call goes on"
    finally:
        k.stop()


def test_console_polls_for_an_ended_call_are_told_it_is_over_and_recent_calls_list_it(
    web_hub: Hub, kiosk: Kiosk
) -> None:
    web = staff_client(web_hub, "suzuki", "counter")
    assert "No call yet." in web.get("/counter/recent").get_data(as_text=True)
    kiosk.app.press()
    call = wait_until(lambda: ringing_call(web_hub, kiosk.dev), 5, "ringing at the hub")
    assert web.post(f"/counter/calls/{call}/answer").status_code == 200
    wait_until(lambda: kiosk.app.machine.current.state == "connected", 5, "connected")
    live = web.get(f"/counter/calls/{call}/view/face?after=0")
    assert live.status_code == 200 and "X-Call-Ended" not in live.headers
    time.sleep(1.2)
    assert web.post(f"/counter/calls/{call}/end").status_code == 200

    # the views' and the voice's polls still in flight when the call ends: not an error
    for path in (f"view/face?after={live.headers['X-Seq']}", "view/doc?after=0", "signal"):
        r = web.get(f"/counter/calls/{call}/{path}")
        assert (r.status_code, r.headers.get("X-Call-Ended")) == (204, "1"), path
    # what staff ask of an ended call is still refused, with the reason
    refused = web.post(f"/counter/calls/{call}/capture")
    assert refused.status_code == 409 and "ended" in refused.get_json()["error"]
    # "Recent calls" alone, as the console reloads it: the call, who took it, how long
    recent = web.get("/counter/recent").get_data(as_text=True)
    row = re.search(rf'<tr data-call="{call}">(.*?)</tr>', recent, re.S)
    assert row, recent
    cells = re.findall(r"<td>(.*?)</td>", row.group(1), re.S)
    assert cells[0] == kiosk.dev and cells[2] == "suzuki" and cells[4] == "staff ended"
    assert re.fullmatch(r"[1-9] s", cells[3]), f"talked {cells[3]!r} for a call of a second or two"
    assert f'data-call="{call}"' in web.get("/counter").get_data(as_text=True)
