"""Either side dropping mid-call: the call ends cleanly on both, and both keep working."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from mimamori.hub.cli import Hub, build
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import add_device
from tests.edge.test_device_process import DeviceProcess
from tests.kiosk.conftest import (
    LIGHT,
    ended_call,
    idle_at_hub,
    kiosk_section,
    ringing_call,
    start_kiosk,
)
from tests.mqtt_probe import wait_until


def press_on_screen(port: int) -> dict[str, object]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/call", method="POST", headers={"X-Kiosk": "1"}, data=b"{}"
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return dict(json.load(resp))


def screen_state(port: int) -> dict[str, object]:
    """The resident's screen's state; empty while the kiosk is not (yet) running."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=5) as resp:
            return dict(json.load(resp))
    except OSError:
        return {}


@pytest.fixture
def hub(fleet: Fleet, broker: MosquittoProcess) -> Iterator[Hub]:
    running = build(fleet.hub_config).start(web=False)
    assert running.relay.wait_connected(10)
    running.relay.kiosk_gone_s = 1.0
    yield running
    running.stop()


def test_kiosk_killed_mid_call_ends_the_call_at_the_hub_and_rings_again_after_restart(
    fleet: Fleet, hub: Hub
) -> None:
    section = kiosk_section(button_pin=None, led_pin=None)
    port = int(section["screen_port"])
    cfg = add_device(fleet, "kiosk-01", "kiosk", kiosk=section)
    proc = DeviceProcess(cfg).start()
    try:
        wait_until(lambda: idle_at_hub(hub, "kiosk-01"), 20, "kiosk online")
        wait_until(lambda: screen_state(port).get("online"), 10, "kiosk sees the hub")
        press_on_screen(port)
        call = wait_until(lambda: ringing_call(hub, "kiosk-01"), 5, "ringing")
        hub.relay.answer(call, "suzuki")
        wait_until(lambda: hub.relay.frame(call, "suzuki", "face", 0, 1), 10, "face view")

        proc.kill()  # power cut at the branch office
        assert ended_call(hub, call)["reason"] == "link_lost"
        assert hub.relay.console("suzuki")["mine"] is None

        proc.start()  # power back: a fresh kiosk, idle, and it can call again
        wait_until(lambda: screen_state(port).get("online"), 20, "kiosk back")
        assert screen_state(port)["state"] == "idle"
        press_on_screen(port)
        again = wait_until(lambda: ringing_call(hub, "kiosk-01"), 5, "rings again")
        assert again != call
    finally:
        proc.kill()


def test_hub_gone_mid_call_ends_it_at_the_kiosk_and_a_new_hub_closes_the_record(
    fleet: Fleet, broker: MosquittoProcess, pins: MockFactory
) -> None:
    first = build(fleet.hub_config).start(web=False)
    assert first.relay.wait_connected(10)
    kiosk = start_kiosk(fleet, pins)
    try:
        wait_until(lambda: idle_at_hub(first, kiosk.dev), 10, "kiosk at the hub")
        kiosk.app.press()
        call = wait_until(lambda: ringing_call(first, kiosk.dev), 5, "ringing")
        first.relay.answer(call, "suzuki")
        wait_until(lambda: kiosk.app.machine.current.state == "connected", 5, "connected")
        assert pins.pin(LIGHT).state

        first.stop()  # city hall's server goes down
        wait_until(lambda: kiosk.app.machine.current.state == "ended", 10, "kiosk gives up")
        assert kiosk.app.machine.current.reason == "link_lost"
        wait_until(lambda: kiosk.app.sending() == [], 3, "cameras off")
        assert not pins.pin(LIGHT).state
        assert kiosk.app.press().state == "ended", "no ringing while city hall is away"
        assert kiosk.app.notice == "offline"

        second = build(fleet.hub_config).start(web=False)
        try:
            assert second.relay.wait_connected(10)
            wait_until(lambda: (second.relay.book.get(call) or {}).get("ended"), 10, "closed")
            assert second.relay.book.get(call)["reason"] == "link_lost"  # type: ignore[index]
            wait_until(lambda: kiosk.service.emit.ready, 10, "kiosk sees the new hub")
            kiosk.app.press()
            assert wait_until(lambda: ringing_call(second, kiosk.dev), 5, "rings the new hub")
        finally:
            second.stop()
    finally:
        kiosk.stop()
