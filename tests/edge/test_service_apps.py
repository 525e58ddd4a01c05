"""The service builds the role's real app from the registry and restarts it for a changed app
section, on its own loop (never on the link's network thread), against a real Mosquitto."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mimamori.edge import contract
from mimamori.edge.app import App, Emitter
from mimamori.edge.apps import create_app
from mimamori.edge.config import DeviceConfig, load_config
from mimamori.edge.ridership.app import RidershipApp
from mimamori.edge.service import Service
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import MEDIA, add_device
from tests.mqtt_probe import Probe, wait_until
from tests.running import RunningService


@dataclass
class Started:
    """What each app start saw: the config it was given and the thread it ran on."""

    configs: list[DeviceConfig] = field(default_factory=list)
    threads: list[str] = field(default_factory=list)


WALKERS = MEDIA / "opencv" / "vtest.avi"


def recording_factory(started: Started):  # type: ignore[no-untyped-def]
    """The registry's own factory, noting the config and the thread of every start."""

    def factory(cfg: DeviceConfig, emit: Emitter) -> App | None:
        started.configs.append(cfg)
        started.threads.append(threading.current_thread().name)
        return create_app(cfg, emit)

    return factory


@pytest.mark.skipif(not WALKERS.is_file(), reason="needs ../shared/media/opencv/vtest.avi")
def test_a_ridership_change_from_the_hub_restarts_the_app_on_the_service_loop(
    fleet: Fleet, broker: MosquittoProcess, hub_probe: Probe, tmp_path: Path
) -> None:
    door = {
        "source": str(WALKERS),
        "loop": True,
        "line": [320.0, 330.0, 320.0, 120.0],
        "schedule": [[5.0, 25.0]],
    }
    cfg_path = add_device(fleet, "bus-01", "ridership", ridership={"doors": [door]})
    started = Started()
    service = Service(load_config(cfg_path), app_factory=recording_factory(started))
    with RunningService(service) as svc:
        wait_until(
            lambda: svc.link.connected and isinstance(svc.app, RidershipApp), what="first start"
        )
        assert isinstance(svc.app, RidershipApp) and svc.app.tail_s == 3  # the default
        hub_probe.client.publish(
            contract.twin_desired("bus-01"),
            contract.TwinDesired(
                version=1, config={"ridership": {"doors": [door], "tail_s": 9}}
            ).dumps(),
            qos=1,
            retain=True,
        )
        wait_until(
            lambda: isinstance(svc.app, RidershipApp) and svc.app.tail_s == 9,
            what="the app restarted with the new config",
        )
        assert started.configs[-1].ridership is not None
        assert started.configs[-1].ridership.tail_s == 9
        corr = hub_probe.command("bus-01", "restart-app")
        wait_until(lambda: len(started.configs) == 3, what="restart-app")
        replies = wait_until(
            lambda: [
                contract.CommandReply.model_validate_json(m.payload)
                for m in hub_probe.on("bus-01/reply/restart-app")
                if getattr(m.properties, "CorrelationData", None) == corr
            ],
            what="the restart-app reply",
        )
        assert replies[0].ok
    # the service's own thread started the app every time, never paho's network thread
    loop = {started.threads[0]}
    assert set(started.threads) == loop and not any("paho" in t for t in loop)
