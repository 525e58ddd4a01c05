"""A signed-in staff browser for the hub's pages (Flask's test client, over https); a
throwaway PostgreSQL server with a fresh database a test."""

from __future__ import annotations

import re
import tomllib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import tomli_w
from flask.testing import FlaskClient

from mimamori.edge import contract
from mimamori.hub.alerts.tables import troops
from mimamori.hub.auth import Accounts
from mimamori.hub.cli import Hub
from mimamori.hub.store import Message, Store
from mimamori.provisioning.fleet import Fleet
from tests.postgres import PG_BIN, postgres_server

PASSWORD = "correct horse battery"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """The hub's store on a fresh SQLite file (a test may define its own, as the dialect
    tests do)."""
    s = Store(f"sqlite:///{tmp_path / 'hub.db'}").create()
    yield s
    s.close()


class Staff:
    def __init__(self, web: FlaskClient) -> None:
        self.web = web

    def token(self, path: str = "/login") -> str:
        page = self.web.get(path).get_data(as_text=True)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def login(self, name: str, password: str = PASSWORD) -> Any:
        return self.web.post(
            "/login", data={"name": name, "password": password, "csrf_token": self.token()}
        )

    def get(self, path: str) -> Any:
        return self.web.get(path)

    def post(self, path: str, data: dict[str, str] | None = None, **kw: Any) -> Any:
        return self.web.post(path, data={**(data or {}), "csrf_token": self.token("/")}, **kw)


def staff_client(hub: Hub, name: str, role: str) -> Staff:
    Accounts(hub.store).add(name, PASSWORD, role)
    staff = Staff(hub.app.test_client())
    staff.web.environ_base["wsgi.url_scheme"] = "https"  # the session cookie is Secure
    assert staff.login(name).status_code == 302
    return staff


@pytest.fixture
def admin(hub: Hub) -> Staff:
    return staff_client(hub, "sato", "admin")


def hub_config(fleet: Fleet, url: str, name: str = "hub.toml") -> Path:
    """The fleet's hub config with its store at ``url``, written beside it as ``name``."""
    settings = tomllib.loads(fleet.hub_config.read_text())
    settings["store"]["url"] = url
    path = fleet.hub_config.with_name(name)
    path.write_text(tomli_w.dumps(settings))
    return path


def event(dev: str, seq: int) -> Message:
    payload = contract.EventPayload(
        id=uuid.uuid4().hex,
        seq=seq,
        kind="wildlife.sighting",
        created=contract.utcnow(),
        data={"score": 0.9},
    )
    topic = contract.parse_topic(contract.event(dev, "wildlife.sighting"))
    return Message(topic, payload, datetime.now(UTC))


def seed(store: Store) -> None:
    """A device (field-01) with 30 events, a staff account (tanaka, wildlife) and a troop
    alert (t1), written by the store's own code as any release since the first does."""
    assert store.apply([event("field-01", n) for n in range(1, 31)]).new == 30
    Accounts(store).add("tanaka", PASSWORD, "wildlife")
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        conn.execute(
            troops.insert().values(
                id="t1",
                cameras=["field-01"],
                started=now,
                last_seen=now,
                max_score=0.9,
                late=False,
                delivered=now,
            )
        )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A throwaway PostgreSQL server for the session: the URL of its ``postgres`` database."""
    if PG_BIN is None:
        pytest.skip("PostgreSQL server binaries not installed (./run.sh test installs them)")
    with postgres_server() as url:
        yield url


@pytest.fixture
def pg_databases(pg_server: str) -> Iterator[Callable[[], str]]:
    """Makes fresh, empty databases on the throwaway server; drops them after the test."""
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def make() -> str:
        made.append(f"t_{uuid.uuid4().hex[:12]}")
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {made[-1]}"))
        return pg_server.rsplit("/", 1)[0] + f"/{made[-1]}"

    try:
        yield make
        with admin.connect() as conn:
            for name in made:
                conn.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
    finally:
        admin.dispose()


@pytest.fixture
def pg_url(pg_databases: Callable[[], str]) -> str:
    """A fresh, empty database on the throwaway server."""
    return pg_databases()
