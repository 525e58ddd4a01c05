"""`mimamori hub backup` while a real hub runs and writes, then `hub restore` into a fresh
hub config, on SQLite and on a throwaway PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from mimamori.edge.cli import main
from mimamori.hub import migrations
from mimamori.hub.auth import Accounts
from mimamori.hub.backup import row_counts
from mimamori.hub.cli import build
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.hub.conftest import PASSWORD, event, hub_config, seed


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """Makes an empty database's URL (the name is used for SQLite files)."""
    if request.param == "sqlite":
        return lambda name: f"sqlite:///{tmp_path / name}.db"
    make: Callable[[], str] = request.getfixturevalue("pg_databases")
    return lambda name: make()


def test_backup_of_a_running_hub_restores_into_a_fresh_one(
    fleet: Fleet,
    broker: MosquittoProcess,
    new_database: Callable[[str], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    live_url, fresh_url = new_database("live"), new_database("fresh")
    live_config = hub_config(fleet, live_url, "live.toml")
    hub = build(live_config).start(web=False)
    try:
        assert hub.ingest.wait_connected(10), "hub could not connect"
        seed(hub.store)
        hub.store.apply([event("field-02", n) for n in range(1, 21)])
        hub.alerts.add_subscriber("Yamada (hunter)", "json://localhost/", "*", None, 0)
        seeded = row_counts(live_url)

        stop = threading.Event()

        def keep_writing() -> None:  # events keep arriving while the backup runs
            seq = 100
            while not stop.is_set():
                seq += 1
                hub.store.apply([event("field-03", seq)])

        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            out = tmp_path / "mimamori.hub.backup"
            assert main(["hub", "backup", "--config", str(live_config), str(out)]) == 0
        finally:
            stop.set()
            writer.join()
        assert f"backup written to {out}" in capsys.readouterr().out
        live = row_counts(live_url)
    finally:
        hub.stop()

    fresh_config = hub_config(fleet, fresh_url, "fresh.toml")
    assert main(["hub", "restore", "--config", str(fresh_config), str(out)]) == 0
    assert "restored" in capsys.readouterr().out
    restored = row_counts(fresh_url)
    assert restored.keys() == live.keys()
    changing = {"events", "devices"}  # what the writer added to during the backup
    assert {t: restored[t] for t in live if t not in changing} == {
        t: live[t] for t in live if t not in changing
    }
    assert seeded["events"] <= restored["events"] <= live["events"]
    assert seeded["devices"] <= restored["devices"] <= live["devices"]
    assert restored["staff_users"] == 1 and restored["alert_subscribers"] == 1

    again = build(fresh_config)  # the restored database is at head: the hub starts on it
    try:
        assert migrations.current(again.store.engine) == migrations.head()
        assert Accounts(again.store).check("tanaka", PASSWORD) == "wildlife"
        assert len(again.store.events("field-01", limit=None)) == 30
    finally:
        again.store.close()

    assert main(["hub", "restore", "--config", str(fresh_config), str(out)]) == 1
    assert "holds data" in capsys.readouterr().err
    assert main(["hub", "restore", "--config", str(fresh_config), str(out), "--force"]) == 0
    assert row_counts(fresh_url) == restored


def test_restore_names_a_file_that_is_no_backup(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not a database")
    assert main(["hub", "restore", "--config", str(fleet.hub_config), str(junk)]) == 1
    assert f"{junk}: not an SQLite backup" in capsys.readouterr().err


@pytest.mark.postgres
def test_backup_without_pg_dump_says_what_to_install(
    fleet: Fleet,
    pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = hub_config(fleet, pg_url)
    monkeypatch.setenv("PATH", str(tmp_path))  # no PostgreSQL client tools here
    assert main(["hub", "backup", "--config", str(config), str(tmp_path / "x.dump")]) == 1
    assert "pg_dump not found on PATH" in capsys.readouterr().err
    assert not (tmp_path / "x.dump").exists()
