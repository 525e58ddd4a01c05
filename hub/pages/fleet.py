"""The fleet page and one device's page, open to every signed-in member of staff; a device
page shows an app's events (and their pictures) only to that app's role and admin."""

from __future__ import annotations

from flask import Blueprint, abort, g, render_template

from mimamori.hub.auth import ROLES
from mimamori.hub.pages.access import parts

ROLE_LABELS = {"wildlife": "Monkey watch", "ridership": "Bus ridership", "kiosk": "Counter kiosk"}
#: which staff roles see an app's events, and their pictures, on a device page (by the
#: event kind's first part); any other kind is for admin only
EVENT_ROLES: dict[str, tuple[str, ...]] = {
    "device": ROLES,
    "wildlife": ("admin", "wildlife"),
    "ridership": ("admin", "transit"),
    "kiosk": ("admin", "counter"),
}

bp = Blueprint("fleet", __name__)


def may_see(role: str | None, kind: str) -> bool:
    """May a member of staff with ``role`` see events of ``kind`` (and their pictures)?"""
    return role in EVENT_ROLES.get(kind.split(".", 1)[0], ("admin",))


@bp.get("/")
def index() -> str:
    p = parts()
    devices = p.store.devices()
    return render_template(
        "fleet.html",
        devices=devices,
        online=sum(1 for d in devices if d["online"]),
        ingest=p.ingest.counters if p.ingest else {},
        hub_connected=p.ingest.connected if p.ingest else False,
    )


@bp.get("/devices/<dev>")
def device(dev: str) -> str:
    store = parts().store
    d = store.device(dev)
    if d is None:
        abort(404)
    shown = [e for e in store.events(dev, limit=500) if may_see(g.role, e["kind"])]
    return render_template(
        "device.html",
        d=d,
        events=shown[:50],
        hidden_kinds=sorted({k for k, roles in EVENT_ROLES.items() if g.role not in roles}),
        replies=store.replies(dev),
        jobs=store.jobs(dev),
    )
