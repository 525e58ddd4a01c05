"""Disk full on the device's data dir (a 16 MB tmpfs in a mount namespace of the test's own)."""

from __future__ import annotations

import shutil

import pytest

from mimamori.hub.cli import Hub
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import add_device
from tests.mqtt_probe import wait_until
from tests.reliability.conftest import DeviceScript, report


def test_a_full_disk_drops_low_priority_first_keeps_alarms_and_recovers(
    fleet: Fleet, broker: MosquittoProcess, hub: Hub
) -> None:
    if shutil.which("unshare") is None:
        pytest.fail("needs unshare (util-linux) for a private tmpfs")
    cfg = add_device(fleet, "field-01")
    data = fleet.root / "devices" / "field-01" / "data"
    data.mkdir(parents=True, exist_ok=True)
    broker.kill()  # offline, so everything recorded stays on the device's small disk
    script = 'mount -t tmpfs -o size=16m tmpfs "$0" && exec "$@"'
    device = DeviceScript(
        "disk_device", str(cfg), "600", wrap=("unshare", "-rm", "sh", "-c", script, str(data))
    )
    try:
        full = device.answer()
        space = device.answer("space")
        broker.start()
        drained = device.answer("drain")
    finally:
        device.close()
    assert full["alive"] and space["alive"] and drained["alive"], "the service died"
    assert full["disk_full"], "the disk never filled"
    disk_errors = [e for e in full["errors"] if "disk is full" in e]
    assert len(disk_errors) == 1, f"expected one clear error, got {full['errors'][:5]}"
    assert not space["disk_full"] and space["held"] == 0, "did not recover when space returned"
    assert space["stored"] == {"LOW": 360 - 60, "NORMAL": 60 - 1, "ALARM": 1}
    assert drained["drained"]

    def last_recorded_at_hub() -> bool:  # the alarm recorded last, after space returned
        return any(
            e["data"]["message"].startswith("space") and e["data"]["message"].endswith("ALARM")
            for e in hub.store.events("field-01", limit=1000)
        )

    wait_until(last_recorded_at_hub, 15, "the hub stored what the device drained")
    wait_until(lambda: hub.ingest._queue.empty(), 10, "ingest idle")
    events = hub.store.events("field-01", limit=100_000)

    def kept(day: str, prio: str) -> int:
        return sum(
            e["data"]["message"].startswith(day) and e["data"]["message"].endswith(prio)
            for e in events
        )

    assert kept("a", "ALARM") == kept("b", "ALARM") == 24, "an alarm was lost to the full disk"
    assert kept("space", "ALARM") == 1
    assert full["stored"]["NORMAL"] > 0, "new normal events should displace old low ones"
    # the lowest priority went first: a smaller share of low rows survived than of normal ones
    low_kept = (kept("a", "LOW") + kept("b", "LOW")) / (2 * 24 * 300)
    normal_kept = (kept("a", "NORMAL") + kept("b", "NORMAL")) / (2 * 24 * 59)
    assert low_kept < normal_kept, (low_kept, normal_kept)
    report(
        "disk full",
        "device data dir on a 16 MB tmpfs filled to 600 kB free while offline, after a day recorded",
        sent=2 * 24 * 360 + 360,
        stored=len(events),
        lost=0,
        kept_alarms=kept("a", "ALARM") + kept("b", "ALARM") + kept("space", "ALARM"),
        kept_low_pct=round(low_kept * 100, 1),
        kept_normal_pct=round(normal_kept * 100, 1),
        errors_logged=len(disk_errors),
        peak_rss_mb=round(drained["rss_mb"], 1),
    )
