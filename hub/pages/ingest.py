"""Ingest health for admins: counters, rejected messages by reason, the latest rejects."""

from __future__ import annotations

from flask import Blueprint, render_template

from mimamori.hub.pages.access import parts, require

bp = Blueprint("ingest", __name__)


@bp.get("/ingest")
@require("admin")
def page() -> str:
    p = parts()
    return render_template(
        "ingest.html",
        counters=dict(p.ingest.counters) if p.ingest else {},
        rejects=p.store.reject_counts(),
        recent=p.store.recent_rejects(),
        total=p.store.count_events(),
    )
