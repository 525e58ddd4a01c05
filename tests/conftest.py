"""Shared fixtures: a real fleet directory and a real Mosquitto on a free port."""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioning.fleet import Fleet
from provisioning.mosquitto import MosquittoProcess

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT.parent / "shared" / "media"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    """A fresh fleet (broker config, hub account) on a free loopback port."""
    return Fleet.init(
        tmp_path / "fleet",
        broker_host="127.0.0.1",
        port=free_port(),
        web_port=free_port(),
        broker_user="root" if os.geteuid() == 0 else getpass.getuser(),
    )


@pytest.fixture
def broker(fleet: Fleet) -> Iterator[MosquittoProcess]:
    """Mosquitto running the fleet's generated config."""
    proc = MosquittoProcess(fleet.broker_conf, fleet.settings["broker"]["port"]).start()
    yield proc
    proc.kill()


FAST_LINK = {"keepalive_s": 5, "reconnect_min_s": 0.05, "reconnect_max_s": 0.5}


def device_password(fleet: Fleet, name: str) -> str:
    return (fleet.root / "devices" / name / "password").read_text().strip()


def hub_password(fleet: Fleet) -> str:
    return (fleet.root / "hub" / "password").read_text().strip()


def add_device(
    fleet: Fleet,
    broker: MosquittoProcess | None,
    name: str,
    role: str = "wildlife",
    location: str = "",
    **sections: dict[str, object],
) -> Path:
    """Issue a device with a fast-reconnect link; reload a running broker so it may log in."""
    cfg = fleet.add_device(name, role, location=location, extra=dict(sections))
    text = cfg.read_text()
    fast = "".join(f"{k} = {v}\n" for k, v in FAST_LINK.items())
    cfg.write_text(text.replace("[mqtt]\n", "[mqtt]\n" + fast, 1))
    if broker is not None and broker.running:
        broker.reload()
        _wait_login(broker, name, device_password(fleet, name))
    return cfg


def _wait_login(broker: MosquittoProcess, user: str, password: str) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from tests.mqtt_probe import wait_until

    def ok() -> bool:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        c.username_pw_set(user, password)
        try:
            c.connect(broker.host, broker.port)
            c.loop_start()
            good = wait_until(c.is_connected, 1, "login")
        except (OSError, AssertionError):
            good = False
        finally:
            c.loop_stop()
            c.disconnect()
        return bool(good)

    wait_until(ok, 10, f"broker to accept {user}")


@pytest.fixture
def hub_probe(fleet: Fleet, broker: MosquittoProcess) -> Iterator[object]:
    """A plain MQTT client logged in as the hub: marks the hub online, records everything."""
    from tests.mqtt_probe import Probe

    probe = Probe(broker.host, broker.port, "hub", hub_password(fleet)).start()
    yield probe
    probe.stop()
