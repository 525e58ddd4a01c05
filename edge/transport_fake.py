"""An in-memory broker and transport with ``edge.transport.MqttTransport``'s interface, for
tests of the link's, ingest's and relay's handlers without a network.

It does what those handlers rely on: topic filters with ``+`` and ``#`` (paho's own
``topic_matches_sub``; ``$share/group/`` prefixes are stripped), retained messages sent to a
new subscriber, the Last Will when a connection drops, message ids and PUBACKs, and
delivery to every connected transport whose filter matches (its sender included, as
Mosquitto does). Delivery is synchronous, on the publishing thread.
"""

from __future__ import annotations

from collections.abc import Callable

import paho.mqtt.client as mqtt

from edge.transport import Incoming, RejectHook, Router, Will


def _plain(flt: str) -> str:
    if flt.startswith("$share/"):
        return flt.split("/", 2)[2]
    return flt


class FakeBroker:
    def __init__(self) -> None:
        self.retained: dict[str, Incoming] = {}
        self.clients: list[FakeTransport] = []
        #: every message published, in order
        self.published: list[Incoming] = []

    def on(self, topic_filter: str) -> list[Incoming]:
        """The messages published on topics matching ``topic_filter``."""
        return [m for m in self.published if mqtt.topic_matches_sub(topic_filter, m.topic)]

    def publish(self, msg: Incoming) -> None:
        self.published.append(msg)
        if msg.retain:
            if msg.payload:
                self.retained[msg.topic] = msg
            else:
                self.retained.pop(msg.topic, None)
        for client in list(self.clients):
            client.receive(msg, retained=False)


class FakeTransport(Router):
    def __init__(
        self,
        broker: FakeBroker,
        client_id: str = "fake",
        *,
        subscriptions: list[tuple[str, int]] | None = None,
        will: Callable[[], Will] | None = None,
        on_connect: Callable[[bool], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
        on_publish: Callable[[int, int, bool], None] | None = None,
        on_reject: RejectHook | None = None,
    ) -> None:
        super().__init__(on_reject)
        self.broker = broker
        self.client_id = client_id
        self.subscriptions = subscriptions or []
        self._will_of = will
        self._will: Will | None = None
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._on_publish = on_publish
        self.session = 0
        self.connects = 0
        self.last_reconnect_delay_s = 0.0
        self._mid = 0
        self._connected = False
        #: ids of the messages acknowledged by ``ack``
        self.acked: list[int] = []

    @property
    def connected(self) -> bool:
        return self._connected

    def wait_connected(self, timeout: float) -> bool:
        return self._connected

    def start(self) -> None:
        """Connect: subscribe, run the connect hook, receive the retained messages."""
        self._will = self._will_of() if self._will_of else None
        self.session += 1
        self.connects += 1
        self._connected = True
        self.broker.clients.append(self)
        if self._on_connect is not None:
            self._on_connect(False)
        for msg in list(self.broker.retained.values()):
            self.receive(msg, retained=True)

    def stop(self, farewell: tuple[str, bytes] | None = None) -> None:
        if farewell is not None and self._connected:
            self.publish(farewell[0], farewell[1], qos=1, retain=True)
        self._leave()

    def drop(self) -> None:
        """The connection is lost: the broker publishes the will."""
        self._leave()
        if self._will is not None:
            w = self._will
            self.broker.publish(Incoming(w.topic, w.payload, w.qos, w.retain))

    def _leave(self) -> None:
        if self in self.broker.clients:
            self.broker.clients.remove(self)
        if self._connected:
            self._connected = False
            if self._on_disconnect is not None:
                self._on_disconnect()

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 0,
        retain: bool = False,
        meta: str | None = None,
        expiry_s: int | None = None,
        response_topic: str | None = None,
        corr: bytes | None = None,
    ) -> mqtt.MQTTMessageInfo:
        if not self._connected:
            info = mqtt.MQTTMessageInfo(0)
            info.rc = mqtt.MQTT_ERR_NO_CONN
            return info
        self._mid += 1
        info = mqtt.MQTTMessageInfo(self._mid)
        info.rc = mqtt.MQTT_ERR_SUCCESS
        self.broker.publish(Incoming(topic, payload, qos, retain, 0, 0, meta, corr, response_topic))
        info._set_as_published()
        if qos > 0 and self._on_publish is not None:
            self._on_publish(self.session, self._mid, True)
        return info

    def ack(self, msg: Incoming) -> None:
        if msg.qos > 0 and msg.session == self.session:
            self.acked.append(msg.mid)

    def receive(self, msg: Incoming, *, retained: bool) -> None:
        """Deliver ``msg`` if a subscription of this transport matches it."""
        qos = max(
            (q for f, q in self.subscriptions if mqtt.topic_matches_sub(_plain(f), msg.topic)),
            default=None,
        )
        if qos is None or not self._connected:
            return
        self._mid += 1
        self.dispatch(
            Incoming(
                msg.topic,
                msg.payload,
                min(qos, msg.qos),
                retained,
                self._mid,
                self.session,
                msg.meta,
                msg.corr,
                msg.response_topic,
            )
        )
