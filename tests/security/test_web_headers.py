"""Framing, script injection and MIME sniffing against the staff pages: the hub's security
headers on every answer, checked over HTTP and in real headless Chromium, where every page
must still work under the policy."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import ConsoleMessage, Page, sync_playwright

from mimamori.hub.cli import Hub
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.kiosk.conftest import web_hub  # noqa: F401  (the hub with its pages served)
from tests.mqtt_probe import wait_until
from tests.security.test_web_ridership import visit
from tests.security.web_helpers import PASSWORD, Browser, device, incursion, signed_in, staff

CHROMIUM = Path("/usr/lib/chromium/chromium")  # Debian's; `./run.sh test` installs it
PAGES = [
    "/",
    "/devices/field-01",
    "/devices/bus-01",
    "/alerts",
    "/alerts/camera/field-01",
    "/ridership?from=2026-11-25&to=2026-11-25",
    "/counter",
    "/ingest",
    "/audit",
]


@pytest.fixture
def fleet_data(web_hub: Hub, fleet: Fleet, broker: MosquittoProcess) -> str:  # noqa: F811
    """A camera's troop with its snapshot and a bus trip, sent by real devices; a take link."""
    with device(fleet, broker, "field-01", "wildlife") as cam:
        cam.event("wildlife.incursion", incursion(), prio=2)
    with device(fleet, broker, "bus-01", "ridership") as bus:
        for v in (visit(1, 5, 0, "07:30"), visit(2, 2, 3, "07:35"), visit(3, 0, 4, "07:40")):
            bus.event("ridership.stop_visit", v, created=datetime.fromisoformat(v["departure"]))
    wait_until(lambda: web_hub.store.count_events() == 4, 15, "events stored")
    troops = wait_until(lambda: web_hub.alerts.recent(), 15, "troop stored")
    return "/alerts/take/" + web_hub.alerts._tokens.dumps([troops[0]["id"], "Yamada"])


def check_headers(headers: object, what: str) -> None:
    get = headers.get  # type: ignore[attr-defined]
    csp = get("Content-Security-Policy") or ""
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives.get("default-src") == ["'self'"], (what, csp)
    assert directives.get("frame-ancestors") == ["'none'"], (what, csp)
    assert directives.get("object-src") == ["'none'"], (what, csp)
    for kind in ("script-src", "style-src", "default-src"):
        assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "data:"} & set(
            directives.get(kind, [])
        ), (what, csp)
    assert get("X-Frame-Options") == "DENY", what
    assert get("X-Content-Type-Options") == "nosniff", what
    assert get("Referrer-Policy") == "same-origin", what


def test_every_answer_carries_the_security_headers(web_hub: Hub, fleet_data: str) -> None:  # noqa: F811
    anonymous = Browser(web_hub)
    for path in ("/login", "/", "/static/style.css", "/static/counter.js", fleet_data):
        check_headers(anonymous.get(path).headers, path)
    admin = signed_in(web_hub, "sato", "admin")
    for path in [*PAGES, "/api/devices", "/nowhere", "/ridership/visits.csv"]:
        check_headers(admin.get(path).headers, path)
    check_headers(admin.post("/logout").headers, "/logout")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (./run.sh test does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--use-fake-ui-for-media-stream",
                  "--use-fake-device-for-media-stream"],
        )  # fmt: skip
        yield browser
        browser.close()


WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


def open_watched(chromium: Chromium) -> tuple[Page, list[str]]:
    page = chromium.new_context().new_page()
    errors: list[str] = []

    def console(m: ConsoleMessage) -> None:
        if m.type == "error":
            errors.append(m.text)

    page.on("console", console)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.add_init_script(WATCH)
    return page, errors


def test_every_page_works_under_the_policy_in_chromium(
    chromium: Chromium,
    web_hub: Hub,  # noqa: F811
    fleet_data: str,
) -> None:
    base = f"http://127.0.0.1:{web_hub.cfg.web.port}"
    staff(web_hub, "sato", "admin")
    page, errors = open_watched(chromium)
    page.goto(f"{base}/login")
    page.fill("input[name=name]", "sato")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    for path in PAGES:
        page.goto(base + path)
        page.wait_for_load_state("load")
        if path == "/counter":  # its script runs: it polls and renders the empty queue
            page.wait_for_selector("#empty:visible")  # (no wait_for_function: it evals)
            wait_until(lambda: page.title().startswith("counter"), 5, "the console's title")
        assert page.evaluate("window.__violations") == [], path
        broken = page.evaluate(
            "[...document.images].filter((i) => !i.complete || !i.naturalWidth).length"
        )
        snaps = page.evaluate("document.querySelectorAll('img.snap').length")
        assert broken == 0 or path == "/counter", (path, broken)  # counter views start empty
        if path.startswith(("/devices/field", "/alerts")):
            assert snaps >= 1, path  # the data: snapshot is shown
    # the ridership bars are sized by the static script, not inline styles
    page.goto(base + "/ridership?from=2026-11-25&to=2026-11-25")
    widths = page.evaluate(
        "[...document.querySelectorAll('.bar.on')].map((b) => b.getBoundingClientRect().width)"
    )
    assert widths and max(widths) > 20, widths
    heights = page.evaluate(
        "[...document.querySelectorAll('.hours i')].map((b) => b.getBoundingClientRect().height)"
    )
    assert max(heights) > 20, heights
    # forms still post: a command, then signing out
    page.goto(base + "/devices/field-01")
    page.click("#commands form button:text('ping')")
    page.wait_for_url("**/devices/field-01#commands")
    assert "Command ping sent" in page.content()
    page.click("form.who button")
    page.wait_for_url("**/login")
    # the hunter's take link works without signing in
    page.goto(base + fleet_data)
    page.click("button.big")
    page.wait_for_selector("text=you are going")
    assert page.evaluate("window.__violations") == []
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors


def test_no_other_site_can_frame_a_staff_page(
    chromium: Chromium,
    web_hub: Hub,  # noqa: F811
) -> None:
    """Clickjacking: a page elsewhere puts the hub in a transparent frame over its own."""
    base = f"http://127.0.0.1:{web_hub.cfg.web.port}"
    page, _ = open_watched(chromium)
    page.set_content(f'<iframe id="f" src="{base}/login" width="600" height="400"></iframe>')
    page.wait_for_timeout(1500)
    framed = [f for f in page.frames if f != page.main_frame]
    assert framed, "no frame"
    loaded = False
    for f in framed:
        with contextlib.suppress(Exception):  # a blocked frame may have no document at all
            loaded = loaded or f.locator("input[name=password]").count() > 0
    assert not loaded, "the sign-in form loaded inside another site's frame"
