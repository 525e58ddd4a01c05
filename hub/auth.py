"""Staff accounts, roles, login throttling and the audit log.

Passwords are hashed with Werkzeug's ``generate_password_hash`` (scrypt, salted), the scheme
Flask's own stack maintains. Roles:

* ``admin``    — the fleet: config, commands, model updates, users; every page
* ``wildlife`` — monkey-watch alerts
* ``transit``  — ridership tables
* ``counter``  — the remote-counter console

Every signed-in member of staff may look at the fleet pages; changing anything needs ``admin``.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from hub.store import TS, Store, metadata, pk, utc

ROLES = ("admin", "wildlife", "transit", "counter")
MIN_PASSWORD = 10

users = sa.Table(
    "staff_users",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("password_hash", sa.String(300), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created", TS, nullable=False),
)

audit = sa.Table(
    "audit_log",
    metadata,
    pk(),
    sa.Column("at", TS, nullable=False, index=True),
    sa.Column("user", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(200), nullable=False, default=""),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Column("address", sa.String(64), nullable=False, default=""),
)


class AuthError(ValueError):
    """A user could not be created (bad name, role or password)."""


class Accounts:
    def __init__(self, store: Store) -> None:
        self.engine = store.engine

    def add(self, name: str, password: str, role: str) -> None:
        if role not in ROLES:
            raise AuthError(f"role {role!r}: expected one of {', '.join(ROLES)}")
        if not name or len(name) > 64 or not name.replace("-", "").replace(".", "").isalnum():
            raise AuthError(f"user name {name!r}: letters, digits, '.' and '-' only")
        if len(password) < MIN_PASSWORD:
            raise AuthError(f"password: at least {MIN_PASSWORD} characters")
        row = {
            "name": name,
            "password_hash": generate_password_hash(password),
            "role": role,
            "created": datetime.now(UTC),
        }
        with self.engine.begin() as conn:
            if conn.execute(sa.select(users.c.name).where(users.c.name == name)).first():
                conn.execute(users.update().where(users.c.name == name).values(**row))
            else:
                conn.execute(users.insert().values(**row))

    def check(self, name: str, password: str) -> str | None:
        """The user's role if the password is right, else None (same cost either way)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users).where(users.c.name == name)).first()
        if row is None:
            check_password_hash(_DUMMY_HASH, password)  # no timing hint that the name is unknown
            return None
        return str(row.role) if check_password_hash(row.password_hash, password) else None

    def role(self, name: str) -> str | None:
        with self.engine.connect() as conn:
            role = conn.execute(sa.select(users.c.role).where(users.c.name == name)).scalar()
        return str(role) if role else None

    def all(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(users.c.name, users.c.role, users.c.created).order_by(users.c.name)
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    # -- audit ---------------------------------------------------------------------------

    def record(
        self, user: str, action: str, target: str = "", detail: str = "", address: str = ""
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                audit.insert().values(
                    at=datetime.now(UTC),
                    user=user,
                    action=action,
                    target=target[:200],
                    detail=detail[:4000],
                    address=address[:64],
                )
            )

    def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(sa.select(audit).order_by(audit.c.pk.desc()).limit(limit))
                .mappings()
                .all()
            )
        return [{**dict(r), "at": utc(r["at"])} for r in rows]


_DUMMY_HASH = generate_password_hash("not-a-real-password")


class Throttle:
    """Refuse logins from an address (or for a name) after ``limit`` failures in ``window_s``."""

    def __init__(self, limit: int = 5, window_s: float = 600.0) -> None:
        self.limit, self.window_s = limit, window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures[key]
        while q and q[0] < now - self.window_s:
            q.popleft()
        return q

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(k, now)) >= self.limit for k in keys)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for k in keys:
                self._recent(k, now).append(now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                self._failures.pop(k, None)
