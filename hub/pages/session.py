"""Signing in and out, the live-session check before every request, and the audit log.

Every page needs a signed-in member of staff whose session is live in the database (see
``hub.auth``: signing out or a password change ends it server-side). Failed sign-ins are
throttled (``hub.auth.Throttle``); a browser that signed in before carries a signed
known-browser cookie, so nobody else's failures hold it up. After signing in the browser
goes back only to a page of this hub (``local_next``), never to another site.
"""

from __future__ import annotations

import math
import secrets
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from mimamori.hub.pages.access import audit, parts, require

KNOWN_BROWSER_COOKIE = "mimamori_known"
KNOWN_BROWSER_DAYS = 180
#: the pages open without a session: signing in, and an alert's "I'm on it" link
OPEN_ENDPOINTS = ("session.login", "alerts.take")

bp = Blueprint("session", __name__)


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
    if endpoint in ("session.login", "session.logout", "static"):
        return None
    return urlunsplit(("", "", parts.path, parts.query, ""))


def _known() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key or b"", salt="mimamori-known-browser")


def known_browser(name: str) -> str | None:
    """The id of this browser's known-browser cookie if it was given for ``name``."""
    try:
        data = _known().loads(
            request.cookies.get(KNOWN_BROWSER_COOKIE, ""), max_age=KNOWN_BROWSER_DAYS * 86400
        )
    except BadSignature:
        return None
    if isinstance(data, dict) and data.get("u") == name and isinstance(data.get("b"), str):
        return data["b"]
    return None


@bp.before_app_request
def load_user() -> Any:
    g.user = g.role = None
    if request.endpoint == "static":
        return None
    token = session.get("sid")
    found = parts().accounts.session_user(token) if isinstance(token, str) else None
    if found is not None:
        g.user, g.role = found
    else:
        session.pop("sid", None)
        if request.endpoint not in OPEN_ENDPOINTS:
            if request.path.startswith("/api/"):
                abort(401)
            return redirect(url_for("session.login", next=request.full_path))
    return None


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method != "POST":
        return render_template("login.html", error=None)
    accounts = parts().accounts
    name = request.form.get("name", "").strip()[:64]
    addr = request.remote_addr or "?"
    attempt = parts().throttle.attempt(name, addr, known_browser(name))
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
        return render_template("login.html", error="Wrong user name or password."), 401
    attempt.succeeded()
    session.clear()
    session.permanent = True
    session["sid"] = accounts.open_session(name, addr)
    accounts.record(name, "login", detail=role, address=addr)
    target = local_next(current_app, request.args.get("next", ""))
    resp = redirect(target or url_for("fleet.index"))
    resp.set_cookie(
        KNOWN_BROWSER_COOKIE,
        _known().dumps({"u": name, "b": known_browser(name) or secrets.token_hex(8)}),
        max_age=KNOWN_BROWSER_DAYS * 86400,
        path=url_for("session.login"),
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        httponly=True,
        samesite="Strict",
    )
    return resp


@bp.post("/logout")
def logout() -> Any:
    audit("logout")
    token = session.get("sid")
    if isinstance(token, str):
        parts().accounts.end_session(token)
    session.clear()
    return redirect(url_for("session.login"))


@bp.get("/audit", endpoint="audit")
@require("admin")
def audit_page() -> str:
    accounts = parts().accounts
    return render_template("audit.html", rows=accounts.audit_log(), users=accounts.all())
