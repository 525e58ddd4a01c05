"""SQLite store-and-forward outbox: nothing an app records is lost while the link is down.

Each event gets a unique ``id`` and a persisted, monotonic ``seq`` (SQLite AUTOINCREMENT
never reuses a value, even after rows are deleted). A row leaves the outbox only when the
broker has acknowledged it (PUBACK). The database runs in WAL mode with ``synchronous=FULL``
so an acknowledged write survives a power cut. Under the size cap, low-priority rows go first,
then normal ones; alarms are never dropped. The decisions themselves (validation, what to
drop, when to hold an alarm in memory) are pure functions in ``edge.outbox_rules``.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mimamori.edge import contract, outbox_rules
from mimamori.edge.contract import Priority
from mimamori.edge.errors import OutboxError

log = logging.getLogger(__name__)

#: rows whose recording time is remembered on the monotonic clock (older ones: wall clock)
MAX_AGES = 20_000
#: below this much free space the outbox stops growing: it makes room by dropping its
#: lowest-priority rows, and only alarms may use the rest (SQLite needs the reserve to
#: delete sent rows and to checkpoint, so the drain keeps working on a full disk)
MIN_FREE_BYTES = 1024 * 1024


def _disk_full(e: sqlite3.Error) -> bool:
    return "full" in str(e) or getattr(e, "sqlite_errorname", "") in (
        "SQLITE_FULL",
        "SQLITE_IOERR_WRITE",
    )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    id       TEXT NOT NULL UNIQUE,
    kind     TEXT NOT NULL,
    prio     INTEGER NOT NULL,
    created  TEXT NOT NULL,
    offline  INTEGER NOT NULL,
    data     TEXT NOT NULL,
    size     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_prio ON outbox (prio, seq);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Row:
    seq: int
    id: str
    kind: str
    prio: Priority
    created: datetime
    offline: bool
    data: dict[str, Any]

    def payload(self, *, resent: bool = False, age_s: float | None = None) -> contract.EventPayload:
        """The wire payload; ``hist`` marks an event recorded while the link was down or
        sent again after an unacknowledged attempt, i.e. not delivered as it happened;
        ``age_s``: how long it waited on the device (``Outbox.age_s``)."""
        return contract.EventPayload(
            id=self.id,
            seq=self.seq,
            kind=self.kind,
            prio=self.prio,
            hist=self.offline or resent,
            created=self.created,
            age_s=None if age_s is None else round(max(0.0, age_s), 3),
            data=self.data,
        )


class Outbox:
    """Thread-safe outbox on one SQLite file; one connection guarded by a lock."""

    def __init__(
        self,
        path: Path | str,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        min_free_bytes: int = MIN_FREE_BYTES,
        wall: Callable[[], datetime] = contract.utcnow,
    ) -> None:
        self.path = Path(path)
        #: the device's wall clock (a seam: a Pi has no real-time clock, tests make it jump)
        self.wall = wall
        #: monotonic time each recent row was recorded in this run, for ``age_s``
        self._recorded: OrderedDict[int, float] = OrderedDict()
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
        self._lock = threading.Lock()
        self._held: deque[tuple[Any, ...]] = deque()
        #: the data dir is full (one error logged when it fills, one line when space returns)
        self.disk_full = False
        #: events dropped because the disk was full (since start)
        self.full_dropped = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            # a bounded WAL (about 1 MB, reset at each checkpoint) keeps the space the outbox
            # needs predictable on a small SD card
            self._db.execute("PRAGMA wal_autocheckpoint=256")
            self._db.execute("PRAGMA journal_size_limit=1048576")
            self._db.executescript(_SCHEMA)
            self._bytes = int(
                self._db.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0]
            )
        except sqlite3.Error as e:
            raise OutboxError(f"outbox {self.path}: cannot open ({e})") from e

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing -------------------------------------------------------------------------

    def put(
        self,
        kind: str,
        data: dict[str, Any],
        *,
        prio: Priority = Priority.NORMAL,
        offline: bool = False,
    ) -> Row:
        """Persist one event (durable when this returns) and enforce the size cap.

        On a full disk it makes room by dropping older rows of lower priority; if that is
        not enough, an alarm is held in memory until space returns and anything else is
        dropped and counted (``seq`` 0 in the returned row). The app never sees an error.
        """
        text, size = outbox_rules.encode(kind, data)
        created = self.wall()
        event_id = uuid.uuid4().hex
        values = (event_id, kind, int(prio), contract.iso(created), int(offline), text, size)
        with self._lock:
            room = outbox_rules.space(self._free(), self.min_free_bytes, self.disk_full)
            if room == "low" and not self._low_space(prio):
                self.full_dropped += 1  # no room left for this priority
                return Row(0, event_id, kind, prio, created, offline, data)
            if room == "back":
                self.disk_full = False
                self._db.execute("PRAGMA wal_autocheckpoint=256")
                log.warning("outbox %s: disk space is back; storing events again", self.path)
            self._flush_held()
            seq = self._insert(values)
            if seq is None:
                if outbox_rules.when_refused(prio, len(self._held)) == "hold":
                    self._held.append(values)
                else:
                    self.full_dropped += 1
                return Row(0, event_id, kind, prio, created, offline, data)
            self._recorded[seq] = time.monotonic()
            if len(self._recorded) > MAX_AGES:
                self._recorded.popitem(last=False)
            if self._bytes > self.max_bytes:
                self._enforce_cap()
        return Row(seq, event_id, kind, prio, created, offline, data)

    def age_s(self, row: Row) -> float:
        """How long ``row`` has waited: by the monotonic clock when it was recorded in this
        run (immune to the wall clock being set meanwhile), else by the wall clock."""
        with self._lock:  # put() reorders and trims this dict on another thread
            at = self._recorded.get(row.seq)
        if at is not None:
            return time.monotonic() - at
        return (self.wall() - row.created).total_seconds()

    def _insert(self, values: tuple[Any, ...]) -> int | None:
        """Insert a row (lock held); None when the disk refused it (``_low_space`` keeps a
        reserve, so this is the rare case of the disk filling faster than we look)."""
        try:
            cur = self._db.execute(
                "INSERT INTO outbox (id, kind, prio, created, offline, data, size) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                values,
            )
        except sqlite3.Error as e:
            if not _disk_full(e):
                raise OutboxError(
                    f"outbox {self.path}: cannot store {values[1]} event ({e})"
                ) from e
            if not self.disk_full:
                self.disk_full = True
                log.error(
                    "outbox %s: the disk is full; holding alarms in memory until space returns",
                    self.path,
                )
            return None
        self._bytes += values[6]
        return int(cur.lastrowid or 0)

    def _free(self) -> int:
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return self.min_free_bytes
        return st.f_bavail * st.f_frsize

    def _low_space(self, prio: Priority) -> bool:
        """The disk is nearly full (lock held). Checkpoint often so the WAL stays small,
        reuse the space of dropped rows, and make that space by dropping the oldest rows of
        lower priority than ``prio``. True if ``prio`` may be stored."""
        if not self.disk_full:
            self.disk_full = True
            self._db.execute("PRAGMA wal_autocheckpoint=16")
            log.error(
                "outbox %s: the disk is full (under %d kB free); dropping low-priority events "
                "first, keeping alarms",
                self.path,
                self.min_free_bytes // 1024,
            )
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            if self._spare_pages() < outbox_rules.MAKE_ROOM_PAGES:
                for lower in outbox_rules.droppable(prio):
                    if self._drop_oldest(lower, 64):
                        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                        break
        except sqlite3.Error as e:
            log.debug("making room failed: %s", e)
        return outbox_rules.may_store_on_low_space(prio, self._spare_pages())

    def _spare_pages(self) -> int:
        """Pages inside the database file that new rows can reuse without growing it."""
        return int(self._db.execute("PRAGMA freelist_count").fetchone()[0])

    def _drop_oldest(self, prio: Priority, n: int) -> int:
        rows = self._db.execute(
            "SELECT seq, size FROM outbox WHERE prio = ? ORDER BY seq LIMIT ?", (int(prio), n)
        ).fetchall()
        if rows:
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(r[0],) for r in rows])
            self._bytes -= sum(r[1] for r in rows)
            self.full_dropped += len(rows)
        return len(rows)

    def _flush_held(self) -> None:
        while self._held:
            if self._insert(self._held[0]) is None:
                return
            self._held.popleft()

    @property
    def held(self) -> int:
        """Alarms waiting in memory for disk space."""
        with self._lock:
            return len(self._held)

    def _enforce_cap(self) -> None:
        """Drop the oldest rows of the lowest priority until under the cap (lock held)."""
        dropped = 0
        for prio in outbox_rules.droppable(Priority.ALARM):
            while self._bytes > self.max_bytes:
                rows = self._db.execute(
                    "SELECT seq, size FROM outbox WHERE prio = ? ORDER BY seq LIMIT 256",
                    (int(prio),),
                ).fetchall()
                if not rows:
                    break
                seqs, freed = outbox_rules.cut(rows, self._bytes - self.max_bytes)
                self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(q,) for q in seqs])
                self._bytes -= freed
                dropped += len(seqs)
        if dropped:
            self._db.execute(
                "INSERT INTO counters VALUES ('dropped', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (dropped,),
            )
            log.warning(
                "outbox over %d bytes: dropped %d low-priority events", self.max_bytes, dropped
            )

    # -- draining ------------------------------------------------------------------------

    def pending(self, limit: int, after: int = 0) -> list[Row]:
        """Oldest rows with ``seq > after``, in seq order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, id, kind, prio, created, offline, data FROM outbox "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        return [
            Row(s, i, k, Priority(p), datetime.fromisoformat(c), bool(o), json.loads(d))
            for s, i, k, p, c, o, d in rows
        ]

    def last_seq(self) -> int:
        """Highest seq stored so far (0 when empty)."""
        with self._lock:
            row = self._db.execute("SELECT MAX(seq) FROM outbox").fetchone()
        return int(row[0] or 0)

    def ack(self, seqs: Iterable[int]) -> None:
        """Delete acknowledged rows in one transaction (OutboxError if the disk refuses:
        the rows stay and are sent again; the hub drops the repeats)."""
        batch = [(s,) for s in seqs]
        if not batch:
            return
        with self._lock:
            try:
                self._delete_acked(batch)
            except sqlite3.Error as e:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise OutboxError(f"outbox {self.path}: cannot remove sent events ({e})") from e

    def _delete_acked(self, batch: list[tuple[int]]) -> None:
        self._db.execute("BEGIN")
        marks = ",".join("?" * len(batch))
        freed = self._db.execute(
            f"SELECT COALESCE(SUM(size), 0) FROM outbox WHERE seq IN ({marks})",
            [s for (s,) in batch],
        ).fetchone()[0]
        self._db.executemany("DELETE FROM outbox WHERE seq = ?", batch)
        self._db.execute("COMMIT")
        self._bytes -= int(freed)

    # -- figures -------------------------------------------------------------------------

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def dropped(self) -> int:
        """Events dropped under the size cap (ever) and for a full disk (since start)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
        return (int(row[0]) if row else 0) + self.full_dropped

    @property
    def bytes(self) -> int:
        return self._bytes
