"""The outbox's decisions, without SQLite: what may be stored, and what goes to make room.

``edge.outbox`` does the I/O and asks these functions; they take plain values (sizes, free
bytes, priorities) so each rule is tested alone. Alarms are never chosen for dropping.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from mimamori.edge import contract
from mimamori.edge.contract import Priority

#: alarms kept in memory while the disk is full (lost only if the power goes too)
MAX_HELD = 10_000
#: a row's bytes beyond its JSON (columns, index entries): what the size cap counts
ROW_OVERHEAD = 128
#: free pages inside the database below which a low-space write first drops older rows
MAKE_ROOM_PAGES = 8
#: free pages a write below alarm priority needs while space is low
STORE_PAGES = 4


def encode(kind: str, data: dict[str, Any]) -> tuple[str, int]:
    """Check an event against the contract; its stored text and the bytes it counts for.

    Raises ``ContractError`` (or pydantic's ``ValidationError``) for an unknown kind or data
    that does not fit the kind's schema.
    """
    contract.event("x", kind)  # validates the kind's shape
    schema = contract.EVENT_DATA.get(kind)
    if schema is None:
        raise contract.ContractError(
            f"event kind {kind!r} is not in the contract", reason=contract.Reason.UNKNOWN_KIND
        )
    schema.model_validate(data)
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text, len(text) + ROW_OVERHEAD


def space(free: int, reserve: int, was_full: bool) -> Literal["low", "back", "ok"]:
    """``low`` under the reserve (and, once full, until four times it is free again: no
    flapping at the edge); ``back`` the moment a full disk has room again."""
    if free < reserve or (was_full and free < 4 * reserve):
        return "low"
    return "back" if was_full else "ok"


def droppable(prio: Priority) -> tuple[Priority, ...]:
    """Priorities that may be dropped to make room for a ``prio`` row, lowest first."""
    return tuple(p for p in (Priority.LOW, Priority.NORMAL) if p < prio)


def may_store_on_low_space(prio: Priority, spare_pages: int) -> bool:
    """On a nearly full disk an alarm is always tried; anything else needs reusable pages."""
    return prio >= Priority.ALARM or spare_pages >= STORE_PAGES


def when_refused(prio: Priority, held: int) -> Literal["hold", "drop"]:
    """The disk refused the write: keep an alarm in memory (up to ``MAX_HELD``), else drop."""
    return "hold" if prio >= Priority.ALARM and held < MAX_HELD else "drop"


def cut(rows: Sequence[tuple[int, int]], excess: int) -> tuple[list[int], int]:
    """From ``(seq, size)`` rows, oldest first, the seqs to drop to free ``excess`` bytes,
    and the bytes that frees (all of them if they are not enough)."""
    seqs, freed = [], 0
    for seq, size in rows:
        seqs.append(seq)
        freed += size
        if freed >= excess:
            break
    return seqs, freed
