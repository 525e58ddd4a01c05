"""Shared fixtures: a real fleet directory and a real Mosquitto on a free port."""

from __future__ import annotations

import getpass
import itertools
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.mqtt_probe import Identity, Probe, client, wait_until

if TYPE_CHECKING:
    from mimamori.hub.cli import Hub

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT.parent / "shared" / "media"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long suites carry a marker, so the default run can leave them out."""
    for item in items:
        if "reliability" in item.path.parts:
            item.add_marker(pytest.mark.soak)
        if "chromium" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    """gpiozero's mock pins: the GPIO hardware seam."""
    factory = MockFactory()
    yield factory
    factory.reset()
    Device.pin_factory = None


#: Ports for brokers and servers come from a band of this worker's own (pytest-xdist runs
#: three test processes), below the kernel's ephemeral range (32768-60999 on Debian), so
#: neither another worker nor a client's outgoing connection can take a port between its
#: choice here and the server's bind. The bands start at 20000, above every port Chromium
#: refuses to connect to (its "unsafe ports" end at 10080), and stay below 32768 for up to
#: four workers.
_BASE = 20_000
_BAND = 3000
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_next_port = itertools.cycle(range(_BASE + _WORKER * _BAND, _BASE + (_WORKER + 1) * _BAND))


def _bindable(port: int) -> bool:
    """Free on every address (a server bound to one veth's address holds it there only)."""
    with socket.socket() as s:
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports from this worker's band."""
    out: list[int] = []
    for _ in range(_BAND):
        port = next(_next_port)
        if _bindable(port):
            out.append(port)
            if len(out) == n:
                return out
    raise RuntimeError(f"no {n} free loopback ports in this worker's band")


def free_port() -> int:
    return free_ports(1)[0]


def free_port_pair() -> int:
    """A free loopback port whose next one is free too (the demo's broker listens on both:
    devices on ``port``, the hub on ``port + 1``)."""
    last = _BASE + (_WORKER + 1) * _BAND - 1
    for _ in range(_BAND):
        port = free_port()
        if port < last and _bindable(port + 1):
            next(_next_port)  # port + 1 is taken now
            return port
    raise RuntimeError("no two free loopback ports in a row")


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    """A fresh fleet (broker config, hub account) on a free loopback port."""
    port, hub_port, web_port, models_port = free_ports(4)
    return Fleet.init(
        tmp_path / "fleet",
        broker_host="127.0.0.1",
        port=port,
        hub_port=hub_port,
        web_port=web_port,
        models_port=models_port,
        broker_user="root" if os.geteuid() == 0 else getpass.getuser(),
    )


@pytest.fixture
def broker(fleet: Fleet) -> Iterator[MosquittoProcess]:
    """Mosquitto running the fleet's generated config."""
    proc = fleet.broker_process().start()
    yield proc
    proc.kill()


FAST_LINK = {"keepalive_s": 5, "reconnect_min_s": 0.05, "reconnect_max_s": 0.5}


def device_identity(fleet: Fleet, name: str) -> Identity:
    folder = fleet.root / "devices" / name
    return Identity(str(folder / "ca.crt"), str(folder / "device.crt"), str(folder / "device.key"))


def hub_identity(fleet: Fleet) -> Identity:
    """The hub's certificate: it opens only the broker's hub listener (``hub_port``)."""
    folder = fleet.root / "hub"
    return Identity(str(folder / "ca.crt"), str(folder / "hub.crt"), str(folder / "hub.key"))


def hub_port(fleet: Fleet) -> int:
    return int(fleet.settings["broker"]["hub_port"])


def add_device(
    fleet: Fleet,
    name: str,
    role: str = "wildlife",
    location: str = "",
    **sections: dict[str, object],
) -> Path:
    """Issue a device with a fast-reconnect link (its certificate needs no broker reload)."""
    cfg = fleet.add_device(name, role, location=location, extra=dict(sections))
    text = cfg.read_text()
    fast = "".join(f"{k} = {v}\n" for k, v in FAST_LINK.items())
    cfg.write_text(text.replace("[mqtt]\n", "[mqtt]\n" + fast, 1))
    return cfg


def can_connect(broker: MosquittoProcess, identity: Identity, port: int | None = None) -> bool:
    """True if the broker accepts a session with this identity (on ``port``, default the
    devices' listener)."""
    c = client(identity)
    try:
        c.connect(broker.host, port or broker.port)
        c.loop_start()
        return bool(wait_until(c.is_connected, 2, "connection"))
    except (OSError, AssertionError):
        return False
    finally:
        c.loop_stop()
        c.disconnect()


@pytest.fixture
def hub_probe(fleet: Fleet, broker: MosquittoProcess) -> Iterator[Probe]:
    """A plain MQTT client logged in as the hub: marks the hub online, records everything."""
    probe = Probe(broker.host, hub_port(fleet), hub_identity(fleet)).start()
    yield probe
    probe.stop()


@pytest.fixture
def hub(fleet: Fleet, broker: MosquittoProcess) -> Iterator[Hub]:
    """The real hub (ingest + store on the fleet's SQLite file), pages not served."""
    from mimamori.hub.cli import build

    running = build(fleet.hub_config).start(web=False)
    assert running.ingest.wait_connected(10), "hub could not connect"
    yield running
    running.stop()


def stored_events(store: object, dev: str) -> list[tuple[str, int]]:
    """(event_id, seq) of a device's stored events in the order they were stored."""
    return [(e["event_id"], e["seq"]) for e in reversed(store.events(dev, limit=1_000_000))]  # type: ignore[attr-defined]


def sqlite_integrity_ok(path: Path) -> bool:
    import sqlite3

    with sqlite3.connect(path) as db:
        return bool(db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")
