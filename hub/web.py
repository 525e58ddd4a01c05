"""Staff web pages: the fleet, one device, ingest health. Flask, server-rendered, no CDN."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from typing import Any

from flask import Flask, abort, flash, jsonify, redirect, render_template, request, url_for

from edge import contract
from hub.ingest import Ingest
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


def create_app(store: Store, ingest: Ingest | None, secret_key: bytes) -> Flask:
    app = Flask(__name__)
    app.secret_key = secret_key
    app.jinja_env.filters["ago"] = ago
    app.jinja_env.filters["duration"] = duration
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
    def desired(dev: str) -> Any:
        if store.device(dev) is None or ingest is None:
            abort(404)
        try:
            config = parse_desired(request.form.get("config", ""))
        except ValueError as e:
            flash(f"Config not sent: {e}", "error")
            return redirect(url_for("device", dev=dev) + "#config")
        version = ingest.set_desired(dev, config)
        flash(
            f"Desired config version {version} sent; the device reports whether it applied it.",
            "ok",
        )
        return redirect(url_for("device", dev=dev) + "#config")

    @app.post("/devices/<dev>/command/<name>")
    def command(dev: str, name: str) -> Any:
        if store.device(dev) is None or ingest is None or name not in COMMANDS:
            abort(404)
        ingest.send_command(dev, name)
        flash(f"Command {name} sent.", "ok")
        return redirect(url_for("device", dev=dev) + "#commands")

    @app.get("/ingest")
    def ingest_page() -> str:
        return render_template(
            "ingest.html",
            counters=dict(ingest.counters) if ingest else {},
            rejects=store.reject_counts(),
            recent=store.recent_rejects(),
            total=store.count_events(),
        )

    @app.get("/api/devices")
    def api_devices() -> Any:
        return jsonify(
            [
                {k: (contract.iso(v) if isinstance(v, datetime) else v) for k, v in d.items()}
                for d in store.devices()
            ]
        )

    return app
