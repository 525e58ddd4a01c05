"""Hub ingest: one MQTT v5 session that validates, stores and acknowledges.

* Events, telemetry and command replies arrive on shared subscriptions
  (``$share/hub/...``) so several hub processes split the load; retained topics (state, birth,
  twin/reported, job status) on plain subscriptions, because brokers do not deliver retained
  messages to shared subscriptions.
* The session is persistent (``clean_start=False`` with a long Session Expiry): the broker
  queues messages while the hub is away.
* ``manual_ack``: a QoS 1 message is acknowledged only after the batch holding it has been
  committed, so a crash between receipt and commit means redelivery, never loss; the store's
  unique key makes redelivery harmless.
* Every message goes through ``edge.contract.decode``; a malformed one is logged once with its
  topic, counted by reason and acknowledged. Nothing in a message can stop ingest.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge import contract
from hub.config import HubConfig
from hub.roster import Roster
from hub.store import Message, Store

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
COMMAND_EXPIRY_S = 60
SHARED = [f"$share/hub/{contract.ROOT}/+/{t}" for t in ("event/+", "tele", "reply/+")]
RETAINED = [f"{contract.ROOT}/+/{t}" for t in ("state", "birth", "twin/reported", "jobs/+/status")]


@dataclass(frozen=True)
class _Item:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received: datetime
    corr: str | None


def reason_of(err: contract.ContractError) -> str:
    """A short, stable reason key for the reject counters."""
    if err.reason:
        return err.reason
    text = str(err)
    for key, needle in (
        ("oversized", "exceeds"),
        ("not_json", "not UTF-8 JSON"),
        ("not_object", "must be a JSON object"),
        ("bad_topic", "expected mimamori/v1/"),
        ("bad_topic", "unknown channel"),
        ("bad_topic", "more level"),
        ("bad_topic", "device id"),
        ("bad_topic", "twin/desired or"),
        ("kind_mismatch", "differs from the topic"),
        ("unknown_kind", "not in the contract"),
    ):
        if needle in text:
            return key
    return "schema"


class Ingest:
    def __init__(self, cfg: HubConfig, store: Store, roster: Roster) -> None:
        self.cfg = cfg
        self.store = store
        self.roster = roster
        self.counters: Counter[str] = Counter()
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=100_000)
        self._generation = 0
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._client = self._new_client()
        self._writer = threading.Thread(target=self._write_loop, name="hub-writer", daemon=True)
        #: called with each stored wildlife event (hub.alerts.Alerts.handle); optional
        self.on_wildlife: Callable[[Message, datetime], None] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def _new_client(self) -> mqtt.Client:
        m = self.cfg.mqtt
        client = m.client(m.client_id, manual_ack=True)
        client.will_set(
            contract.HUB_STATE, contract.HubState(online=False).dumps(), qos=1, retain=True
        )
        client.reconnect_delay_set(1, 10)
        client.max_inflight_messages_set(100)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def start(self) -> Ingest:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        m = self.cfg.mqtt
        self._writer.start()
        self._client.connect_async(
            m.host, m.port, keepalive=m.keepalive_s, clean_start=False, properties=props
        )
        self._client.loop_start()
        return self

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._connected.wait(timeout)

    @property
    def healthy(self) -> bool:
        """The writer thread is alive (a hung or dead writer stops the watchdog pings)."""
        return self._writer.is_alive()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stop(self) -> None:
        """Say the hub is offline, flush what was received, disconnect."""
        if self._connected.is_set():
            info = self._client.publish(
                contract.HUB_STATE, contract.HubState(online=False).dumps(), qos=1, retain=True
            )
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2)
        self._stopping.set()
        self._writer.join(10)
        self._client.disconnect()
        self._client.loop_stop()

    # -- callbacks -----------------------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the hub: %s", reason)
            return
        self._generation += 1
        client.subscribe([(t, 1) for t in SHARED + RETAINED])
        client.publish(
            contract.HUB_STATE, contract.HubState(online=True).dumps(), qos=1, retain=True
        )
        self._connected.set()
        self.counters["connects"] += 1
        log.info(
            "hub ingest connected to %s:%d (session present: %s)",
            self.cfg.mqtt.host,
            self.cfg.mqtt.port,
            flags.session_present,
        )

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            log.warning("hub ingest disconnected (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == contract.HUB_STATE:  # our own retained state matches +/state
            client.ack(msg.mid, msg.qos)
            return
        corr = getattr(msg.properties, "CorrelationData", None)
        self.counters["received"] += 1
        self._queue.put(
            _Item(
                msg.topic,
                bytes(msg.payload),
                msg.mid,
                msg.qos,
                self._generation,
                datetime.now(UTC),
                corr.decode(errors="replace") if corr else None,
            )
        )

    # -- writer --------------------------------------------------------------------------

    def _write_loop(self) -> None:
        batch_max = self.cfg.ingest.batch_max
        wait = self.cfg.ingest.batch_wait_ms / 1000
        while not (self._stopping.is_set() and self._queue.empty()):
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            items = [first]
            deadline = time.monotonic() + wait
            while len(items) < batch_max:
                try:
                    items.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            self._write(items)

    def _write(self, items: list[_Item]) -> None:
        good: list[Message] = []
        for item in items:
            try:
                topic, payload = contract.decode(item.topic, item.payload)
                self._check_trust(topic, payload)
                if topic.channel == "reply":
                    topic = contract.Topic(topic.dev, topic.channel, item.corr or "")
                good.append(Message(topic, payload, item.received))
            except contract.ContractError as e:
                self._reject(item.topic, reason_of(e), str(e))
            except Exception as e:  # a bug must not stop ingest: count it like a reject
                log.exception("unexpected error decoding %s", item.topic)
                self._reject(item.topic, "internal", repr(e))
        while True:
            try:
                result = self.store.apply(good)
                break
            except Exception:
                # the database is down or locked: keep the messages unacknowledged and retry
                log.exception("storing a batch of %d failed; retrying", len(good))
                if self._stopping.wait(1.0):
                    return
        if self.on_wildlife is not None:
            for m in good:
                if m.topic.channel == "event" and m.topic.rest.startswith("wildlife."):
                    try:
                        self.on_wildlife(m, datetime.now(UTC))
                    except Exception:
                        log.exception("alert handling failed for %s", m.topic)
        self.counters["stored"] += result.new
        self.counters["duplicates"] += result.duplicates
        self.counters["stale_wills"] += result.stale_wills
        for item in items:
            if item.qos > 0 and item.generation == self._generation:
                self._client.ack(item.mid, item.qos)

    def _check_trust(self, topic: contract.Topic, payload: contract.Payload) -> None:
        """What the device says about itself must match what the fleet issued it as:
        its role's channels and event kinds, its role in the birth, its bus number."""
        entry = self.roster.check(topic)
        if isinstance(payload, contract.BirthPayload) and payload.role != entry.role:
            raise contract.ContractError(
                f"device {topic.dev!r} was issued as {entry.role}; its birth says {payload.role}",
                reason="not_allowed",
            )
        if isinstance(payload, contract.EventPayload) and payload.kind == "ridership.stop_visit":
            vehicle = str(payload.data.get("vehicle", ""))
            if vehicle not in self._vehicles_of(topic.dev, entry.vehicle):
                raise contract.ContractError(
                    f"device {topic.dev!r} reports for vehicle {vehicle!r}, not its own",
                    reason="not_allowed",
                )

    def _vehicles_of(self, dev: str, issued: str | None) -> set[str]:
        """The bus numbers a counter may report for: as issued, its device id, or the one
        the hub itself last set in its config."""
        ok = {dev, *([issued] if issued else [])}
        desired = (self.store.device(dev) or {}).get("desired_config") or {}
        vehicle = (desired.get("ridership") or {}).get("vehicle")
        if vehicle:
            ok.add(str(vehicle))
        return ok

    def _reject(self, topic: str, reason: str, detail: str) -> None:
        self.counters["rejected"] += 1
        self.counters[f"rejected.{reason}"] += 1
        log.warning("rejected message on %r (%s): %s", topic[:200], reason, detail[:500])
        try:
            self.store.reject(topic, reason, detail)
        except Exception:
            log.exception("could not record a reject")

    # -- outgoing ------------------------------------------------------------------------

    def set_desired(self, dev: str, config: dict[str, Any]) -> int:
        """Record and publish (retained) a new desired config; return its version."""
        contract.check_device_id(dev)
        version = self.store.set_desired(dev, config)
        self._client.publish(
            contract.twin_desired(dev),
            contract.TwinDesired(version=version, config=config).dumps(),
            qos=1,
            retain=True,
        )
        return version

    def send_command(self, dev: str, name: str, args: dict[str, Any] | None = None) -> str:
        """Publish a command with a response topic and correlation id; return the id."""
        corr = uuid.uuid4().hex
        args = args or {}
        self.store.command_sent(corr, dev, name, args)
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = contract.reply(dev, name)
        props.CorrelationData = corr.encode()
        props.MessageExpiryInterval = COMMAND_EXPIRY_S
        self._client.publish(
            contract.cmd(dev, name),
            contract.CommandRequest(args=args).dumps(),
            qos=1,
            properties=props,
        )
        return corr
