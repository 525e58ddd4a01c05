"""A bus replaying a real clip with GPS and a timetable: stop visits ride out a coverage gap
and a reboot, reach the hub exactly once, and show on the transit staff's page and export."""

from __future__ import annotations

import csv
import io
import threading
import zipfile
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mimamori.edge.outbox import Outbox
from mimamori.edge.ridership.gps import Fix
from mimamori.edge.ridership.gtfs import load_feed
from mimamori.edge.ridership.sim import nmea, write_feed
from mimamori.hub.auth import Accounts
from mimamori.hub.cli import Hub
from mimamori.hub.ridership import data
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import MEDIA, add_device
from tests.hub.conftest import staff_client
from tests.mqtt_probe import wait_until
from tests.running import RunningService

VTEST = MEDIA / "opencv" / "vtest.avi"
pytestmark = pytest.mark.skipif(not VTEST.is_file(), reason="../shared/media not present")


def gps_log(path: Path, lat: float, lon: float) -> Path:
    """Ten minutes of a bus standing at one stop, having driven in eastwards."""
    now = datetime.now(UTC).replace(microsecond=0)
    lines = nmea(Fix(now - timedelta(seconds=5), lat, lon - 0.0004), 68.0, 25.0)
    for s in range(600):
        lines += nmea(Fix(now + timedelta(seconds=s), lat, lon), 0.0, 0.0)
    path.write_text("\n".join(lines) + "\n")
    return path


def run_for(cfg: Path, seconds: float) -> int:
    with RunningService(cfg) as svc:
        wait_until(lambda: svc.outbox.depth() >= 1, 30, "a stop visit on disk")
        threading.Event().wait(seconds)
    with closing(Outbox(svc.data_dir / "outbox.sqlite", max_bytes=1 << 26)) as box:
        return box.depth()


@pytest.mark.slow
def test_stop_visits_survive_no_coverage_and_a_reboot_then_show_at_the_hub(
    fleet: Fleet, broker: MosquittoProcess, hub: Hub, tmp_path: Path
) -> None:
    feed_dir = write_feed(tmp_path / "gtfs")
    stop = load_feed(feed_dir).stops["S01A"]
    cfg = add_device(
        fleet,
        "bus-01",
        "ridership",
        ridership={
            "vehicle": "7号車",
            "gtfs": str(feed_dir),
            "gps": str(gps_log(tmp_path / "bus.nmea", stop.lat, stop.lon)),
            "tail_s": 0.3,
            "doors": [
                {
                    "name": "front",
                    "source": str(VTEST),
                    "fps": 60,
                    "loop": True,
                    "line": [320, 330, 320, 120],
                    "schedule": [[0.3, 3.0]],
                    "schedule_period_s": 4.0,
                }
            ],
        },
    )
    broker.stop()  # a valley without coverage
    first = run_for(cfg, 4.0)
    assert first >= 1  # on disk, not sent
    held = run_for(cfg, 0.5)  # rebooted, still no coverage: the queue is intact and grows
    assert held > first
    broker.start()
    with RunningService(cfg) as svc:
        wait_until(lambda: svc.outbox.depth() == 0, 30, "queue drained")
    wait_until(
        lambda: len(hub.store.events("bus-01", kinds=["ridership.stop_visit"], limit=None)) >= held,
        20,
        "visits stored",
    )
    visits = [
        e["data"] for e in hub.store.events("bus-01", kinds=["ridership.stop_visit"], limit=None)
    ]
    assert len({v["visit"] for v in visits}) == len(visits)  # exactly once
    assert all(v["stop_id"] == "S01A" and v["trip_id"] for v in visits)
    assert sum(v["boardings"] + v["alightings"] for v in visits) > 0  # people were counted
    assert all(v["vehicle"] == "7号車" for v in visits)

    staff = staff_client(hub, "tanaka", "transit")
    page = staff.get("/ridership").get_data(as_text=True)
    assert "役場前" in page and "Origin–destination estimate" in page
    day = visits[0]["service_date"]
    z = zipfile.ZipFile(io.BytesIO(staff.get(f"/ridership/gtfs-ride.zip?from={day}&to={day}").data))
    rows = list(csv.DictReader(io.StringIO(z.read("board_alight.txt").decode())))
    assert rows and {r["stop_id"] for r in rows} == {"S01A"}
    bad = staff.post("/ridership/factors", {"vehicle": "7号車", "board": "x", "alight": "1"})
    assert (
        "must be numbers" in staff.get("/ridership").get_data(as_text=True)
        and bad.status_code == 302
    )
    staff.post(
        "/ridership/factors",
        {"vehicle": "7号車", "board": "1.1", "alight": "1.0", "note": "ride check"},
    )
    assert data.get_factors(hub.store)["7号車"]["set_by"] == "tanaka"
    assert "ridership.factors" in {a["action"] for a in Accounts(hub.store).audit_log()}
    # a wildlife-only member of staff may not see ridership
    assert staff_client(hub, "suzuki", "wildlife").get("/ridership").status_code == 403
