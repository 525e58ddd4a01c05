"""Schema migrations on SQLite and a throwaway PostgreSQL: the scripts match the tables, a
database of the first release keeps its data through `mimamori hub db upgrade`, and the hub
refuses a schema behind the code."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mimamori.edge.cli import main
from mimamori.hub import migrations
from mimamori.hub.alerts.tables import troops
from mimamori.hub.auth import Accounts
from mimamori.hub.config import EXIT_BAD_CONFIG
from mimamori.hub.store import Store
from mimamori.provisioning.fleet import Fleet
from tests.hub.conftest import PASSWORD, hub_config, seed


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    return str(request.getfixturevalue("pg_url"))


def first_release(url: str) -> Store:
    """A database at the first schema revision, holding a device, events, an alert and a
    staff account."""
    store = Store(url)
    migrations.upgrade(store.engine, migrations.BASELINE)
    seed(store)
    return store


def index_names(store: Store, table: str) -> set[str]:
    with store.engine.connect() as conn:
        return {str(i["name"]) for i in sa.inspect(conn).get_indexes(table)}


def test_migrations_create_exactly_the_declared_tables(url: str) -> None:
    store = Store(url).create()
    try:
        assert migrations.current(store.engine) == migrations.head()
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), migrations.target_metadata())
        assert diff == []
    finally:
        store.close()


def test_upgrade_keeps_the_data_of_the_first_release(
    url: str, fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    store = first_release(url)
    before = store.events("field-01", limit=None)
    assert "events_device_pk" not in index_names(store, "events")
    with pytest.raises(migrations.SchemaError, match="mimamori hub db upgrade") as refused:
        store.create()  # what the hub does at start
    assert refused.value.action == "upgrade"

    config = hub_config(fleet, url)
    assert main(["hub", "db", "current", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith(f"{migrations.BASELINE} (this release needs")
    assert main(["hub", "db", "upgrade", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "applied 0002: Index events by (device, pk)" in out

    assert migrations.current(store.engine) == migrations.head()
    assert "events_device_pk" in index_names(store, "events")
    assert store.create().events("field-01", limit=None) == before
    assert store.device("field-01") is not None
    assert Accounts(store).check("tanaka", PASSWORD) == "wildlife"
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(troops.c.cameras)).scalar_one() == ["field-01"]
    assert main(["hub", "db", "current", "--config", str(config)]) == 0
    assert capsys.readouterr().out == f"{migrations.head()} (head)\n"
    store.close()


def test_the_hub_refuses_to_start_on_an_old_schema(
    tmp_path: Path, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    first_release(url).close()
    config = hub_config(fleet, url)
    with caplog.at_level(logging.ERROR):
        assert main(["hub", "--config", str(config), "--no-web"]) == EXIT_BAD_CONFIG
    assert f"mimamori hub db upgrade --config {config}" in caplog.text
    assert f"at schema revision {migrations.BASELINE}" in caplog.text


def test_a_database_from_before_migrations_is_checked_then_stamped(
    url: str, fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    store = first_release(url)
    with store.engine.begin() as conn:  # what create_all left: the tables, no revision
        conn.execute(sa.text(f"DROP TABLE {migrations.VERSION_TABLE}"))
    with pytest.raises(migrations.SchemaError, match="mimamori hub db stamp"):
        store.create()
    config = hub_config(fleet, url)
    assert main(["hub", "db", "stamp", "--config", str(config)]) == 0
    assert f"marked as revision {migrations.BASELINE}" in capsys.readouterr().out
    assert main(["hub", "db", "upgrade", "--config", str(config)]) == 0
    assert len(store.create().events("field-01", limit=None)) == 30
    store.close()


def test_stamp_refuses_tables_that_do_not_match(
    tmp_path: Path, fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'odd.db'}"
    store = first_release(url)
    with store.engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {migrations.VERSION_TABLE}"))
        conn.execute(sa.text("DROP TABLE ingest_rejects"))
        conn.execute(sa.text("ALTER TABLE devices ADD COLUMN colour VARCHAR(10)"))
    store.close()
    assert main(["hub", "db", "stamp", "--config", str(hub_config(fleet, url))]) == 1
    err = capsys.readouterr().err
    assert "table ingest_rejects is missing" in err
    assert "devices.colour is unexpected" in err
    assert migrations.current(Store(url).engine) is None


def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'new.db'}").create()
    with store.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(migrations.SchemaError, match="9999, which this code does not know"):
        store.create()
    store.close()


def test_a_database_that_cannot_be_opened_is_named(
    tmp_path: Path, fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    config = hub_config(fleet, f"sqlite:///{tmp_path / 'no such dir' / 'hub.db'}")
    assert main(["hub", "db", "upgrade", "--config", str(config)]) == 1
    assert (
        f"error: the database of {config} ([store] url): unable to open" in capsys.readouterr().err
    )
