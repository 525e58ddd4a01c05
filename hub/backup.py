"""Back up the hub's database while the hub runs, and restore it into another.

SQLite: the online backup API (``sqlite3.Connection.backup``) copies the file page by page
in a consistent snapshot while ingest keeps writing. PostgreSQL: ``pg_dump -Fc`` and
``pg_restore``, found on PATH. A backup is written beside OUT and renamed into place, so a
failed run never leaves half a file under the final name.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from mimamori.hub.errors import HubError
from mimamori.hub.migrations import VERSION_TABLE

Progress = Callable[[str], None]
PAGES_PER_STEP = 4096  # SQLite pages copied between two looks at the live database
PG_MAGIC = b"PGDMP"  # first bytes of a pg_dump custom-format archive


class BackupError(HubError, RuntimeError):
    """A backup or restore could not be made; the message names the file or database."""


def row_counts(url: str) -> dict[str, int]:
    """Rows in each of the database's tables (the schema revision table left out)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            names = [t for t in sa.inspect(conn).get_table_names() if t != VERSION_TABLE]
            return {
                t: int(
                    conn.execute(sa.select(sa.func.count()).select_from(sa.table(t))).scalar_one()
                )
                for t in sorted(names)
            }
    finally:
        engine.dispose()


def backup(url: str, out: Path, progress: Progress = print) -> None:
    """Write a consistent copy of the database at ``url`` to ``out``."""
    db = make_url(url)
    partial = out.with_name(out.name + ".partial")
    try:
        if db.get_backend_name() == "sqlite":
            _sqlite_copy(_sqlite_file(db), partial, progress)
        else:
            progress(f"pg_dump of {db.render_as_string(hide_password=True)}")
            _pg("pg_dump", db, ["-Fc", "--no-owner", "-f", str(partial)])
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, out)
    progress(f"backup written to {out} ({out.stat().st_size} bytes)")


def restore(url: str, src: Path, force: bool = False, progress: Progress = print) -> None:
    """Replace the database at ``url`` by the backup ``src``; refuse if it holds rows, unless
    ``force``. The hub must be stopped; it upgrades nothing, so a backup of an older release
    asks for `mimamori hub db upgrade` at the next start."""
    db = make_url(url)
    where = db.render_as_string(hide_password=True)
    if not src.is_file():
        raise BackupError(f"{src}: no such backup file")
    with src.open("rb") as f:
        head = f.read(16)
    sqlite = db.get_backend_name() == "sqlite"
    if sqlite and not head.startswith(b"SQLite format 3\0"):
        raise BackupError(
            f"{src}: not an SQLite backup (expected a file `mimamori hub backup` wrote from an SQLite hub)"
        )
    if not sqlite and not head.startswith(PG_MAGIC):
        raise BackupError(
            f"{src}: not a pg_dump archive (expected a file `mimamori hub backup` wrote from a PostgreSQL hub)"
        )
    if not force and (not sqlite or _sqlite_file(db).exists()):
        full = {t: n for t, n in row_counts(url).items() if n}
        if full:
            listed = ", ".join(f"{t} {n}" for t, n in full.items())
            raise BackupError(
                f"{where} holds data ({listed}): not overwritten; restore into an empty database or add --force"
            )
    if sqlite:
        _sqlite_copy(src, _sqlite_file(db), progress)
    else:
        progress(f"pg_restore into {where}")
        _pg(
            "pg_restore",
            db,
            ["--clean", "--if-exists", "--no-owner", "--single-transaction", str(src)],
        )
    progress(f"restored {src} into {where}")


def _sqlite_file(db: URL) -> Path:
    if not db.database or db.database == ":memory:":
        raise BackupError(f"{db}: an in-memory database has nothing to back up or restore")
    return Path(db.database)


def _sqlite_copy(src: Path, dst: Path, progress: Progress) -> None:
    """Copy the SQLite database ``src`` onto ``dst`` with the online backup API."""
    if not src.is_file():
        raise BackupError(f"{src}: no such SQLite database")

    def step(status: int, remaining: int, total: int) -> None:
        progress(f"{src}: {total - remaining}/{total} pages copied")

    source = sqlite3.connect(src, timeout=30)
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target, pages=PAGES_PER_STEP, progress=step)
        finally:
            target.close()
    except sqlite3.Error as e:
        raise BackupError(f"{src} -> {dst}: {e}") from e
    finally:
        source.close()


def _pg(tool: str, db: URL, args: list[str]) -> None:
    """Run a PostgreSQL client tool on ``db`` (the password passed in the environment)."""
    exe = shutil.which(tool)
    if exe is None:
        raise BackupError(
            f"{tool} not found on PATH: install the PostgreSQL client tools (Debian: apt install postgresql-client)"
        )
    dsn = db.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    env = dict(os.environ)
    if db.password is not None:
        env["PGPASSWORD"] = str(db.password)
    done = subprocess.run([exe, "-d", dsn, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        where = db.render_as_string(hide_password=True)
        raise BackupError(
            f"{tool} on {where} failed (exit {done.returncode}): {done.stderr.strip()}"
        )
