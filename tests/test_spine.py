"""The spine end to end: device service → outbox → Mosquitto → hub ingest → store."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import pytest

from mimamori.edge.service import Service
from mimamori.hub.cli import Hub
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import FAST_LINK, add_device, stored_events
from tests.edge.test_device_process import DeviceProcess
from tests.mqtt_probe import wait_until
from tests.running import RunningService


@pytest.fixture
def service(fleet: Fleet, broker: MosquittoProcess) -> Iterator[Service]:
    with RunningService(add_device(fleet, "field-01", outbox={"inflight": 50})) as svc:
        yield svc


def online(hub: Hub, dev: str) -> bool | None:
    d = hub.store.device(dev)
    return None if d is None else bool(d["online"])


@pytest.mark.slow  # about 11 s: the default run keeps the smaller spine tests
def test_2000_events_through_3_broker_restarts_stored_exactly_once(
    service: Service, hub: Hub, broker: MosquittoProcess
) -> None:
    wait_until(lambda: service.link.hub_online, 15, "device sees the hub")
    ids: list[str] = []
    done = threading.Event()
    restarted = {500: threading.Event(), 1000: threading.Event(), 1500: threading.Event()}

    def produce() -> None:
        for i in range(2000):
            ids.append(service.emit("device.notice", {"level": "info", "message": f"e{i}"}).id)
            if i in restarted:  # each restart falls inside production, however slow the hub
                restarted[i].wait(60)
            elif i % 50 == 0:
                time.sleep(0.05)
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    for threshold, at in zip((300, 800, 1300), restarted, strict=True):
        wait_until(lambda t=threshold: hub.store.count_events() >= t, 30, f"{threshold} stored")
        assert not done.is_set()
        broker.restart()  # clean restart: queued messages persist
        restarted[at].set()
    producer.join(60)
    assert done.is_set()
    wait_until(lambda: hub.store.count_events() >= 2000, 60, "all 2000 stored")
    stored = stored_events(hub.store, "field-01")
    assert len(stored) == 2000  # exactly once: no duplicates survive the unique key
    assert {e for e, _ in stored} == set(ids)
    seqs = [s for _, s in stored]
    assert seqs == sorted(seqs)  # in seq order per device
    wait_until(lambda: service.outbox.depth() == 0, 20, "outbox empty")


def test_broker_down_events_queue_on_disk_and_arrive_in_order(
    service: Service, hub: Hub, broker: MosquittoProcess
) -> None:
    wait_until(lambda: service.link.hub_online, 15, "device sees the hub")
    broker.stop()
    wait_until(lambda: not service.link.connected, 10, "link down")
    for i in range(500):
        service.emit("device.notice", {"level": "info", "message": f"offline {i}"})
    assert service.outbox.depth() == 500
    broker.start()
    wait_until(lambda: hub.store.count_events() == 500, 30, "backlog stored")
    seqs = [s for _, s in stored_events(hub.store, "field-01")]
    assert seqs == sorted(seqs) == list(range(seqs[0], seqs[0] + 500))
    assert all(e["hist"] for e in hub.store.events("field-01", limit=500))  # marked late


def test_killed_device_shows_offline_at_the_hub_and_back_online(
    fleet: Fleet, broker: MosquittoProcess, hub: Hub
) -> None:
    proc = DeviceProcess(add_device(fleet, "bus-01", "ridership")).start()
    try:
        wait_until(lambda: online(hub, "bus-01"), 20, "online at the hub")
        bdseq = hub.store.device("bus-01")["bdseq"]
        t0 = time.monotonic()
        proc.signal(signal.SIGKILL)
        wait_until(
            lambda: online(hub, "bus-01") is False,
            1.5 * FAST_LINK["keepalive_s"],
            "offline at the hub",
        )
        assert time.monotonic() - t0 <= 1.5 * FAST_LINK["keepalive_s"]
        proc.start()
        wait_until(lambda: online(hub, "bus-01"), 20, "back online")
        assert hub.store.device("bus-01")["bdseq"] > bdseq  # a new session
    finally:
        proc.kill()
