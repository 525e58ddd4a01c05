"""The staff web app: Flask, no CDN. ``create_app`` builds it from the hub's parts, registers
the template filters and one blueprint per area (``hub.pages``, plus the ridership and
counter pages that live with their apps).

Every form carries a CSRF token (Flask-WTF); session cookies are HttpOnly, SameSite=Lax and
Secure (browsers treat http://localhost as secure; anywhere else serve the hub behind
HTTPS).

Every response carries a Content-Security-Policy (scripts, styles, fonts and fetches from
the hub only; pictures also as ``data:`` and ``blob:`` URLs, as the snapshots and the counter
console's live views are; no inline script or style attribute, no framing), plus
X-Frame-Options DENY, X-Content-Type-Options nosniff and Referrer-Policy same-origin.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from flask_wtf.csrf import CSRFProtect
from werkzeug.wrappers import Response

from mimamori.hub.alerts import Alerts
from mimamori.hub.auth import SESSION_LIFETIME, Accounts, Throttle
from mimamori.hub.clock import ago, duration, local, when, zone
from mimamori.hub.counter import web as counter
from mimamori.hub.counter.relay import Relay
from mimamori.hub.events import model_label, sentence
from mimamori.hub.ingest import Ingest
from mimamori.hub.pages import alerts as alerts_pages
from mimamori.hub.pages import api, commands, fleet, session
from mimamori.hub.pages import ingest as ingest_pages
from mimamori.hub.pages.access import Parts
from mimamori.hub.ridership import web as ridership
from mimamori.hub.store import Store

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=()",
}
FILTERS: dict[str, Callable[..., Any]] = {
    "ago": ago,
    "when": when,
    "sentence": sentence,
    "duration": duration,
    "model_label": model_label,
    "localtime": lambda iso: local(str(iso)).strftime("%H:%M"),
    "without_images": lambda d: {k: v for k, v in d.items() if not k.endswith("_jpeg")},
    "pretty": lambda v: json.dumps(v, indent=2, ensure_ascii=False),
}


def security_headers(resp: Response) -> Response:
    for header, value in SECURITY_HEADERS.items():
        resp.headers.setdefault(header, value)
    return resp


def create_app(
    store: Store,
    ingest: Ingest | None,
    secret_key: bytes,
    *,
    secure_cookies: bool = True,
    alerts: Alerts | None = None,
    relay: Relay | None = None,
    gtfs: Path | None = None,
) -> Flask:
    app = Flask(__name__)
    app.secret_key = secret_key
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure_cookies,
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        RIDERSHIP_GTFS=gtfs,  # route and direction names on the Ridership page
    )
    CSRFProtect(app)
    Parts(store, ingest, alerts, relay, Accounts(store), Throttle()).install(app)
    app.after_request(security_headers)
    app.jinja_env.filters.update(FILTERS)
    app.jinja_env.globals.update(
        ROLE_LABELS=fleet.ROLE_LABELS, COMMANDS=commands.COMMANDS, TZ=str(zone())
    )
    for bp in (session.bp, fleet.bp, commands.bp, alerts_pages.bp, ingest_pages.bp, api.bp):
        app.register_blueprint(bp)
    app.register_blueprint(ridership.bp)
    if relay is not None:
        app.register_blueprint(counter.bp)
    return app
