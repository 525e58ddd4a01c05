"""A stolen device certificate tries to open a member of staff's camera and microphone.

The attacker publishes, retained, on its own ``call`` topic that a call is connected with
"suzuki", for a call nobody answered. Before the hub owned the call, suzuki's open Counter
console showed it as hers, started her camera and microphone and sent the attacker an offer.
Now a call is connected only by a staff member's answer (the claim in the call book); the
device's word can confirm that claim or end the call, never make it. A device that is not a
kiosk may not speak on the call channels at all.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from playwright.sync_api import Browser, Page

from mimamori.edge import contract
from mimamori.hub.auth import Accounts
from mimamori.hub.cli import Hub
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import add_device, device_identity, hub_identity, hub_port
from tests.kiosk.conftest import staff_account
from tests.kiosk.conftest import web_hub as web_hub  # noqa: F401  (fixture)
from tests.kiosk.test_browser import chromium as chromium  # noqa: F401  (fixture)
from tests.kiosk.test_browser import staff_page
from tests.mqtt_probe import client, wait_until

#: how long "nothing happens" is watched for
QUIET_S = 4.0


@dataclass
class Raw:
    """A raw paho client holding one device's real certificate; records its commands."""

    dev: str
    c: mqtt.Client
    commands: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)  # PUBACK reason codes of refusals
    dropped: threading.Event = field(default_factory=threading.Event)  # broker closed it
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call_state(self, call: str | None, state: str, staff: str | None = None) -> None:
        body = contract.CallState(call=call, state=state, since=datetime.now(UTC), staff=staff)
        self.c.publish(contract.call(self.dev), body.dumps(), qos=1, retain=True).wait_for_publish(
            5
        )

    def seen(self, name: str, call: str) -> list[dict[str, Any]]:
        with self.lock:
            return [a for n, a in self.commands if n == name and a.get("call") == call]


