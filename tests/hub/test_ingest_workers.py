"""Several ingest processes: the split between the hub process and its workers (in memory),
and two real workers on PostgreSQL behind a real Mosquitto, one of them SIGKILLed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
import tomli_w

from mimamori.edge import contract
from mimamori.edge.transport_fake import FakeBroker, FakeTransport
from mimamori.hub.config import HubConfig, IngestSection, load_hub_config
from mimamori.hub.errors import HubConfigError
from mimamori.hub.ingest import Ingest
from mimamori.hub.roster import Roster
from mimamori.hub.store import Store
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import device_identity
from tests.mqtt_probe import client, wait_until
from tests.running import killed_after


def notice(seq: int) -> tuple[str, bytes]:
    """An event's id and payload."""
    p = contract.EventPayload(
        id=uuid.uuid4().hex,
        seq=seq,
        kind="device.notice",
        created=contract.utcnow(),
        data={"level": "info", "message": f"n{seq}"},
    )
    return p.id, p.dumps()


# -- the split, on the in-memory transport ------------------------------------------------


@pytest.fixture
def roster(tmp_path: Path) -> Roster:
    path = tmp_path / "devices.json"
    path.write_text('{"devices": {"field-01": {"role": "wildlife"}}}')
    return Roster(path)


def test_workers_take_the_events_and_the_hub_process_the_state(
    store: Store, roster: Roster
) -> None:
    broker = FakeBroker()
    cfg = HubConfig(ingest=IngestSection(workers=2))
    on = partial(FakeTransport, broker)
    hub = Ingest(cfg, store, roster, transport=on).start()
    workers = [Ingest(cfg, store, roster, worker=k, transport=on).start() for k in (1, 2)]
    dev = FakeTransport(broker)
    dev.start()
    state = contract.StatePayload(online=True, bdseq=1).dumps()
    dev.publish(contract.state("field-01"), state, qos=1, retain=True)
    ids = []
    for seq in range(1, 6):
        event_id, payload = notice(seq)
        ids.append(event_id)
        dev.publish(contract.event("field-01", "device.notice"), payload, qos=1)
    # the in-memory broker gives every group member a copy (Mosquitto gives one): the
    # second copy of each event is dropped by the store's unique key
    wait_until(lambda: sum(w.counters["duplicates"] for w in workers) == 5, 5, "both copies")
    assert sum(w.counters["stored"] for w in workers) == 5
    assert sorted(e["event_id"] for e in store.events("field-01")) == sorted(ids)
    assert hub.counters["received"] == 1 and hub.counters["stored"] == 0  # the state only
    assert all(w.counters["received"] == 5 for w in workers)  # no state
    wait_until(lambda: (store.device("field-01") or {}).get("online"), 5, "online")
    # only the hub process speaks for the hub: a worker that dies leaves no "hub offline"
    hub_states = broker.on(contract.HUB_STATE)
    assert [contract.HubState.model_validate_json(m.payload).online for m in hub_states] == [True]
    for w in workers:
        assert isinstance(w.transport, FakeTransport)
        w.transport.drop()
    assert contract.HubState.model_validate_json(broker.retained[contract.HUB_STATE].payload).online
    for running in (hub, *workers):
        running.stop()


def test_each_process_drops_the_filters_that_are_not_its_own(store: Store, roster: Roster) -> None:
    def filters(cfg: HubConfig, worker: int | None) -> tuple[set[str], set[str]]:
        t = Ingest(
            cfg, store, roster, worker=worker, transport=partial(FakeTransport, FakeBroker())
        )
        return {f for f, _ in t.transport.subscriptions}, set(t.transport.unsubscriptions)

    every = set(contract.ingest_subscriptions("hub"))
    shared = {f for f in every if f.startswith("$share/hub/")}
    assert shared and shared != every
    assert filters(HubConfig(), None) == (every, set())
    split = HubConfig(ingest=IngestSection(workers=2))
    # a session kept from a run without workers still holds the shared filters: dropped
    assert filters(split, None) == (every - shared, shared)
    assert filters(split, 2) == (shared, every - shared)


@pytest.mark.parametrize(
    ("workers", "worker", "retiring", "problem"),
    [
        (2, 3, False, "2 allows worker 1 to 2"),
        (0, 1, False, "0 allows worker none"),
        (2, 0, False, "workers are numbered from 1"),
        (2, 2, True, "2 still runs worker 2: lower it before retiring"),
    ],
)
def test_a_worker_outside_the_configured_count_is_refused(
    store: Store, roster: Roster, workers: int, worker: int, retiring: bool, problem: str
) -> None:
    cfg = HubConfig(ingest=IngestSection(workers=workers))
    with pytest.raises(HubConfigError, match=f"ingest.workers: {problem}"):
        Ingest(
            cfg,
            store,
            roster,
            worker=worker,
            retiring=retiring,
            transport=partial(FakeTransport, FakeBroker()),
        )


def test_a_retiring_worker_subscribes_to_nothing_and_drops_every_ingest_filter(
    store: Store, roster: Roster
) -> None:
    cfg = HubConfig(ingest=IngestSection(workers=1))
    t = Ingest(
        cfg, store, roster, worker=2, retiring=True, transport=partial(FakeTransport, FakeBroker())
    ).transport
    assert t.subscriptions == []
    assert t.unsubscriptions == contract.ingest_subscriptions("hub")


