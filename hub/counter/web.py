"""The staff console for the remote counter (roles admin and counter).

The page polls ``/counter/state.json`` (the ringing queue, this person's call) and, once a
call is connected, long-polls each view: ``/counter/calls/CALL/view/NAME?after=SEQ`` answers
with the next JPEG as soon as the kiosk sends one (headers ``X-Seq`` and ``X-Captured``), or
204 after a few seconds without one. Fetching a frame is what lets the kiosk send the next,
so a slow link or a slow browser lowers the frame rate instead of queueing stale pictures.
Once the call has ended, a view or signal poll is answered 204 with ``X-Call-Ended: 1`` (not
an error: the page stops polling), and the page reloads ``/counter/recent``, the "Recent
calls" list.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, abort, g, jsonify, render_template, request

from mimamori.edge import contract
from mimamori.hub.counter.relay import CallEnded, CounterError, Relay
from mimamori.hub.pages.access import audit, parts, require

#: how long a view or signal poll waits for something new
POLL_S = 5.0

bp = Blueprint("counter", __name__, url_prefix="/counter")
staff = require("admin", "counter")


@bp.app_context_processor
def has_counter() -> dict[str, bool]:
    return {"has_counter": True}


def relay() -> Relay:
    """The relay of the app serving this request (this blueprint is registered only with one)."""
    r = parts().relay
    assert r is not None
    return r


def call_id(call: str) -> str:
    if not re.fullmatch(contract.CALL_ID, call):
        abort(404)
    return call


def after() -> int:
    text = request.args.get("after", "0")
    if not text.lstrip("-").isdigit():
        abort(400, "after: expected a frame number")
    return int(text)


@bp.errorhandler(CounterError)
def refused(e: CounterError) -> Any:
    return jsonify({"error": str(e)}), 409


@bp.errorhandler(CallEnded)
def ended(e: CallEnded) -> Any:
    if request.endpoint in ("counter.view", "counter.signal"):
        return Response(status=204, headers={"X-Call-Ended": "1", "Cache-Control": "no-store"})
    return refused(e)


#: how many calls "Recent calls" lists
RECENT = 15


@bp.get("")
@staff
def page() -> str:
    book = relay().book
    return render_template("counter.html", recent=book.recent(RECENT), saved=book.saved(20))


@bp.get("/recent")
@staff
def recent() -> str:
    """The "Recent calls" list alone, for the page to refresh when a call ends."""
    return render_template("counter_recent.html", recent=relay().book.recent(RECENT))


@bp.get("/state.json")
@staff
def state() -> Any:
    return jsonify(relay().console(g.user))


@bp.get("/ice.json")
@staff
def ice() -> Any:
    """The TURN/STUN servers for this page's voice, credentials included (signed-in staff
    only; never cached)."""
    servers = [s.for_browser(g.user) for s in relay().cfg.counter.ice_servers]
    return jsonify({"iceServers": servers}), 200, {"Cache-Control": "no-store"}


@bp.post("/calls/<call>/answer")
@staff
def answer(call: str) -> Any:
    live = relay().answer(call_id(call), g.user)
    audit("counter.answer", live.dev, f"call {call}")
    return jsonify({"ok": True})


@bp.post("/calls/<call>/end")
@staff
def end(call: str) -> Any:
    relay().end(call_id(call), g.user)
    return jsonify({"ok": True})


@bp.post("/calls/<call>/capture")
@staff
def capture(call: str) -> Any:
    relay().capture(call_id(call), g.user)
    return jsonify({"ok": True})


@bp.post("/calls/<call>/point")
@staff
def point(call: str) -> Any:
    body = request.get_json(silent=True) or {}
    try:
        x, y = float(body.get("x", 0.5)), float(body.get("y", 0.5))
    except (TypeError, ValueError):
        raise CounterError("point: x and y must be numbers between 0 and 1") from None
    relay().point(call_id(call), g.user, str(body.get("mark")), x, y, str(body.get("on", "view")))
    return jsonify({"ok": True})


@bp.get("/calls/<call>/view/<name>")
@staff
def view(call: str, name: str) -> Any:
    f = relay().frame(call_id(call), g.user, name, after(), POLL_S)
    if f is None:
        return Response(status=204)
    return Response(
        f.jpeg,
        mimetype="image/jpeg",
        headers={
            "X-Seq": str(f.seq),
            "X-Captured": contract.iso(f.meta.ts),
            "X-Quality": str(f.meta.q),
            "Cache-Control": "no-store",
        },
    )


@bp.post("/calls/<call>/offer")
@staff
def offer(call: str) -> Any:
    sdp = (request.get_json(silent=True) or {}).get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0") or len(sdp) > 60_000:
        return jsonify({"error": "sdp: expected a WebRTC session description"}), 400
    relay().offer(call_id(call), g.user, sdp)
    return jsonify({"ok": True})


@bp.get("/calls/<call>/signal")
@staff
def signal(call: str) -> Any:
    return jsonify(relay().wait_signal(call_id(call), g.user, max(0, after()), POLL_S))


@bp.get("/calls/<call>/stills/<still>.jpg")
@staff
def still_jpeg(call: str, still: str) -> Any:
    s = relay().still(call_id(call), g.user, still)
    return Response(s.jpeg, mimetype="image/jpeg", headers={"Cache-Control": "no-store"})


@bp.post("/calls/<call>/stills/<still>/save")
@staff
def save_still(call: str, still: str) -> Any:
    reason = (request.get_json(silent=True) or {}).get("reason")
    if not isinstance(reason, str):
        return jsonify({"error": "reason: expected text"}), 400
    relay().save_still(call_id(call), g.user, still, reason)
    return jsonify({"ok": True})


@bp.get("/saved/<still>.jpg")
@staff
def saved_jpeg(still: str) -> Any:
    jpeg = relay().book.saved_jpeg(still)
    if jpeg is None:
        abort(404)
    audit("counter.still_view", still)
    return Response(jpeg, mimetype="image/jpeg", headers={"Cache-Control": "no-store"})