@pytest.fixture
def attacker(fleet: Fleet, broker: MosquittoProcess) -> Iterator[Any]:
    made: list[Raw] = []

    def connect(dev: str, role: str) -> Raw:
        add_device(fleet, dev, role)
        raw = Raw(dev, client(device_identity(fleet, dev)))
        connected = threading.Event()

        def on_message(c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
            name = msg.topic.rsplit("/", 1)[1]
            with raw.lock:
                raw.commands.append((name, json.loads(msg.payload).get("args") or {}))

        def on_publish(c: Any, u: Any, mid: int, reason: Any, props: Any) -> None:
            if reason.is_failure:
                with raw.lock:
                    raw.refused.append(reason.value)

        raw.c.on_connect = lambda *a: connected.set()
        raw.c.on_disconnect = lambda *a: raw.dropped.set()
        raw.c.on_message = on_message
        raw.c.on_publish = on_publish
        raw.c.connect(broker.host, broker.port)
        raw.c.loop_start()
        assert connected.wait(5), f"{dev} could not connect"
        raw.c.subscribe(f"{contract.ROOT}/{dev}/cmd/+", qos=1)
        made.append(raw)
        return raw

    yield connect
    for raw in made:
        raw.c.loop_stop()
        raw.c.disconnect()


def new_call() -> str:
    return uuid.uuid4().hex


def refused(hub: Hub, reason: str) -> int:
    return hub.relay.counters[f"rejected.{reason}"]


def test_a_kiosk_saying_connected_for_a_call_nobody_answered_is_refused_and_ended(
    hub: Hub, attacker: Any
) -> None:
    assert hub.relay.wait_connected(10)
    evil = attacker("kiosk-66", "kiosk")
    ringing, unseen = new_call(), new_call()

    # a call that rang (in the queue) and one the hub never heard of: both "connected"
    evil.call_state(ringing, "ringing")
    wait_until(lambda: ringing in hub.relay.calls, 5, "the call rings at the hub")
    evil.call_state(ringing, "connected", staff="suzuki")
    wait_until(lambda: refused(hub, "unanswered") >= 1, 5, "the fake connected refused")
    evil.call_state(unseen, "connected", staff="suzuki")
    wait_until(lambda: refused(hub, "unanswered") >= 2, 5, "the second refused")

    for call in (ringing, unseen):
        wait_until(partial(evil.seen, "call-end", call), 5, f"call-end for {call}")
        assert not evil.seen("call-answer", call) and not evil.seen("call-signal", call)
    for who in ("suzuki", "tanaka", "admin"):
        console = hub.relay.console(who)
        assert console["mine"] is None, f"{who} was given a call: {console['mine']}"
        assert console["taken"] == [] and console["queue"] == []
    assert ringing not in hub.relay.calls and unseen not in hub.relay.calls
    row = hub.relay.book.get(ringing)
    assert row and row["staff"] is None and row["ended"], row
    assert hub.relay.book.get(unseen) is None
    audit = Accounts(hub.store).audit_log()
    assert [e for e in audit if e["action"] == "counter.refused" and e["user"] == evil.dev]


def test_a_kiosk_naming_other_staff_than_the_one_who_answered_changes_nothing(
    hub: Hub, attacker: Any
) -> None:
    assert hub.relay.wait_connected(10)
    evil = attacker("kiosk-66", "kiosk")
    call = new_call()
    evil.call_state(call, "ringing")
    wait_until(lambda: call in hub.relay.calls, 5, "the call rings at the hub")
    hub.relay.answer(call, "tanaka")
    wait_until(lambda: evil.seen("call-answer", call), 5, "call-answer at the kiosk")

    evil.call_state(call, "connected", staff="suzuki")
    wait_until(lambda: refused(hub, "wrong_staff") >= 1, 5, "the wrong name refused")
    assert hub.relay.console("suzuki")["mine"] is None
    mine = hub.relay.console("tanaka")["mine"]
    assert mine and mine["call"] == call and mine["state"] == "ringing", mine
    assert (hub.relay.book.get(call) or {}).get("staff") == "tanaka"

    evil.call_state(call, "connected", staff="tanaka")  # the kiosk confirms the answer
    wait_until(
        lambda: (hub.relay.console("tanaka")["mine"] or {}).get("state") == "connected",
        5,
        "confirmed",
    )
    assert hub.relay.console("suzuki")["mine"] is None


def test_a_wildlife_camera_cannot_speak_on_the_call_channels(
    fleet: Fleet, broker: MosquittoProcess, hub: Hub, attacker: Any
) -> None:
    assert hub.relay.wait_connected(10)
    evil = attacker("field-66", "wildlife")
    call = new_call()
    try:
        evil.call_state(call, "ringing")
        evil.call_state(call, "connected", staff="suzuki")
    except RuntimeError:
        pass  # the broker closed the camera's session for it
    # refused by the broker (its rules) or by the relay (the roster): either way not a call
    wait_until(
        lambda: refused(hub, "not_allowed") >= 2 or evil.refused or evil.dropped.is_set(),
        5,
        "refusal",
    )
    # and the relay refuses it even where the broker lets it through (hub account publishing
    # on the camera's topic stands in for a broker with a looser ACL)
    before = refused(hub, "not_allowed")
    loose = client(hub_identity(fleet))
    loose.connect(broker.host, hub_port(fleet))
    loose.loop_start()
    try:
        body = contract.CallState(
            call=call, state="connected", since=datetime.now(UTC), staff="suzuki"
        )
        loose.publish(contract.call(evil.dev), body.dumps(), qos=1).wait_for_publish(5)
        wait_until(lambda: refused(hub, "not_allowed") > before, 5, "the relay refuses it")
    finally:
        loose.loop_stop()
        loose.disconnect()
    assert call not in hub.relay.calls and hub.relay.book.get(call) is None
    assert hub.relay.console("suzuki")["mine"] is None


# -- the staff console in a real browser --------------------------------------------------

#: counts the page's requests for camera/microphone and the offers it makes
WATCH_MEDIA = """
window.__media = {gum: 0, offers: 0, peers: 0};
(() => {
  const md = navigator.mediaDevices;
  if (md && md.getUserMedia) {
    const gum = md.getUserMedia.bind(md);
    md.getUserMedia = (c) => { window.__media.gum += 1; return gum(c); };
  }
  const PC = window.RTCPeerConnection;
  if (PC) {
    const offer = PC.prototype.createOffer;
    PC.prototype.createOffer = function (...a) { window.__media.offers += 1; return offer.apply(this, a); };
    window.RTCPeerConnection = function (...a) { window.__media.peers += 1; return new PC(...a); };
    window.RTCPeerConnection.prototype = PC.prototype;
  }
})();
"""


def watched_console(browser: Browser, hub: Hub, name: str) -> Page:
    return staff_page(browser, hub, name, WATCH_MEDIA)


def media(page: Page) -> dict[str, int]:
    return dict(page.evaluate("window.__media"))


def test_the_console_never_opens_camera_or_microphone_for_a_call_she_did_not_answer(
    chromium: Browser,  # noqa: F811
    web_hub: Hub,  # noqa: F811
    attacker: Any,
) -> None:
    staff_account(web_hub, "suzuki")
    console = watched_console(chromium, web_hub, "suzuki")
    evil = attacker("kiosk-66", "kiosk")
    call = new_call()
    evil.call_state(call, "ringing")
    console.wait_for_selector(f"#queue li[data-call='{call}']", timeout=5000)

    evil.call_state(call, "connected", staff="suzuki")
    console.wait_for_timeout(QUIET_S * 1000)  # her console polls every second
    assert media(console) == {"gum": 0, "offers": 0, "peers": 0}
    assert console.is_hidden("#live"), "the call is shown to her as hers"
    assert not evil.seen("call-signal", call), "an offer reached the attacker"
    assert refused(web_hub, "unanswered") >= 1
    assert evil.seen("call-end", call)
