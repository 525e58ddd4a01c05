"""The contract's channel table: every row parses, validates and is enforced as it says."""

from __future__ import annotations

import json

import paho.mqtt.client as mqtt
import pytest

from mimamori.edge import contract
from mimamori.edge.contract import CHANNELS, ContractError, Reason
from mimamori.provisioning import broker, guard

NOW = contract.utcnow()
CALL = "c" * 32
JPEG = b"\xff\xd8" + b"\x00" * 100
MANIFEST = contract.SignedManifest(
    manifest=contract.ModelManifest(
        name="monkey", version=1, sha256="0" * 64, size=1, issued=NOW, expires=NOW
    ),
    signature="x",
)

#: per row: the variable levels' values, and a valid payload (JSON) or JPEG meta
SAMPLES: dict[str, tuple[list[str], contract.Payload | contract.ViewMeta | contract.StillMeta]] = {
    "state": ([], contract.StatePayload(online=True, bdseq=1)),
    "birth": (
        [],
        contract.BirthPayload(
            role="wildlife", bdseq=1, sw_version="1", config_version=0, boot_id="b"
        ),
    ),
    "tele": (
        [],
        contract.TelePayload(
            load1=0, mem_used_pct=1, rss_mb=1, disk_free_mb=1, uptime_s=1, outbox_depth=0
        ),
    ),
    "event": (
        ["device.notice"],
        contract.EventPayload(
            id="a" * 32,
            seq=1,
            kind="device.notice",
            created=NOW,
            data={"level": "info", "message": "hi"},
        ),
    ),
    "twin/desired": ([], contract.TwinDesired(version=1, config={})),
    "twin/reported": ([], contract.TwinReported(version=1, applied=True)),
    "cmd": (["ping"], contract.CommandRequest()),
    "reply": (["ping"], contract.CommandReply(name="ping", ok=True)),
    "jobs": (["j1"], contract.JobDocument(job_id="j1", operation="model-update", update=MANIFEST)),
    "jobs/status": (["j1"], contract.JobStatus(job_id="j1", status="QUEUED")),
    "call": ([], contract.CallState(state="idle", since=NOW)),
    "view": (["face"], contract.ViewMeta(call=CALL, seq=0, ts=NOW, w=4, h=4, q=50)),
    "still": (
        [],
        contract.StillMeta(call=CALL, still=CALL, ts=NOW, found=True, w=4, h=4),
    ),
    "signal": ([], contract.Signal(call=CALL, type="offer", sdp="v=0")),
    "hub/state": ([], contract.HubState(online=True)),
}


def topic_of(row: contract.Channel, dev: str = "dev-1") -> str:
    fill = iter(SAMPLES[row.name][0])
    levels = [next(fill) if lv.startswith("<") else lv for lv in row.levels]
    return "/".join((contract.ROOT, "hub" if row.hub_tree else dev, *levels))


def test_every_row_has_a_sample() -> None:
    assert set(SAMPLES) == set(contract.BY_NAME)


@pytest.mark.parametrize("row", CHANNELS, ids=lambda r: r.name)
def test_every_row_round_trips_build_parse_validate(row: contract.Channel) -> None:
    topic = topic_of(row)
    assert contract.channel_of(topic) is row
    assert mqtt.topic_matches_sub(row.filter(), topic)
    payload = SAMPLES[row.name][1]
    if row.binary:
        assert isinstance(payload, contract.ViewMeta | contract.StillMeta)
        t, meta, jpeg = contract.decode_jpeg(topic, JPEG, contract.jpeg_meta_json(payload))
        assert meta == payload and jpeg == JPEG and t.row is row
        with pytest.raises(ContractError) as err:
            contract.decode_jpeg(topic, b"\xff\xd8" + b"\x00" * row.limit, "{}")
        assert err.value.reason is Reason.OVERSIZED
        return
    assert isinstance(payload, contract.Payload)
    if row.hub_tree:
        assert type(payload).model_validate_json(payload.dumps()) == payload
        return
    t, decoded = contract.decode(topic, payload.dumps())
    assert t.row is row and decoded == payload and t.dev == "dev-1"
    assert contract.schema_for(t) is row.schema
    with pytest.raises(ContractError) as err:
        contract.decode(topic, b" " * (row.limit + 1))
    assert err.value.reason is Reason.OVERSIZED


