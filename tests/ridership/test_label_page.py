"""The hub's crossing-labelling page: for transit staff only, served under the hub's CSP."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from playwright.sync_api import expect, sync_playwright

from mimamori.edge.ridership import accuracy
from mimamori.hub.cli import Hub
from tests.hub.conftest import staff_client
from tests.kiosk.conftest import PASSWORD, web_hub, web_url  # noqa: F401
from tests.kiosk.test_browser import CHROMIUM
from tests.ridership.scenes import pad, render, walk
from tests.security.web_helpers import staff


def test_transit_staff_open_the_labelling_page_and_others_may_not(hub: Hub) -> None:
    clerk = staff_client(hub, "kato", "transit")
    r = clerk.web.get("/ridership/label")
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    assert 'id="clip"' in page and 'id="download"' in page
    assert "ridership_label.js" in page
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert "<script>" not in page  # no inline script: the CSP would block it
    js = clerk.web.get("/static/ridership_label.js")
    assert js.status_code == 200 and b"crossings" in js.data
    assert "/ridership/label" in clerk.web.get("/ridership").get_data(as_text=True)
    ranger = staff_client(hub, "suzuki", "wildlife")
    assert ranger.web.get("/ridership/label").status_code == 403


def test_label_a_clip_in_chromium_and_download_the_truth_file(
    web_hub: Hub,  # noqa: F811
    tmp_path: Path,
) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (./run.sh test does)")
    clip = tmp_path / "door.webm"  # VP8: what Chromium plays and OpenCV writes
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"VP80"), 10.0, (320, 240))
    for f in render([pad(walk(((100, 30), 0), ((100, 220), 30)), 5)], 40):
        w.write(f.image)
    w.release()
    staff(web_hub, "kato", "transit")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_context(accept_downloads=True).new_page()
            page.goto(f"{web_url(web_hub)}/login?next=/ridership/label")
            page.fill("input[name=name]", "kato")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/ridership/label")
            page.set_input_files("#clip", str(clip))
            expect(page.locator("#status")).to_contain_text("frame 0 of 39")
            page.fill("#line", "40,120,280,120")
            page.click("#frame")  # leave the field: keys go to the page again
            for _ in range(5):
                page.keyboard.press("ArrowRight")
            page.keyboard.press("Shift+ArrowRight")
            expect(page.locator("#status")).to_contain_text("frame 15 of")
            page.keyboard.press("i")
            page.click("[data-step='-1']")
            expect(page.locator("#status")).to_contain_text("frame 14 of")
            page.click("#mark-out")
            assert page.text_content("#totals") == "in 1, out 1"
            with page.expect_download() as dl:
                page.click("#download")
            saved = tmp_path / "saved.json"
            dl.value.save_as(saved)
        finally:
            browser.close()
    truth = json.loads(saved.read_text(encoding="utf-8"))
    assert truth["crossings"] == [[14, "out"], [15, "in"]]
    assert truth["line"] == [40, 120, 280, 120] and truth["video"] == "door.webm"
    assert accuracy.load_truth(saved).crossings == [(14, "out"), (15, "in")]  # the CLI reads it
