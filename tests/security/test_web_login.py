"""Attacks on the sign-in page of the hub as served: open redirects and password guessing."""

from __future__ import annotations

import re
import threading
from urllib.parse import urljoin, urlsplit

import pytest

from mimamori.hub.cli import Hub
from tests.kiosk.conftest import web_hub  # noqa: F401  (the hub with its pages served)
from tests.security.web_helpers import Browser, audit_actions, signed_in, staff


def where_a_browser_goes(base: str, location: str) -> str:
    """The netloc a browser navigates to for a Location header (WHATWG URL parsing: leading
    C0 controls and spaces stripped, tabs and newlines removed, backslash read as slash)."""
    loc = location.lstrip("".join(map(chr, range(0x21))))
    loc = re.sub(r"[\t\n\r]", "", loc).replace("\\", "/")
    return urlsplit(urljoin(base + "/login", loc)).netloc


@pytest.mark.parametrize(
    "target",
    [
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r\n/evil.example",
        "//evil.example",
        "///evil.example",
        " //evil.example",
        "\t//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "\\/evil.example",
        "https://evil.example/",
        "http:evil.example",
        "https:/\\evil.example",
        "javascript:alert(1)",
        "//evil.example/%2F..",
        "/%09/evil.example",
        "\x00//evil.example",
    ],
)
def test_sign_in_never_sends_the_browser_off_site(web_hub: Hub, target: str) -> None:  # noqa: F811
    staff(web_hub, "sato", "admin")
    b = Browser(web_hub)
    r = b.login("sato", next=target)
    assert r.status == 302
    assert where_a_browser_goes(b.base, r.location) in ("", f"127.0.0.1:{b.port}"), r.location
    assert not r.location.lower().startswith("javascript")


def test_sign_in_still_returns_to_the_page_asked_for(web_hub: Hub) -> None:  # noqa: F811
    staff(web_hub, "sato", "admin")
    b = Browser(web_hub)
    r = b.get("/devices/field-01?x=1")
    assert r.status == 302 and "/login?next=" in r.location
    nxt = r.location.split("next=", 1)[1]
    from urllib.parse import unquote

    r = b.login("sato", next=unquote(nxt))
    assert r.status == 302 and r.location.endswith("/devices/field-01?x=1")
    assert Browser(web_hub).login("sato", next="/counter").location.endswith("/counter")
    assert Browser(web_hub).login("sato", next="/nowhere").location.endswith("/")


def test_thirty_parallel_guesses_get_at_most_five_password_checks(web_hub: Hub) -> None:  # noqa: F811
    staff(web_hub, "sato", "admin")
    guessers = [Browser(web_hub) for _ in range(30)]
    for g in guessers:
        g.get("/login")
    start = threading.Barrier(len(guessers))
    statuses: list[int] = []
    lock = threading.Lock()

    def guess(g: Browser, n: int) -> None:
        start.wait()
        r = g.attempt("sato", f"guess number {n}")
        with lock:
            statuses.append(r.status)

    threads = [threading.Thread(target=guess, args=(g, n)) for n, g in enumerate(guessers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(statuses) == 30
    assert statuses.count(401) <= 5, statuses  # passwords actually checked
    assert statuses.count(429) >= 25, statuses
    assert audit_actions(web_hub, "login.failed") <= 5


def test_a_guessing_attack_does_not_lock_out_the_owner_or_the_office(web_hub: Hub) -> None:  # noqa: F811
    staff(web_hub, "kato", "transit")
    # the owner signed in from this browser before (behind the office's one proxy address)
    owner = signed_in(web_hub, "sato", "admin", source="127.0.0.1")
    assert owner.post("/logout").status == 302
    attacker = Browser(web_hub, source="127.0.0.1")  # same proxy address
    got = [attacker.login("sato", f"guess {n} guess").status for n in range(12)]
    assert got[:5] == [401] * 5 and set(got[5:]) == {429}, got
    assert attacker.login("sato").status == 429  # no free pass for the attacker's browser
    # a colleague behind the same proxy signs in to their own account
    assert Browser(web_hub, source="127.0.0.1").login("kato").status == 302
    # the owner's known browser gets in; so does the owner from another address
    assert owner.login("sato").status == 302
    assert Browser(web_hub, source="127.0.0.2").login("sato").status == 302


def test_guesses_from_many_addresses_slow_down_yet_the_owner_gets_in(web_hub: Hub) -> None:  # noqa: F811
    owner = signed_in(web_hub, "sato", "admin", source="127.0.0.1")
    owner.post("/logout")
    checked = waited = 0
    for n in range(30):  # a botnet: one guess from each address
        r = Browser(web_hub, source=f"127.0.1.{n + 1}").login("sato", f"guess {n} guess")
        if r.status == 401:
            checked += 1
        else:
            assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
            waited += 1
    assert checked <= 13 and waited >= 17, (checked, waited)
    assert owner.login("sato").status == 302  # the known browser is not slowed
