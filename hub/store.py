"""The hub's store: SQLAlchemy Core on SQLite (default, WAL) or PostgreSQL.

Events are exactly-once: ``UNIQUE(device, event_id)`` with ``INSERT ... ON CONFLICT DO
NOTHING``, so whichever hub process receives a redelivered event, it is stored once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import SchemaItem

from mimamori.edge import contract
from mimamori.hub import migrations

log = logging.getLogger(__name__)

metadata = sa.MetaData()
TS = sa.DateTime(timezone=True)


def table(name: str, *columns: SchemaItem) -> sa.Table:
    """A hub table, declared on the one ``metadata`` that the migrations
    (``hub/migrations/versions``) must match: the store's own, and those of accounts, alerts,
    the counter and ridership (listed in ``hub.migrations.TABLE_MODULES``)."""
    return sa.Table(name, metadata, *columns)


def pk() -> sa.Column[int]:
    """An auto-increment surrogate key: BIGINT on PostgreSQL, SQLite's rowid alias there."""
    return sa.Column(
        "pk",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


devices = table(
    "devices",
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(20)),
    sa.Column("location", sa.String(200), nullable=False, default=""),
    sa.Column("online", sa.Boolean, nullable=False, default=False),
    sa.Column("bdseq", sa.BigInteger, nullable=False, default=-1),
    sa.Column("since", TS),
    sa.Column("last_seen", TS),
    sa.Column("birth", sa.JSON),
    sa.Column("tele", sa.JSON),
    sa.Column("tele_at", TS),
    sa.Column("reported", sa.JSON),
    sa.Column("desired_version", sa.Integer, nullable=False, default=0),
    sa.Column("desired_config", sa.JSON),
    sa.Column("desired_at", TS),
)

