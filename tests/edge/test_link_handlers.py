"""The device link's handlers and drain on the in-memory transport (the wire itself is
tested against a real Mosquitto in test_link.py)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from mimamori.edge import contract
from mimamori.edge.config import DeviceConfig
from mimamori.edge.link import Link
from mimamori.edge.outbox import Outbox
from mimamori.edge.transport_fake import FakeBroker, FakeTransport
from tests.mqtt_probe import wait_until

DEV = "field-01"


class Hub:
    """The hub's side of the fake broker: says it is online, sends commands."""

    def __init__(self, broker: FakeBroker) -> None:
        self.t = FakeTransport(broker, subscriptions=[(f"{contract.ROOT}/#", 1)])
        self.t.start()

    def online(self, online: bool = True) -> None:
        self.t.publish(
            contract.HUB_STATE, contract.HubState(online=online).dumps(), qos=1, retain=True
        )


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.db")
    yield box
    box.close()


@pytest.fixture
def applied() -> list[tuple[int, dict[str, Any]]]:
    return []


@pytest.fixture
def link(tmp_path: Path, broker: FakeBroker, outbox: Outbox, applied: list) -> Iterator[Link]:
    cfg = DeviceConfig.model_validate(
        {"device": {"id": DEV, "role": "wildlife", "data_dir": str(tmp_path)}}
    )

    def on_desired(version: int, patch: dict[str, Any]) -> dict[str, Any]:
        if "bad" in patch:
            raise ValueError("bad: not a section")
        if "boom" in patch:
            raise RuntimeError("a bug in the twin handler")
        applied.append((version, patch))
        return patch

    link = Link(
        cfg,
        outbox,
        birth=lambda: {
            "role": "wildlife",
            "sw_version": "1",
            "config_version": 0,
            "boot_id": "b",
        },
        on_desired=on_desired,
        commands={"ping": lambda args: {"pong": args.get("n", 0)}},
        transport=partial(FakeTransport, broker),
    )
    link.start()
    yield link
    link.stop()


def payloads(broker: FakeBroker, topic: str) -> list[bytes]:
    return [m.payload for m in broker.on(topic)]


def test_connect_publishes_state_and_birth_with_the_wills_bdseq(
    link: Link, broker: FakeBroker
) -> None:
    state = contract.StatePayload.model_validate_json(broker.retained[contract.state(DEV)].payload)
    birth = contract.BirthPayload.model_validate_json(broker.retained[contract.birth(DEV)].payload)
    assert state.online and state.bdseq == birth.bdseq == link.bdseq == 1
    assert isinstance(link.transport, FakeTransport)
    link.transport.drop()  # the broker publishes the will
    will = contract.StatePayload.model_validate_json(broker.retained[contract.state(DEV)].payload)
    assert not will.online and will.bdseq == birth.bdseq
    assert link.stats.disconnects == 1 and not link.connected


def test_events_wait_for_the_hub_then_drain_and_are_deleted_on_puback(
    link: Link, broker: FakeBroker, outbox: Outbox
) -> None:
    for i in range(30):
        outbox.put("device.notice", {"level": "info", "message": f"n{i}"})
    link.wake()
    hub = Hub(broker)
    assert broker.on(f"{contract.ROOT}/{DEV}/event/+") == []
    hub.online()
    wait_until(lambda: outbox.depth() == 0, 5, "outbox drained")
    events = [
        contract.decode(m.topic, m.payload)[1] for m in broker.on(f"{contract.ROOT}/{DEV}/event/+")
    ]
    assert [e.seq for e in events if isinstance(e, contract.EventPayload)] == list(range(1, 31))
    assert link.stats.published == link.stats.acked == 30


def test_twin_applied_and_refused_are_reported(
    link: Link, broker: FakeBroker, applied: list
) -> None:
    hub = Hub(broker)
    desired = contract.TwinDesired(version=3, config={"telemetry": {"interval_s": 5}})
    hub.t.publish(contract.twin_desired(DEV), desired.dumps(), qos=1, retain=True)
    assert applied == [(3, {"telemetry": {"interval_s": 5}})] and link.twin_version == 3
    bad = contract.TwinDesired(version=4, config={"bad": 1})
    hub.t.publish(contract.twin_desired(DEV), bad.dumps(), qos=1, retain=True)
    reports = [
        contract.TwinReported.model_validate_json(p)
        for p in payloads(broker, contract.twin_reported(DEV))
    ]
    assert [(r.version, r.applied) for r in reports] == [(3, True), (4, False)]
    assert "not a section" in (reports[-1].error or "") and link.twin_version == 3


def test_a_command_is_answered_on_its_response_topic_with_its_correlation(
    link: Link, broker: FakeBroker
) -> None:
    hub = Hub(broker)
    request = contract.CommandRequest(args={"n": 7}).dumps()
    hub.t.publish(
        contract.cmd(DEV, "ping"),
        request,
        qos=1,
        response_topic=contract.reply(DEV, "ping"),
        corr=b"c-1",
    )
    # a response topic outside the device's own tree is replaced by its own reply topic
    hub.t.publish(
        contract.cmd(DEV, "ping"),
        request,
        qos=1,
        response_topic=contract.reply("other-02", "ping"),
        corr=b"c-2",
    )
    replies = broker.on(f"{contract.ROOT}/+/reply/+")
    assert [(m.topic, m.corr) for m in replies] == [
        (contract.reply(DEV, "ping"), b"c-1"),
        (contract.reply(DEV, "ping"), b"c-2"),
    ]
    reply = contract.CommandReply.model_validate_json(replies[0].payload)
    assert reply.ok and reply.result == {"pong": 7}


def test_malformed_messages_are_counted_by_reason_and_the_link_goes_on(
    link: Link, broker: FakeBroker
) -> None:
    hub = Hub(broker)
    hub.t.publish(contract.cmd(DEV, "ping"), b"{nope", qos=1)
    hub.t.publish(contract.twin_desired(DEV), b"[1]", qos=1)
    hub.t.publish(contract.job(DEV, "j1"), b'{"v": 1}', qos=1)
    hub.t.publish(contract.HUB_STATE, b"{}", qos=1)  # no "online"
    rejects = link.transport.rejects
    assert rejects[contract.Reason.NOT_JSON] == 1
    assert rejects[contract.Reason.NOT_OBJECT] == 1
    assert rejects[contract.Reason.SCHEMA] == 2
    boom = contract.TwinDesired(version=9, config={"boom": 1})
    hub.t.publish(contract.twin_desired(DEV), boom.dumps(), qos=1)
    assert rejects[contract.Reason.INTERNAL] == 1
    assert link.stats.bad_messages == 5
    hub.online()
    assert link.hub_online
