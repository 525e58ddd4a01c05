"""One camera's monkey visits for its timeline page: each ``wildlife.incursion`` joined
with its ``wildlife.incursion_end`` (by the incursion id), grouped by local day."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mimamori.hub.clock import local
from mimamori.hub.store import Store

KINDS = ("wildlife.incursion", "wildlife.incursion_end")


def visits_by_day(events: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Incursion events (in the order given) each with ``end``: the data of its end event,
    or None while it lasts; keyed by the local day it started (``YYYY-MM-DD``)."""
    events = list(events)
    ends = {
        e["data"]["incursion"]: e["data"] for e in events if e["kind"] == "wildlife.incursion_end"
    }
    by_day: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e["kind"] == "wildlife.incursion":
            day = local(e["data"]["started"]).strftime("%Y-%m-%d")
            by_day.setdefault(day, []).append({**e, "end": ends.get(e["data"]["incursion"])})
    return by_day


def camera_timeline(store: Store, dev: str, limit: int = 500) -> dict[str, list[dict[str, Any]]]:
    """The newest ``limit`` incursion events of camera ``dev``, as ``visits_by_day``."""
    return visits_by_day(store.events(dev, limit=limit, kinds=KINDS))
