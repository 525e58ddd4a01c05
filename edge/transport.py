"""One thin MQTT v5 transport (paho-mqtt 2) for the device link, hub ingest and the relay.

``MqttTransport`` holds one session at a time with a fresh paho client per connection (so
paho's in-memory retransmissions never duplicate what an outbox resends): TLS with a client
certificate, a Last Will made anew for each connection, the subscriptions made again on
each connect, and an exponential backoff with full jitter between attempts. paho's own
network thread (``loop_start``) does every read and write on the socket; ``publish`` from
any other thread only queues and wakes it.

Packet messages are routed by their contract channel (``edge.contract.CHANNELS``) to the
handler registered for it. A message outside the contract, or one its handler refuses with
a ``ContractError``, is counted by ``Reason`` and handed to ``on_reject`` (or logged); an
unexpected error in a handler is counted as ``internal``. Nothing a message holds can stop
the transport.

``FakeBroker`` and ``FakeTransport`` (``edge.transport_fake``) play the same interface in
memory for tests of the handlers.
"""

from __future__ import annotations

import contextlib
import logging
import random
import ssl
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from mimamori.edge import contract

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Packet:
    """A message as a handler sees it or as it is sent (MQTT v5 properties unpacked)."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    mid: int = 0
    #: the connection it came on: an ack for an older one is not sent
    session: int = 0
    meta: str | None = None
    corr: bytes | None = None
    response_topic: str | None = None


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to connect."""

    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: int = 30
    connect_timeout_s: float = 30.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 10.0
    clean_start: bool = True
    #: a persistent session's lifetime at the broker (None: ends with the connection)
    session_expiry_s: int | None = None
    #: acknowledge QoS 1 messages only when the owner says so (``Transport.ack``)
    manual_ack: bool = False
    max_inflight: int = 20


Handler = Callable[[Packet], None]
#: a message that broke the contract, and how
RejectHook = Callable[[Packet, contract.ContractError], None]


def backoff_delay(attempt: int, lo: float, hi: float, rng: random.Random) -> float:
    """Exponential backoff with jitter from the first retry: a random delay between ``lo``
    and ``lo * 2**(attempt + 1)`` (capped at ``hi``), so a fleet that lost the broker at the
    same moment does not come back in the same second. The exponent stops growing at 30: a
    device out of coverage for days makes thousands of attempts, and 2.0 ** 1024 overflows."""
    return rng.uniform(lo, min(hi, lo * 2.0 ** min(attempt + 1, 30)))


def tls_problem(e: ssl.SSLCertVerificationError, now: datetime) -> str:
    """Say why the broker's certificate was refused; a wrong clock is the usual cause on a
    Pi (no real-time clock), so name it with the time this device believes it is."""
    why = e.verify_message or str(e)
    if "not yet valid" in why or "expired" in why:
        return (
            f"the broker's certificate is {why} by this device's clock ({contract.iso(now)}); "
            "a Pi has no real-time clock: check that NTP (systemd-timesyncd) or fake-hwclock "
            "has set the time (certificates are issued two days back to allow for a slow clock)"
        )
    return f"the broker's certificate does not verify: {why}"


def publish_properties(
    *,
    meta: str | None = None,
    expiry_s: int | None = None,
    response_topic: str | None = None,
    corr: bytes | None = None,
) -> Properties | None:
    """The MQTT v5 properties of a publish (None when there are none)."""
    if not (meta or expiry_s or response_topic or corr):
        return None
    props = Properties(PacketTypes.PUBLISH)
    if meta:
        props.UserProperty = ("meta", meta)
    if expiry_s:
        props.MessageExpiryInterval = expiry_s
    if response_topic:
        props.ResponseTopic = response_topic
    if corr:
        props.CorrelationData = corr
    return props


