"""What an admin sends a device from its page: a desired config, or a command."""

from __future__ import annotations

import json
import tomllib
from typing import Any

from flask import Blueprint, abort, flash, redirect, request, url_for

from mimamori.hub.pages.access import audit, parts, require

#: the commands every device answers (DESIGN.md); shown as buttons on the device page
COMMANDS = ("ping", "snapshot-config", "restart-app")

bp = Blueprint("commands", __name__)


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


@bp.post("/devices/<dev>/desired")
@require("admin")
def desired(dev: str) -> Any:
    store, ingest = parts().store, parts().ingest
    if store.device(dev) is None or ingest is None:
        abort(404)
    back = redirect(url_for("fleet.device", dev=dev) + "#config")
    try:
        config = parse_desired(request.form.get("config", ""))
    except ValueError as e:
        flash(f"Config not sent: {e}", "error")
        return back
    version = ingest.set_desired(dev, config)
    audit("config.desired", dev, f"version {version}: {json.dumps(config)}")
    flash(
        f"Desired config version {version} sent; the device reports whether it applied it.",
        "ok",
    )
    return back


@bp.post("/devices/<dev>/command/<name>")
@require("admin")
def command(dev: str, name: str) -> Any:
    store, ingest = parts().store, parts().ingest
    if store.device(dev) is None or ingest is None or name not in COMMANDS:
        abort(404)
    corr = ingest.send_command(dev, name)
    audit("command", dev, f"{name} ({corr})")
    flash(f"Command {name} sent.", "ok")
    return redirect(url_for("fleet.device", dev=dev) + "#commands")
