"""Monkey alerts for staff (roles admin and wildlife): recent troop incursions, taking one,
a camera's timeline; and the "I'm on it" link each subscriber's alert carries, which works
without signing in (its signed token names the incursion and the subscriber)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from mimamori.hub.alerts import camera_map
from mimamori.hub.alerts.timeline import camera_timeline
from mimamori.hub.pages.access import audit, parts, require

bp = Blueprint("alerts", __name__)
wildlife = require("admin", "wildlife")


@bp.get("/alerts")
@wildlife
def page() -> str:
    alerts = parts().alerts
    troops = alerts.recent() if alerts else []
    places = {d["id"]: d.get("location") or "" for d in parts().store.devices()}
    ingest = parts().ingest
    positions = ingest.roster.positions("wildlife") if ingest else {}
    return render_template(
        "alerts.html",
        troops=troops,
        places=places,
        maps={t["id"]: camera_map.draw(positions, t["cameras"]) for t in troops},
        has_positions=bool(positions),
        told={t["id"]: alerts.told(t["id"]) for t in troops} if alerts else {},
        subscribers=alerts.subscriber_names() if alerts else [],
        line_used=alerts.line_used() if alerts else 0,
        line_budget=alerts.line_monthly_budget if alerts else 0,
    )


@bp.post("/alerts/<troop_id>/going")
@wildlife
def going(troop_id: str) -> Any:
    """A signed-in member of staff takes an incursion from the alerts page."""
    alerts = parts().alerts
    troop = alerts.troop(troop_id) if alerts else None
    if troop is None or alerts is None:
        abort(404)
    if alerts.take(troop_id, g.user):
        audit("alert.taken", troop_id, ", ".join(troop["cameras"]))
        flash("you are going: the others have been told")
    else:
        flash(f"already taken by {troop['taken_by']}")
    return redirect(url_for("alerts.page"))


@bp.get("/alerts/camera/<dev>")
@wildlife
def timeline(dev: str) -> str:
    store = parts().store
    d = store.device(dev)
    if d is None:
        abort(404)
    return render_template("timeline.html", d=d, by_day=camera_timeline(store, dev))


@bp.route("/alerts/take/<token>", methods=["GET", "POST"])
def take(token: str) -> Any:
    """The link in each alert: the token names the incursion and the subscriber."""
    alerts = parts().alerts
    found = alerts.resolve_token(token) if alerts else None
    if found is None or alerts is None:
        abort(404)
    troop_id, name = found
    troop = alerts.troop(troop_id)
    if troop is None:
        abort(404)
    if request.method == "POST":
        if alerts.take(troop_id, name):
            parts().accounts.record(
                name,
                "alert.taken",
                troop_id,
                ", ".join(troop["cameras"]),
                request.remote_addr or "",
            )
        troop = alerts.troop(troop_id)
    return render_template("take.html", t=troop, name=name, token=token)
