"""Soak: random restarts of Mosquitto and of the hub while devices of all three roles record.

Every device runs its real app on the shared sample media: the monkey watch on a looping
field sequence (the real model), the bus counter on the OpenCV walking clip with its door
opening on a schedule, and the counter kiosk on a sample face and page, its button pressed
and the call cancelled again by the test (the resident's side of it)."""

from __future__ import annotations

import random
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from mimamori.hub.cli import Hub, build
from mimamori.kiosk.app import KioskApp
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import MEDIA, free_port
from tests.mqtt_probe import wait_until
from tests.reliability.conftest import RunningService, device_config, report, scale

FIELD_EMPTY = MEDIA / "camera-trap" / "sample-dzf-01.jpg"
MONKEYS = [MEDIA / "monkeys" / "images" / f"monkey_{n}.jpg" for n in (21, 49, 76, 16)]
WALKERS = MEDIA / "opencv" / "vtest.avi"
FACE, DESK = MEDIA / "opencv" / "messi5.jpg", MEDIA / "opencv" / "sudoku.png"

pytestmark = pytest.mark.skipif(
    not all(p.is_file() for p in (FIELD_EMPTY, *MONKEYS, WALKERS, FACE, DESK)),
    reason="needs the shared sample media (../shared/media)",
)


def field_sequence(folder: Path) -> Path:
    """A troop comes by once per loop: empty field, four monkey photos, empty field."""
    folder.mkdir(parents=True)
    for i, src in enumerate([FIELD_EMPTY] * 3 + MONKEYS + [FIELD_EMPTY] * 5):
        shutil.copy(src, folder / f"{i:03d}.jpg")
    return folder


def app_section(role: str, folder: Path) -> dict[str, Any]:
    """What each role's real app runs on (as `mimamori demo` configures it)."""
    if role == "wildlife":
        return {
            "wildlife": {
                "source": str(field_sequence(folder)),
                "fps": 1,
                "loop": True,
                "quiet_s": 1,
                "cooldown_s": 3,
                "motion": False,
            }
        }
    if role == "ridership":
        door = {
            "source": str(WALKERS),
            "fps": 10,
            "loop": True,
            "line": [320, 330, 320, 120],
            "schedule": [[3, 8]],
            "schedule_period_s": 10,
        }
        return {"ridership": {"tail_s": 0.5, "doors": [door]}}
    return {
        "kiosk": {
            "office": "Shimo branch",
            "phone": "0120-000-000",
            "face_source": str(FACE),
            "doc_source": str(DESK),
            "days": [0, 1, 2, 3, 4, 5, 6],
            "opens": "00:00",
            "closes": "24:00",
            "ended_show_s": 3,
            "screen_port": free_port(),
        }
    }


def outbox_seqs(svc: RunningService) -> tuple[int, set[int]]:
    """The last seq the device ever recorded, and the seqs still queued in its outbox."""
    with sqlite3.connect(svc.service.outbox.path) as db:
        last = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return (last[0] if last else 0), {r[0] for r in db.execute("SELECT seq FROM outbox")}


def tally(hub: Hub, services: list[RunningService]) -> dict[str, int]:
    """Events recorded, stored at the hub, and lost (neither at the hub nor still queued)."""
    recorded = stored = lost = 0
    for s in services:
        dev = s.service.cfg.device.id
        last, queued = outbox_seqs(s)
        at_hub = {e["seq"] for e in hub.store.events(dev, limit=1_000_000)}
        recorded += last
        stored += len(at_hub)
        lost += len(set(range(1, last + 1)) - at_hub - queued)
    return {"recorded": recorded, "stored": stored, "lost": lost}


def press_or_cancel(services: list[RunningService]) -> None:
    """The resident at each kiosk: press the button, or cancel the call that is ringing."""
    for s in services:
        app = s.service.app
        if isinstance(app, KioskApp):
            if app.machine.current.state == "ringing":
                app.cancel()
            else:
                app.press()


def test_restarts_of_broker_and_hub_lose_nothing(
    fleet: Fleet, broker: MosquittoProcess, services: list[RunningService], tmp_path: Path
) -> None:
    n_dev = scale(12, 50)
    soak_s = scale(45, 600)
    rng = random.Random(5)
    roles = ["wildlife", "ridership", "kiosk"]
    for i in range(n_dev):
        name, role = f"dev-{i:02d}", roles[i % 3]
        cfg = device_config(fleet, name, role, **app_section(role, tmp_path / name))
        services.append(RunningService(cfg))
    wait_until(lambda: all(s.service.app is not None for s in services), 60, "every app up")
    kinds = {type(s.service.app).__name__ for s in services}
    assert kinds == {"WildlifeApp", "RidershipApp", "KioskApp"}, kinds
    hub: Hub = build(fleet.hub_config).start(web=False)
    duplicates = 0
    restarts = {"broker": 0, "hub": 0}
    try:
        end = time.monotonic() + soak_s
        while time.monotonic() < end:
            time.sleep(rng.uniform(3, 8))
            press_or_cancel(services)
            if rng.random() < 0.5:
                broker.restart()
                restarts["broker"] += 1
            else:
                duplicates += hub.ingest.counters["duplicates"]
                hub.stop()
                time.sleep(rng.uniform(0.5, 3))
                hub = build(fleet.hub_config).start(web=False)
                restarts["hub"] += 1
        press_or_cancel(services)  # no call left ringing
        wait_until(
            lambda: all(s.service.outbox.depth() == 0 for s in services), 90, "outboxes drained"
        )
        for s in services:
            s.stop()
        # what the apps recorded while stopping (a partial bus visit) may stay queued
        wait_until(lambda: tally(hub, services)["lost"] == 0, 30, "every sent event stored")
        duplicates += hub.ingest.counters["duplicates"]
        figures = tally(hub, services)
        by_kind = {
            e["kind"]
            for s in services
            for e in hub.store.events(s.service.cfg.device.id, limit=1_000_000)
        }
    finally:
        hub.stop()
    assert restarts["broker"] and restarts["hub"], restarts
    assert figures["lost"] == 0, (
        f"{figures['lost']} recorded events are neither at the hub nor queued"
    )
    assert figures["stored"] >= figures["recorded"] * 0.95, (
        "most events should have reached the hub"
    )
    # each role's real app recorded its own events
    assert {"wildlife.incursion", "ridership.stop_visit", "kiosk.call"} <= by_kind, by_kind
    report(
        "broker and hub restarts",
        f"{restarts['broker']} Mosquitto and {restarts['hub']} hub restarts in {soak_s} s, "
        f"{n_dev} devices of 3 roles running their apps on sample media",
        sent=figures["recorded"],
        stored=figures["stored"],
        lost=figures["lost"],
        duplicates=duplicates,
        still_queued=figures["recorded"] - figures["stored"],
    )
