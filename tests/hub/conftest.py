"""A signed-in staff browser for the hub's pages (Flask's test client, over https)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient

from hub.auth import Accounts
from hub.cli import Hub

PASSWORD = "correct horse battery"


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
