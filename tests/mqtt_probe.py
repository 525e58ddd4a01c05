"""A plain paho client acting as the hub side in device tests (no hub code involved)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mimamori.edge import contract


def wait_until(pred: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@dataclass(frozen=True)
class Identity:
    """A client certificate issued by the fleet CA (the CN is the MQTT user name)."""

    ca_file: str
    cert_file: str
    key_file: str


def client(identity: Identity) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=identity.ca_file, certfile=identity.cert_file, keyfile=identity.key_file)
    return c


@dataclass
class Probe:
    host: str
    port: int
    identity: Identity
    messages: list[mqtt.MQTTMessage] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, subscribe: str = "mimamori/v1/#", hub_online: bool | None = True) -> Probe:
        self.client = client(self.identity)
        self.client.on_message = self._on_message
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        assert connected.wait(5), "probe could not connect"
        self.client.subscribe(subscribe, qos=1)
        if hub_online is not None:
            self.set_hub(hub_online)
        return self

    def set_hub(self, online: bool) -> None:
        self.client.publish(
            contract.HUB_STATE, contract.HubState(online=online).dumps(), qos=1, retain=True
        ).wait_for_publish(5)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def on(self, suffix: str) -> list[mqtt.MQTTMessage]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def events(self, dev: str) -> list[contract.EventPayload]:
        prefix = f"{contract.ROOT}/{dev}/event/"
        with self._lock:
            msgs = [m for m in self.messages if m.topic.startswith(prefix)]
        return [contract.EventPayload.model_validate_json(m.payload) for m in msgs]

    def command(self, dev: str, name: str, args: dict[str, Any] | None = None) -> bytes:
        corr = f"c{time.monotonic_ns()}".encode()
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = contract.reply(dev, name)
        props.CorrelationData = corr
        self.client.publish(
            contract.cmd(dev, name),
            contract.CommandRequest(args=args or {}).dumps(),
            qos=1,
            properties=props,
        )
        return corr
