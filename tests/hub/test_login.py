"""Staff login: passwords, roles, CSRF, throttling and the audit log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hub.auth import Accounts, AuthError
from hub.cli import Hub
from provisioning.fleet import Fleet
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
    r = staff.login("sato", PASSWORD)  # even the right password waits now
    assert r.status_code == 429 and "Too many failed attempts" in r.get_data(as_text=True)
    assert ("sato", "login.throttled") in actions(hub)


def test_session_cookie_is_secure_httponly_samesite(hub: Hub) -> None:
    Accounts(hub.store).add("sato", PASSWORD, "admin")
    staff = Staff(hub.app.test_client())
    staff.web.environ_base["wsgi.url_scheme"] = "https"
    cookie = staff.login("sato").headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_passwords_are_hashed_and_checked(hub: Hub) -> None:
    accounts = Accounts(hub.store)
    with pytest.raises(AuthError, match="at least 10"):
        accounts.add("kato", "short", "admin")
    with pytest.raises(AuthError, match="role 'boss'"):
        accounts.add("kato", PASSWORD, "boss")
    accounts.add("kato", PASSWORD, "transit")
    import sqlalchemy as sa

    from hub.auth import users

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
        "edge.cli",
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
    from hub.config import load_hub_config
    from hub.store import Store

    store = Store(load_hub_config(fleet.hub_config).store.url).create()
    assert Accounts(store).check("ito", PASSWORD) == "counter"
    store.close()
