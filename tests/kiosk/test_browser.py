"""The whole counter in real headless Chromium: the resident's screen at the kiosk and the
staff console at the hub, with Chromium's fake camera and microphone for the voice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from mimamori.edge import contract
from mimamori.hub.auth import Accounts
from mimamori.hub.cli import Hub
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import hub_identity, hub_port
from tests.kiosk.conftest import PASSWORD, Kiosk, staff_account, web_url
from tests.mqtt_probe import Probe, wait_until

CHROMIUM = Path("/usr/lib/chromium/chromium")  # Debian's; `./run.sh test` installs it
FAKE_MEDIA = [
    "--no-sandbox",
    "--use-fake-ui-for-media-stream",  # grant camera and microphone without asking
    "--use-fake-device-for-media-stream",  # a test pattern and a beeping microphone
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (./run.sh test does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FAKE_MEDIA)
        yield browser
        browser.close()


def staff_page(chromium: Browser, hub: Hub, name: str, init_script: str = "") -> Page:
    """A signed-in Counter console (``init_script`` runs in the page before its own)."""
    page = chromium.new_context().new_page()
    if init_script:
        page.add_init_script(init_script)
    page.goto(f"{web_url(hub)}/login?next=/counter")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/counter")
    return page


def view_ts(page: Page, name: str) -> tuple[int, datetime]:
    seq = int(page.get_attribute(f"#view-{name}", "data-seq") or 0)
    ts = page.get_attribute(f"#view-{name}", "data-ts")
    return seq, datetime.fromisoformat(ts) if ts else datetime.min


def audio_in(page: Page) -> int:
    return int(page.evaluate("async () => (await window.voiceStats()).audioBytes"))


def test_staff_answer_in_a_browser_see_both_views_talk_and_hang_up_and_nothing_leaves(
    chromium: Browser, web_hub: Hub, kiosk: Kiosk, fleet: Fleet, broker: MosquittoProcess
) -> None:
    staff_account(web_hub, "suzuki")
    probe = Probe(broker.host, hub_port(fleet), hub_identity(fleet)).start(
        f"{contract.ROOT}/{kiosk.dev}/#", hub_online=None
    )
    try:
        console = staff_page(chromium, web_hub, "suzuki")
        refused: list[str] = []
        console.on("response", lambda r: r.status >= 400 and refused.append(f"{r.status} {r.url}"))
        assert "No call yet." in console.inner_text("#recent")
        screen = chromium.new_context().new_page()
        screen.goto(kiosk.screen_url)
        screen.wait_for_selector("#call:visible")
        assert screen.is_hidden("#camera"), "camera sign shows with no call"

        screen.click("#call")  # the on-screen button
        console.wait_for_selector(f"#queue li[data-call] >> text={kiosk.dev}", timeout=5000)
        console.click("#queue li button")
        screen.wait_for_selector("#camera:visible", timeout=5000)
        assert "つながりました" in screen.inner_text("#msg-ja")

        # both views deliver fresh frames: numbers and capture times advance
        for name in ("face", "doc"):  # polled from here: the page's CSP forbids eval
            wait_until(lambda name=name: view_ts(console, name)[0] >= 3, 10, f"{name} frames")
        first = {n: view_ts(console, n) for n in ("face", "doc")}
        time.sleep(1.0)
        for n in ("face", "doc"):
            seq, ts = view_ts(console, n)
            assert seq > first[n][0] and ts > first[n][1], (n, first[n], (seq, ts))

        # voice both ways through the hub's signalling (fake microphones on both sides)
        try:
            wait_until(lambda: audio_in(console) > 0 and audio_in(screen) > 0, 20, "audio")
        except AssertionError:
            stats = "async () => JSON.stringify(await window.voiceStats())"
            raise AssertionError(
                f"no audio: staff {console.evaluate(stats)}, kiosk {screen.evaluate(stats)}, "
                f"staff page says {console.inner_text('#problem')!r}"
            ) from None

        console.click("#end")
        screen.wait_for_selector("#camera", state="hidden", timeout=5000)
        console.wait_for_selector("#live", state="hidden", timeout=5000)
        # the call is listed in "Recent calls" without reloading the page
        console.wait_for_selector("#recent td >> text=staff ended", timeout=5000)
        assert "suzuki" in console.inner_text("#recent")
        # verify at the broker: once the kiosk has said "ended", no frame of either view
        ended = wait_until(lambda: _ended_index(probe, kiosk.dev), 5, "ended state at broker")
        time.sleep(1.5)
        with probe._lock:
            state = contract.CallState.model_validate_json(probe.messages[ended - 1].payload)
            frames = [_meta(m) for m in probe.messages if "/view/" in m.topic]
            after = [_meta(m) for m in probe.messages[ended:] if "/view/" in m.topic]
        assert len(frames) > 10, f"only {len(frames)} frames during the call"
        assert after == [], f"{len(after)} frames left the kiosk after the call ended"
        assert refused == [], f"the console's requests were refused: {refused}"
        taken_after = [meta for meta in frames if meta.ts > state.since]
        assert taken_after == [], f"frames taken after the end: {taken_after}"
        actions = [e["action"] for e in Accounts(web_hub.store).audit_log()]
        assert "counter.answer" in actions and "counter.call" in actions
    finally:
        probe.stop()


def _meta(m: Any) -> contract.ViewMeta:
    return contract.ViewMeta.model_validate_json(dict(m.properties.UserProperty)["meta"])


def _ended_index(probe: Probe, dev: str) -> int | None:
    with probe._lock:
        for i, m in enumerate(probe.messages):
            if m.topic == contract.call(dev) and b'"ended"' in m.payload:
                return i + 1
    return None


def test_a_second_member_of_staff_sees_the_call_taken(
    chromium: Browser, web_hub: Hub, kiosk: Kiosk
) -> None:
    staff_account(web_hub, "suzuki")
    staff_account(web_hub, "tanaka")
    first = staff_page(chromium, web_hub, "suzuki")
    second = staff_page(chromium, web_hub, "tanaka")
    kiosk.app.press()
    for page in (first, second):
        page.wait_for_selector("#queue li button", timeout=5000)
    first.click("#queue li button")
    first.wait_for_selector("#live:visible", timeout=5000)
    second.wait_for_selector(f"#taken >> text={kiosk.dev}: talking with suzuki", timeout=5000)
    assert second.is_hidden("#live")
    assert second.locator("#queue li").count() == 0
