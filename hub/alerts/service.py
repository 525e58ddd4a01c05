"""``Alerts``: troop incursions, subscribers and delivery, on the store and a notifier.

The decisions are the pure functions of ``hub.alerts.rules`` and the words those of
``hub.alerts.text``; this module applies them to the tables (``hub.alerts.tables``) and
sends through a ``hub.alerts.notify.Notifier`` (Apprise unless told otherwise) on a small
thread pool, so a slow mail server never holds up ingest.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.engine import Connection

from mimamori.edge import contract
from mimamori.hub.alerts import rules, text
from mimamori.hub.alerts.notify import AppriseNotifier, Notifier
from mimamori.hub.alerts.tables import deliveries, sightings, subscribers, troops
from mimamori.hub.clock import zone
from mimamori.hub.store import Message, Store, fetch_all, fetch_one, utc

log = logging.getLogger(__name__)


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
        retry_delays: tuple[float, ...] = rules.RETRY_DELAYS,
        notifier: Notifier | None = None,
    ) -> None:
        self.engine = store.engine
        #: groups of cameras that watch one stretch of fields; None: all are neighbours
        self.areas = [set(a) for a in areas] if areas else None
        self.retry_delays = retry_delays
        self.notifier: Notifier = notifier or AppriseNotifier()
        self._closing = threading.Event()
        self.escalate_after = escalate_after
        self.line_monthly_budget = line_monthly_budget
        self.public_url = public_url.rstrip("/")
        self._tokens = URLSafeTimedSerializer(secret, salt="take-incursion")
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="alerts")
        # escalations handed to the pool: their delivery row is written only after the first
        # attempt, which may take a slow mail server's whole timeout, and the checker runs
        # every few seconds; without this the duty roster would hear the same incursion again
        self._escalated: set[tuple[str, str]] = set()
        self._sending_lock = threading.Lock()  # guards both: escalations and the LINE count
        self._line_sending = 0  # LINE messages handed to the pool, not yet recorded
        #: called with the troop's cameras when someone takes it (hub: hold their deterrents)
        self.on_taken: Callable[[list[str]], None] | None = None

    def close(self) -> None:
        self._closing.set()
        self._pool.shutdown(wait=True)

    # -- subscribers ---------------------------------------------------------------------

    def add_subscriber(
        self,
        name: str,
        url: str,
        cameras: str = "*",
        quiet: tuple[int, int] | None = None,
        duty: int = 0,
    ) -> None:
        if not self.notifier.accepts(url):
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

    def subscriber_names(self) -> list[str]:
        return [r["name"] for r in fetch_all(self.engine, sa.select(subscribers.c.name))]

    def _audience(
        self, cameras: list[str], now: datetime, duty: int | None = 0
    ) -> list[dict[str, Any]]:
        """Who follows these cameras and is not in quiet hours; ``duty`` None = any step."""
        hour = now.astimezone(zone()).hour
        return [
            r
            for r in fetch_all(self.engine, subscribers.select())
            if rules.follows(r["cameras"], cameras)
            and not rules.in_quiet_hours(hour, r["quiet_from"], r["quiet_to"])
            and (duty is None or r["duty"] == duty)
        ]

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
            self._ended(msg.topic.dev, contract.IncursionEndData.model_validate(p.data))

    def _ended(self, dev: str, end: contract.IncursionEndData) -> None:
        greatest = sa.func.max if self.engine.dialect.name == "sqlite" else sa.func.greatest
        with self.engine.begin() as conn:
            troop = _troop_of(conn, dev, end.incursion)
            if troop:
                conn.execute(
                    troops.update()
                    .where(troops.c.id == troop)
                    .values(
                        ended=end.ended,
                        last_seen=end.ended,
                        max_score=greatest(troops.c.max_score, end.max_score),
                    )
                )

    def _sighting(
        self, dev: str, data: contract.IncursionData, p: contract.EventPayload, received: datetime
    ) -> None:
        seen, late = rules.when_seen(received, p.age_s, p.hist)
        if rules.device_clock_off(data.started, seen, received):
            log.info(
                "incursion at %s says it started %s; taken as %s (device clock off?)",
                dev,
                contract.iso(data.started),
                contract.iso(seen),
            )
        with self.engine.begin() as conn:
            _one_troop_writer(conn)
            if _troop_of(conn, dev, data.incursion):
                return  # the same message again
            candidates = conn.execute(
                sa.select(troops)
                .where(
                    troops.c.last_seen >= seen - rules.MERGE_WINDOW,
                    troops.c.last_seen <= seen + rules.MERGE_WINDOW,
                    troops.c.started >= seen - rules.MAX_TROOP_SPAN,
                )
                .order_by(troops.c.started.desc())
            ).mappings()
            recent = rules.troop_to_join([dict(t) for t in candidates], dev, self.areas)
            if recent is not None:
                cameras = [*recent["cameras"], dev]
                conn.execute(
                    troops.update()
                    .where(troops.c.id == recent["id"])
                    .values(
                        cameras=cameras,
                        last_seen=max(utc(recent["last_seen"]) or seen, seen),
                        max_score=max(recent["max_score"], data.score),
                    )
                )
                conn.execute(
                    sightings.insert().values(
                        device=dev, incursion=data.incursion, troop=recent["id"]
                    )
                )
                log.info("incursion at %s joins troop %s (cameras %s)", dev, recent["id"], cameras)
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
        body = text.alert_text(dev, data.score, data.frames, seen, late, received)
        for sub in self._audience([dev], received):
            self._alert(troop, sub, body, data.snapshot_jpeg)

    def _alert(self, troop: str, sub: dict[str, Any], body: str, snapshot: str | None) -> None:
        link = f"{self.public_url}/alerts/take/{self._tokens.dumps([troop, sub['name']])}"
        if rules.is_line(sub["url"]):
            # LINE's Messaging API plugin carries text only and a free official account has
            # ~200 messages a month: short text, the picture behind the link, within budget
            # messages still being sent count too: they are recorded only once sent
            with self._sending_lock:
                if not rules.line_allows(
                    self.line_used() + self._line_sending, self.line_monthly_budget
                ):
                    log.warning(
                        "LINE budget of %d this month used up: %s not alerted on LINE",
                        self.line_monthly_budget,
                        sub["name"],
                    )
                    return
                self._line_sending += 1
            sending = self._submit(
                troop, sub, "alert", text.LINE_TITLE, text.line_text(body, link), None
            )
            sending.add_done_callback(self._line_sent)
            return
        self._submit(troop, sub, "alert", text.ALERT_TITLE, text.with_link(body, link), snapshot)

    def _line_sent(self, _: Future[bool]) -> None:
        with self._sending_lock:
            self._line_sending -= 1

    def told(self, troop: str) -> dict[str, bool]:
        """Who was sent this incursion's alert, and whether it reached them (last attempt)."""
        out: dict[str, bool] = {}
        for d in self.deliveries(troop):
            if d["kind"] == "alert":
                out[d["subscriber"]] = bool(d["ok"]) or out.get(d["subscriber"], False)
        return out

    def line_used(self, now: datetime | None = None) -> int:
        """LINE messages sent this calendar month (Japan time)."""
        since = rules.month_start(now or datetime.now(UTC))
        with self.engine.connect() as conn:
            names = [r.name for r in conn.execute(sa.select(subscribers)) if rules.is_line(r.url)]
            if not names:
                return 0
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(deliveries)
                    .where(
                        deliveries.c.subscriber.in_(names),
                        deliveries.c.at >= since,
                        deliveries.c.ok.is_(True),
                    )
                ).scalar_one()
            )

    def escalate(self, now: datetime | None = None) -> int:
        """Alert the next people on the duty roster for incursions nobody has taken."""
        now = now or datetime.now(UTC)
        sent = 0
        open_troops = fetch_all(
            self.engine,
            troops.select().where(
                troops.c.taken_by.is_(None), troops.c.delivered >= now - timedelta(hours=2)
            ),
        )
        with self.engine.connect() as conn:
            done = {
                (r.troop, r.subscriber)
                for r in conn.execute(sa.select(deliveries.c.troop, deliveries.c.subscriber))
            }
        still_open = {t["id"] for t in open_troops}
        with self._sending_lock:  # troops no longer open cannot escalate: forget them
            self._escalated = {k for k in self._escalated if k[0] in still_open}
        for t in open_troops:
            for sub in self._audience(list(t["cameras"]), now, duty=None):
                key = (t["id"], sub["name"])
                if key in done or not rules.escalates_to(
                    sub["duty"], t["delivered"], now, self.escalate_after
                ):
                    continue
                with self._sending_lock:
                    if key in self._escalated:
                        continue  # handed over already, its first attempt still under way
                    self._escalated.add(key)
                body = text.escalation_text(t["cameras"], t["started"])
                self._alert(t["id"], sub, body, t["snapshot"])
                sent += 1
        return sent

    # -- delivery ------------------------------------------------------------------------

    def _submit(
        self,
        troop: str,
        sub: dict[str, Any],
        kind: str,
        title: str,
        body: str,
        snapshot_b64: str | None,
    ) -> Future[bool]:
        snapshot = None
        if snapshot_b64:
            try:
                snapshot = base64.b64decode(snapshot_b64, validate=True)
            except binascii.Error as e:
                log.warning("alert to %s goes without its snapshot (%s)", sub["name"], e)
        return self._pool.submit(
            self._send, troop, sub["name"], sub["url"], kind, title, body, snapshot
        )

    def _send(
        self,
        troop: str,
        name: str,
        url: str,
        kind: str,
        title: str,
        body: str,
        snapshot: bytes | None,
    ) -> bool:
        """Deliver one message, retrying after each of ``retry_delays``; every attempt is
        recorded, every failure logged."""
        delays = rules.retry_schedule(self.retry_delays)
        ok = False
        for attempt, delay in enumerate(delays, 1):
            if delay and self._closing.wait(delay):
                log.error("alert %s to %s not delivered: the hub is stopping", kind, name)
                break
            ok = self.notifier.send(url, title, body, snapshot)
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

    # -- taking it -----------------------------------------------------------------------

    def resolve_token(self, token: str) -> tuple[str, str] | None:
        """The troop and subscriber of an "I'm on it" link; None if forged or expired."""
        try:
            troop, name = self._tokens.loads(token, max_age=int(rules.TAKE_VALID.total_seconds()))
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
        row = self.troop(troop) if done.rowcount else None
        if row is None:
            return False
        if self.on_taken is not None:
            self.on_taken(list(row["cameras"]))
        body = text.taken_text(name, row["cameras"], row["started"])
        for sub in self._audience(list(row["cameras"]), now):
            if sub["name"] != name:
                self._submit(troop, sub, "taken", text.TAKEN_TITLE, body, None)
        return True

    def troop(self, troop: str) -> dict[str, Any] | None:
        return fetch_one(self.engine, troops.select().where(troops.c.id == troop))

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        return fetch_all(
            self.engine, troops.select().order_by(troops.c.started.desc()).limit(limit)
        )

    def deliveries(self, troop: str) -> list[dict[str, Any]]:
        q = deliveries.select().where(deliveries.c.troop == troop).order_by(deliveries.c.pk)
        return fetch_all(self.engine, q)


def _troop_of(conn: Connection, dev: str, incursion: str) -> str | None:
    """The troop that camera ``dev``'s incursion joined, if it was seen before."""
    q = sa.select(sightings.c.troop).where(
        sightings.c.device == dev, sightings.c.incursion == incursion
    )
    return conn.execute(q).scalar()


def _one_troop_writer(conn: Connection) -> None:
    """On PostgreSQL, hold the troops until this transaction ends: two ingest workers that
    store sightings from neighbouring cameras at once would otherwise each start a troop (and
    alert twice). SQLite takes one writer at a time anyway."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext("mimamori.troops"))))