@pytest.mark.parametrize(
    ("topic", "raw", "reason"),
    [
        ("mimamori/v2/dev-1/tele", b"{}", Reason.BAD_TOPIC),
        ("mimamori/v1/Dev_1/tele", b"{}", Reason.BAD_TOPIC),
        ("mimamori/v1/dev-1/nonsense", b"{}", Reason.BAD_TOPIC),
        ("mimamori/v1/dev-1/event/a.b/c", b"{}", Reason.BAD_TOPIC),
        ("mimamori/v1/dev-1/twin/wanted", b"{}", Reason.BAD_TOPIC),
        ("mimamori/v1/dev-1/jobs/j1/done", b"{}", Reason.BAD_TOPIC),
        ("mimamori/v1/dev-1/view/back", b"{}", Reason.BAD_TOPIC),
        ("mimamori/v1/dev-1/tele", b"{nope", Reason.NOT_JSON),
        ("mimamori/v1/dev-1/tele", b"\xff\xfe", Reason.NOT_JSON),
        ("mimamori/v1/dev-1/tele", b"[1]", Reason.NOT_OBJECT),
        ("mimamori/v1/dev-1/tele", b'{"v": 1, "load1": -1}', Reason.SCHEMA),
        ("mimamori/v1/dev-1/event/wildlife.sighting", None, Reason.KIND_MISMATCH),
        ("mimamori/v1/dev-1/event/nobody.knows", "nobody.knows", Reason.UNKNOWN_KIND),
        ("mimamori/v1/dev-1/view/face", b"{}", Reason.SCHEMA),
    ],
)
def test_each_refusal_names_its_reason(topic: str, raw: bytes | str | None, reason: Reason) -> None:
    event = json.loads(SAMPLES["event"][1].dumps())  # type: ignore[union-attr]
    if raw is None:
        raw = json.dumps(event).encode()
    elif isinstance(raw, str):
        raw = json.dumps({**event, "kind": raw}).encode()
    with pytest.raises(ContractError) as err:
        contract.decode(topic, raw)
    assert err.value.reason is reason
    assert repr(topic) in str(err.value)


@pytest.mark.parametrize("role", contract.ROLES)
def test_each_roles_broker_acl_is_what_the_table_lets_it_publish(role: str) -> None:
    acls = broker.device_acls("dev-1", role)
    sends = [a["topic"] for a in acls if a["acltype"] == "publishClientSend"]
    reads = {a["topic"] for a in acls if a["acltype"] == "subscribeLiteral"}
    for row in CHANNELS:
        topic = topic_of(row)
        allowed = any(mqtt.topic_matches_sub(f, topic) for f in sends)
        if not row.hub_tree:
            t = contract.parse_topic(topic)
            assert allowed == contract.role_may_publish(role, t.channel, t.rest), row.name
        assert allowed == (role in row.publishers), row.name  # the sample's kind is for all
        assert (row.filter("dev-1") in reads) == (contract.HUB in row.publishers), row.name
    for kind in contract.EVENT_DATA:
        topic = contract.event("dev-1", kind)
        allowed = any(mqtt.topic_matches_sub(f, topic) for f in sends)
        assert allowed == (kind in contract.event_kinds_of(role)), kind
    # nothing another device's, nothing across devices
    assert all(t.startswith(f"{contract.ROOT}/dev-1/") for t in sends)


def test_the_roles_may_raise_only_their_own_events() -> None:
    assert contract.event_kinds_of("wildlife") == [
        "device.notice",
        "wildlife.incursion",
        "wildlife.incursion_end",
    ]
    assert contract.event_kinds_of("kiosk") == ["device.notice", "kiosk.call"]
    with pytest.raises(ContractError) as err:
        contract.check_role("ridership", contract.parse_topic(contract.call("bus-1")))
    assert err.value.reason is Reason.NOT_ALLOWED


def test_guard_gets_each_device_channels_limit_and_the_retained_ones() -> None:
    lines = guard.conf_lines(guard.SOURCE, ["hub"]).splitlines()
    limits = {
        k.removeprefix("plugin_opt_limit_"): int(v)
        for k, v in (line.split() for line in lines if line.startswith("plugin_opt_limit_"))
    }
    device_rows = [r for r in CHANNELS if contract.HUB not in r.publishers]
    assert set(limits) == {r.channel for r in device_rows}
    for r in device_rows:
        assert limits[r.channel] >= r.limit
    retain = next(line for line in lines if line.startswith("plugin_opt_retain ")).split()[1:]
    assert set(retain) == {r.channel for r in device_rows if r.retained}
    assert set(retain) == {"state", "birth", "twin", "call"}
    assert "plugin_opt_unbudgeted view" in lines


def test_subscriptions_come_from_the_table() -> None:
    assert contract.device_subscriptions("dev-1") == [
        "mimamori/v1/dev-1/twin/desired",
        "mimamori/v1/dev-1/cmd/+",
        "mimamori/v1/dev-1/jobs/+",
        contract.HUB_STATE,
    ]
    shared = [f for f in contract.ingest_subscriptions("hub") if f.startswith("$share/hub/")]
    assert sorted(shared) == sorted(
        f"$share/hub/{contract.ROOT}/+/{t}" for t in ("event/+", "tele", "reply/+")
    )
    # retained channels are not delivered on shared subscriptions: ingest reads them plainly
    for row in CHANNELS:
        if row.retained and row.ingest:
            assert row.ingest == "plain", row.name
    assert (f"{contract.ROOT}/+/reply/still-capture", 1) in contract.relay_subscriptions()
    assert (f"{contract.ROOT}/+/view/+", 0) in contract.relay_subscriptions()
