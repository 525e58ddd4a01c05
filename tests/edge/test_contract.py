from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimamori.edge import contract
from mimamori.edge.contract import ContractError


def good_event(kind: str = "device.notice") -> dict:
    return json.loads(
        contract.EventPayload(
            id="a" * 32,
            seq=1,
            kind=kind,
            created=contract.utcnow(),
            data={"level": "info", "message": "hello"},
        ).dumps()
    )


def test_topic_builders_and_parser_agree() -> None:
    topic = contract.event("field-01", "device.notice")
    assert topic == "mimamori/v1/field-01/event/device.notice"
    assert contract.parse_topic(topic) == contract.Topic("field-01", "event", "device.notice")
    assert contract.parse_topic(contract.job_status("bus-2", "j1")).rest == "j1/status"


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("mimamori/v1/field-01/event", "takes 1 more level"),
        ("mimamori/v1/field-01/event/a/b", "takes 1 more level"),
        ("mimamori/v1/Field_01/tele", "device id"),
        ("mimamori/v1/hub/tele", "not 'hub'"),
        ("mimamori/v1/field-01/bogus", "unknown channel 'bogus'"),
        ("mimamori/v2/field-01/tele", "expected mimamori/v1/"),
        ("mimamori/v1/field-01/twin/wanted", "twin/desired or twin/reported"),
    ],
)
def test_bad_topics_say_what_was_expected(topic: str, expected: str) -> None:
    with pytest.raises(ContractError, match=expected):
        contract.parse_topic(topic)


def test_decode_names_topic_and_field() -> None:
    topic = contract.event("field-01", "device.notice")
    bad = good_event()
    bad["seq"] = "first"
    with pytest.raises(ContractError) as err:
        contract.decode(topic, json.dumps(bad).encode())
    assert (
        topic in str(err.value) and "seq:" in str(err.value) and "(got 'first')" in str(err.value)
    )
    bad = good_event()
    bad["data"]["level"] = "loud"
    with pytest.raises(ContractError, match=r"level: Input should be 'info'"):
        contract.decode(topic, json.dumps(bad).encode())
    with pytest.raises(ContractError, match="differs from the topic"):
        contract.decode(
            contract.event("field-01", "wildlife.sighting"), json.dumps(good_event()).encode()
        )
    with pytest.raises(ContractError, match="exceeds"):
        contract.decode(topic, b" " * (contract.MAX_EVENT_BYTES + 1))
    with pytest.raises(ContractError, match="not UTF-8 JSON"):
        contract.decode(topic, b"\xff\xfe")


def test_timestamps_must_carry_an_offset() -> None:
    ev = good_event()
    ev["ts"] = "2026-01-01T00:00:00"
    with pytest.raises(ContractError, match="UTC offset"):
        contract.decode(contract.event("field-01", "device.notice"), json.dumps(ev).encode())


TOPICS = st.sampled_from(
    [
        contract.event("field-01", "device.notice"),
        contract.state("field-01"),
        contract.birth("field-01"),
        contract.tele("field-01"),
        contract.twin_reported("field-01"),
        contract.reply("field-01", "ping"),
    ]
) | st.text(max_size=80)

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(topic=TOPICS, body=st.binary(max_size=300) | JSONISH.map(lambda o: json.dumps(o).encode()))
def test_decode_rejects_anything_malformed_with_contract_error_only(
    topic: str, body: bytes
) -> None:
    try:
        parsed, payload = contract.decode(topic, body)
    except ContractError as e:
        assert repr(topic) in str(e) or "topic" in str(e)  # every rejection names its topic
        return
    assert isinstance(payload, contract.schema_for(parsed))


@settings(max_examples=200, deadline=None)
@given(
    overrides=st.dictionaries(
        st.sampled_from(["v", "ts", "id", "seq", "kind", "prio", "hist", "created", "data", "x"]),
        JSONISH,
        max_size=3,
    )
)
def test_mutated_events_never_escape_as_other_errors(overrides: dict) -> None:
    ev = {**good_event(), **overrides}
    try:
        _, payload = contract.decode(
            contract.event("field-01", "device.notice"), json.dumps(ev).encode()
        )
    except ContractError:
        return
    assert isinstance(payload, contract.EventPayload)  # whatever passed is a valid event
