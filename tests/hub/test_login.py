"""Staff login: passwords, roles, CSRF, throttling and the audit log."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from mimamori.hub.auth import Accounts, AuthError, Throttle, sessions
from mimamori.hub.cli import Hub
from mimamori.hub.pages.session import local_next
from mimamori.provisioning.fleet import Fleet
from tests.hub.conftest import PASSWORD, Staff, staff_client


def actions(hub: Hub) -> list[tuple[str, str]]:
    return [(r["user"], r["action"]) for r in Accounts(hub.store).audit_log()]


def test_pages_need_a_signed_in_user(hub: Hub) -> None:
    web = hub.app.test_client()
    r = web.get("/devices/x")
    assert r.status_code == 302 and "/login?next=" in r.headers["Location"]
    assert web.get("/api/devices").status_code == 401
    assert web.get("/login").status_code == 200


def test_wrong_password_is_refused_and_audited(hub: Hub) -> None:
    Accounts(hub.store).add("sato", PASSWORD, "admin")
    staff = Staff(hub.app.test_client())
    r = staff.login("sato", "wrong password!")
    assert r.status_code == 401 and "Wrong user name or password" in r.get_data(as_text=True)
    assert staff.login("nobody", PASSWORD).status_code == 401
    assert ("sato", "login.failed") in actions(hub) and ("nobody", "login.failed") in actions(hub)
    assert staff.web.get("/").status_code == 302  # still not signed in


def test_post_without_csrf_token_is_refused(hub: Hub, admin: Staff) -> None:
    r = admin.web.post("/devices/x/command/ping")
    assert r.status_code == 400  # Flask-WTF: the CSRF token is missing
    r = admin.web.post("/login", data={"name": "sato", "password": PASSWORD})
    assert r.status_code == 400


def test_role_without_rights_is_refused(hub: Hub) -> None:
    hub.store.set_desired("field-01", {"telemetry": {"interval_s": 30}})  # the device exists
    ranger = staff_client(hub, "suzuki", "wildlife")
    assert ranger.get("/").status_code == 200  # every member of staff sees the fleet
    r = ranger.post("/devices/field-01/desired", {"config": "[telemetry]\ninterval_s = 5"})
    assert r.status_code == 403
    assert ranger.post("/devices/field-01/command/restart-app").status_code == 403
    assert ranger.get("/audit").status_code == 403
    assert hub.store.device("field-01")["desired_version"] == 1  # nothing changed
    assert ("suzuki", "denied") in actions(hub)


def test_admin_actions_are_audited(hub: Hub, admin: Staff) -> None:
    hub.store.set_desired("field-01", {"telemetry": {"interval_s": 30}})
    admin.post("/devices/field-01/desired", {"config": "[telemetry]\ninterval_s = 45"})
    admin.post("/devices/field-01/command/ping")
    rows = Accounts(hub.store).audit_log()
    got = {(r["user"], r["action"], r["target"]) for r in rows}
    assert {
        ("sato", "login", ""),
        ("sato", "config.desired", "field-01"),
        ("sato", "command", "field-01"),
    } <= got
    page = admin.get("/audit").get_data(as_text=True)
    assert "config.desired" in page and "interval_s" in page


def test_login_is_throttled_after_five_failures(hub: Hub) -> None:
    Accounts(hub.store).add("sato", PASSWORD, "admin")
    staff = Staff(hub.app.test_client())
    for _ in range(5):
        assert staff.login("sato", "guess guess guess").status_code == 401
    r = staff.login("sato", PASSWORD)  # even the right password waits now, from here
    assert r.status_code == 429 and "Too many failed attempts" in r.get_data(as_text=True)
    assert 890 <= int(r.headers["Retry-After"]) <= 900
    assert ("sato", "login.throttled") in actions(hub)
    elsewhere = Staff(hub.app.test_client())
    elsewhere.web.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert elsewhere.login("sato").status_code == 302  # the owner at another address


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_pair_budget_is_hard_and_slides() -> None:
    clock = Clock()
    t = Throttle(clock=clock)
    for _ in range(5):
        assert t.attempt("sato", "10.0.0.1").allowed
        clock.now += 60
    refused = t.attempt("sato", "10.0.0.1")
    assert not refused.allowed and refused.retry_after == 15 * 60 - 5 * 60
    assert t.attempt("kato", "10.0.0.1").allowed  # a colleague behind the same address
    assert t.attempt("sato", "10.0.0.2").allowed  # the account from elsewhere
    assert t.attempt("sato", "10.0.0.1", known_browser="b1").allowed  # a known browser
    clock.now += refused.wait
    assert t.attempt("sato", "10.0.0.1").allowed  # the oldest failure left the window


def test_throttle_account_budget_doubles_the_wait() -> None:
    clock = Clock()
    t = Throttle(clock=clock)
    for n in range(10):  # ten addresses, one guess each: free
        assert t.attempt("sato", f"10.0.1.{n}").allowed
    waits = []
    for n in range(6):
        a = t.attempt("sato", f"10.0.2.{n}")
        assert not a.allowed
        waits.append(a.retry_after)
        clock.now += a.wait
        assert t.attempt("sato", f"10.0.2.{n}").allowed
    assert waits == [1, 2, 4, 8, 16, 32]
    for _ in range(20):
        a = t.attempt("sato", "10.0.3.1")
        clock.now += a.wait
        t.attempt("sato", "10.0.3.1")
    assert 0 < t.attempt("sato", "10.0.9.9").wait <= 900  # at most 15 minutes
    assert t.attempt("sato", "10.0.9.9", known_browser="b1").allowed


def test_throttle_success_takes_the_attempt_back() -> None:
    clock = Clock()
    t = Throttle(clock=clock)
    for _ in range(4):
        t.attempt("sato", "10.0.0.1")
    t.attempt("sato", "10.0.0.1").succeeded()  # the owner's typo, then the right password
    for _ in range(5):
        assert t.attempt("sato", "10.0.0.1").allowed
    assert len(t._hits["user:sato"]) == 9  # the account budget keeps the failures


def test_throttle_counts_attempts_in_flight() -> None:
    t = Throttle()
    results: list[bool] = []
    barrier = threading.Barrier(20)

    def go() -> None:
        barrier.wait()
        results.append(t.attempt("sato", "10.0.0.1").allowed)

    threads = [threading.Thread(target=go) for _ in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert results.count(True) == 5


def test_sign_out_and_password_change_end_sessions(hub: Hub) -> None:
    accounts = Accounts(hub.store)
    accounts.add("sato", PASSWORD, "admin")
    a, b = accounts.open_session("sato"), accounts.open_session("sato")
    assert accounts.session_user(a) == ("sato", "admin")
    accounts.end_session(a)
    assert accounts.session_user(a) is None and accounts.session_user(b) == ("sato", "admin")
    accounts.add("sato", PASSWORD + "2", "wildlife")
    assert accounts.session_user(b) is None
    assert accounts.session_user("made-up") is None
    with hub.store.engine.connect() as c:
        stored = [r[0] for r in c.execute(sa.select(sessions.c.token_hash))]
    assert a not in stored and b not in stored  # only hashes are kept


def test_signed_out_cookie_is_refused(hub: Hub, admin: Staff) -> None:
    cookie = admin.web.get_cookie("session")
    assert cookie is not None
    assert admin.post("/logout").status_code == 302
    thief = hub.app.test_client()
    thief.environ_base["wsgi.url_scheme"] = "https"
    thief.set_cookie("session", cookie.value)
    assert thief.get("/").status_code == 302


def test_next_is_only_a_page_of_the_hub(hub: Hub) -> None:
    app = hub.app
    assert local_next(app, "/devices/field-01?tab=1") == "/devices/field-01?tab=1"
    assert local_next(app, "/ridership") == "/ridership"
    for bad in ("", "//evil.example", "/\t/evil.example", "/\\evil.example", "https://x.y/",
                "javascript:alert(1)", "/nowhere", "/logout", "/login?next=//x", " /ridership",
                "/ridership\x7f", "devices/field-01"):  # fmt: skip
        assert local_next(app, bad) is None, bad


def test_session_cookie_is_secure_httponly_samesite(hub: Hub) -> None:
    Accounts(hub.store).add("sato", PASSWORD, "admin")
    staff = Staff(hub.app.test_client())
    staff.web.environ_base["wsgi.url_scheme"] = "https"
    cookies = staff.login("sato").headers.getlist("Set-Cookie")
    session = next(c for c in cookies if c.startswith("session="))
    assert "Secure" in session and "HttpOnly" in session and "SameSite=Lax" in session
    known = next(c for c in cookies if c.startswith("mimamori_known="))
    assert "Secure" in known and "HttpOnly" in known and "SameSite=Strict" in known
    assert "Path=/login" in known


def test_passwords_are_hashed_and_checked(hub: Hub) -> None:
    accounts = Accounts(hub.store)
    with pytest.raises(AuthError, match="at least 10"):
        accounts.add("kato", "short", "admin")
    with pytest.raises(AuthError, match="role 'boss'"):
        accounts.add("kato", PASSWORD, "boss")
    accounts.add("kato", PASSWORD, "transit")
    from mimamori.hub.auth import users

    with hub.store.engine.connect() as c:
        stored = c.execute(sa.select(users.c.password_hash)).scalar_one()
    assert stored.startswith("scrypt:") and PASSWORD not in stored
    assert accounts.check("kato", PASSWORD) == "transit"
    assert accounts.check("kato", PASSWORD + "x") is None


def test_add_user_cli(fleet: Fleet, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    cmd = [
        sys.executable,
        "-m",
        "mimamori.edge.cli",
        "hub",
        "add-user",
        "ito",
        "--role",
        "counter",
        "--config",
        str(fleet.hub_config),
        "--password-file",
        str(pw),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "staff account ito (counter) saved" in res.stdout
    from mimamori.hub.config import load_hub_config
    from mimamori.hub.store import Store

    store = Store(load_hub_config(fleet.hub_config).store.url).create()
    assert Accounts(store).check("ito", PASSWORD) == "counter"
    store.close()
