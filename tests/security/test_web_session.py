"""A session cookie copied from a staff browser (shared PC, proxy log, malware) is replayed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mimamori.hub.cli import Hub
from mimamori.provisioning.fleet import Fleet
from tests.kiosk.conftest import web_hub  # noqa: F401  (the hub with its pages served)
from tests.security.web_helpers import PASSWORD, Browser, signed_in


def replay(hub: Hub, cookies: dict[str, str], source: str = "127.0.0.9") -> Browser:
    thief = Browser(hub, source)
    thief.cookies = dict(cookies)
    return thief


def test_a_cookie_copied_before_sign_out_is_dead_after_it(web_hub: Hub) -> None:  # noqa: F811
    victim = signed_in(web_hub, "sato", "admin")
    copied = dict(victim.cookies)
    assert replay(web_hub, copied).get("/").status == 200  # the copy works while signed in
    assert victim.post("/logout").status == 302
    thief = replay(web_hub, copied)
    r = thief.get("/")
    assert r.status == 302 and "/login" in r.location
    assert thief.get("/api/devices").status == 401
    assert thief.get("/audit").status == 302
    # nor can the thief act with the CSRF token of the old session
    r = thief.request("POST", "/devices/field-01/command/ping", {"csrf_token": victim.csrf})
    assert r.status in (302, 400) and r.status != 200


def test_a_password_change_ends_every_session_of_the_account(
    web_hub: Hub,  # noqa: F811
    fleet: Fleet,
    tmp_path: Path,
) -> None:
    office = signed_in(web_hub, "sato", "admin")
    home = signed_in(web_hub, "sato", "admin", source="127.0.0.2")
    other = signed_in(web_hub, "kato", "transit")
    copied = dict(office.cookies)
    pw = tmp_path / "pw"
    pw.write_text("a brand new passphrase\n")
    res = subprocess.run(
        [sys.executable, "-m", "mimamori.edge.cli", "hub", "add-user", "sato", "--role", "admin",
         "--config", str(fleet.hub_config), "--password-file", str(pw)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    for b in (office, home, replay(web_hub, copied)):
        assert b.get("/").status == 302
    assert other.get("/ridership").status == 200  # another account is untouched
    assert Browser(web_hub).login("sato", PASSWORD).status == 401
    assert Browser(web_hub, "127.0.0.3").login("sato", "a brand new passphrase").status == 302
