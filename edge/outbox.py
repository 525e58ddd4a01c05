"""SQLite store-and-forward outbox: nothing an app records is lost while the link is down.

Each event gets a unique ``id`` and a persisted, monotonic ``seq`` (SQLite AUTOINCREMENT
never reuses a value, even after rows are deleted). A row leaves the outbox only when the
broker has acknowledged it (PUBACK). The database runs in WAL mode with ``synchronous=FULL``
so an acknowledged write survives a power cut. Under the size cap, low-priority rows go first,
then normal ones; alarms are never dropped.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from edge import contract
from edge.contract import Priority
from edge.errors import OutboxError

log = logging.getLogger(__name__)

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

    def payload(self, *, resent: bool = False) -> contract.EventPayload:
        """The wire payload; ``hist`` marks an event recorded while the link was down or
        sent again after an unacknowledged attempt, i.e. not delivered as it happened."""
        return contract.EventPayload(
            id=self.id,
            seq=self.seq,
            kind=self.kind,
            prio=self.prio,
            hist=self.offline or resent,
            created=self.created,
            data=self.data,
        )


class Outbox:
    """Thread-safe outbox on one SQLite file; one connection guarded by a lock."""

    def __init__(self, path: Path | str, *, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
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
        """Persist one event (durable when this returns) and enforce the size cap."""
        contract.event("x", kind)  # validates the kind's shape
        schema = contract.EVENT_DATA.get(kind)
        if schema is None:
            raise contract.ContractError(f"event kind {kind!r} is not in the contract")
        schema.model_validate(data)
        created = contract.utcnow()
        event_id = uuid.uuid4().hex
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        size = len(text) + 128
        with self._lock:
            try:
                cur = self._db.execute(
                    "INSERT INTO outbox (id, kind, prio, created, offline, data, size) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (event_id, kind, int(prio), contract.iso(created), int(offline), text, size),
                )
            except sqlite3.Error as e:
                raise OutboxError(f"outbox {self.path}: cannot store {kind} event ({e})") from e
            self._bytes += size
            seq = int(cur.lastrowid or 0)
            if self._bytes > self.max_bytes:
                self._enforce_cap()
        return Row(seq, event_id, kind, prio, created, offline, data)

    def _enforce_cap(self) -> None:
        """Drop the oldest rows of the lowest priority until under the cap (lock held)."""
        dropped = 0
        for prio in (Priority.LOW, Priority.NORMAL):
            while self._bytes > self.max_bytes:
                rows = self._db.execute(
                    "SELECT seq, size FROM outbox WHERE prio = ? ORDER BY seq LIMIT 256",
                    (int(prio),),
                ).fetchall()
                if not rows:
                    break
                excess, cut, freed = self._bytes - self.max_bytes, [], 0
                for seq, size in rows:
                    cut.append((seq,))
                    freed += size
                    if freed >= excess:
                        break
                self._db.executemany("DELETE FROM outbox WHERE seq = ?", cut)
                self._bytes -= freed
                dropped += len(cut)
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
        """Delete acknowledged rows in one transaction."""
        batch = [(s,) for s in seqs]
        if not batch:
            return
        with self._lock:
            self._db.execute("BEGIN")
            freed = self._db.execute(
                f"SELECT COALESCE(SUM(size), 0) FROM outbox WHERE seq IN ({','.join('?' * len(batch))})",
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
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
        return int(row[0]) if row else 0

    @property
    def bytes(self) -> int:
        return self._bytes
