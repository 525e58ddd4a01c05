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

from edge import contract
from edge.transport_fake import FakeBroker, FakeTransport
from hub.config import HubConfig, IngestSection, load_hub_config
from hub.errors import HubConfigError
from hub.ingest import Ingest
from hub.roster import Roster
from hub.store import Store
from provisioning.fleet import Fleet
from provisioning.mosquitto import MosquittoProcess
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
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'hub.db'}").create()
    yield s
    s.close()


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


@pytest.mark.parametrize(("workers", "worker"), [(2, 3), (2, 0), (0, 1)])
def test_a_worker_outside_the_configured_count_is_refused(
    store: Store, roster: Roster, workers: int, worker: int
) -> None:
    cfg = HubConfig(ingest=IngestSection(workers=workers))
    with pytest.raises(HubConfigError, match=f"ingest.workers: {workers} allows worker"):
        Ingest(cfg, store, roster, worker=worker, transport=partial(FakeTransport, FakeBroker()))


def test_workers_need_postgresql(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text('[ingest]\nworkers = 2\n[store]\nurl = "sqlite:///hub.db"\n')
    with pytest.raises(HubConfigError, match="ingest.workers: 2 needs a PostgreSQL store"):
        load_hub_config(path)
    path.write_text('[ingest]\nworkers = 2\n[store]\nurl = "postgresql+psycopg://h/db"\n')
    assert load_hub_config(path).ingest.workers == 2


# -- two real workers on PostgreSQL -------------------------------------------------------

DEVICES = ("field-01", "field-02", "field-03", "field-04")


class Workers:
    """`mimamori hub ingest --worker K` processes, each logging to its own file."""

    def __init__(self, config: Path, stack: ExitStack) -> None:
        self.config, self.stack = config, stack
        self.procs: dict[int, subprocess.Popen[str]] = {}
        self.starts: dict[int, int] = {}

    def log(self, k: int, start: int) -> Path:
        return self.config.parent / f"worker-{k}.{start}.log"

    def start(self, k: int) -> None:
        self.starts[k] = self.starts.get(k, 0) + 1
        cmd = [sys.executable, "-m", "edge.cli", "hub", "ingest", "--worker", str(k)]
        proc = subprocess.Popen(
            [*cmd, "--config", str(self.config)],
            stderr=self.log(k, self.starts[k]).open("w"),
            text=True,
        )
        self.procs[k] = self.stack.enter_context(killed_after(proc))
        wait_until(lambda: "connected (session present" in self.output(k), 20, f"worker {k}")

    def output(self, k: int) -> str:
        return self.log(k, self.starts[k]).read_text()


@pytest.mark.postgres
@pytest.mark.slow
def test_two_workers_store_every_event_once_when_one_is_killed_mid_run(
    fleet: Fleet, broker: MosquittoProcess, pg_url: str
) -> None:
    settings = tomllib.loads(fleet.hub_config.read_text())
    settings["store"]["url"] = pg_url
    settings["ingest"] = {"workers": 2}
    config = fleet.hub_config.with_name("hub-workers.toml")
    config.write_text(tomli_w.dumps(settings))
    for name in DEVICES:
        fleet.add_device(name, "wildlife")
    Store(pg_url).create().close()  # the hub process makes the schema; none runs here
    db = sa.create_engine(pg_url)

    def stored() -> int:
        with db.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one())

    sent: list[str] = []
    with ExitStack() as stack:
        stack.callback(db.dispose)
        workers = Workers(config, stack)
        workers.start(1)
        workers.start(2)
        devices: list[mqtt.Client] = []
        for name in DEVICES:
            c = client(device_identity(fleet, name))
            c.connect(broker.host, broker.port)
            c.loop_start()
            stack.callback(c.disconnect)
            stack.callback(c.loop_stop)
            devices.append(c)

        def publish(n: int, then: Callable[[], object] | None = None) -> None:
            infos = []
            for seq in range(n):
                for name, c in zip(DEVICES, devices, strict=True):
                    event_id, payload = notice(len(sent) + 1)
                    sent.append(event_id)
                    topic = contract.event(name, "device.notice")
                    infos.append(c.publish(topic, payload, qos=1))
                if seq == n // 2 and then is not None:
                    then()
            for info in infos:
                info.wait_for_publish(10)

        # worker 1 dies with messages in flight: SIGKILL, no farewell, nothing acknowledged
        publish(50, then=lambda: workers.procs[1].send_signal(signal.SIGKILL))
        workers.procs[1].wait(10)
        publish(50)  # while it is dead the broker keeps worker 1's share in its session
        settled = -1
        while settled != stored():  # until worker 2 has stored its share
            settled = stored()
            time.sleep(1.0)
        assert 0 < settled < len(sent), "worker 1's share should wait in its session"
        workers.start(1)  # restarted with the same id, as systemd does
        assert "session present: True" in workers.output(1)
        publish(25)
        wait_until(lambda: stored() >= len(sent), 30, "every event stored")
        with db.connect() as conn:
            rows = conn.execute(sa.text("SELECT event_id FROM events")).scalars().all()
    assert len(rows) == len(sent) == 500
    assert sorted(rows) == sorted(sent)  # every event, once
