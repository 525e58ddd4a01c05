"""`mimamori hub`: ingest plus the staff web pages, in one process; `mimamori hub ingest
--worker K`: one of ``[ingest] workers`` extra processes that take the events."""

from __future__ import annotations

import argparse
import functools
import getpass
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import sdnotify
import sqlalchemy as sa
from flask import Flask

from mimamori.edge.webserver import WebServer
from mimamori.hub import backup, clock, migrations
from mimamori.hub.alerts import Alerts
from mimamori.hub.auth import ROLES, Accounts
from mimamori.hub.config import EXIT_BAD_CONFIG, HubConfig, load_hub_config
from mimamori.hub.counter.calls import CallBook
from mimamori.hub.counter.relay import Relay
from mimamori.hub.errors import HubConfigError, HubError
from mimamori.hub.ingest import Ingest
from mimamori.hub.model_server import ModelServer
from mimamori.hub.rollouts import Rollouts
from mimamori.hub.roster import Roster
from mimamori.hub.store import Store
from mimamori.hub.web import create_app

log = logging.getLogger(__name__)

B = TypeVar("B")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "hub",
        help="run the city-hall hub (ingest + staff pages)",
        description="Subscribe to the fleet's MQTT topics, store what arrives (SQLite or "
        "PostgreSQL), and serve the staff web pages. Exits 78 on a bad config or on a "
        "database whose schema is behind this release (see `mimamori hub db --help`).",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=Path("/etc/mimamori/hub.toml"),
        help="hub TOML file (default: %(default)s; `mimamori provision init` "
        "writes FLEET/hub/hub.toml)",
    )
    p.add_argument(
        "--no-web",
        action="store_true",
        help="do not serve the staff pages (extra ingest processes: `mimamori hub ingest`)",
    )
    p.set_defaults(func=run)
    hsub = p.add_subparsers(dest="hub_command", metavar="ACTION")
    worker = hsub.add_parser(
        "ingest",
        help="run ingest worker K of [ingest] workers (events, telemetry, replies)",
        description="One of the [ingest] workers processes that split the devices' events, "
        "telemetry and command replies (MQTT shared subscription) beside `mimamori hub`, "
        "which keeps device state, the pages and the commands. Each worker has its own "
        "persistent session (client id CLIENT_ID-K): restarted with the same K it gets what "
        "the broker kept for it. Exits 78 on a bad config or a K outside 1..workers.",
    )
    worker.add_argument("--worker", type=int, required=True, metavar="K", help="1..workers")
    worker.add_argument(
        "--retire",
        action="store_true",
        help="after lowering [ingest] workers below K: store what the broker still holds "
        "for worker K, then end its session (else the broker keeps giving it a share)",
    )
    config_option(worker)
    worker.set_defaults(func=run_worker)
    add = hsub.add_parser(
        "add-user",
        help="create a staff account (or reset its password and role)",
        description="Create or update a staff account for the hub's web pages. Roles: admin "
        "(fleet, config, commands, users), wildlife, transit, counter. The password is read "
        "from --password-file or asked for twice.",
    )
    add.add_argument("name", help="user name, e.g. tanaka")
    config_option(add)
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--password-file", type=Path, help="file holding the password")
    add.set_defaults(func=add_user)
    sub_ = hsub.add_parser(
        "add-subscriber",
        help="send monkey alerts to a hunter or farmer",
        description="Add (or replace) an alert subscriber. URL is any Apprise URL: "
        "mailto://..., ntfy://..., line://..., tgram://..., json://... (webhook). They get one "
        "alert per troop incursion at the cameras they follow, with the snapshot where the "
        'channel carries pictures, and an "I\'m on it" link.',
    )
    sub_.add_argument("name", help="who, e.g. 'Yamada (hunter)'")
    sub_.add_argument("url", help="Apprise notification URL")
    sub_.add_argument(
        "--cameras", default="*", help="comma-separated device ids to follow (default: all)"
    )
    sub_.add_argument("--quiet", help="quiet hours, local time, e.g. 22-5")
    sub_.add_argument(
        "--duty",
        type=int,
        default=0,
        help="0: alerted at once (default); N: alerted only if nobody has taken "
        "the incursion after N x 10 minutes (the duty roster)",
    )
    config_option(sub_)
    sub_.set_defaults(func=add_subscriber)
    push = hsub.add_parser(
        "push-model",
        help="send a signed model update to a device",
        description="Publish a model-update job for DEVICE: the model file and the manifest "
        "signed on the admin machine (`mimamori provision sign-model`). With a model server "
        "([models] in hub.toml) the hub keeps the file and the job carries its URL, which only "
        "DEVICE may fetch; the Models page then shows the job, the self-test and the first "
        "hour of telemetry, and pushes the model to the other devices of the role. Without "
        "one, the model travels inline (up to about 1.5 MB). The device verifies signature, "
        "hash, version and expiry, installs, self-tests, and reports the job's state.",
    )
    push.add_argument("device", help="device id")
    push.add_argument("model", type=Path, help="the .onnx file")
    push.add_argument(
        "--manifest", type=Path, help="signed manifest (default: MODEL.manifest.json)"
    )
    config_option(push)
    push.set_defaults(func=push_model)
    register_db(hsub)


