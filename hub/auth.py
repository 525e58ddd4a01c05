"""Staff accounts, roles, server-side sessions, login throttling and the audit log.

Passwords are hashed with Werkzeug's ``generate_password_hash`` (scrypt, salted), the scheme
Flask's own stack maintains. Roles:

* ``admin``    — the fleet: config, commands, model updates, users; every page
* ``wildlife`` — monkey-watch alerts, camera timelines and snapshots
* ``transit``  — ridership tables and exports
* ``counter``  — the remote-counter console

Every signed-in member of staff may look at the fleet and device pages; a device page shows
an app's events (and their pictures) only to that app's role and ``admin``; changing
anything needs ``admin``.

Sessions live in the database (``staff_sessions``): the signed session cookie carries only a
random token whose hash is a row there, checked on every request. Signing out deletes the
row, and saving an account again (``mimamori hub add-user``: new password or role) deletes
all of its rows, so a copied cookie stops working at once; a session ends after 12 hours.

Login throttling (``Throttle``) slows a password guesser without locking the owner out:

* **per account and client** — a client is the browser's signed *known-browser* cookie (given
  at each successful sign-in, kept 180 days) or, without one, its address: 5 failures in
  15 minutes, then that pair is refused until the oldest failure is 15 minutes old;
* **per account**, from clients without a known-browser cookie: 10 failures a day free, then
  each further attempt must wait 1 s, 2 s, 4 s … (doubling per failure, at most 15 minutes)
  after the last failure;
* **per address**, from clients without a known-browser cookie: 30 failures an hour free,
  then the same doubling wait.

So an attacker gets at most 5 guesses per quarter-hour from one address, and a slowing trickle
from many; the owner's known browser is never held up by anyone else's failures, and
neither is a colleague behind the same proxy address signing in to their own account.
Checking and recording an attempt is one step under a lock: an attempt counts as a failure
from the moment it is let through until its password turns out right, so parallel guesses
cannot slip past the limits. The counts live in the memory of the one process serving the
pages; a restart starts them afresh.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from mimamori.hub.store import TS, Store, fetch_all, pk, table

ROLES = ("admin", "wildlife", "transit", "counter")
MIN_PASSWORD = 10
SESSION_LIFETIME = timedelta(hours=12)

users = table(
    "staff_users",
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("password_hash", sa.String(300), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created", TS, nullable=False),
)

sessions = table(
    "staff_sessions",
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user", sa.String(64), nullable=False, index=True),
    sa.Column("created", TS, nullable=False),
    sa.Column("address", sa.String(64), nullable=False, default=""),
)

audit = table(
    "audit_log",
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
                # a new password or role: every session signed in with the old one ends
                conn.execute(sessions.delete().where(sessions.c.user == name))
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

    # -- sessions ------------------------------------------------------------------------

    def open_session(self, name: str, address: str = "") -> str:
        """A new session for ``name``: the token for the cookie (only its hash is stored)."""
        token = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(sessions.delete().where(sessions.c.created < now - SESSION_LIFETIME))
            conn.execute(
                sessions.insert().values(
                    token_hash=_digest(token), user=name, created=now, address=address[:64]
                )
            )
        return token

    def session_user(self, token: str) -> tuple[str, str] | None:
        """(name, role) of a live session, or None (signed out, expired, account changed)."""
        since = datetime.now(UTC) - SESSION_LIFETIME
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(users.c.name, users.c.role)
                .join(sessions, sessions.c.user == users.c.name)
                .where(sessions.c.token_hash == _digest(token), sessions.c.created >= since)
            ).first()
        return (str(row.name), str(row.role)) if row else None

    def end_session(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sessions.delete().where(sessions.c.token_hash == _digest(token)))

    def all(self) -> list[dict[str, Any]]:
        q = sa.select(users.c.name, users.c.role, users.c.created).order_by(users.c.name)
        return fetch_all(self.engine, q)

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
        return fetch_all(self.engine, audit.select().order_by(audit.c.pk.desc()).limit(limit))


_DUMMY_HASH = generate_password_hash("not-a-real-password")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Budget:
    """Failures allowed in a sliding window before the budget acts.

    ``hard``: then refuse until the oldest counted failure leaves the window; otherwise each
    further attempt must wait ``2 ** (failures - free)`` seconds (at most ``max_delay_s``)
    after the last failure.
    """

    free: int
    window_s: float
    hard: bool = False
    max_delay_s: float = 900.0

    def wait(self, hits: list[float], now: float) -> float:
        n = len(hits)
        if n < self.free:
            return 0.0
        if self.hard:
            return hits[n - self.free] + self.window_s - now
        return hits[-1] + min(2.0 ** (n - self.free), self.max_delay_s) - now


PAIR = Budget(5, 15 * 60, hard=True)
ACCOUNT = Budget(10, 24 * 3600)
ADDRESS = Budget(30, 3600)


@dataclass
class Attempt:
    """One login attempt the throttle let through (``wait`` 0) or refused (``wait`` > 0)."""

    throttle: Throttle | None
    keys: list[str] = field(default_factory=list)
    at: float = 0.0
    wait: float = 0.0

    @property
    def allowed(self) -> bool:
        return self.wait <= 0

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.wait))

    def succeeded(self) -> None:
        """The password was right: this attempt is no failure, and its client starts afresh."""
        if self.throttle is not None and self.allowed:
            self.throttle._succeeded(self)


class Throttle:
    """Login budgets per (account, client), per account and per address (module docstring).

    ``attempt`` checks every budget and, if all allow it, records the attempt as a failure
    in the same locked step; ``Attempt.succeeded`` takes it back.
    """

    def __init__(
        self,
        pair: Budget = PAIR,
        account: Budget = ACCOUNT,
        address: Budget = ADDRESS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budgets = {"pair": pair, "user": account, "addr": address}
        self.clock = clock
        self._hits: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()

    def _recent(self, key: str, window_s: float, now: float) -> list[float]:
        hits = self._hits[key]
        cut = 0
        while cut < len(hits) and hits[cut] < now - window_s:
            cut += 1
        del hits[:cut]
        return hits

    def attempt(self, name: str, address: str, known_browser: str | None = None) -> Attempt:
        """Check and record one attempt to sign in as ``name``.

        ``known_browser``: the id in the browser's known-browser cookie for this account;
        such a browser has a budget of its own and is not held up by other clients' failures.
        """
        now = self.clock()
        client = f"browser:{known_browser}" if known_browser else f"addr:{address}"
        keys = [("pair", f"pair:{name}|{client}")]
        if not known_browser:
            keys += [("user", f"user:{name}"), ("addr", f"addr:{address}")]
        with self._lock:
            if len(self._hits) > 10_000:
                self._sweep(now)
            wait = max(
                self.budgets[kind].wait(self._recent(key, self.budgets[kind].window_s, now), now)
                for kind, key in keys
            )
            if wait > 0:
                return Attempt(None, wait=wait)
            for _, key in keys:
                self._hits[key].append(now)
            return Attempt(self, [key for _, key in keys], now)

    def _succeeded(self, a: Attempt) -> None:
        with self._lock:
            for key in a.keys:
                if key.startswith("pair:"):
                    self._hits.pop(key, None)
                elif a.at in self._hits.get(key, []):
                    self._hits[key].remove(a.at)

    def _sweep(self, now: float) -> None:
        longest = max(b.window_s for b in self.budgets.values())
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] < now - longest]:
            del self._hits[key]