class Transport(ABC):
    """What the link, ingest and relay use of an MQTT session, and what both transports
    share: the hooks, routing by contract channel, reject counting, the publish call."""

    def __init__(
        self,
        *,
        subscriptions: list[tuple[str, int]] | None = None,
        unsubscriptions: list[str] | None = None,
        will: Callable[[], Will] | None = None,
        on_connect: Callable[[bool], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
        on_publish: Callable[[int, int, bool], None] | None = None,
        on_reject: RejectHook | None = None,
    ) -> None:
        """``on_connect(session_present)`` runs once subscribed, ``on_disconnect()`` when a
        connection is lost, ``on_publish(session, mid, ok)`` on each PUBACK (on paho's
        thread, holding its locks: record and return). ``unsubscriptions``: filters a
        persistent session may still hold from an earlier run, dropped on each connect."""
        self.subscriptions = subscriptions or []
        self.unsubscriptions = unsubscriptions or []
        self.will = will
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.on_publish = on_publish
        self.on_reject = on_reject
        self.rejects: Counter[contract.Reason] = Counter()
        self.session = 0
        self.connects = 0
        self.last_reconnect_delay_s = 0.0
        self._handlers: dict[str, Handler] = {}

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self, farewell: tuple[str, bytes] | None = None) -> None:
        """Publish ``farewell`` (topic, payload: retained, QoS 1) if connected, disconnect."""

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @abstractmethod
    def wait_connected(self, timeout: float) -> bool: ...

    @abstractmethod
    def ack(self, msg: Packet) -> None:
        """Acknowledge a QoS 1 message (manual-ack sessions) if its connection still holds."""

    @abstractmethod
    def _send(self, msg: Packet, expiry_s: int | None) -> mqtt.MQTTMessageInfo: ...

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
        """Send a message; ``rc`` is not MQTT_ERR_SUCCESS when there is no connection,
        ``mid`` identifies its PUBACK (``on_publish``)."""
        if not self.connected:
            info = mqtt.MQTTMessageInfo(0)
            info.rc = mqtt.MQTT_ERR_NO_CONN
            return info
        msg = Packet(
            topic, payload, qos, retain, meta=meta, corr=corr, response_topic=response_topic
        )
        return self._send(msg, expiry_s)

    def route(self, channel: str, handler: Handler) -> None:
        """Send messages of the contract's ``channel`` (a row name) to ``handler``."""
        if channel not in contract.BY_NAME:
            raise ValueError(f"no channel {channel!r} in the contract")
        self._handlers[channel] = handler

    def dispatch(self, msg: Packet) -> bool:
        """Hand ``msg`` over; False when nobody took it (unrouted: the caller acks it)."""
        try:
            handler = self._handlers.get(contract.channel_of(msg.topic).name)
            if handler is None:
                return False
            handler(msg)
        except contract.ContractError as e:
            return self.reject(msg, e)
        except Exception as e:  # a bug must not stop the reader: count it like a reject
            log.exception("unexpected error handling %s", msg.topic[:200])
            return self.reject(
                msg, contract.ContractError(repr(e), reason=contract.Reason.INTERNAL)
            )
        return True

    def reject(self, msg: Packet, err: contract.ContractError) -> bool:
        self.rejects[err.reason] += 1
        if self.on_reject is None:
            log.warning("ignored message on %r (%s): %s", msg.topic[:200], err.reason, err)
            return False
        self.on_reject(msg, err)
        return True


#: makes a transport from ``Transport``'s keyword arguments (a test hands in a fake)
TransportFactory = Callable[..., Transport]