def register_db(hsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`mimamori hub db ...`, `hub backup` and `hub restore`."""
    db = hsub.add_parser(
        "db",
        help="the database's schema: upgrade, current, stamp",
        description="The hub's tables change through migrations (Alembic, shipped with "
        "mimamori). A brand-new empty database gets the schema when the hub starts; after "
        "installing a newer mimamori the hub refuses to start until `db upgrade` has run.",
    )
    dsub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dsub.add_parser(
        "upgrade",
        help="bring the database's schema to this release (back up first)",
        description="Apply every migration the database lacks, printing each one. Stop the "
        "hub and run `mimamori hub backup` first.",
    )
    config_option(up)
    up.set_defaults(func=db_upgrade)
    cur = dsub.add_parser(
        "current",
        help="print the database's schema revision and this release's",
        description="Print the database's schema revision, and whether it is this release's "
        "(head).",
    )
    config_option(cur)
    cur.set_defaults(func=db_current)
    st = dsub.add_parser(
        "stamp",
        help="mark a database made before migrations existed",
        description=f"A database made by mimamori before migrations existed has the tables "
        f"but no schema revision. This checks its tables and columns against revision "
        f"{migrations.BASELINE} (what those releases made) and, if they match, records that "
        "revision; then run `mimamori hub db upgrade`.",
    )
    config_option(st)
    st.set_defaults(func=db_stamp)
    bk = hsub.add_parser(
        "backup",
        help="copy the database to a file, safe while the hub runs",
        description="SQLite: a consistent copy by the online backup API while ingest keeps "
        "writing. PostgreSQL: `pg_dump -Fc` (the PostgreSQL client tools must be on PATH). "
        "Restore it with `mimamori hub restore`.",
    )
    bk.add_argument(
        "out", type=Path, metavar="OUT", help="backup file to write, e.g. hub-2025-06-01.db"
    )
    config_option(bk)
    bk.set_defaults(func=backup_db)
    rs = hsub.add_parser(
        "restore",
        help="replace the database by a backup (hub stopped)",
        description="Copy a backup made by `mimamori hub backup` into the configured "
        "database (PostgreSQL: `pg_restore`). Stop the hub first. A database that holds data "
        "is not overwritten unless --force. A backup from an older release needs "
        "`mimamori hub db upgrade` afterwards.",
    )
    rs.add_argument("src", type=Path, metavar="IN", help="backup file to restore")
    rs.add_argument("--force", action="store_true", help="overwrite a database that holds data")
    config_option(rs)
    rs.set_defaults(func=restore_db)


@dataclass
class Hub:
    cfg: HubConfig
    store: Store
    ingest: Ingest
    app: Flask
    alerts: Alerts
    relay: Relay
    rollouts: Rollouts | None = None
    _server: WebServer | None = field(default=None, repr=False)
    _models: ModelServer | None = field(default=None, repr=False)

    def _model_target(self, job_id: str) -> tuple[str, Path] | None:
        """A job's device and file, for the model server, while that device is in the roster:
        a device revoked after its job was sent fetches nothing more (its certificate still
        verifies against the fleet CA; the roster is what the hub trusts)."""
        assert self.rollouts is not None
        found = self.rollouts.target(job_id)
        if found is not None and self.ingest.roster.get(found[0]) is None:
            log.warning("model server: %s is revoked or not in the roster", found[0])
            return None
        return found

    def start(self, web: bool = True) -> Hub:
        self.ingest.start()
        self.relay.start()
        if self.cfg.models is not None and self.rollouts is not None:
            try:
                self._models = ModelServer(self.cfg.models, self._model_target).start()
            except OSError as e:  # ingest and alarms go on; model updates wait for a fix
                log.error("model server not started on port %d: %s", self.cfg.models.port, e)
        if web:
            self._server = WebServer(
                self.app,
                host=self.cfg.web.bind,
                port=self.cfg.web.port,
                threads=32,  # each staff console long-polls two views and the voice
                name="mimamori",
            ).start()
            log.info("staff pages on http://%s:%d/", self.cfg.web.bind, self.cfg.web.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        if self._models is not None:
            self._models.stop()
        self.relay.stop()
        self.ingest.stop()
        self.alerts.close()
        self.store.close()


def secret_key(path: Path) -> bytes:
    """The session-signing key, made once and kept (mode 0600)."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip().encode()


@dataclass
class Worker:
    """Ingest worker K: its share of the events, and the monkey alerts they raise."""

    store: Store
    ingest: Ingest
    alerts: Alerts

    def start(self) -> Worker:
        self.ingest.start()
        return self

    def stop(self) -> None:
        self.ingest.stop()
        self.close()

    def retire(self) -> int:
        """``Ingest.retire``: the events it stored."""
        try:
            return self.ingest.retire()
        finally:
            self.close()

    def close(self) -> None:
        self.alerts.close()
        self.store.close()


def _alerts(cfg: HubConfig, store: Store, secret: bytes) -> Alerts:
    return Alerts(
        store,
        secret=secret,
        public_url=cfg.web.public_url or f"http://{cfg.web.bind}:{cfg.web.port}",
        areas=cfg.alerts.areas or None,
    )


def build_worker(config: Path, worker: int, retiring: bool = False) -> Worker:
    cfg = load_hub_config(config)
    clock.set_zone(cfg.site.timezone)
    store = Store(cfg.store.url).create()
    try:
        roster = Roster(cfg.fleet.roster_file)
        ingest = Ingest(cfg, store, roster, worker=worker, retiring=retiring)
    except HubConfigError:
        store.close()
        raise
    # the same key as the pages': they check the "I'm on it" links this worker's alerts carry
    alerts = _alerts(cfg, store, secret_key(cfg.web.secret_file))
    ingest.on_wildlife = alerts.handle
    return Worker(store, ingest, alerts)


def build(config: Path) -> Hub:
    cfg = load_hub_config(config)
    clock.set_zone(cfg.site.timezone)
    store = Store(cfg.store.url).create()
    roster = Roster(cfg.fleet.roster_file)
    ingest = Ingest(cfg, store, roster)
    secret = secret_key(cfg.web.secret_file)
    alerts = _alerts(cfg, store, secret)
    ingest.on_wildlife = alerts.handle

    # a hunter is on the way: keep the troop's cameras from scaring it off before they arrive
    def hold_deterrents(cameras: list[str]) -> None:
        for dev in cameras:
            ingest.send_command(dev, "deterrent-hold", {"minutes": 60})

    alerts.on_taken = hold_deterrents
    accounts = Accounts(store)
    rollouts = Rollouts(store, cfg.models) if cfg.models else None
    relay = Relay(
        cfg,
        CallBook(store),
        ingest.send_command,
        lambda user, action, target, detail: accounts.record(user, action, target, detail),
        roster=roster,
    )
    app = create_app(
        store,
        ingest,
        secret,
        secure_cookies=cfg.web.secure_cookies,
        alerts=alerts,
        relay=relay,
        gtfs=cfg.ridership.gtfs,
        rollouts=rollouts,
        roster=roster,
    )
    return Hub(cfg, store, ingest, app, alerts, relay, rollouts)


def config_option(p: argparse.ArgumentParser) -> None:
    """`--config` after the action too; without it the `mimamori hub --config` value stands."""
    p.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="hub TOML file (as for `mimamori hub`)",
    )


