"""Staff browsers and device publishers for the attacks on the hub's staff pages.

``Browser`` talks plain HTTP (``http.client``) to the hub as waitress serves it, keeping its
own cookies (the session cookie is Secure, so a stock cookie jar would not send it over http
to 127.0.0.1), from any loopback source address: 127.0.0.2 is another machine to the hub.
"""

from __future__ import annotations

import base64
import http.client
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import cv2
import numpy as np
import paho.mqtt.client as mqtt

from mimamori.edge import contract
from mimamori.hub.auth import Accounts
from mimamori.hub.cli import Hub
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import device_identity
from tests.mqtt_probe import client, wait_until

PASSWORD = "correct horse battery"


def _jpeg() -> str:
    img = np.full((48, 64, 3), (40, 120, 60), np.uint8)
    img[10:30, 20:40] = (200, 200, 200)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return base64.b64encode(buf.tobytes()).decode()


JPEG_B64 = _jpeg()  # a small real JPEG: a snapshot the browser can show


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")


class Browser:
    def __init__(self, hub: Hub, source: str = "127.0.0.1") -> None:
        self.port = hub.cfg.web.port
        self.source = source
        self.cookies: dict[str, str] = {}
        self.csrf = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None, **headers: str
    ) -> Reply:
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=30, source_address=(self.source, 0)
        )
        hdrs = dict(headers)
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            reply = Reply(resp.status, resp.headers, resp.read())
        finally:
            conn.close()
        for cookie in reply.headers.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            gone = re.search(r"(?i)(max-age=0\b|expires=thu, 01 jan 1970)", cookie)
            if gone or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        match = re.search(rb'name="csrf_token" value="([^"]+)"', reply.body)
        if match:
            self.csrf = match.group(1).decode()
        return reply

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, str] | None = None) -> Reply:
        self.get("/login")  # the sign-in form carries this session's current CSRF token
        return self.request("POST", path, {**(form or {}), "csrf_token": self.csrf})

    def login(self, name: str, password: str = PASSWORD, next: str | None = None) -> Reply:
        self.get("/login")  # a fresh CSRF token for this session
        return self.attempt(name, password, next)

    def attempt(self, name: str, password: str, next: str | None = None) -> Reply:
        """POST the login form with the token already held (for a burst of guesses)."""
        path = "/login" + (f"?{urlencode({'next': next})}" if next is not None else "")
        return self.request(
            "POST", path, {"name": name, "password": password, "csrf_token": self.csrf}
        )


def staff(hub: Hub, name: str, role: str) -> str:
    Accounts(hub.store).add(name, PASSWORD, role)
    return name


def signed_in(hub: Hub, name: str, role: str, source: str = "127.0.0.1") -> Browser:
    staff(hub, name, role)
    b = Browser(hub, source)
    r = b.login(name)
    assert r.status == 302, r.text
    return b


def audit_actions(hub: Hub, action: str) -> int:
    return sum(1 for r in Accounts(hub.store).audit_log(10_000) if r["action"] == action)


@contextmanager
def device(fleet: Fleet, broker: MosquittoProcess, name: str, role: str) -> Iterator[Publisher]:
    """A raw MQTT client holding a real device certificate of the fleet."""
    fleet.add_device(name, role)
    c = client(device_identity(fleet, name))
    c.connect(broker.host, broker.port)
    c.loop_start()
    wait_until(c.is_connected, 5, name)
    try:
        yield Publisher(c, name)
    finally:
        c.loop_stop()
        c.disconnect()


@dataclass
class Publisher:
    client: mqtt.Client
    dev: str
    seq: int = 0

    def event(
        self, kind: str, data: dict[str, Any], prio: int = 1, created: datetime | None = None
    ) -> None:
        self.seq += 1
        payload = contract.EventPayload(
            id=uuid.uuid4().hex,
            seq=self.seq,
            kind=kind,
            prio=contract.Priority(prio),
            created=created or contract.utcnow(),
            data=data,
        )
        payload.checked_data()
        self.client.publish(
            contract.event(self.dev, kind), payload.dumps(), qos=1
        ).wait_for_publish(5)


def incursion(started: Any = None) -> dict[str, Any]:
    return contract.IncursionData(
        incursion=uuid.uuid4().hex,
        started=started or contract.utcnow(),
        score=0.93,
        label="macaque",
        box=(10, 10, 200, 200),
        frames=3,
        snapshot_jpeg=JPEG_B64,
    ).model_dump(mode="json")
