"""The hub's schema migrations (Alembic), configured in code: no alembic.ini at run time.

``versions/`` holds one script a schema change, ``env.py`` runs them on the connection handed
over here. The CLI (`mimamori hub db ...`) and ``Store.create`` call these functions:

    ensure(engine)    at start: upgrade a brand-new database, refuse one behind the code
    upgrade(engine)   bring the database to the code's head revision
    stamp(engine)     mark a database made by ``create_all`` (before migrations) as BASELINE
    current(engine)   the database's revision, None when it has none

A new schema change: declare it on the tables, then generate the script against a database
at head and read it before committing::

    from alembic import command; from hub import migrations; from hub.store import Store
    store = Store("sqlite:////tmp/head.db").create()
    with store.engine.begin() as conn:
        command.revision(migrations.config(conn), "what changes", autogenerate=True,
                         rev_id="0003")

This package imports nothing of the hub at import time (``hub.store`` imports it); the
table modules are imported when a migration runs.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from mimamori.hub.errors import HubError

BASELINE = "0001"  # the schema ``create_all`` made before migrations existed
ON_APPLY = "on_version_apply"  # config attribute: env.py passes it to Alembic
VERSION_TABLE = "alembic_version"
SCRIPTS = str(Path(__file__).parent)  # env.py and versions/, shipped as package data
# every module that declares hub tables on ``hub.store.metadata``
TABLE_MODULES = (
    "mimamori.hub.store",
    "mimamori.hub.auth",
    "mimamori.hub.alerts.tables",
    "mimamori.hub.counter.calls",
    "mimamori.hub.ridership.data",
)
_PG_LOCK = 0x6D696D616D6F7269  # "mimamori": one hub process migrates at a time

log = logging.getLogger(__name__)
# Alembic says "Context impl SQLiteImpl." and the like at INFO on every look at the
# revision; what was applied is reported by ``upgrade``'s ``progress`` and logged here
logging.getLogger("alembic").setLevel(logging.WARNING)


class SchemaError(HubError, RuntimeError):
    """The database's schema is not the one this code needs; ``action`` is the
    `mimamori hub db` action that fixes it."""

    def __init__(self, message: str, action: str) -> None:
        super().__init__(message)
        self.action = action


def target_metadata() -> sa.MetaData:
    """The hub's one ``MetaData``, with every table module imported onto it."""
    for name in TABLE_MODULES:
        importlib.import_module(name)
    from mimamori.hub.store import metadata

    return metadata


def config(conn: Connection, on_apply: Callable[..., None] | None = None) -> Config:
    """Alembic's config for this package's scripts, running on ``conn``."""
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPTS)
    cfg.attributes["connection"] = conn
    cfg.attributes[ON_APPLY] = on_apply
    return cfg


def head() -> str:
    """The newest revision this code knows."""
    revision = ScriptDirectory(SCRIPTS).get_current_head()
    assert revision is not None, "hub/migrations/versions is empty"
    return revision


def known(revision: str) -> bool:
    return any(s.revision == revision for s in ScriptDirectory(SCRIPTS).walk_revisions())


def where(engine: Engine) -> str:
    """The database's URL as a message may show it (no password)."""
    return engine.url.render_as_string(hide_password=True)


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(
    engine: Engine, revision: str = "head", progress: Callable[[str], None] | None = None
) -> None:
    """Run every migration up to ``revision``, in one transaction where the database allows
    (PostgreSQL); ``progress`` gets a line for each migration applied."""

    def applied(*, step: Any, **_: Any) -> None:
        if progress is not None:
            progress(f"{step.up_revision_id}: {step.up_revision.doc}")

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # hub processes starting together
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
        command.upgrade(config(conn, applied), revision)


def ensure(engine: Engine) -> None:
    """Upgrade a database with no tables; raise ``SchemaError`` for one that is not at head."""
    with engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
        tables = sa.inspect(conn).get_table_names()
    need = head()
    if revision == need:
        return
    if revision is None and not tables:
        log.info("%s is empty: creating the hub's tables (schema revision %s)", where(engine), need)
        upgrade(engine, progress=lambda line: log.info("applied %s", line))
        return
    db = where(engine)
    if revision is None:
        raise SchemaError(
            f"{db} has hub tables but no schema revision (made before migrations): check it "
            f"and mark it as revision {BASELINE} with `mimamori hub db stamp`, then run "
            "`mimamori hub db upgrade`",
            "stamp",
        )
    if not known(revision):
        raise SchemaError(
            f"{db} is at schema revision {revision}, which this code does not know "
            f"(its newest is {need}): run a newer mimamori, or restore a backup",
            "current",
        )
    raise SchemaError(
        f"{db} is at schema revision {revision}, this code needs {need}: back it up "
        "(`mimamori hub backup`), then run `mimamori hub db upgrade`",
        "upgrade",
    )


def columns(conn: Connection) -> dict[str, set[str]]:
    """Each hub table's column names, as the database has them."""
    inspector = sa.inspect(conn)
    return {
        t: {c["name"] for c in inspector.get_columns(t)}
        for t in inspector.get_table_names()
        if t != VERSION_TABLE
    }


def stamp(engine: Engine) -> None:
    """Mark a database made by ``create_all`` as revision ``BASELINE``, after checking that
    its tables and columns are the ones ``BASELINE`` creates; ``SchemaError`` if not."""
    db = where(engine)
    revision = current(engine)
    if revision is not None:
        raise SchemaError(f"{db} already has a schema revision ({revision})", "current")
    reference = sa.create_engine("sqlite://")
    try:
        upgrade(reference, BASELINE)
        with reference.connect() as conn:
            want = columns(conn)
    finally:
        reference.dispose()
    with engine.connect() as conn:
        have = columns(conn)
    problems = [f"table {t} is missing" for t in sorted(want.keys() - have.keys())]
    problems += [f"table {t} is not a hub table" for t in sorted(have.keys() - want.keys())]
    for t in sorted(want.keys() & have.keys()):
        problems += [f"{t}.{c} is missing" for c in sorted(want[t] - have[t])]
        problems += [f"{t}.{c} is unexpected" for c in sorted(have[t] - want[t])]
    if problems:
        raise SchemaError(
            f"{db} does not match schema revision {BASELINE}, not stamped: " + "; ".join(problems),
            "stamp",
        )
    with engine.begin() as conn:
        command.stamp(config(conn), BASELINE)