def reports_errors(
    handler: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """One `error: ...` line: exit 78 for a bad hub config, 1 for anything else wrong."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except HubConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_BAD_CONFIG
        except (HubError, OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except sa.exc.OperationalError as e:  # the database could not be opened or reached
            print(f"error: the database of {args.config} ([store] url): {e.orig}", file=sys.stderr)
            return 1

    return run


def parse_quiet(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        a, b = (int(x) for x in text.split("-"))
    except ValueError:
        a = b = -1
    if not (0 <= a < 24 and 0 <= b < 24):
        raise ValueError(f"--quiet {text!r}: expected HOUR-HOUR, e.g. 22-5")
    return a, b


@reports_errors
def add_user(args: argparse.Namespace) -> int:
    cfg = load_hub_config(args.config)
    if args.password_file:
        password = args.password_file.read_text().strip()
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise ValueError("the passwords differ")
    store = Store(cfg.store.url).create()
    try:
        accounts = Accounts(store)
        accounts.add(args.name, password, args.role)
        accounts.record(getpass.getuser(), "user.add", args.name, f"role {args.role}", "cli")
    finally:
        store.close()
    print(f"staff account {args.name} ({args.role}) saved")
    return 0


@reports_errors
def add_subscriber(args: argparse.Namespace) -> int:
    quiet = parse_quiet(args.quiet)
    cfg = load_hub_config(args.config)
    store = Store(cfg.store.url).create()
    alerts = Alerts(store, public_url="", secret=b"")  # only the subscriber table is touched
    try:
        alerts.add_subscriber(args.name, args.url, args.cameras, quiet, args.duty)
    finally:
        alerts.close()
        store.close()
    print(f"subscriber {args.name} added (cameras: {args.cameras})")
    return 0


@reports_errors
def push_model(args: argparse.Namespace) -> int:
    from mimamori.hub import jobs

    manifest = args.manifest or args.model.with_name(args.model.name + ".manifest.json")
    cfg = load_hub_config(args.config)
    signed = jobs.read_signed(manifest)
    if cfg.models is None:
        job = jobs.model_job(args.model.read_bytes(), signed)
    else:
        role = Roster(cfg.fleet.roster_file).role(args.device)
        if role is None:
            raise HubError(f"{args.device} is not in the fleet roster (or is revoked)")
        store = Store(cfg.store.url).create()
        try:
            rollouts = Rollouts(store, cfg.models)
            job = rollouts.job(rollouts.add(args.model, signed, role, args.device), args.device)
        finally:
            store.close()
    jobs.publish(cfg, args.device, job)
    print(f"job {job.job_id} sent to {args.device}")
    if cfg.models is not None:
        print("watch it on the Models page, then push it to the other devices from there")
    return 0


@reports_errors
def db_upgrade(args: argparse.Namespace) -> int:
    store = Store(load_hub_config(args.config).store.url)
    try:
        before = migrations.current(store.engine)
        print(
            f"{migrations.where(store.engine)}: at {before or 'no revision'}, upgrading to {migrations.head()}"
        )
        migrations.upgrade(store.engine, progress=lambda line: print(f"applied {line}"))
        print(f"at {migrations.current(store.engine)} (head)")
    finally:
        store.close()
    return 0


@reports_errors
def db_current(args: argparse.Namespace) -> int:
    store = Store(load_hub_config(args.config).store.url)
    try:
        revision, head = migrations.current(store.engine), migrations.head()
    finally:
        store.close()
    state = "head" if revision == head else f"this release needs {head}"
    print(f"{revision or 'none'} ({state})")
    return 0


@reports_errors
def db_stamp(args: argparse.Namespace) -> int:
    store = Store(load_hub_config(args.config).store.url)
    try:
        migrations.stamp(store.engine)
    finally:
        store.close()
    print(
        f"tables match; marked as revision {migrations.BASELINE}: now run "
        f"`mimamori hub db upgrade --config {args.config}`"
    )
    return 0


@reports_errors
def backup_db(args: argparse.Namespace) -> int:
    backup.backup(load_hub_config(args.config).store.url, args.out)
    return 0


@reports_errors
def restore_db(args: argparse.Namespace) -> int:
    backup.restore(load_hub_config(args.config).store.url, args.src, force=args.force)
    return 0


def built(make: Callable[[], B], config: Path) -> B | None:
    """What ``make`` builds, or None once a bad config or an old schema is logged."""
    try:
        return make()
    except HubConfigError as e:
        log.error("bad config %s", e)
    except migrations.SchemaError as e:  # not worth a restart either: the unit prevents 78
        log.error("%s (mimamori hub db %s --config %s)", e, e.action, config)
    return None


def run(args: argparse.Namespace) -> int:
    hub = built(lambda: build(args.config), args.config)
    if hub is None:
        return EXIT_BAD_CONFIG
    web = not args.no_web
    # escalations only here: one process walks the duty roster, however many workers run
    return serve(hub.ingest, lambda: hub.start(web=web), hub.stop, tick=hub.alerts.escalate)


def run_worker(args: argparse.Namespace) -> int:
    worker = built(lambda: build_worker(args.config, args.worker, args.retire), args.config)
    if worker is None:
        return EXIT_BAD_CONFIG
    if args.retire:
        try:
            stored = worker.retire()
        except HubError as e:
            log.error("%s", e)
            return 1
        print(f"ingest worker {args.worker} retired: {stored} events stored from its session")
        return 0
    return serve(worker.ingest, worker.start, worker.stop)


def serve(
    ingest: Ingest,
    start: Callable[[], object],
    stop: Callable[[], None],
    tick: Callable[[], object] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT under systemd's notify protocol: ``READY=1`` once started,
    ``WATCHDOG=1`` at half of ``WatchdogSec=`` only while ingest's writer is alive, and a
    ``STATUS=`` line; ``tick`` runs at each ping."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stopping.set())
    signal.signal(signal.SIGINT, lambda *a: stopping.set())
    start()
    notifier = sdnotify.SystemdNotifier()
    notifier.notify("READY=1")
    interval = int(os.environ.get("WATCHDOG_USEC", "10000000")) / 2e6
    try:
        while not stopping.wait(interval):
            if tick is not None:
                tick()
            if ingest.healthy:
                notifier.notify("WATCHDOG=1")
            notifier.notify(
                f"STATUS=broker {'connected' if ingest.connected else 'lost'}, "
                f"{ingest.counters['stored']} events stored"
            )
    finally:
        log.info("stopping")
        notifier.notify("STOPPING=1")
        stop()
    return 0