events = table(
    "events",
    pk(),
    sa.Column("device", sa.String(64), nullable=False),
    sa.Column("event_id", sa.String(32), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("prio", sa.SmallInteger, nullable=False),
    sa.Column("hist", sa.Boolean, nullable=False),
    sa.Column("created", TS, nullable=False),
    sa.Column("received", TS, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.UniqueConstraint("device", "event_id", name="events_device_event_id"),
    sa.Index("events_device_seq", "device", "seq"),
    sa.Index("events_device_pk", "device", "pk"),  # a device's newest events
    sa.Index("events_kind_created", "kind", "created"),
)

telemetry = table(
    "telemetry",
    pk(),
    sa.Column("device", sa.String(64), nullable=False, index=True),
    sa.Column("ts", TS, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
)

replies = table(
    "command_replies",
    sa.Column("corr", sa.String(64), primary_key=True),
    sa.Column("device", sa.String(64), nullable=False, index=True),
    sa.Column("name", sa.String(32), nullable=False),
    sa.Column("args", sa.JSON),
    sa.Column("sent", TS, nullable=False),
    sa.Column("replied", TS),
    sa.Column("ok", sa.Boolean),
    sa.Column("result", sa.JSON),
    sa.Column("error", sa.Text),
)

jobs = table(
    "job_status",
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("updated", TS, nullable=False),
)

rejects = table(
    "ingest_rejects",
    sa.Column("reason", sa.String(64), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)

reject_log = table(
    "ingest_reject_log",
    pk(),
    sa.Column("at", TS, nullable=False),
    sa.Column("topic", sa.String(300), nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)

REJECT_LOG_KEEP = 200
TELEMETRY_KEEP = 500  # per device


def utc(ts: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: they are UTC."""
    if ts is None:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def with_utc(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A row as a dict, its datetimes in UTC."""
    return {k: utc(v) if isinstance(v, datetime) else v for k, v in row.items()}


def fetch_all(engine: Engine, query: sa.Select[Any]) -> list[dict[str, Any]]:
    """Every row ``query`` selects, as dicts with their datetimes in UTC.

    The one way hub code reads rows (the store, accounts, alerts, the counter's records)."""
    with engine.connect() as conn:
        return [with_utc(r) for r in conn.execute(query).mappings()]


def fetch_one(engine: Engine, query: sa.Select[Any]) -> dict[str, Any] | None:
    """The first row ``query`` selects, as ``fetch_all`` gives it, or None."""
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return with_utc(row) if row else None


@dataclass(frozen=True)
class Message:
    """One validated message from the broker, as ingest hands it to the store."""

    topic: contract.Topic
    payload: contract.Payload
    received: datetime


@dataclass
class BatchResult:
    new: int = 0
    duplicates: int = 0
    stale_wills: int = 0


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = sa.create_engine(url, future=True, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._known: set[str] = set()  # device rows known to exist
        self._insert = (
            postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        )

    def create(self) -> Store:
        """Make ready: a brand-new database gets the schema (every migration); one whose
        schema is behind the code raises ``hub.migrations.SchemaError`` naming the command
        that upgrades it."""
        migrations.ensure(self.engine)
        return self

    def close(self) -> None:
        self.engine.dispose()

    # -- writing -------------------------------------------------------------------------

    def apply(self, batch: Sequence[Message]) -> BatchResult:
        """Store a batch in one transaction."""
        result = BatchResult()
        if not batch:
            return result
        with self.engine.begin() as conn:
            devs = sorted({m.topic.dev for m in batch})
            conn.execute(
                self._insert(devices).on_conflict_do_nothing(),
                [
                    {"id": d, "location": "", "online": False, "bdseq": -1, "desired_version": 0}
                    for d in devs
                ],
            )
            stored = datetime.now(UTC)  # events record when they were stored
            rows = [self._event_row(m, stored) for m in batch if m.topic.channel == "event"]
            if rows:
                stmt = self._insert(events).on_conflict_do_nothing(
                    index_elements=["device", "event_id"]
                )
                # conflicting rows return nothing: what comes back is what was new
                new = len(conn.execute(stmt.returning(events.c.pk), rows).fetchall())
                result.new += new
                result.duplicates += len(rows) - new
            last_seen: dict[str, datetime] = {}
            for m in batch:
                last_seen[m.topic.dev] = max(m.received, last_seen.get(m.topic.dev, m.received))
                if m.topic.channel != "event" and self._apply_one(conn, m) == "stale":
                    result.stale_wills += 1
            conn.execute(
                devices.update()
                .where(devices.c.id == sa.bindparam("dev"))
                .values(last_seen=sa.bindparam("seen")),
                [{"dev": d, "seen": ts} for d, ts in last_seen.items()],
            )
        self._known.update(last_seen)
        return result

    @staticmethod
    def _event_row(m: Message, stored: datetime) -> dict[str, Any]:
        p = m.payload
        assert isinstance(p, contract.EventPayload)
        return {
            "device": m.topic.dev,
            "event_id": p.id,
            "seq": p.seq,
            "kind": p.kind,
            "prio": int(p.prio),
            "hist": p.hist,
            "created": p.created,
            "received": stored,
            "data": p.data,
        }

    def _apply_one(self, conn: Connection, m: Message) -> str:
        p, dev, now = m.payload, m.topic.dev, m.received
        where = devices.c.id == dev
        if isinstance(p, contract.StatePayload):
            row = conn.execute(sa.select(devices.c.online, devices.c.bdseq).where(where)).one()
            if p.online:  # a birth always counts, even with a lower bdseq (re-imaged device)
                values: dict[str, Any] = {"online": True, "bdseq": p.bdseq}
                if not row.online:
                    values["since"] = now
                conn.execute(devices.update().where(where).values(**values))
                return "online"
            if p.bdseq < row.bdseq:
                log.info("ignored stale will of %s (bdseq %d < %d)", dev, p.bdseq, row.bdseq)
                return "stale"
            if row.online or row.bdseq != p.bdseq:
                conn.execute(
                    devices.update().where(where).values(online=False, since=now, bdseq=p.bdseq)
                )
            return "offline"
        if isinstance(p, contract.BirthPayload):
            conn.execute(
                devices.update()
                .where(where)
                .values(role=p.role, location=p.location, birth=p.model_dump(mode="json"))
            )
        elif isinstance(p, contract.TelePayload):
            data = p.model_dump(mode="json")
            conn.execute(devices.update().where(where).values(tele=data, tele_at=p.ts))
            conn.execute(telemetry.insert().values(device=dev, ts=p.ts, data=data))
            old = (
                sa.select(telemetry.c.pk)
                .where(telemetry.c.device == dev)
                .order_by(telemetry.c.pk.desc())
                .offset(TELEMETRY_KEEP)
                .limit(1)
                .scalar_subquery()
            )
            conn.execute(telemetry.delete().where(telemetry.c.device == dev, telemetry.c.pk <= old))
        elif isinstance(p, contract.TwinReported):
            conn.execute(devices.update().where(where).values(reported=p.model_dump(mode="json")))
        elif isinstance(p, contract.CommandReply):
            corr = m.topic.rest  # ingest puts the correlation id here when present
            conn.execute(
                replies.update()
                .where(replies.c.corr == corr, replies.c.device == dev)  # only its own command
                .values(replied=now, ok=p.ok, result=p.result, error=p.error)
            )
        elif isinstance(p, contract.JobStatus):
            job_id = m.topic.rest.split("/")[0]
            stmt = self._insert(jobs).values(
                device=dev, job_id=job_id, status=p.status, reason=p.reason, updated=now
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["device", "job_id"],
                    set_={"status": p.status, "reason": p.reason, "updated": now},
                )
            )
        return "ok"

    def reject(self, topic: str, reason: str, detail: str) -> None:
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            stmt = self._insert(rejects).values(reason=reason, count=1)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["reason"], set_={"count": rejects.c.count + 1}
                )
            )
            conn.execute(
                reject_log.insert().values(
                    at=now, topic=topic[:300], reason=reason, detail=detail[:2000]
                )
            )
            cutoff = (
                sa.select(reject_log.c.pk)
                .order_by(reject_log.c.pk.desc())
                .offset(REJECT_LOG_KEEP)
                .limit(1)
                .scalar_subquery()
            )
            conn.execute(reject_log.delete().where(reject_log.c.pk <= cutoff))

    def set_desired(self, dev: str, config: dict[str, Any]) -> int:
        """Record a new desired config for ``dev``; return its version."""
        with self.engine.begin() as conn:
            conn.execute(
                self._insert(devices).on_conflict_do_nothing(),
                [{"id": dev, "location": "", "online": False, "bdseq": -1, "desired_version": 0}],
            )
            version = (
                int(
                    conn.execute(
                        sa.select(devices.c.desired_version).where(devices.c.id == dev)
                    ).scalar_one()
                )
                + 1
            )
            conn.execute(
                devices.update()
                .where(devices.c.id == dev)
                .values(
                    desired_version=version, desired_config=config, desired_at=datetime.now(UTC)
                )
            )
        return version

    def command_sent(self, corr: str, dev: str, name: str, args: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                replies.insert().values(
                    corr=corr, device=dev, name=name, args=args, sent=datetime.now(UTC)
                )
            )

    # -- reading -------------------------------------------------------------------------

    def devices(self) -> list[dict[str, Any]]:
        return fetch_all(self.engine, sa.select(devices).order_by(devices.c.id))

    def device(self, dev: str) -> dict[str, Any] | None:
        return fetch_one(self.engine, sa.select(devices).where(devices.c.id == dev))

    def events(
        self,
        dev: str | None = None,
        limit: int | None = 50,
        kinds: Iterable[str] | None = None,
        created: tuple[datetime, datetime] | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; ``created``: only events the devices recorded in [from, to)."""
        q = sa.select(events).order_by(events.c.pk.desc()).limit(limit)
        if dev is not None:
            q = q.where(events.c.device == dev)
        if kinds is not None:
            q = q.where(events.c.kind.in_(list(kinds)))
        if created is not None:
            q = q.where(events.c.created >= created[0], events.c.created < created[1])
        return fetch_all(self.engine, q)

    def count_events(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one())

    def replies(self, dev: str, limit: int = 10) -> list[dict[str, Any]]:
        q = replies.select().where(replies.c.device == dev).order_by(replies.c.sent.desc())
        return fetch_all(self.engine, q.limit(limit))

    def jobs(self, dev: str) -> list[dict[str, Any]]:
        q = jobs.select().where(jobs.c.device == dev).order_by(jobs.c.updated.desc())
        return fetch_all(self.engine, q)

    def reject_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {reason: int(n) for reason, n in conn.execute(sa.select(rejects))}

    def recent_rejects(self, limit: int = 50) -> list[dict[str, Any]]:
        return fetch_all(
            self.engine, reject_log.select().order_by(reject_log.c.pk.desc()).limit(limit)
        )


def _sqlite_pragmas(dbapi_conn: Any, record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()