def test_workers_need_postgresql(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text('[ingest]\nworkers = 2\n[store]\nurl = "sqlite:///hub.db"\n')
    with pytest.raises(HubConfigError, match="ingest.workers: 2 needs a PostgreSQL store"):
        load_hub_config(path)
    path.write_text('[ingest]\nworkers = 2\n[store]\nurl = "postgresql+psycopg://h/db"\n')
    assert load_hub_config(path).ingest.workers == 2


# -- two real workers on PostgreSQL -------------------------------------------------------

DEVICES = ("field-01", "field-02", "field-03", "field-04")


class Setup:
    """Two configured workers on PostgreSQL, and four devices (their own certificates) to
    publish events; ``workers(k)`` starts ``mimamori hub ingest --worker K``."""

    def __init__(self, fleet: Fleet, broker: MosquittoProcess, url: str, stack: ExitStack):
        self.fleet, self.stack = fleet, stack
        self.config = fleet.hub_config.with_name("hub-workers.toml")
        self.configure(workers=2, url=url)
        Store(url).create().close()  # the hub process makes the schema; none runs here
        self.db = sa.create_engine(url)
        stack.callback(self.db.dispose)
        self.procs: dict[int, subprocess.Popen[str]] = {}
        self.starts: dict[int, int] = {}
        self.sent: list[str] = []
        self.devices: list[tuple[str, mqtt.Client]] = []
        for name in DEVICES:
            fleet.add_device(name, "wildlife")
            c = client(device_identity(fleet, name))
            c.connect(broker.host, broker.port)
            c.loop_start()
            stack.callback(c.disconnect)
            stack.callback(c.loop_stop)
            self.devices.append((name, c))

    def configure(self, workers: int, url: str | None = None) -> None:
        settings = tomllib.loads(
            (self.config if self.config.exists() else self.fleet.hub_config).read_text()
        )
        settings["store"]["url"] = url or settings["store"]["url"]
        settings["ingest"] = {"workers": workers}
        self.config.write_text(tomli_w.dumps(settings))

    def worker(self, k: int, *more: str) -> subprocess.Popen[str]:
        self.starts[k] = self.starts.get(k, 0) + 1
        cmd = [
            sys.executable,
            "-m",
            "mimamori.edge.cli",
            "hub",
            "ingest",
            "--worker",
            str(k),
            *more,
        ]
        proc = subprocess.Popen(
            [*cmd, "--config", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=self.log(k).open("w"),
            text=True,
        )
        self.procs[k] = self.stack.enter_context(killed_after(proc))
        wait_until(lambda: "connected (session present" in self.output(k), 20, f"worker {k}")
        return proc

    def log(self, k: int) -> Path:
        return self.config.parent / f"worker-{k}.{self.starts[k]}.log"

    def output(self, k: int) -> str:
        return self.log(k).read_text()

    def stored(self) -> int:
        with self.db.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one())

    def rows(self) -> list[str]:
        with self.db.connect() as conn:
            return list(conn.execute(sa.text("SELECT event_id FROM events")).scalars())

    def settled(self) -> int:
        """The row count once it stops growing."""
        last = -1
        while last != self.stored():
            last = self.stored()
            time.sleep(1.0)
        return last

    def publish(self, n: int, then: Callable[[], object] | None = None) -> None:
        """``n`` events from each device, QoS 1; ``then`` runs half-way."""
        infos = []
        for seq in range(n):
            for name, c in self.devices:
                event_id, payload = notice(len(self.sent) + 1)
                self.sent.append(event_id)
                infos.append(c.publish(contract.event(name, "device.notice"), payload, qos=1))
            if seq == n // 2 and then is not None:
                then()
        for info in infos:
            info.wait_for_publish(10)


@pytest.fixture
def setup(fleet: Fleet, broker: MosquittoProcess, pg_url: str) -> Iterator[Setup]:
    with ExitStack() as stack:
        yield Setup(fleet, broker, pg_url, stack)


@pytest.mark.postgres
@pytest.mark.slow
def test_two_workers_store_every_event_once_when_one_is_killed_mid_run(setup: Setup) -> None:
    setup.worker(1)
    setup.worker(2)
    # worker 1 dies with messages in flight: SIGKILL, no farewell, nothing acknowledged
    setup.publish(50, then=lambda: setup.procs[1].send_signal(signal.SIGKILL))
    setup.procs[1].wait(10)
    setup.publish(50)  # while it is dead the broker keeps worker 1's share in its session
    assert 0 < setup.settled() < len(setup.sent), "worker 1's share should wait for it"
    setup.worker(1)  # restarted with the same id, as systemd does
    assert "session present: True" in setup.output(1)
    setup.publish(25)
    wait_until(lambda: setup.stored() >= len(setup.sent), 30, "every event stored")
    rows = setup.rows()
    assert len(rows) == len(setup.sent) == 500
    assert sorted(rows) == sorted(setup.sent)  # every event, once


@pytest.mark.postgres
@pytest.mark.slow
def test_a_retired_worker_stores_its_share_and_leaves_the_group(setup: Setup) -> None:
    setup.worker(1)
    setup.worker(2).terminate()  # stopped: its session stays in the group
    setup.procs[2].wait(10)
    setup.publish(10)
    assert 0 < setup.settled() < len(setup.sent), "worker 2's share should wait for it"
    setup.configure(workers=1)
    retire = setup.worker(2, "--retire")
    out, _ = retire.communicate(timeout=60)
    assert retire.returncode == 0, setup.output(2)
    assert "ingest worker 2 retired:" in out and "events stored from its session" in out
    assert setup.stored() == len(setup.sent)
    setup.publish(10)  # worker 1 alone now gets every event: nothing waits for worker 2
    wait_until(lambda: setup.stored() == len(setup.sent) == 80, 20, "worker 1 storing all")
    assert sorted(setup.rows()) == sorted(setup.sent)
