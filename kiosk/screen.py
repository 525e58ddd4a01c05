"""The resident's screen: a small Flask app on localhost, shown full-screen by Chromium.

It listens on 127.0.0.1 only (nothing outside the kiosk reaches it). The page polls
``/api/state``; its big button posts ``/api/call``; the voice's WebRTC offer from staff
arrives by long-poll on ``/api/signal`` and the page's answer goes back by POST. Posts must
carry ``X-Kiosk: 1``, which a page from anywhere else cannot send without a preflight this
app never grants.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, abort, jsonify, render_template, request

from mimamori.edge.webserver import WebServer

if TYPE_CHECKING:
    from mimamori.kiosk.app import KioskApp

log = logging.getLogger(__name__)


def create_screen(kiosk: KioskApp) -> Flask:
    app = Flask(__name__)

    @app.before_request
    def only_ours() -> None:
        if request.method == "POST" and request.headers.get("X-Kiosk") != "1":
            abort(403)

    @app.after_request
    def no_cache(resp: Any) -> Any:
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.get("/")
    def page() -> str:
        return render_template("screen.html", cfg=kiosk.cfg)

    @app.get("/api/state")
    def state() -> Any:
        return jsonify(snapshot(kiosk))

    @app.post("/api/call")
    def call() -> Any:
        kiosk.press()
        return jsonify(snapshot(kiosk))

    @app.post("/api/cancel")
    def cancel() -> Any:
        kiosk.cancel()
        return jsonify(snapshot(kiosk))

    @app.get("/api/desk.jpg")
    def desk() -> Any:
        jpeg = kiosk.desk_view()
        if jpeg is None:
            return Response(status=204)
        return Response(jpeg, mimetype="image/jpeg")

    @app.get("/api/signal")
    def signal_get() -> Any:
        call = request.args.get("call", "")
        after = request.args.get("after", "0")
        if not after.isdigit():
            abort(400, "after: expected a number")
        return jsonify(kiosk.wait_signal(call, int(after), timeout=10.0))

    @app.post("/api/signal")
    def signal_post() -> Any:
        body = request.get_json(silent=True) or {}
        try:
            kiosk.send_signal(str(body.get("call")), str(body.get("type")), str(body.get("sdp")))
        except (ValueError, ConnectionError) as e:
            return jsonify({"error": str(e)}), 409
        return jsonify({"ok": True})

    return app


def snapshot(kiosk: KioskApp) -> dict[str, Any]:
    c = kiosk.machine.current
    now = kiosk._wall()
    hours_ja, hours_en = kiosk.hours.describe()
    nxt = kiosk.hours.next_open(now)
    sending = kiosk.sending()
    return {
        "state": c.state,
        "call": c.call,
        "staff": c.staff,
        "position": c.position,
        "reason": c.reason,
        "sending": sending,
        "thin": kiosk.thin,
        "camera_on": bool(sending),
        "notice": kiosk.notice,
        "open": kiosk.hours.is_open(now),
        "online": kiosk.emit.ready,
        "hours_ja": hours_ja,
        "hours_en": hours_en,
        "next_open": f"{nxt:%-m月%-d日 %-H:%M}",
        "next_open_en": f"{nxt:%a %-d %b, %-H:%M}",
        "phone": kiosk.cfg.phone,
        "office": kiosk.cfg.office,
        "ice_servers": [s.for_browser(kiosk.dev) for s in kiosk.cfg.ice_servers],
        "speak": kiosk.cfg.speak,
        "mark": kiosk.mark.kind if kiosk.mark else None,
    }


class Screen:
    def __init__(self, kiosk: KioskApp, *, port: int, host: str = "127.0.0.1") -> None:
        self.server = WebServer(
            create_screen(kiosk), host=host, port=port, threads=6, name="mimamori-kiosk"
        )
        self.host, self.port = host, self.server.port

    def start(self) -> Screen:
        self.server.start()
        log.info("resident screen on http://127.0.0.1:%d/", self.port)
        return self

    def stop(self) -> None:
        self.server.stop()
