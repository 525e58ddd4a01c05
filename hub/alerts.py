"""Monkey alerts at the hub: troop incursions, subscribers, delivery through Apprise.

* One **troop incursion** per visit: a ``wildlife.incursion`` from a camera within
  ``MERGE_WINDOW`` of an open troop incursion at another camera joins it (the cameras are kept
  in order: the direction of travel) and sends no second alert. A repeated message (same
  device and incursion id) changes nothing.
* **Subscribers** (hunters, farmers) have an Apprise URL (e-mail, ntfy, LINE, Slack,
  Telegram, webhooks...), the cameras they follow and quiet hours. Each gets one alert per troop
  incursion with the snapshot attached and an "I'm on it" link; taking it tells the others who
  is going.
* An alert held in a device's outbox during a coverage gap says so: "seen 14:02, delivered
  14:31", never presented as live.
* Delivery runs on a small thread pool so a slow mail server never holds up ingest; a
  failed delivery is logged and retried, never dropped silently.
* **A device is not trusted with time or place**: when a monkey was seen is the hub's own
  receive time less the event's ``age_s`` (the device's monotonic clock, bounded), never the
  device's wall clock, so an event "from 2099" cannot hold a troop open; a troop takes in only
  neighbouring cameras (``[alerts] areas`` in hub.toml) seen within ``MERGE_WINDOW`` of its
  last sighting and no longer than ``MAX_TROOP_SPAN`` after it began. Only wildlife-role
  devices reach this module at all (ingest checks the roster).
* The "I'm on it" link expires after ``TAKE_VALID``.
"""

from __future__ import annotations

import base64
import logging
import tempfile
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import apprise
import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeTimedSerializer

from edge import contract
from hub.config import LOCAL
from hub.store import TS, Message, Store, metadata, pk, utc, with_utc

log = logging.getLogger(__name__)

MERGE_WINDOW = timedelta(minutes=5)
#: a troop stops taking in new cameras this long after it began: a new alert goes out
MAX_TROOP_SPAN = timedelta(hours=1)
LATE_AFTER = timedelta(seconds=60)
#: an event older than this by the device's own count is taken as this old (a week of outage)
MAX_AGE = timedelta(days=7)
#: a device wall clock further off than this from the hub's judgement is logged
CLOCK_TOLERANCE = timedelta(minutes=10)
TAKE_VALID = timedelta(hours=24)
#: waits before each retry of a failed delivery
RETRY_DELAYS = (10.0, 60.0, 300.0)

subscribers = sa.Table(
    "alert_subscribers",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("cameras", sa.String(500), nullable=False, default="*"),
    sa.Column("quiet_from", sa.Integer),  # local hour, e.g. 22
    sa.Column("quiet_to", sa.Integer),  # local hour, e.g. 5
    # 0: alerted at once; N: alerted if nobody has taken it after N escalation steps
    sa.Column("duty", sa.Integer, nullable=False, default=0),
)

troops = sa.Table(
    "troop_incursions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("cameras", sa.JSON, nullable=False),  # device ids in the order they saw it
    sa.Column("started", TS, nullable=False),
    sa.Column("last_seen", TS, nullable=False),
    sa.Column("ended", TS),
    sa.Column("max_score", sa.Float, nullable=False),
    sa.Column("snapshot", sa.Text),
    sa.Column("late", sa.Boolean, nullable=False, default=False),
    sa.Column("delivered", TS, nullable=False),
    sa.Column("taken_by", sa.String(64)),
    sa.Column("taken_at", TS),
)

sightings = sa.Table(
    "incursion_sightings",
    metadata,
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("incursion", sa.String(32), primary_key=True),
    sa.Column("troop", sa.String(32), nullable=False, index=True),
)

