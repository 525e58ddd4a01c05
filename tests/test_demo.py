"""`mimamori demo` as a newcomer runs it: broker, hub and simulated devices come up."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest

from mimamori.hub.roster import Roster
from mimamori.provisioning.demo import VTEST
from tests.conftest import free_port_pair, free_ports
from tests.mqtt_probe import wait_until


@pytest.mark.slow
def test_demo_starts_everything_and_the_devices_report(tmp_path: Path) -> None:
    port = free_port_pair()  # the broker listens on port and port + 1 (the hub's listener)
    web, screen = [p for p in free_ports(4) if p not in (port, port + 1)][:2]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mimamori.edge.cli",
            "demo",
            "--dir",
            str(tmp_path / "demo"),
            "--port",
            str(port),
            "--web-port",
            str(web),
            "--screen-port",
            str(screen),
            "--duration",
            "40",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        while not any("sign in as" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "demo exited early:\n" + "".join(lines)
            lines.append(line)
        out = "".join(lines)
        assert f"open http://127.0.0.1:{web}/" in out
        user, password = re.search(r"sign in as (\S+) / (\S+)", out).groups()  # type: ignore[union-attr]
        login = urllib.request.urlopen(f"http://127.0.0.1:{web}/login", timeout=5)
        assert login.status == 200 and "Sign in" in login.read().decode()
        db = tmp_path / "demo" / "hub" / "hub.db"

        def online() -> set[str]:
            import sqlite3

            with sqlite3.connect(db) as c:
                return {r[0] for r in c.execute("SELECT id FROM devices WHERE online")}

        wait_until(lambda: online() == {"field-01", "bus-01", "kiosk-01"}, 30, "3 devices online")

        def stops_visited() -> set[str]:
            import sqlite3

            with sqlite3.connect(db) as c:
                rows = c.execute("SELECT data FROM events WHERE kind = 'ridership.stop_visit'")
                return {json.loads(r[0])["stop_id"] for r in rows}

        if VTEST.is_file():  # the bus counts real people at stops of its made-up route
            wait_until(lambda: "S01A" in stops_visited(), 40, "the first stop visit")
        assert user == "admin" and len(password) >= 12
        if f"resident screen: http://127.0.0.1:{screen}/" in out:  # the kiosk's sample media
            state = json.load(urllib.request.urlopen(f"http://127.0.0.1:{screen}/api/state"))
            assert state["state"] == "idle" and state["phone"] == "0120-000-000"
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0
    assert json.loads((tmp_path / "demo" / "inventory.json").read_text())["devices"].keys() == {
        "field-01",
        "bus-01",
        "kiosk-01",
    }


@pytest.mark.slow  # 8-20 s: the default run keeps its margin under five minutes
def test_demo_without_sample_media_says_what_is_missing_and_what_runs(tmp_path: Path) -> None:
    from mimamori.provisioning import demo

    empty = tmp_path / "no-media"
    empty.mkdir()
    lines = demo.describe(empty)
    assert len(lines) == 3 and all("simulated notices only" in line for line in lines)
    assert "needs opencv/vtest.avi" in lines[1]
    ports = free_ports(3)
    fleet = demo.provision(tmp_path / "demo", *ports, empty)
    text = fleet.device_config("bus-01").read_text()
    assert "[sim]" in text and "[ridership]" not in text
    if any(demo.missing(demo.MEDIA, n) for n in demo.NEEDS):
        return  # no sample media on this machine: the rest needs it
    # with the media there, the same folder and ports are set up again for the real apps
    again = demo.provision(tmp_path / "demo", *ports, demo.MEDIA)
    assert "[ridership]" in again.device_config("bus-01").read_text()
    # the hub names the demo route from its feed, and the field camera is on the alerts map
    hub = tomllib.loads(again.hub_config.read_text())
    assert (Path(hub["ridership"]["gtfs"]) / "routes.txt").is_file()
    roster = Roster(again.hub_config.parent / "devices.json")
    assert list(roster.positions("wildlife")) == ["field-01"]


def test_demo_troops_are_different_photos_each_pass(tmp_path: Path) -> None:
    """A staff member watching the demo sees a new troop each time, not the same photo."""
    from mimamori.provisioning import demo

    if demo.missing(demo.MEDIA, "field-01"):
        pytest.skip("../shared/media not present")
    folder = demo.demo_field(tmp_path / "field", demo.MEDIA)
    assert folder is not None
    frames = [p.read_bytes() for p in sorted(folder.glob("*.jpg"))]
    empty = frames[0]
    troops: list[list[bytes]] = []
    for prev, frame in zip([empty, *frames], frames, strict=False):
        if frame != empty:
            if prev == empty:
                troops.append([])
            troops[-1].append(frame)
    assert len(troops) >= 3, "one troop only"
    first_photos = {t[0] for t in troops}
    assert len(first_photos) == len(troops), "two troops open on the same photo"
    assert len({f for t in troops for f in t}) == sum(len(t) for t in troops)
