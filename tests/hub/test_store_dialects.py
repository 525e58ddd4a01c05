"""The same store code on SQLite and on a throwaway PostgreSQL server started here."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mimamori.edge import contract
from mimamori.hub.store import Message, Store
from tests.conftest import stored_events


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'hub.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    s = Store(url).create()
    yield s
    s.close()


def msg(topic: str, payload: contract.Payload) -> Message:
    return Message(contract.parse_topic(topic), payload, datetime.now(UTC))


def ev(dev: str, seq: int, event_id: str | None = None) -> Message:
    return msg(
        contract.event(dev, "device.notice"),
        contract.EventPayload(
            id=event_id or uuid.uuid4().hex,
            seq=seq,
            kind="device.notice",
            created=contract.utcnow(),
            data={"level": "info", "message": "x"},
        ),
    )


def test_batch_insert_is_exactly_once(store: Store) -> None:
    same = uuid.uuid4().hex
    first = store.apply([ev("a", 1, same), ev("a", 2), ev("b", 1, same)])
    assert (first.new, first.duplicates) == (3, 0)  # the same id on another device is distinct
    again = store.apply([ev("a", 1, same), ev("a", 3)])
    assert (again.new, again.duplicates) == (1, 1)
    assert [s for _, s in stored_events(store, "a")] == [1, 2, 3]
    assert store.count_events() == 4
    assert {d["id"] for d in store.devices()} == {"a", "b"}


def test_presence_and_twin_on_both_databases(store: Store) -> None:
    st = contract.state("a")
    store.apply([msg(st, contract.StatePayload(online=True, bdseq=3))])
    r = store.apply([msg(st, contract.StatePayload(online=False, bdseq=2))])
    assert r.stale_wills == 1 and store.device("a")["online"] is True
    store.apply([msg(st, contract.StatePayload(online=False, bdseq=3))])
    dev = store.device("a")
    assert dev["online"] is False and dev["since"].tzinfo is not None
    assert store.set_desired("a", {"telemetry": {"interval_s": 5}}) == 1
    assert store.set_desired("a", {"telemetry": {"interval_s": 6}}) == 2
    store.apply(
        [
            msg(
                contract.twin_reported("a"),
                contract.TwinReported(version=2, applied=False, error="telemetry.interval_s: bad"),
            )
        ]
    )
    assert store.device("a")["reported"]["error"] == "telemetry.interval_s: bad"


def test_rejects_are_counted(store: Store) -> None:
    for _ in range(3):
        store.reject("mimamori/v1/a/tele", "schema", "load1: bad")
    store.reject("x", "bad_topic", "nope")
    assert store.reject_counts() == {"schema": 3, "bad_topic": 1}
    assert store.recent_rejects(1)[0]["reason"] == "bad_topic"
