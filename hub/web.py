"""Staff web pages: the fleet, one device, ingest health, audit log. Flask, no CDN.

Every page needs a signed-in member of staff; every form carries a CSRF token (Flask-WTF);
session cookies are HttpOnly, SameSite=Lax and Secure (browsers treat http://localhost as
secure; anywhere else serve the hub behind HTTPS).
"""

from __future__ import annotations

import functools
import json
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

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

from edge import contract
from hub.alerts import Alerts
from hub.auth import Accounts, Throttle
from hub.config import LOCAL
from hub.counter.relay import Relay
from hub.counter.web import register as register_counter
from hub.ingest import Ingest
from hub.ridership.web import register as register_ridership
from hub.store import Store

#: the commands every device answers (DESIGN.md); shown as buttons on the device page
COMMANDS = ("ping", "snapshot-config", "restart-app")
ROLE_LABELS = {"wildlife": "Monkey watch", "ridership": "Bus ridership", "kiosk": "Counter kiosk"}


def ago(ts: datetime | None, now: datetime | None = None) -> str:
    """'12 s', '3 min', '5 h', '2 d' — how long since ``ts``."""
    if ts is None:
        return "never"
    secs = max(0, int(((now or datetime.now(UTC)) - ts).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if secs >= size:
            return f"{secs // size} {unit}"
    return f"{secs} s"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(seconds)
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    return f"{d} d {h} h" if d else f"{h} h {m} min" if h else f"{m} min"


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
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
    )
    CSRFProtect(app)
    accounts = Accounts(store)
    throttle = Throttle()
    app.extensions["mimamori.accounts"] = accounts

    def audit(action: str, target: str = "", detail: str = "") -> None:
        accounts.record(g.user, action, target, detail, request.remote_addr or "")

    @app.before_request
    def load_user() -> Any:
        g.user = session.get("user")
        g.role = accounts.role(g.user) if g.user else None
        if g.role is None:
            g.user = None
            session.pop("user", None)
            if request.endpoint not in ("login", "static", "take"):
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

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        error = None
        if request.method == "POST":
            name = request.form.get("name", "").strip()
            addr = request.remote_addr or "?"
            keys = (f"addr:{addr}", f"user:{name}")
            if throttle.blocked(*keys):
                accounts.record(name or "?", "login.throttled", address=addr)
                return render_template(
                    "login.html",
                    error="Too many failed attempts. Wait ten minutes, or ask an administrator.",
                ), 429
            role = accounts.check(name, request.form.get("password", ""))
            if role is None:
                throttle.failed(*keys)
                accounts.record(name or "?", "login.failed", address=addr)
                error = "Wrong user name or password."
            else:
                throttle.succeeded(*keys)
                session.clear()
                session.permanent = True
                session["user"] = name
                accounts.record(name, "login", detail=role, address=addr)
                target = request.args.get("next", "")
                return redirect(
                    target
                    if target.startswith("/") and not target.startswith("//")
                    else url_for("fleet")
                )
        return render_template("login.html", error=error), (401 if error else 200)

    @app.post("/logout")
    def logout() -> Any:
        audit("logout")
        session.clear()
        return redirect(url_for("login"))

    @app.get("/audit")
    @require("admin")
    def audit_page() -> str:
        return render_template("audit.html", rows=accounts.audit_log(), users=accounts.all())

    app.jinja_env.filters["ago"] = ago
    app.jinja_env.filters["duration"] = duration
    app.jinja_env.filters["localtime"] = lambda iso: (
        datetime.fromisoformat(str(iso)).astimezone(LOCAL).strftime("%H:%M")
    )
    app.jinja_env.filters["without_images"] = lambda d: {
        k: v for k, v in d.items() if not k.endswith("_jpeg")
    }
    app.jinja_env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False)
    app.jinja_env.globals.update(ROLE_LABELS=ROLE_LABELS, COMMANDS=COMMANDS)

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
        return render_template(
            "device.html",
            d=d,
            events=store.events(dev, limit=50),
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
        return render_template(
            "alerts.html",
            troops=alerts.recent() if alerts else [],
            line_used=alerts.line_used() if alerts else 0,
            line_budget=alerts.line_monthly_budget if alerts else 0,
        )

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
            day = (
                datetime.fromisoformat(v["data"]["started"]).astimezone(LOCAL).strftime("%Y-%m-%d")
            )
            by_day.setdefault(day, []).append(v)
        return render_template("timeline.html", d=d, by_day=by_day, local=LOCAL)

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
