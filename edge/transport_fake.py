"""An in-memory broker and transport with ``edge.transport.MqttTransport``'s interface, for
tests of the link's, ingest's and relay's handlers without a network.

It does what those handlers rely on: topic filters with ``+`` and ``#`` (paho's own
``topic_matches_sub``; ``$share/group/`` prefixes are stripped), retained messages sent to a
new subscriber, the Last Will when a connection drops, message ids and PUBACKs, and
delivery to every connected transport whose filter matches (its sender included, as
Mosquitto does). Delivery is synchronous, on the publishing thread.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt

from mimamori.edge.transport import Packet, Transport, Will


def _plain(flt: str) -> str:
    return flt.split("/", 2)[2] if flt.startswith("$share/") else flt


class FakeBroker:
    def __init__(self) -> None:
        self.retained: dict[str, Packet] = {}
        self.clients: list[FakeTransport] = []
        #: every message published, in order
        self.published: list[Packet] = []

    def on(self, topic_filter: str) -> list[Packet]:
        """The messages published on topics matching ``topic_filter``."""
        return [m for m in self.published if mqtt.topic_matches_sub(topic_filter, m.topic)]

    def publish(self, msg: Packet) -> None:
        self.published.append(msg)
        if msg.retain:
            if msg.payload:
                self.retained[msg.topic] = msg
            else:
                self.retained.pop(msg.topic, None)
        for client in list(self.clients):
            client.receive(msg, retained=False)


class FakeTransport(Transport):
    def __init__(self, broker: FakeBroker, **hooks: Any) -> None:
        """``hooks``: ``Transport``'s keyword arguments."""
        super().__init__(**hooks)
        self.broker = broker
        self._last_will: Will | None = None
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
        """Connect: subscribe (the retained messages come), then run the connect hook."""
        self._last_will = self.will() if self.will else None
        self.session += 1
        self.connects += 1
        self._connected = True
        self.broker.clients.append(self)
        for msg in list(self.broker.retained.values()):
            self.receive(msg, retained=True)
        if self.on_connect is not None:
            self.on_connect(False)

    def stop(self, farewell: tuple[str, bytes] | None = None) -> None:
        if farewell is not None:
            self.publish(farewell[0], farewell[1], qos=1, retain=True)
        self._leave()

    def drop(self) -> None:
        """The connection is lost: the broker publishes the will."""
        self._leave()
        if self._last_will is not None:
            w = self._last_will
            self.broker.publish(Packet(w.topic, w.payload, w.qos, w.retain))

    def _leave(self) -> None:
        if self in self.broker.clients:
            self.broker.clients.remove(self)
        if self._connected:
            self._connected = False
            if self.on_disconnect is not None:
                self.on_disconnect()

    def _send(self, msg: Packet, expiry_s: int | None) -> mqtt.MQTTMessageInfo:
        self._mid += 1
        info = mqtt.MQTTMessageInfo(self._mid)
        info.rc = mqtt.MQTT_ERR_SUCCESS
        self.broker.publish(msg)
        info._set_as_published()
        if msg.qos > 0 and self.on_publish is not None:
            self.on_publish(self.session, self._mid, True)
        return info

    def ack(self, msg: Packet) -> None:
        if msg.qos > 0 and msg.session == self.session:
            self.acked.append(msg.mid)

    def receive(self, msg: Packet, *, retained: bool) -> None:
        """Deliver ``msg`` if a subscription of this transport matches it."""
        qos = max(
            (q for f, q in self.subscriptions if mqtt.topic_matches_sub(_plain(f), msg.topic)),
            default=None,
        )
        if qos is None or not self._connected:
            return
        self._mid += 1
        delivered = Packet(
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
        if not self.dispatch(delivered):
            self.ack(delivered)
