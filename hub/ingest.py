"""Hub ingest: one MQTT v5 session (``edge.transport``) that validates, stores and acknowledges.

* Which channels it reads, and how, is the contract table's (``Channel.ingest``): events,
  telemetry and command replies on shared subscriptions (``$share/hub/...``) so several hub
  processes split the load; retained topics (state, birth, twin/reported) and job status on
  plain subscriptions, because brokers do not deliver retained messages to shared
  subscriptions.
* The session is persistent (``clean_start=False`` with a long Session Expiry): the broker
  queues messages while the hub is away.
* ``manual_ack``: a QoS 1 message is acknowledged only after the batch holding it has been
  committed, so a crash between receipt and commit means redelivery, never loss; the store's
  unique key makes redelivery harmless.
* Every message goes through ``edge.contract.decode``; a malformed one is logged once with its
  topic, counted by its ``contract.Reason`` and acknowledged. Nothing in a message can stop
  ingest. The writer thread decodes and stores in batches; the transport's thread only queues.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from mimamori.edge import contract
from mimamori.edge.transport import MqttTransport, Packet, Transport, TransportFactory, Will
from mimamori.hub.config import HubConfig
from mimamori.hub.roster import Roster
from mimamori.hub.store import Message, Store

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
COMMAND_EXPIRY_S = 60
#: the ``$share`` group of the hub processes that split the devices' events
SHARE_GROUP = "hub"


@dataclass(frozen=True)
class _Item:
    msg: Packet
    received: datetime
    #: why the transport already refused it (bad topic), or None
    error: contract.ContractError | None = None


class Ingest:
    def __init__(
        self,
        cfg: HubConfig,
        store: Store,
        roster: Roster,
        *,
        transport: TransportFactory | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.roster = roster
        self.counters: Counter[str] = Counter()
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=100_000)
        self._stopping = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="hub-writer", daemon=True)
        #: called with each stored wildlife event (hub.alerts.Alerts.handle); optional
        self.on_wildlife: Callable[[Message, datetime], None] | None = None
        hooks: dict[str, Any] = {
            "subscriptions": [(t, 1) for t in contract.ingest_subscriptions(SHARE_GROUP)],
            "will": lambda: Will(contract.HUB_STATE, self._hub_state(False)),
            "on_connect": self._on_connect,
            "on_reject": self._refused,
        }
        endpoint = cfg.mqtt.endpoint(
            cfg.mqtt.client_id,
            clean_start=False,
            session_expiry_s=SESSION_EXPIRY_S,
            manual_ack=True,
            max_inflight=100,
        )
        self.transport: Transport = (transport or partial(MqttTransport, endpoint))(**hooks)
        for row in contract.CHANNELS:
            if row.ingest:
                self.transport.route(row.name, self._received)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Ingest:
        self._writer.start()
        self.transport.start()
        return self

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self.transport.wait_connected(timeout)

    @property
    def healthy(self) -> bool:
        """The writer thread is alive (a hung or dead writer stops the watchdog pings)."""
        return self._writer.is_alive()

    @property
    def connected(self) -> bool:
        return self.transport.connected

    def stop(self) -> None:
        """Flush what was received, say the hub is offline, disconnect."""
        self._stopping.set()
        self._writer.join(10)
        self.transport.stop(farewell=(contract.HUB_STATE, self._hub_state(False)))

    @staticmethod
    def _hub_state(online: bool) -> bytes:
        return contract.HubState(online=online).dumps()

    # -- from the transport --------------------------------------------------------------

    def _on_connect(self, session_present: bool) -> None:
        self.transport.publish(contract.HUB_STATE, self._hub_state(True), qos=1, retain=True)
        self.counters["connects"] += 1
        log.info("hub ingest connected (session present: %s)", session_present)

    def _received(self, msg: Packet) -> None:
        self.counters["received"] += 1
        self._queue.put(_Item(msg, datetime.now(UTC)))

    def _refused(self, msg: Packet, err: contract.ContractError) -> None:
        """A topic outside the contract: recorded and acknowledged by the writer."""
        self.counters["received"] += 1
        self._queue.put(_Item(msg, datetime.now(UTC), err))

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
            msg = item.msg
            try:
                if item.error is not None:
                    raise item.error
                topic, payload = contract.decode(msg.topic, msg.payload)
                self._check_trust(topic, payload)
                if topic.channel == "reply":
                    corr = msg.corr.decode(errors="replace") if msg.corr else ""
                    topic = contract.Topic(topic.dev, topic.channel, corr)
                good.append(Message(topic, payload, item.received))
            except contract.ContractError as e:
                self._reject(msg.topic, e.reason, str(e))
            except Exception as e:  # a bug must not stop ingest: count it like a reject
                log.exception("unexpected error decoding %s", msg.topic)
                self._reject(msg.topic, contract.Reason.INTERNAL, repr(e))
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
            self.transport.ack(item.msg)

    def _check_trust(self, topic: contract.Topic, payload: contract.Payload) -> None:
        """What the device says about itself must match what the fleet issued it as:
        its role's channels and event kinds, its role in the birth, its bus number."""
        entry = self.roster.check(topic)
        if isinstance(payload, contract.BirthPayload) and payload.role != entry.role:
            raise contract.ContractError(
                f"device {topic.dev!r} was issued as {entry.role}; its birth says {payload.role}",
                reason=contract.Reason.NOT_ALLOWED,
            )
        if isinstance(payload, contract.EventPayload) and payload.kind == "ridership.stop_visit":
            vehicle = str(payload.data.get("vehicle", ""))
            if vehicle not in self._vehicles_of(topic.dev, entry.vehicle):
                raise contract.ContractError(
                    f"device {topic.dev!r} reports for vehicle {vehicle!r}, not its own",
                    reason=contract.Reason.NOT_ALLOWED,
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

    def _reject(self, topic: str, reason: contract.Reason, detail: str) -> None:
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
        self.transport.publish(
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
        self.transport.publish(
            contract.cmd(dev, name),
            contract.CommandRequest(args=args).dumps(),
            qos=1,
            response_topic=contract.reply(dev, name),
            corr=corr.encode(),
            expiry_s=COMMAND_EXPIRY_S,
        )
        return corr