class MqttTransport(Transport):
    def __init__(
        self, endpoint: Endpoint, *, rng: random.Random | None = None, **hooks: Any
    ) -> None:
        """``hooks``: ``Transport``'s keyword arguments."""
        super().__init__(**hooks)
        self.endpoint = endpoint
        self._rng = rng or random.Random()
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._stopping = threading.Event()
        #: set when the current connection is over (lost, refused or closed)
        self._over = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"{endpoint.client_id}-mqtt", daemon=True
        )

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, farewell: tuple[str, bytes] | None = None) -> None:
        if farewell is not None and self.connected:
            info = self.publish(farewell[0], farewell[1], qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2.0)
        self._stopping.set()
        self._over.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # -- out -----------------------------------------------------------------------------

    def _send(self, msg: Packet, expiry_s: int | None) -> mqtt.MQTTMessageInfo:
        client = self._client
        assert client is not None  # connected
        props = publish_properties(
            meta=msg.meta, expiry_s=expiry_s, response_topic=msg.response_topic, corr=msg.corr
        )
        return client.publish(
            msg.topic, msg.payload, qos=msg.qos, retain=msg.retain, properties=props
        )

    def ack(self, msg: Packet) -> None:
        client = self._client
        if msg.qos > 0 and client is not None and msg.session == self.session:
            client.ack(msg.mid, msg.qos)

    # -- the connection ------------------------------------------------------------------

    def _new_client(self) -> mqtt.Client:
        e = self.endpoint
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=e.client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
            manual_ack=e.manual_ack,
        )
        client.username_pw_set(e.username, e.password)
        if e.ca_file:
            client.tls_set(
                ca_certs=str(e.ca_file),
                certfile=str(e.cert_file) if e.cert_file else None,
                keyfile=str(e.key_file) if e.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.connect_timeout = e.connect_timeout_s
        client.max_inflight_messages_set(e.max_inflight)
        client.max_queued_messages_set(0)
        if self.will is not None:
            w = self.will()
            client.will_set(w.topic, w.payload, qos=w.qos, retain=w.retain)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def _run(self) -> None:
        e = self.endpoint
        attempt = 0
        props = None
        if e.session_expiry_s is not None:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = e.session_expiry_s
        while not self._stopping.is_set():
            client = self._new_client()
            self._over.clear()
            self._client = client
            started = time.monotonic()
            try:
                client.connect(
                    e.host,
                    e.port,
                    keepalive=e.keepalive_s,
                    clean_start=e.clean_start,
                    properties=props,
                )
                client.loop_start()
                self._over.wait()
                client.disconnect()
                client.loop_stop()
            except ssl.SSLCertVerificationError as err:
                log.error("broker %s:%d: %s", e.host, e.port, tls_problem(err, contract.utcnow()))
            except (OSError, ssl.SSLError) as err:
                log.warning("cannot reach broker %s:%d: %s", e.host, e.port, err)
            except Exception:
                log.exception("MQTT loop failed")
            self._down()
            if self._stopping.is_set():
                break
            if time.monotonic() - started > 60:
                attempt = 0  # the last session was healthy: start the backoff again
            delay = backoff_delay(attempt, e.reconnect_min_s, e.reconnect_max_s, self._rng)
            attempt += 1
            self.last_reconnect_delay_s = round(delay, 2)
            log.info("%s: reconnecting in %.1f s", e.client_id, delay)
            self._stopping.wait(delay)

    def _down(self) -> None:
        if self._connected.is_set():
            self._connected.clear()
            if self.on_disconnect is not None:
                self.on_disconnect()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("broker refused %s: %s", self.endpoint.client_id, reason)
            self._over.set()
            return
        self.session += 1
        self.connects += 1
        if self.subscriptions:
            client.subscribe(self.subscriptions)
        if self.unsubscriptions:
            client.unsubscribe(self.unsubscriptions)
        self._connected.set()
        if self.on_connect is not None:
            self.on_connect(flags.session_present)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if client is self._client:
            self._down()
            self._over.set()
        if not self._stopping.is_set():
            log.info("%s disconnected: %s", self.endpoint.client_id, reason)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self.on_publish is not None and client is self._client:
            self.on_publish(self.session, mid, not reason.is_failure)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties
        meta = dict(getattr(props, "UserProperty", None) or []).get("meta")
        incoming = Packet(
            msg.topic,
            bytes(msg.payload),
            msg.qos,
            bool(msg.retain),
            msg.mid,
            self.session,
            meta,
            getattr(props, "CorrelationData", None) or None,
            getattr(props, "ResponseTopic", None) or None,
        )
        if not self.dispatch(incoming) and self.endpoint.manual_ack:
            self.ack(incoming)
