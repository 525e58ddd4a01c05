"""Model rollouts (admin): a signed model goes to one device first; staff watch its job, its
self-test and its first hour of telemetry, then push it to the rest of the role; any device
can be rolled back to the model it had before."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, url_for

from mimamori.hub.pages.access import audit, parts, require

bp = Blueprint("models", __name__)


@bp.app_context_processor
def has_models() -> dict[str, bool]:
    return {"has_models": True}


@bp.get("/models")
@require("admin")
def page() -> str:
    rollouts = parts().rollouts
    assert rollouts is not None  # the blueprint is registered only with them
    shown = []
    for r in rollouts.all():
        devices = rollouts.devices(r["id"])
        first = next((d for d in devices if d["device"] == r["first_device"]), None)
        installed = first["updated"] if first and first["status"] == "SUCCEEDED" else None
        watch = rollouts.watch(r["first_device"], installed) if installed else []
        shown.append({**r, "devices": devices, "first": first, "watch": watch})
    return render_template("models.html", rollouts=shown)


@bp.post("/models/<rollout>/rest")
@require("admin")
def rest(rollout: str) -> Any:
    p = parts()
    if p.rollouts is None or p.ingest is None or p.roster is None:
        abort(404)
    r = p.rollouts.get(rollout)
    if r is None:
        abort(404)
    sent = p.rollouts.rest(rollout, p.roster.devices(r["role"]))
    for dev, job in sent:
        p.ingest.send_job(dev, job)
    audit("model.rest", rollout, ", ".join(dev for dev, _ in sent))
    flash(f"{r['name']} v{r['version']} sent to {len(sent)} more device(s).", "ok")
    return redirect(url_for("models.page") + f"#{rollout}")


@bp.post("/models/<rollout>/rollback/<dev>")
@require("admin")
def rollback(rollout: str, dev: str) -> Any:
    p = parts()
    if p.rollouts is None or p.ingest is None:
        abort(404)
    r = p.rollouts.get(rollout)
    if r is None or dev not in {d["device"] for d in p.rollouts.devices(rollout)}:
        abort(404)
    corr = p.ingest.send_command(dev, "model-rollback", {"name": r["name"]})
    audit("model.rollback", dev, f"{r['name']} from v{r['version']} ({corr})")
    flash(f"{dev}: asked to go back to the {r['name']} model it had before.", "ok")
    return redirect(url_for("fleet.device", dev=dev) + "#commands")
