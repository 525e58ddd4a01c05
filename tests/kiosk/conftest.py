"""A kiosk on the fleet's broker, the real hub with its pages served, staff accounts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from mimamori.edge.app import Emitter
from mimamori.edge.config import load_config
from mimamori.edge.service import Service
from mimamori.hub.auth import Accounts
from mimamori.hub.cli import Hub, build
from mimamori.kiosk.app import KioskApp
from mimamori.kiosk.screen import Screen
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import MEDIA, add_device, free_port
from tests.mqtt_probe import wait_until

PASSWORD = "correct horse battery"
BUTTON, LIGHT = 17, 27
FACE = MEDIA / "opencv" / "messi5.jpg"
DESK = MEDIA / "opencv" / "sudoku.png"


def kiosk_section(**over: Any) -> dict[str, Any]:
    if not FACE.exists() or not DESK.exists():
        pytest.skip("needs the shared sample media (../shared/media/opencv)")
    section = {
        "office": "北分室",
        "phone": "0120-000-111",
        "face_source": str(FACE),
        "doc_source": str(DESK),
        "days": [0, 1, 2, 3, 4, 5, 6],
        "opens": "00:00",
        "closes": "24:00",
        "screen_port": free_port(),
        "button_pin": BUTTON,
        "led_pin": LIGHT,
        "hold_s": 0.5,
        "link_grace_s": 2,
        **over,
    }
    return {k: v for k, v in section.items() if v is not None}  # None: leave the pin out


@dataclass
class Kiosk:
    service: Service
    thread: threading.Thread
    dev: str

    @property
    def app(self) -> KioskApp:
        app = self.service.app
        assert isinstance(app, KioskApp), f"the kiosk app did not start: {app!r}"
        return app

    @property
    def screen_url(self) -> str:
        assert self.app.screen is not None
        return f"http://{self.app.screen.host}:{self.app.screen.port}/"

    def stop(self) -> None:
        self.service.stop()
        self.thread.join(10)


def start_kiosk(
    fleet: Fleet,
    pins: MockFactory,
    name: str = "kiosk-01",
    *,
    screen_host: str | None = None,
    **over: Any,
) -> Kiosk:
    """A kiosk service; ``screen_host``: serve its screen on that address instead of
    127.0.0.1 (a browser in another network namespace)."""
    cfg = load_config(add_device(fleet, name, "kiosk", kiosk=kiosk_section(**over)))

    def factory(c: Any, emit: Emitter) -> KioskApp:
        app = KioskApp(c.kiosk, emit, c.device.id, pin_factory=pins, screen=not screen_host)
        if screen_host:
            app.screen = Screen(app, port=c.kiosk.screen_port, host=screen_host).start()
        return app

    svc = Service(cfg, app_factory=factory)
    t = threading.Thread(target=svc.run, daemon=True)
    t.start()
    k = Kiosk(svc, t, name)
    wait_until(lambda: svc.app is not None and svc.emit.ready, 15, "kiosk online")
    return k


@pytest.fixture
def web_hub(fleet: Fleet, broker: MosquittoProcess) -> Iterator[Hub]:
    """The real hub with its staff pages served on the fleet's web port."""
    running = build(fleet.hub_config).start(web=True)
    assert running.ingest.wait_connected(10), "hub could not connect"
    assert running.relay.wait_connected(10), "counter relay could not connect"
    yield running
    running.stop()


@pytest.fixture
def kiosk(fleet: Fleet, web_hub: Hub, pins: MockFactory) -> Iterator[Kiosk]:
    k = start_kiosk(fleet, pins)
    wait_until(lambda: idle_at_hub(web_hub, k.dev), 10, "kiosk's idle state at the hub")
    yield k
    k.stop()


def idle_at_hub(hub: Hub, dev: str) -> bool:
    seen = hub.relay.kiosks.get(dev)
    return bool(seen and seen.state and seen.state.state in ("idle", "ended"))


def ringing_call(hub: Hub, dev: str) -> str | None:
    for q in hub.relay.console("nobody")["queue"]:
        if q["dev"] == dev:
            return str(q["call"])
    return None


def ended_call(hub: Hub, call: str, timeout: float = 10) -> dict[str, Any]:
    """The call's row once the hub has ended it: the call leaves the relay's room first,
    then its end is written to the book."""

    def row() -> dict[str, Any] | None:
        r = hub.relay.book.get(call) if call not in hub.relay.calls else None
        return r if r and r.get("ended") else None

    return wait_until(row, timeout, f"call {call} ended in the book")  # type: ignore[no-any-return]


def staff_account(hub: Hub, name: str, role: str = "counter") -> str:
    Accounts(hub.store).add(name, PASSWORD, role)
    return name


def web_url(hub: Hub) -> str:
    return f"http://{hub.cfg.web.bind}:{hub.cfg.web.port}"
