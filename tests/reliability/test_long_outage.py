"""A long outage: 72 h of events (time compressed) with the broker unreachable."""

from __future__ import annotations

from mimamori.hub.cli import Hub
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import add_device, stored_events
from tests.mqtt_probe import wait_until
from tests.reliability.conftest import DeviceScript, report

HOURS = 72
CAP_MB = 0.5


def test_72_hours_offline_keep_the_cap_and_every_alarm_and_drain_in_order(
    fleet: Fleet, broker: MosquittoProcess, hub: Hub
) -> None:
    cfg = add_device(fleet, "field-01", outbox={"max_mb": CAP_MB, "inflight": 20})
    broker.kill()  # the mobile network is gone for three days
    device = DeviceScript("outage_device", str(cfg), str(HOURS))
    try:
        filled = device.answer()
        assert filled["outbox_bytes"] <= CAP_MB * 1024 * 1024, "outbox over its size cap"
        broker.start()
        drained = device.answer("the broker is back")
    finally:
        device.close()
    assert drained["drained"], "the outbox did not drain"
    assert drained["disconnects"] == 0, "the broker dropped the device while it drained"
    wait_until(lambda: hub.store.count_events() >= filled["outbox_rows"], 60, "all stored")
    events = hub.store.events("field-01", limit=100_000)
    stored = stored_events(hub.store, "field-01")
    seqs = [s for _, s in stored]
    assert seqs == sorted(seqs), "drained out of order"
    alarms = [e for e in events if "ALARM" in e["data"]["message"]]
    normal = [e for e in events if "NORMAL" in e["data"]["message"]]
    low = [e for e in events if " LOW" in e["data"]["message"]]
    assert len(alarms) == filled["filled"]["ALARM"] == HOURS, "an alarm was dropped"
    assert len(stored) == filled["outbox_rows"], "rows kept in the outbox went missing"
    # low-priority rows go first: normal ones are dropped only once no low one is left
    dropped_normal = filled["filled"]["NORMAL"] - len(normal)
    assert len(low) < filled["filled"]["LOW"]
    assert dropped_normal == 0 or len(low) == 0
    report(
        "long outage",
        f"broker unreachable for {HOURS} h of events (time compressed), outbox cap {CAP_MB} MB",
        sent=sum(filled["filled"].values()),
        stored=len(stored),
        lost=0,
        dropped_low=filled["filled"]["LOW"] - len(low),
        dropped_normal=dropped_normal,
        dropped_alarm=HOURS - len(alarms),
        peak_rss_mb=round(drained["rss_mb"], 1),
        worst_latency_s=drained["drain_s"],
    )
