"""Every parser of untrusted input, fed generated garbage: only its own clear error comes out.

(The MQTT payload and topic parsers have their own property tests in tests/edge/test_contract.py;
here: camera JPEG channels, device config and twin patches, NMEA, GTFS, model manifests,
the kiosk's call commands.)
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mimamori.edge import contract
from mimamori.edge.config import parse_config
from mimamori.edge.errors import ConfigError
from mimamori.edge.ridership.gps import NmeaParser
from mimamori.edge.ridership.gtfs import GtfsError, load_feed
from mimamori.edge.ridership.sim import write_feed
from tests.edge.test_contract import JSONISH

TEXT = st.text(max_size=120)
CALL = "c" * 32


@settings(max_examples=300, deadline=None)
@given(
    topic=st.sampled_from(
        [contract.view("kiosk-01", "face"), contract.still("kiosk-01"), "mimamori/v1/x/view"]
    )
    | TEXT,
    raw=st.binary(max_size=200) | st.just(b"\xff\xd8\xff\xe0"),
    meta=st.none() | TEXT | JSONISH.map(json.dumps),
)
def test_relayed_jpegs_are_checked_without_surprises(
    topic: str, raw: bytes, meta: str | None
) -> None:
    try:
        t, m, jpeg = contract.decode_jpeg(topic, raw, meta)
    except contract.ContractError as e:
        assert "topic" in str(e)
        return
    assert jpeg.startswith(b"\xff\xd8") and t.channel in contract.BINARY_CHANNELS
    assert isinstance(m, contract.ViewMeta | contract.StillMeta)


SECTIONS = st.dictionaries(
    st.sampled_from(
        ["device", "mqtt", "telemetry", "outbox", "wildlife", "ridership", "kiosk", "sim", "x"]
    ),
    JSONISH,
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(data=SECTIONS)
def test_device_config_and_twin_patches_refuse_garbage_with_config_error(data: dict) -> None:
    base = {"device": {"id": "field-01", "role": "wildlife"}, "mqtt": {"host": "h"}}
    for candidate in (data, {**base, **data}):
        try:
            cfg = parse_config(candidate, "twin/desired")
        except ConfigError as e:
            assert "twin/desired" in str(e)
            continue
        assert cfg.device.id


@settings(max_examples=500, deadline=None)
@given(line=TEXT | st.binary(max_size=120).map(lambda b: b.decode("latin-1")))
def test_nmea_garbage_is_counted_never_raised(line: str) -> None:
    gps = NmeaParser()
    gps.feed(line)
    gps.feed("$" + line)
    gps.feed(line.encode("utf-8", errors="replace"))
    assert sum(gps.rejected.values()) <= 3


CSV_CELL = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    which=st.sampled_from(["stops.txt", "trips.txt", "stop_times.txt", "routes.txt"]),
    rows=st.lists(st.lists(CSV_CELL, max_size=6), max_size=5),
    raw=st.none() | st.binary(max_size=60),
)
def test_gtfs_with_a_broken_file_gives_gtfs_error(
    tmp_path: Path, which: str, rows: list[list[str]], raw: bytes | None
) -> None:
    folder = write_feed(tmp_path / f"feed-{abs(hash((which, str(rows), raw)))}")
    target = folder / which
    if raw is not None:
        target.write_bytes(raw)
    else:
        header = target.read_text().splitlines()[0] if target.exists() else "a,b"
        target.write_text("\n".join([header, *(",".join(r) for r in rows)]) + "\n")
    packed = folder.with_suffix(".zip")
    with zipfile.ZipFile(packed, "w") as z:
        for f in folder.iterdir():
            z.write(f, f.name)
    for source in (folder, packed):
        try:
            feed = load_feed(source)
        except GtfsError as e:
            assert str(e)
            continue
        assert isinstance(feed.stops, dict)


@settings(max_examples=300, deadline=None)
@given(body=JSONISH.map(json.dumps) | TEXT)
def test_model_manifests_refuse_garbage_with_validation_error(body: str) -> None:
    try:
        signed = contract.SignedManifest.model_validate_json(body)
    except ValidationError:
        return
    assert signed.manifest.version >= 1


@settings(max_examples=300, deadline=None)
@given(
    args=st.dictionaries(
        st.sampled_from(["call", "staff", "position", "type", "sdp", "x"]),
        JSONISH | st.just(CALL),
        max_size=4,
    )
)
def test_kiosk_call_commands_refuse_garbage_with_validation_error(args: dict) -> None:
    try:
        cmd = contract.CallCommand.model_validate(args)
    except ValidationError:
        return
    assert cmd.call == CALL
