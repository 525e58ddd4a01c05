"""A 10-minute call through the real hub and kiosk with both sides in Chromium: nothing grows,
nothing degrades (the full two hours: ``python bench/kiosk_soak.py``)."""

from __future__ import annotations

import io

import pytest

from bench.kiosk_soak import run

pytestmark = pytest.mark.soak


def test_a_ten_minute_call_stays_smooth_and_nothing_grows() -> None:
    out = io.StringIO()
    result = run(minutes=10, window_s=60, after_s=30, out=out)
    print(out.getvalue())
    assert result.ended_ok
    rows = result.rows
    assert len(rows) >= 9
    for r in rows:
        # the face view defaults to 8 frames/s, the desk to 10 (2 cores shared with the browsers)
        assert r.fps["face"] >= 4 and r.fps["doc"] >= 4, out.getvalue()
        assert r.p95["face"] < 400 and r.p95["doc"] < 400, out.getvalue()
        for side in ("staff", "kiosk"):
            audio = r.audio[side]
            assert audio["packets"] > 0, f"no audio at the {side} side"
            assert audio["lost"] <= 0.01 * audio["packets"], out.getvalue()
    # MiB per 10 minutes over the call's second half (the old console grew ~75 per minute;
    # this one ~27 per 10 minutes while Playwright is attached, see the README)
    assert result.growth["renderer_mb"] < 40, out.getvalue()
    assert result.growth["hub_mb"] < 4, out.getvalue()
    assert result.growth["kiosk_mb"] < 4, out.getvalue()
    # and the console gives its memory back once the call ends
    assert result.after is not None
    assert result.after.renderer_mb <= rows[-1].renderer_mb + 5, out.getvalue()
