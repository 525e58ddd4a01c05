"""What every staff page shares: the hub's parts the app was built with, the role check and
the audit record of what a member of staff did."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from flask import Flask, abort, current_app, g, request

from mimamori.hub.alerts import Alerts
from mimamori.hub.auth import Accounts, Throttle
from mimamori.hub.counter.relay import Relay
from mimamori.hub.ingest import Ingest
from mimamori.hub.store import Store

View = Callable[..., Any]


@dataclass(frozen=True)
class Parts:
    """The hub's parts the pages use; ``ingest``, ``alerts`` and ``relay`` are optional."""

    store: Store
    ingest: Ingest | None
    alerts: Alerts | None
    relay: Relay | None
    accounts: Accounts
    throttle: Throttle

    def install(self, app: Flask) -> None:
        app.extensions["mimamori"] = self


def parts() -> Parts:
    """The parts of the app serving this request."""
    return cast(Parts, current_app.extensions["mimamori"])


def audit(action: str, target: str = "", detail: str = "") -> None:
    """Record what the signed-in member of staff did, and from where."""
    parts().accounts.record(g.user, action, target, detail, request.remote_addr or "")


def require(*roles: str) -> Callable[[View], View]:
    """Let only staff with one of ``roles`` in: anyone else gets 403, and it is audited."""

    def wrap(view: View) -> View:
        @functools.wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            if g.role not in roles:
                audit("denied", request.path, f"needs {'/'.join(roles)}")
                abort(403)
            return view(*args, **kwargs)

        return inner

    return wrap
