"""Hub ingest with 1, 2 and 4 worker processes on PostgreSQL; a worker SIGKILLed mid-run.

For each worker count N: a fresh broker (the fleet's Mosquitto config: TLS, dynamic security,
the guard plugin), a fresh database on one PostgreSQL server (fsync on), the hub process
(`mimamori hub`: pages, device state, commands) and N `mimamori hub ingest --worker K`
processes with ``[ingest] workers = N``. The workers connect once (their persistent
sessions join the shared subscription) and are stopped; D simulated devices, spread over P
publisher processes, each its own MQTT session and client id, publish E events at QoS 1,
which the broker keeps in the workers' sessions; the workers start again and drain them.

* ingest events/s: stored rows / time from the first row to the last (the broker and
  PostgreSQL included, the publishers not competing for the cores),
* missing (published ids not stored) and duplicates (rows beyond one per id): must be 0 / 0,
* a staff page (the fleet page, D devices, and a device page) fetched with a signed-in
  session while the workers drain, p50 / p95, and again idle.

Then the kill run: 2 workers running while the devices publish; worker 1 is SIGKILLed a
third of the way through and started again with the same id 2 s later (systemd's
``RestartSec=``); every event must be stored once.

Simulated devices connect on the hub's listener with the hub's certificate and their own
client ids: minting 2,000 device certificates (and a dynamic-security client each) takes
minutes and tests the broker's device listener, not ingest. They are written into the roster
the hub checks, as provisioning would.

Usage: python bench/ingest_workers.py [--devices 2000] [--events 40000] [--publishers 10]
       [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from multiprocessing.synchronize import Event
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import requests
import sqlalchemy as sa
import tomli_w
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._fleet import fleet_and_broker  # noqa: E402
from mimamori.edge import contract  # noqa: E402
from mimamori.hub.auth import Accounts  # noqa: E402
from mimamori.hub.store import Store  # noqa: E402
from mimamori.provisioning.fleet import Fleet  # noqa: E402
from tests.postgres import postgres_server  # noqa: E402

PASSWORD = "bench password 1234"


def publisher(
    host: str, port: int, hub_dir: str, devices: list[str], events: int, out: str, go: Event
) -> None:
    """One publisher process: a session per device, then ``events`` events round-robin over
    them at QoS 1; the ids it sent go to ``out``, one per line."""
    clients: list[tuple[str, mqtt.Client]] = []
    for start in range(0, len(devices), 50):  # 50 TLS handshakes at a time, not 500
        batch = []
        for dev in devices[start : start + 50]:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=dev, protocol=mqtt.MQTTv5)
            c.tls_set(f"{hub_dir}/ca.crt", f"{hub_dir}/hub.crt", f"{hub_dir}/hub.key")
            c.max_inflight_messages_set(20)
            c.connect_timeout = 60  # a loaded broker answers slowly; a retry would collide
            c.connect_async(host, port, keepalive=300)
            c.loop_start()
            batch.append((dev, c))
        wait_for(partial(all_connected, [c for _, c in batch]), 120, "device sessions")
        clients += batch
    online = contract.StatePayload(online=True, bdseq=1).dumps()  # as a device's link does
    for info in [c.publish(contract.state(d), online, qos=1, retain=True) for d, c in clients]:
        info.wait_for_publish(60)
    go.wait()
    ids, infos = [], []
    for i in range(events):
        dev, c = clients[i % len(clients)]
        payload = contract.EventPayload(
            id=uuid.uuid4().hex,
            seq=i // len(clients) + 1,
            kind="device.notice",
            created=contract.utcnow(),
            data={"level": "info", "message": "bench"},
        )
        ids.append(f"{dev} {payload.id}")
        infos.append(c.publish(contract.event(dev, "device.notice"), payload.dumps(), qos=1))
    for info in infos:
        info.wait_for_publish(300)
    Path(out).write_text("\n".join(ids) + "\n")
    for _, c in clients:
        c.disconnect()
        c.loop_stop()


def all_connected(clients: list[mqtt.Client]) -> bool:
    return all(c.is_connected() for c in clients)


@dataclass
class Run:
    workers: int
    events: int
    publish_s: float
    ingest_rate: float
    missing: int
    duplicates: int
    busy_ms: dict[str, list[float]]
    idle_ms: dict[str, list[float]]
    #: CPU seconds per 1,000 events while draining: workers, hub process, broker, PostgreSQL
    cpu: dict[str, float] | None = None
    load: float = 0.0
    note: str = ""


class Bench:
    """One run's broker, database, hub process and workers."""

    def __init__(self, args: argparse.Namespace, pg: str, n: int, stack: ExitStack) -> None:
        self.args, self.n, self.stack = args, n, stack
        self.devices = [f"sim-{i:04d}" for i in range(args.devices)]
        self.fleet, broker = fleet_and_broker()
        stack.callback(broker.stop)
        self.broker = broker
        self.root = self.fleet.root
        _write_roster(self.fleet, self.devices)
        self.url = _new_database(pg, f"bench_{n}_{uuid.uuid4().hex[:6]}")
        settings = tomllib.loads(self.fleet.hub_config.read_text())
        settings["store"]["url"] = self.url
        settings["ingest"] = {"workers": n}
        settings["web"]["secure_cookies"] = False  # plain http on loopback
        self.config = self.fleet.hub_config.with_name("hub-bench.toml")
        self.config.write_text(tomli_w.dumps(settings))
        store = Store(self.url).create()
        Accounts(store).add("bench", PASSWORD, "admin")
        store.close()
        self.db = sa.create_engine(self.url)
        stack.callback(self.db.dispose)
        self.web = f"http://127.0.0.1:{settings['web']['port']}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, *cli: str, ready: str) -> None:
        """Start a hub process; return once its log says ``ready``."""
        log = self.root / f"{name}.log"
        before = log.stat().st_size if log.exists() else 0
        proc = subprocess.Popen(
            [sys.executable, "-m", "mimamori.edge.cli", "hub", *cli, "--config", str(self.config)],
            stderr=log.open("ab"),
        )
        self.stack.callback(_ended, proc)
        self.procs[name] = proc
        wait_for(lambda: ready in log.read_text()[before:], 60, f"{name}: {ready}")

    def start_hub(self) -> None:
        self.spawn("hub", ready="hub ingest connected")
        wait_for(lambda: _up(self.web), 30, "the staff pages")

    def start_worker(self, k: int) -> None:
        self.spawn(f"worker-{k}", "ingest", "--worker", str(k), ready="connected (session")

    def stop_worker(self, k: int, sig: int = signal.SIGTERM) -> None:
        proc = self.procs[f"worker-{k}"]
        proc.send_signal(sig)
        proc.wait(30)

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far: the workers, the hub process, the broker, and PostgreSQL
        (the server listening on the run's port and its backends)."""
        port = sa.engine.make_url(self.url).port

        def used(procs: list[psutil.Process]) -> float:
            total = 0.0
            for proc in procs:
                with contextlib.suppress(psutil.NoSuchProcess):
                    t = proc.cpu_times()
                    total += t.user + t.system
            return total

        listen = psutil.net_connections("tcp")
        (pg,) = {c.pid for c in listen if c.laddr.port == port and c.status == "LISTEN"}
        postmaster = psutil.Process(pg)
        workers = [psutil.Process(p.pid) for n, p in self.procs.items() if n != "hub"]
        assert self.broker.proc is not None
        return {
            "workers": used(workers),
            "hub": used([psutil.Process(self.procs["hub"].pid)]),
            "broker": used([psutil.Process(self.broker.proc.pid)]),
            "postgres": used([postmaster, *postmaster.children()]),
        }

    def sessions(self) -> int:
        """Devices whose online state the hub process has stored."""
        with self.db.connect() as c:
            return int(c.execute(sa.text("SELECT count(*) FROM devices")).scalar_one())

    def count(self) -> int:
        with self.db.connect() as c:
            return int(c.execute(sa.text("SELECT count(*) FROM events")).scalar_one())

    def publish(self, during: Iterator[None] | None = None) -> tuple[float, float]:
        """All publishers connect, then publish at once: (when they began, the seconds
        publishing took)."""
        ctx = mp.get_context("spawn")
        go = ctx.Event()
        p = self.args.publishers
        hub_port = self.fleet.settings["broker"]["hub_port"]
        procs = []
        per = self.args.events // p
        for i in range(p):
            devs = self.devices[i::p]
            out = str(self.root / f"sent-{i}.txt")
            args = (self.broker.host, hub_port, str(self.root / "hub"), devs, per, out, go)
            procs.append(ctx.Process(target=publisher, args=args))
        for proc in procs:
            proc.start()
        # every device connected and its online state stored
        wait_for(lambda: self.sessions() >= len(self.devices), 300, "every device connected")
        t0 = time.perf_counter()
        go.set()
        if during is not None:
            for _ in during:
                pass
        for proc in procs:
            proc.join()
            if proc.exitcode:
                raise RuntimeError(f"a publisher failed (exit status {proc.exitcode})")
        return t0, time.perf_counter() - t0

    def sent(self) -> set[tuple[str, str]]:
        """(device, event id) of every event the publishers sent."""
        out: set[tuple[str, str]] = set()
        for f in self.root.glob("sent-*.txt"):
            for line in f.read_text().splitlines():
                dev, event_id = line.split()
                out.add((dev, event_id))
        return out

    def check(self) -> tuple[int, int]:
        """(missing, duplicates) against what the publishers sent."""
        with self.db.connect() as c:
            rows = c.execute(sa.text("SELECT device, event_id FROM events")).all()
        stored = {(r.device, r.event_id) for r in rows}
        return len(self.sent() - stored), len(rows) - len(stored)

    def drain(self, total: int) -> float:
        """Poll until ``total`` rows: rows per second from the first to the last."""
        first = last = None
        start_count = 0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            n, now = self.count(), time.perf_counter()
            if n and first is None:
                first, start_count = now, n
            if n >= total:
                last = now
                break
            time.sleep(0.05)
        if first is None or last is None or last == first:
            return float("nan")
        return (total - start_count) / (last - first)


def page_latency(web: str, stop: threading.Event) -> dict[str, list[float]]:
    """Staff pages fetched one after another with a signed-in session: ms per page."""
    s = requests.Session()
    form = s.get(f"{web}/login", timeout=30).text
    token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    r = s.post(
        f"{web}/login",
        data={"name": "bench", "password": PASSWORD, "csrf_token": token},
        allow_redirects=False,
        timeout=30,
    )
    if r.status_code != 302:
        raise RuntimeError(f"could not sign in: {r.status_code}")
    out: dict[str, list[float]] = {"/": [], "/devices/sim-0001": []}
    while not stop.is_set():
        for path, times in out.items():
            t = time.perf_counter()
            r = s.get(web + path, timeout=60)
            # a failed page counts as infinitely slow
            times.append((time.perf_counter() - t) * 1000 if r.ok else float("inf"))
    return out


def measure_pages(web: str) -> tuple[threading.Event, list[dict[str, list[float]]]]:
    stop, result = threading.Event(), []
    threading.Thread(target=lambda: result.append(page_latency(web, stop)), daemon=True).start()
    return stop, result


def drain_run(args: argparse.Namespace, pg: str, n: int) -> Run:
    with ExitStack() as stack:
        b = Bench(args, pg, n, stack)
        b.start_hub()
        for k in range(1, n + 1):  # the sessions join the group, then wait at the broker
            b.start_worker(k)
            b.stop_worker(k)
        _, publish_s = b.publish()
        total = (args.events // args.publishers) * args.publishers
        print(f"  {n} worker(s): {total} events queued in {publish_s:.1f} s", file=sys.stderr)
        load = os.getloadavg()[0]  # other work on the machine skews every figure
        stop, busy = measure_pages(b.web)
        for k in range(1, n + 1):
            b.start_worker(k)
        before = b.cpu()
        rate = b.drain(total)
        after = b.cpu()
        cpu = {k: (after[k] - before[k]) * 1000 / total for k in after}
        stop.set()
        time.sleep(0.5)
        idle_stop = threading.Event()
        threading.Timer(10, idle_stop.set).start()
        idle = page_latency(b.web, idle_stop)
        missing, dups = b.check()
        return Run(n, total, publish_s, rate, missing, dups, busy[0], idle, cpu, load)


def kill_run(args: argparse.Namespace, pg: str) -> Run:
    with ExitStack() as stack:
        b = Bench(args, pg, 2, stack)
        b.start_hub()
        b.start_worker(1)
        b.start_worker(2)
        total = (args.events // args.publishers) * args.publishers
        note: list[str] = []

        def killer() -> Iterator[None]:
            while b.count() < total // 3:
                time.sleep(0.05)
                yield
            b.stop_worker(1, signal.SIGKILL)
            note.append(f"worker 1 SIGKILLed at {b.count()} rows")
            time.sleep(2)  # RestartSec=2
            b.start_worker(1)
            log = (b.root / "worker-1.log").read_text()
            note.append("restarted: " + log.rsplit("connected (", 1)[1].split(")")[0])

        t0, publish_s = b.publish(during=killer())
        b.drain(total)
        rate = total / (time.perf_counter() - t0)
        missing, dups = b.check()
        return Run(2, total, publish_s, rate, missing, dups, {}, {}, note="; ".join(note))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--events", type=int, default=40_000)
    # paho waits on select(), which takes no file number above 1024: 3 per session, so at
    # most ~300 devices a process
    ap.add_argument("--publishers", type=int, default=10)
    ap.add_argument("--workers", default="1,2,4", help="worker counts to run, e.g. 1,2,4")
    args = ap.parse_args()
    runs: list[Run] = []
    with postgres_server(fsync=True, settings=("max_connections=200",)) as pg:
        for n in (int(x) for x in args.workers.split(",")):
            print(f"run: {n} ingest worker(s)", file=sys.stderr)
            runs.append(drain_run(args, pg, n))
        print("run: 2 workers, worker 1 killed mid-run", file=sys.stderr)
        kill = kill_run(args, pg)
    print(
        f"{args.devices} simulated devices in {args.publishers} publisher processes; "
        f"PostgreSQL; {os.cpu_count()} cores"
    )
    print(f"{'workers':>8}{'events':>8}{'ingest/s':>10}{'missing':>9}{'dups':>6}  page p50/p95 ms")
    for r in runs:
        pages = "  ".join(
            f"{p} {pct(r.busy_ms[p], 50):.0f}/{pct(r.busy_ms[p], 95):.0f} busy, "
            f"{pct(r.idle_ms[p], 50):.0f}/{pct(r.idle_ms[p], 95):.0f} idle"
            for p in r.busy_ms
        )
        print(
            f"{r.workers:>8}{r.events:>8}{r.ingest_rate:>10.0f}{r.missing:>9}{r.duplicates:>6}  "
            + pages
        )
    print("CPU seconds per 1,000 events while draining (load average when the drain began)")
    for r in runs:
        assert r.cpu is not None
        parts = ", ".join(f"{k} {v:.2f}" for k, v in r.cpu.items())
        print(f"{r.workers:>8}  {parts}; total {sum(r.cpu.values()):.2f}  (load {r.load:.1f})")
    print(
        f"kill run: 2 workers, {kill.events} events published live in {kill.publish_s:.1f} s, "
        f"all stored at {kill.ingest_rate:.0f}/s end to end; missing {kill.missing}, "
        f"duplicates {kill.duplicates} ({kill.note})"
    )
    bad = [r for r in (*runs, kill) if r.missing or r.duplicates]
    return 1 if bad else 0


def pct(values: list[float], p: int) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100)[p - 1] if len(values) > 1 else values[0]


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _up(web: str) -> bool:
    try:
        return requests.get(f"{web}/login", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _ended(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _write_roster(fleet: Fleet, devices: list[str]) -> None:
    roster = {d: {"role": "wildlife"} for d in devices}
    (fleet.root / "hub" / "devices.json").write_text(json.dumps({"devices": roster}))


def _new_database(pg: str, name: str) -> str:
    admin = sa.create_engine(pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return pg.rsplit("/", 1)[0] + f"/{name}"


if __name__ == "__main__":
    raise SystemExit(main())
