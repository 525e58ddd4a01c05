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
