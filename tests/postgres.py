"""A throwaway PostgreSQL server in a temporary folder (``initdb`` + ``pg_ctl``), for the
tests' ``pg_server`` fixture and for benchmarks."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import free_port

PG_BIN = (
    next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)
    if Path("/usr/lib/postgresql").is_dir()
    else None
)


def _as_postgres(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=True, capture_output=True, **kw)  # type: ignore[call-overload]


@contextmanager
def postgres_server(*, fsync: bool = False, settings: tuple[str, ...] = ()) -> Iterator[str]:
    """The URL of the ``postgres`` database of a new server on a free loopback port, stopped
    and removed on the way out. ``fsync=False`` (tests): fast, not crash-safe. ``settings``:
    more ``-c name=value`` options."""
    if PG_BIN is None:
        raise FileNotFoundError("PostgreSQL server binaries are not installed")
    # pytest's tmp dirs are private to root; the server runs as the postgres user
    base = Path(tempfile.mkdtemp(prefix="mimamori-pg-"))
    data = base / "data"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    try:
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "mimamori"])
        port = free_port()
        options = [f"-p {port} -k {base} -c listen_addresses=127.0.0.1"]
        options += [f"-c {s}" for s in (*settings, f"fsync={'on' if fsync else 'off'}")]
        pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data)]
        _as_postgres([*pg_ctl, "-w", "-l", str(base / "log"), "-o", " ".join(options), "start"])
        try:
            yield f"postgresql+psycopg://mimamori@127.0.0.1:{port}/postgres"
        finally:
            _as_postgres([*pg_ctl, "-m", "immediate", "stop"])
    finally:
        shutil.rmtree(base, ignore_errors=True)