deliveries = sa.Table(
    "alert_deliveries",
    metadata,
    pk(),
    sa.Column("troop", sa.String(32), nullable=False, index=True),
    sa.Column("subscriber", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # alert | taken
    sa.Column("at", TS, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
)


def is_line(url: str) -> bool:
    return url.split("://", 1)[0].lower() in ("line", "lines")


def hhmm(ts: datetime) -> str:
    return ts.astimezone(LOCAL).strftime("%H:%M")


class Alerts:
    def __init__(
        self,
        store: Store,
        *,
        public_url: str,
        secret: bytes,
        workers: int = 2,
        escalate_after: timedelta = timedelta(minutes=10),
        line_monthly_budget: int = 200,
        areas: list[list[str]] | None = None,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        self.engine = store.engine
        #: groups of cameras that watch one stretch of fields; None: all are neighbours
        self.areas = [set(a) for a in areas] if areas else None
        self.retry_delays = retry_delays
        self._closing = threading.Event()
        self.escalate_after = escalate_after
        self.line_monthly_budget = line_monthly_budget
        self.public_url = public_url.rstrip("/")
        self._tokens = URLSafeTimedSerializer(secret, salt="take-incursion")
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="alerts")
        #: called with the troop's cameras when someone takes it (hub: hold their deterrents)
        self.on_taken: Callable[[list[str]], None] | None = None

    def close(self) -> None:
        self._closing.set()
        self._pool.shutdown(wait=True)

    def neighbours(self, a: str, b: str) -> bool:
        """True if cameras ``a`` and ``b`` watch the same area (one troop can visit both)."""
        return self.areas is None or any(a in area and b in area for area in self.areas)

    # -- subscribers ---------------------------------------------------------------------

    def add_subscriber(
        self,
        name: str,
        url: str,
        cameras: str = "*",
        quiet: tuple[int, int] | None = None,
        duty: int = 0,
    ) -> None:
        if not apprise.Apprise().add(url):
            raise ValueError(f"notification URL for {name!r} is not one Apprise understands")
        row = {
            "name": name,
            "url": url,
            "cameras": cameras,
            "quiet_from": quiet[0] if quiet else None,
            "quiet_to": quiet[1] if quiet else None,
            "duty": duty,
        }
        with self.engine.begin() as conn:
            conn.execute(subscribers.delete().where(subscribers.c.name == name))
            conn.execute(subscribers.insert().values(**row))

    def _audience(
        self, cameras: list[str], now: datetime, duty: int | None = 0
    ) -> list[sa.Row[Any]]:
        """Who follows these cameras and is not in quiet hours; ``duty`` None = any step."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(subscribers)).all()
        hour = now.astimezone(LOCAL).hour
        out = []
        for r in rows:
            follows = r.cameras == "*" or set(cameras) & {c.strip() for c in r.cameras.split(",")}
            quiet = (
                r.quiet_from is not None
                and r.quiet_to is not None
                and (
                    (r.quiet_from <= hour < r.quiet_to)
                    if r.quiet_from < r.quiet_to
                    else (hour >= r.quiet_from or hour < r.quiet_to)
                )
            )
            if follows and not quiet and (duty is None or r.duty == duty):
                out.append(r)
        return out

    # -- incoming ------------------------------------------------------------------------

    def handle(self, msg: Message, received: datetime) -> None:
        """Called by ingest for every stored wildlife event (repeats are harmless)."""
        p = msg.payload
        if not isinstance(p, contract.EventPayload):
            return
        if p.kind == "wildlife.incursion":
            self._sighting(
                msg.topic.dev, contract.IncursionData.model_validate(p.data), p, received
            )
        elif p.kind == "wildlife.incursion_end":
            end = contract.IncursionEndData.model_validate(p.data)
            with self.engine.begin() as conn:
                troop = conn.execute(
                    sa.select(sightings.c.troop).where(
                        sightings.c.device == msg.topic.dev, sightings.c.incursion == end.incursion
                    )
                ).scalar()
                if troop:
                    conn.execute(
                        troops.update()
                        .where(troops.c.id == troop)
                        .values(
                            ended=end.ended,
                            last_seen=end.ended,
                            max_score=sa.func.max(troops.c.max_score, end.max_score)
                            if self.engine.dialect.name == "sqlite"
                            else sa.func.greatest(troops.c.max_score, end.max_score),
                        )
                    )

    def _sighting(
        self, dev: str, data: contract.IncursionData, p: contract.EventPayload, received: datetime
    ) -> None:
        # when it was seen, by the hub's clock: the device says only how long it waited
        waited = min(timedelta(seconds=p.age_s or 0.0), MAX_AGE)
        seen = received - waited
        late = waited > LATE_AFTER or p.hist
        if abs(data.started - seen) > CLOCK_TOLERANCE + waited:
            log.info(
                "incursion at %s says it started %s; taken as %s (device clock off?)",
                dev,
                contract.iso(data.started),
                contract.iso(seen),
            )
        with self.engine.begin() as conn:
            seen_before = conn.execute(
                sa.select(sightings.c.troop).where(
                    sightings.c.device == dev, sightings.c.incursion == data.incursion
                )
            ).scalar()
            if seen_before:
                return  # the same message again
            candidates = conn.execute(
                sa.select(troops)
                .where(
                    troops.c.last_seen >= seen - MERGE_WINDOW,
                    troops.c.last_seen <= seen + MERGE_WINDOW,
                    troops.c.started >= seen - MAX_TROOP_SPAN,
                )
                .order_by(troops.c.started.desc())
            ).all()
            recent = next(
                (t for t in candidates if any(self.neighbours(dev, c) for c in t.cameras)), None
            )
            if recent is not None and dev not in recent.cameras:
                conn.execute(
                    troops.update()
                    .where(troops.c.id == recent.id)
                    .values(
                        cameras=[*recent.cameras, dev],
                        last_seen=max(utc(recent.last_seen) or seen, seen),
                        max_score=max(recent.max_score, data.score),
                    )
                )
                conn.execute(
                    sightings.insert().values(device=dev, incursion=data.incursion, troop=recent.id)
                )
                log.info(
                    "incursion at %s joins troop %s (cameras %s)",
                    dev,
                    recent.id,
                    [*recent.cameras, dev],
                )
                return
            troop = uuid.uuid4().hex
            conn.execute(
                troops.insert().values(
                    id=troop,
                    cameras=[dev],
                    started=seen,
                    last_seen=seen,
                    max_score=data.score,
                    snapshot=data.snapshot_jpeg,
                    late=late,
                    delivered=received,
                )
            )
            conn.execute(
                sightings.insert().values(device=dev, incursion=data.incursion, troop=troop)
            )
        body = self._alert_text(dev, data, seen, late, received)
        for sub in self._audience([dev], received):
            self._alert(troop, sub, body, data.snapshot_jpeg)

    def _alert(self, troop: str, sub: sa.Row[Any], body: str, snapshot: str | None) -> None:
        link = f"{self.public_url}/alerts/take/{self._tokens.dumps([troop, sub.name])}"
        if is_line(sub.url):
            # LINE's Messaging API plugin carries text only and a free official account has
            # ~200 messages a month: short text, the picture behind the link, within budget
            if self.line_used() >= self.line_monthly_budget:
                log.warning(
                    "LINE budget of %d this month used up: %s not alerted on LINE",
                    self.line_monthly_budget,
                    sub.name,
                )
                return
            short = f"{body.split('. ')[0]}. {link}"
            self._pool.submit(
                self._send, troop, sub.name, sub.url, "alert", "サル出没", short, None
            )
            return
        self._pool.submit(
            self._send,
            troop,
            sub.name,
            sub.url,
            "alert",
            "Monkeys / サル出没",
            f"{body}\nI'm on it: {link}",
            snapshot,
        )

    def subscriber_names(self) -> list[str]:
        with self.engine.connect() as conn:
            return [str(r.name) for r in conn.execute(sa.select(subscribers.c.name))]

    def told(self, troop: str) -> dict[str, bool]:
        """Who was sent this incursion's alert, and whether it reached them (last attempt)."""
        out: dict[str, bool] = {}
        for d in self.deliveries(troop):
            if d["kind"] == "alert":
                out[d["subscriber"]] = bool(d["ok"]) or out.get(d["subscriber"], False)
        return out

    def line_used(self, now: datetime | None = None) -> int:
        """LINE messages sent this calendar month (Japan time)."""
        local = (now or datetime.now(UTC)).astimezone(LOCAL)
        month = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
        with self.engine.connect() as conn:
            names = [r.name for r in conn.execute(sa.select(subscribers)) if is_line(r.url)]
            if not names:
                return 0
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(deliveries)
                    .where(
                        deliveries.c.subscriber.in_(names),
                        deliveries.c.at >= month,
                        deliveries.c.ok.is_(True),
                    )
                ).scalar_one()
            )

    def escalate(self, now: datetime | None = None) -> int:
        """Alert the next people on the duty roster for incursions nobody has taken."""
        now = now or datetime.now(UTC)
        sent = 0
        with self.engine.connect() as conn:
            open_troops = conn.execute(
                sa.select(troops).where(
                    troops.c.taken_by.is_(None), troops.c.delivered >= now - timedelta(hours=2)
                )
            ).all()
            done = {
                (r.troop, r.subscriber)
                for r in conn.execute(sa.select(deliveries.c.troop, deliveries.c.subscriber))
            }
        for t in open_troops:
            steps = int((now - (utc(t.delivered) or now)) / self.escalate_after)
            for sub in self._audience(list(t.cameras), now, duty=None):
                if 0 < sub.duty <= steps and (t.id, sub.name) not in done:
                    text = (
                        f"Nobody has taken this yet (escalated): monkeys at "
                        f"{', '.join(t.cameras)}, seen {hhmm(utc(t.started) or now)}."
                    )
                    self._alert(t.id, sub, text, t.snapshot)
                    sent += 1
        return sent

    @staticmethod
    def _alert_text(
        dev: str, data: contract.IncursionData, seen: datetime, late: bool, received: datetime
    ) -> str:
        when = (
            f"seen {hhmm(seen)}, delivered {hhmm(received)} (held by a coverage gap)"
            if late
            else f"seen {hhmm(seen)}"
        )
        return (
            f"サルが出ました / monkeys at {dev}: {when}. "
            f"Score {data.score:.2f}, {data.frames} frames."
        )

    def _send(
        self,
        troop: str,
        name: str,
        url: str,
        kind: str,
        title: str,
        body: str,
        snapshot_b64: str | None,
    ) -> bool:
        """Deliver one message, retrying after each of ``retry_delays``; every attempt is
        recorded, every failure logged."""
        delays = (0.0, *self.retry_delays)
        ok = False
        for attempt, delay in enumerate(delays, 1):
            if delay and self._closing.wait(delay):
                log.error("alert %s to %s not delivered: the hub is stopping", kind, name)
                break
            ok = self._attempt(name, url, title, body, snapshot_b64)
            with self.engine.begin() as conn:
                conn.execute(
                    deliveries.insert().values(
                        troop=troop, subscriber=name, kind=kind, at=datetime.now(UTC), ok=ok
                    )
                )
            if ok:
                break
            log.error(
                "alert %s to %s not delivered (attempt %d of %d)", kind, name, attempt, len(delays)
            )
        return ok

    @staticmethod
    def _attempt(name: str, url: str, title: str, body: str, snapshot_b64: str | None) -> bool:
        notifier = apprise.Apprise()
        notifier.add(url)
        with tempfile.TemporaryDirectory() as tmp:
            attach = None
            if snapshot_b64:
                try:
                    path = Path(tmp) / "snapshot.jpg"
                    path.write_bytes(base64.b64decode(snapshot_b64, validate=True))
                    attach = apprise.AppriseAttachment()
                    attach.add(str(path))
                except (ValueError, OSError) as e:
                    log.warning("alert to %s goes without its snapshot (%s)", name, e)
                    attach = None
            try:
                return bool(notifier.notify(title=title, body=body, attach=attach))
            except Exception:
                log.exception("alert to %s failed", name)
                return False

    # -- taking it -----------------------------------------------------------------------

    def resolve_token(self, token: str) -> tuple[str, str] | None:
        """The troop and subscriber of an "I'm on it" link; None if forged or expired."""
        try:
            troop, name = self._tokens.loads(token, max_age=int(TAKE_VALID.total_seconds()))
        except (BadSignature, ValueError):
            return None
        return str(troop), str(name)

    def take(self, troop: str, name: str) -> bool:
        """Mark the incursion taken by ``name``; tell the others. False if already taken."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            done = conn.execute(
                troops.update()
                .where(troops.c.id == troop, troops.c.taken_by.is_(None))
                .values(taken_by=name, taken_at=now)
            )
            if done.rowcount == 0:
                return False
            row = conn.execute(sa.select(troops).where(troops.c.id == troop)).one()
        if self.on_taken is not None:
            self.on_taken(list(row.cameras))
        for sub in self._audience(list(row.cameras), now):
            if sub.name != name:
                self._pool.submit(
                    self._send,
                    troop,
                    sub.name,
                    sub.url,
                    "taken",
                    "Monkeys: someone is going / 対応中",
                    f"{name} is going to {', '.join(row.cameras)} "
                    f"(seen {hhmm(utc(row.started) or now)}).",
                    None,
                )
        return True

    def troop(self, troop: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(troops).where(troops.c.id == troop)).mappings().first()
        return with_utc(dict(row)) if row else None

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(sa.select(troops).order_by(troops.c.started.desc()).limit(limit))
                .mappings()
                .all()
            )
        return [with_utc(dict(r)) for r in rows]

    def deliveries(self, troop: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                dict(r)
                for r in conn.execute(
                    sa.select(deliveries)
                    .where(deliveries.c.troop == troop)
                    .order_by(deliveries.c.pk)
                )
                .mappings()
                .all()
            ]
