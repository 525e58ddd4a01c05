"""The counter's records: one row per kiosk call, and the document stills staff chose to keep.

The first answer wins by a conditional UPDATE (``staff IS NULL``), which is atomic in SQLite
and PostgreSQL alike, so two members of staff (or two hub processes) can never both take a
call. A call is connected to whoever holds that claim (``holder``), whatever the kiosk says.
Nothing else of a call is stored: no frame, no sound; a still only when saved with a
reason.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from mimamori.hub.store import TS, Store, fetch_all, fetch_one, table

calls = table(
    "counter_calls",
    sa.Column("call", sa.String(32), primary_key=True),
    sa.Column("device", sa.String(64), nullable=False, index=True),
    sa.Column("rang", TS, nullable=False, index=True),
    sa.Column("answered", TS),
    sa.Column("staff", sa.String(64)),
    sa.Column("ended", TS),
    sa.Column("reason", sa.String(32)),
)

stills = table(
    "counter_stills",
    sa.Column("still", sa.String(32), primary_key=True),
    sa.Column("call", sa.String(32), nullable=False, index=True),
    sa.Column("device", sa.String(64), nullable=False),
    sa.Column("staff", sa.String(64), nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("saved", TS, nullable=False, index=True),
    sa.Column("meta", sa.JSON, nullable=False),
    sa.Column("jpeg", sa.LargeBinary, nullable=False),
)


class CallBook:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine

    def rang(self, call: str, dev: str, at: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                self.store._insert(calls)
                .values(call=call, device=dev, rang=at)
                .on_conflict_do_nothing(index_elements=["call"])
            )

    def claim(self, call: str, staff: str) -> bool:
        """Take a ringing call; False if someone else already has it (or it is over)."""
        with self.engine.begin() as conn:
            done = conn.execute(
                calls.update()
                .where(calls.c.call == call, calls.c.staff.is_(None), calls.c.ended.is_(None))
                .values(staff=staff, answered=datetime.now(UTC))
            )
        return done.rowcount == 1

    def holder(self, call: str, dev: str) -> dict[str, Any] | None:
        """The row of ``dev``'s call if a member of staff has claimed it and it is not over.

        This, never what a kiosk says, is who a call is connected to."""
        return fetch_one(
            self.engine,
            calls.select().where(
                calls.c.call == call,
                calls.c.device == dev,
                calls.c.staff.is_not(None),
                calls.c.ended.is_(None),
            ),
        )

    def end(self, call: str, reason: str, dev: str | None = None) -> dict[str, Any] | None:
        """Mark the call over (once); return its row the first time, None after. With
        ``dev``, only that device's call (a kiosk cannot close another kiosk's record)."""
        where = [calls.c.call == call, calls.c.ended.is_(None)]
        if dev is not None:
            where.append(calls.c.device == dev)
        with self.engine.begin() as conn:
            done = conn.execute(
                calls.update().where(*where).values(ended=datetime.now(UTC), reason=reason)
            )
        return self.get(call) if done.rowcount == 1 else None

    def get(self, call: str) -> dict[str, Any] | None:
        return fetch_one(self.engine, calls.select().where(calls.c.call == call))

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        return fetch_all(self.engine, calls.select().order_by(calls.c.rang.desc()).limit(limit))

    def save_still(
        self,
        still: str,
        call: str,
        dev: str,
        staff: str,
        reason: str,
        meta: dict[str, Any],
        jpeg: bytes,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                self.store._insert(stills)
                .values(
                    still=still,
                    call=call,
                    device=dev,
                    staff=staff,
                    reason=reason,
                    saved=datetime.now(UTC),
                    meta=meta,
                    jpeg=jpeg,
                )
                .on_conflict_do_nothing(index_elements=["still"])
            )

    def saved(self, limit: int = 50) -> list[dict[str, Any]]:
        cols = [c for c in stills.c if c.name != "jpeg"]
        return fetch_all(self.engine, sa.select(*cols).order_by(stills.c.saved.desc()).limit(limit))

    def saved_jpeg(self, still: str) -> bytes | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(stills.c.jpeg).where(stills.c.still == still)
            ).scalar_one_or_none()
