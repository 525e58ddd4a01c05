"""Staff web pages: the fleet, one device, ingest health, audit log. Flask, no CDN.

Every page needs a signed-in member of staff whose session is live in the database (see
``hub.auth``: signing out or a password change ends it server-side); every form carries a
CSRF token (Flask-WTF); session cookies are HttpOnly, SameSite=Lax and Secure (browsers treat
http://localhost as secure; anywhere else serve the hub behind HTTPS). After signing in the
browser goes back only to a page of this hub (``local_next``), never to another site.

Every response carries a Content-Security-Policy (scripts, styles, fonts and fetches from
the hub only; pictures also as ``data:`` and ``blob:`` URLs, as the snapshots and the counter
console's live views are; no inline script or style attribute, no framing), plus
X-Frame-Options DENY, X-Content-Type-Options nosniff and Referrer-Policy same-origin.
"""

from __future__ import annotations

import functools
import json
import math
import secrets
import tomllib
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask import (
    Flask,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFProtect
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect
from werkzeug.wrappers import Response

from edge import contract
from hub.alerts import Alerts
from hub.auth import ROLES, SESSION_LIFETIME, Accounts, Throttle
from hub.clock import ago, duration, local, when
from hub.config import LOCAL
from hub.counter.relay import Relay
from hub.counter.web import register as register_counter
from hub.events import sentence
from hub.ingest import Ingest
from hub.ridership.web import register as register_ridership
from hub.store import Store

#: the commands every device answers (DESIGN.md); shown as buttons on the device page
COMMANDS = ("ping", "snapshot-config", "restart-app")
ROLE_LABELS = {"wildlife": "Monkey watch", "ridership": "Bus ridership", "kiosk": "Counter kiosk"}
#: which staff roles see an app's events, and their pictures, on a device page (by the
#: event kind's first part); any other kind is for admin only
EVENT_ROLES: dict[str, tuple[str, ...]] = {
    "device": ROLES,
    "wildlife": ("admin", "wildlife"),
    "ridership": ("admin", "transit"),
    "kiosk": ("admin", "counter"),
}
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
KNOWN_BROWSER_COOKIE = "mimamori_known"
KNOWN_BROWSER_DAYS = 180


def may_see(role: str | None, kind: str) -> bool:
    """May a member of staff with ``role`` see events of ``kind`` (and their pictures)?"""
    return role in EVENT_ROLES.get(kind.split(".", 1)[0], ("admin",))


def local_next(app: Flask, target: str) -> str | None:
    """``target`` rebuilt as a path of one of this hub's pages, or None.

    Only a plain local path is taken: no control characters, spaces or backslashes anywhere
    (browsers drop tabs and newlines and read a backslash as a slash, so ``/``, a tab and
    ``/evil.example`` make ``//evil.example``), no scheme or host, and it must name a page
    (a GET route) here; the path and query are then put together afresh.
    """
    if not target or any(c <= " " or c in "\\\x7f" for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return None
    if parts.path.startswith("//"):
        return None
    try:
        endpoint, _ = app.url_map.bind("localhost").match(parts.path, method="GET")
    except (HTTPException, RequestRedirect):
        return None
    if endpoint in ("login", "logout", "static"):
        return None
    return urlunsplit(("", "", parts.path, parts.query, ""))


def parse_desired(text: str) -> dict[str, Any]:
    """The desired-config form takes TOML (or JSON) sections; raise ValueError with a reason."""
    text = text.strip()
    if not text:
        raise ValueError("empty: give at least one section, e.g. [telemetry] interval_s = 30")
    try:
        data = json.loads(text) if text.startswith("{") else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"not valid TOML or JSON: {e}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError("expected sections, e.g. [telemetry] with keys under it")
    return data


def create_app(
    store: Store,
    ingest: Ingest | None,
    secret_key: bytes,
    *,
    secure_cookies: bool = True,
    alerts: Alerts | None = None,
    relay: Relay | None = None,
) -> Flask:
    app = Flask(__name__)
    app.secret_key = secret_key
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure_cookies,
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
    )
    CSRFProtect(app)
    accounts = Accounts(store)
    throttle = Throttle()
    known = URLSafeTimedSerializer(secret_key, salt="mimamori-known-browser")
    app.extensions["mimamori.accounts"] = accounts
    app.extensions["mimamori.throttle"] = throttle

    def known_browser(name: str) -> str | None:
        """The id of this browser's known-browser cookie if it was given for ``name``."""
        try:
            data = known.loads(
                request.cookies.get(KNOWN_BROWSER_COOKIE, ""),
                max_age=KNOWN_BROWSER_DAYS * 86400,
            )
        except BadSignature:
            return None
        if isinstance(data, dict) and data.get("u") == name and isinstance(data.get("b"), str):
            return data["b"]
        return None

    def audit(action: str, target: str = "", detail: str = "") -> None:
        accounts.record(g.user, action, target, detail, request.remote_addr or "")

    @app.before_request
    def load_user() -> Any:
        g.user = g.role = None
        if request.endpoint == "static":
            return None
        token = session.get("sid")
        found = accounts.session_user(token) if isinstance(token, str) else None
        if found is not None:
            g.user, g.role = found
        else:
            session.pop("sid", None)
            if request.endpoint not in ("login", "take"):
                if request.path.startswith("/api/"):
                    abort(401)
                return redirect(url_for("login", next=request.full_path))
        return None

    def require(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(view: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(view)
            def inner(*args: Any, **kwargs: Any) -> Any:
                if g.role not in roles:
                    accounts.record(
                        g.user,
                        "denied",
                        request.path,
                        f"needs {'/'.join(roles)}",
                        request.remote_addr or "",
                    )
                    abort(403)
                return view(*args, **kwargs)

            return inner

        return wrap

    @app.after_request
    def security_headers(resp: Response) -> Response:
        for header, value in SECURITY_HEADERS.items():
            resp.headers.setdefault(header, value)
        return resp

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        error = None
        if request.method == "POST":
            name = request.form.get("name", "").strip()[:64]
            addr = request.remote_addr or "?"
            attempt = throttle.attempt(name, addr, known_browser(name))
            if not attempt.allowed:
                accounts.record(name or "?", "login.throttled", address=addr)
                wait = attempt.retry_after
                when = f"{wait} s" if wait < 120 else f"{math.ceil(wait / 60)} min"
                return (
                    render_template(
                        "login.html",
                        error=f"Too many failed attempts. Try again in {when}, or from a "
                        "browser you have signed in with before.",
                    ),
                    429,
                    {"Retry-After": str(wait)},
                )
            role = accounts.check(name, request.form.get("password", ""))
            if role is None:
                accounts.record(name or "?", "login.failed", address=addr)
                error = "Wrong user name or password."
            else:
                attempt.succeeded()
                session.clear()
                session.permanent = True
                session["sid"] = accounts.open_session(name, addr)
                accounts.record(name, "login", detail=role, address=addr)
                target = local_next(app, request.args.get("next", ""))
                resp = redirect(target or url_for("fleet"))
                resp.set_cookie(
                    KNOWN_BROWSER_COOKIE,
                    known.dumps({"u": name, "b": known_browser(name) or secrets.token_hex(8)}),
                    max_age=KNOWN_BROWSER_DAYS * 86400,
                    path=url_for("login"),
                    secure=app.config["SESSION_COOKIE_SECURE"],
                    httponly=True,
                    samesite="Strict",
                )
                return resp
        return render_template("login.html", error=error), (401 if error else 200)

    @app.post("/logout")
    def logout() -> Any:
        audit("logout")
        token = session.get("sid")
        if isinstance(token, str):
            accounts.end_session(token)
        session.clear()
        return redirect(url_for("login"))

    @app.get("/audit")
    @require("admin")
    def audit_page() -> str:
        return render_template("audit.html", rows=accounts.audit_log(), users=accounts.all())

    app.jinja_env.filters["ago"] = ago
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["sentence"] = sentence
    app.jinja_env.filters["duration"] = duration
    app.jinja_env.filters["localtime"] = lambda iso: local(str(iso)).strftime("%H:%M")
    app.jinja_env.filters["without_images"] = lambda d: {
        k: v for k, v in d.items() if not k.endswith("_jpeg")
    }
    app.jinja_env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False)
    app.jinja_env.globals.update(ROLE_LABELS=ROLE_LABELS, COMMANDS=COMMANDS, TZ=str(LOCAL))

    @app.get("/")
    def fleet() -> str:
        devices = store.devices()
        online = sum(1 for d in devices if d["online"])
        return render_template(
            "fleet.html",
            devices=devices,
            online=online,
            ingest=ingest.counters if ingest else {},
            hub_connected=ingest.connected if ingest else False,
        )

    @app.get("/devices/<dev>")
    def device(dev: str) -> str:
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

    @app.post("/devices/<dev>/desired")
    @require("admin")
    def desired(dev: str) -> Any:
        if store.device(dev) is None or ingest is None:
            abort(404)
        try:
            config = parse_desired(request.form.get("config", ""))
        except ValueError as e:
            flash(f"Config not sent: {e}", "error")
            return redirect(url_for("device", dev=dev) + "#config")
        version = ingest.set_desired(dev, config)
        audit("config.desired", dev, f"version {version}: {json.dumps(config)}")
        flash(
            f"Desired config version {version} sent; the device reports whether it applied it.",
            "ok",
        )
        return redirect(url_for("device", dev=dev) + "#config")

    @app.post("/devices/<dev>/command/<name>")
    @require("admin")
    def command(dev: str, name: str) -> Any:
        if store.device(dev) is None or ingest is None or name not in COMMANDS:
            abort(404)
        corr = ingest.send_command(dev, name)
        audit("command", dev, f"{name} ({corr})")
        flash(f"Command {name} sent.", "ok")
        return redirect(url_for("device", dev=dev) + "#commands")

    @app.get("/alerts")
    @require("admin", "wildlife")
    def alerts_page() -> str:
        troops = alerts.recent() if alerts else []
        places = {d["id"]: d.get("location") or "" for d in store.devices()}
        return render_template(
            "alerts.html",
            troops=troops,
            places=places,
            told={t["id"]: alerts.told(t["id"]) for t in troops} if alerts else {},
            subscribers=alerts.subscriber_names() if alerts else [],
            line_used=alerts.line_used() if alerts else 0,
            line_budget=alerts.line_monthly_budget if alerts else 0,
        )

    @app.post("/alerts/<troop_id>/going")
    @require("admin", "wildlife")
    def going(troop_id: str) -> Any:
        """A signed-in member of staff takes an incursion from the alerts page."""
        troop = alerts.troop(troop_id) if alerts else None
        if troop is None or alerts is None:
            abort(404)
        if alerts.take(troop_id, g.user):
            accounts.record(
                g.user,
                "alert.taken",
                troop_id,
                ", ".join(troop["cameras"]),
                request.remote_addr or "",
            )
            flash("you are going: the others have been told")
        else:
            flash(f"already taken by {troop['taken_by']}")
        return redirect(url_for("alerts_page"))

    @app.get("/alerts/camera/<dev>")
    @require("admin", "wildlife")
    def camera_timeline(dev: str) -> str:
        d = store.device(dev)
        if d is None:
            abort(404)
        rows = store.events(dev, limit=500, kinds=["wildlife.incursion", "wildlife.incursion_end"])
        ends = {
            e["data"]["incursion"]: e["data"] for e in rows if e["kind"] == "wildlife.incursion_end"
        }
        visits = [
            {**e, "end": ends.get(e["data"]["incursion"])}
            for e in rows
            if e["kind"] == "wildlife.incursion"
        ]
        by_day: dict[str, list[dict[str, Any]]] = {}
        for v in visits:
            by_day.setdefault(local(v["data"]["started"]).strftime("%Y-%m-%d"), []).append(v)
        return render_template("timeline.html", d=d, by_day=by_day)

    @app.route("/alerts/take/<token>", methods=["GET", "POST"])
    def take(token: str) -> Any:
        """The link in each alert: the token names the incursion and the subscriber."""
        found = alerts.resolve_token(token) if alerts else None
        if found is None or alerts is None:
            abort(404)
        troop_id, name = found
        troop = alerts.troop(troop_id)
        if troop is None:
            abort(404)
        if request.method == "POST":
            if alerts.take(troop_id, name):
                accounts.record(
                    name,
                    "alert.taken",
                    troop_id,
                    ", ".join(troop["cameras"]),
                    request.remote_addr or "",
                )
            troop = alerts.troop(troop_id)
        return render_template("take.html", t=troop, name=name, token=token)

    @app.get("/ingest")
    @require("admin")
    def ingest_page() -> str:
        return render_template(
            "ingest.html",
            counters=dict(ingest.counters) if ingest else {},
            rejects=store.reject_counts(),
            recent=store.recent_rejects(),
            total=store.count_events(),
        )

    register_ridership(app, store, require, audit)
    if relay is not None:
        register_counter(app, relay, relay.book, require, audit)

    @app.get("/api/devices")
    def api_devices() -> Any:
        return jsonify(
            [
                {k: (contract.iso(v) if isinstance(v, datetime) else v) for k, v in d.items()}
                for d in store.devices()
            ]
        )

    return app
