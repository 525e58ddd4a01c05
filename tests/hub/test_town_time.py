"""One clock for people: the town's time zone is one hub setting, used by every page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mimamori.hub import clock
from mimamori.hub.cli import build
from mimamori.hub.config import load_hub_config
from mimamori.hub.errors import HubConfigError
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.hub.conftest import staff_client


@pytest.fixture
def town_zone() -> Iterator[None]:
    yield
    clock.set_zone("Asia/Tokyo")  # the process-wide default, for the tests that follow


def test_provisioned_hub_config_names_the_zone(fleet: Fleet) -> None:
    assert load_hub_config(fleet.hub_config).site.timezone == "Asia/Tokyo"


def test_an_unknown_zone_is_refused_by_name(fleet: Fleet) -> None:
    text = fleet.hub_config.read_text().replace('"Asia/Tokyo"', '"Asia/Tokio"')
    bad = fleet.hub_config.with_name("bad.toml")
    bad.write_text(text)
    with pytest.raises(HubConfigError) as e:
        load_hub_config(bad)
    assert "site.timezone" in str(e.value) and "Asia/Tokio" in str(e.value)
    assert "IANA" in str(e.value)


def test_pages_show_the_configured_towns_time(
    fleet: Fleet, broker: MosquittoProcess, town_zone: None, tmp_path: Path
) -> None:
    cfg = fleet.hub_config
    cfg.write_text(cfg.read_text().replace('"Asia/Tokyo"', '"Pacific/Auckland"'))
    hub = build(cfg).start(web=False)
    try:
        staff = staff_client(hub, "sato", "admin")
        page = staff.web.get("/").get_data(as_text=True)
        assert "Pacific/Auckland" in page  # the footer names the zone every time is shown in
        noon_utc = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)  # 13:00 in Auckland (summer)
        shown = clock.when(noon_utc, now=noon_utc)
        assert "13:00" in shown and 'datetime="2026-12-02T00:00:00+00:00"' in shown
    finally:
        hub.stop()
