"""The device's MQTT link to the hub (MQTT v5, over ``edge.transport``).

One ``Link`` per device process. The transport holds the connection (a fresh session per
connect, a Last Will with a new ``bdseq`` each time, backoff with jitter); the link adds:

* on connect, the retained ``state`` (online, ``bdseq``; the will carries the same ``bdseq``
  with online:false) and the retained ``birth``; the subscriptions are its own
  ``twin/desired``, ``cmd/+``, ``jobs/+`` and the hub state (``contract.device_subscriptions``);
* handlers for those channels: the twin, commands (replies with the correlation data), jobs;
* the drain thread, which publishes outbox rows at QoS 1 with a bounded number in flight,
  only while the hub is online, and deletes a row only after its PUBACK (the bookkeeping is
  ``edge.drain.Drain``; this module does the I/O).
"""

from __future__ import annotations

import logging
import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from pydantic import ValidationError

from mimamori.edge import contract
from mimamori.edge.config import DeviceConfig
from mimamori.edge.drain import Drain
from mimamori.edge.errors import OutboxError
from mimamori.edge.outbox import Outbox
from mimamori.edge.transport import (
    Endpoint,
    MqttTransport,
    Packet,
    Transport,
    TransportFactory,
    Will,
)

log = logging.getLogger(__name__)

#: a command handler takes the request's args and returns a result dict (or raises); None
#: means a fire-and-forget command (e.g. a frame acknowledgement): no reply is sent
CommandHandler = Callable[[dict[str, Any]], dict[str, Any] | None]
#: the twin handler gets (version, patch) and returns the applied remote view; it raises
#: ConfigError (or any ValueError) to refuse the patch
TwinHandler = Callable[[int, dict[str, Any]], dict[str, Any]]


@dataclass
class LinkStats:
    connects: int = 0
    disconnects: int = 0
    published: int = 0
    acked: int = 0
    refused_by_broker: int = 0
    bad_messages: int = 0
    last_reconnect_delay_s: float = 0.0


def endpoint_of(cfg: DeviceConfig) -> Endpoint:
    """The broker and identity of a device's config."""
    m = cfg.mqtt
    return Endpoint(
        host=m.host,
        port=m.port,
        client_id=cfg.device.id,
        username=cfg.username,
        password=m.password_file.read_text().strip() if m.password_file else None,
        ca_file=m.tls.ca_file if m.tls else None,
        cert_file=m.tls.cert_file if m.tls else None,
        key_file=m.tls.key_file if m.tls else None,
        keepalive_s=m.keepalive_s,
        connect_timeout_s=m.connect_timeout_s,
        reconnect_min_s=m.reconnect_min_s,
        reconnect_max_s=m.reconnect_max_s,
        max_inflight=cfg.outbox.inflight,
    )


class Link:
    def __init__(
        self,
        cfg: DeviceConfig,
        outbox: Outbox,
        *,
        birth: Callable[[], dict[str, Any]],
        on_desired: TwinHandler,
        commands: dict[str, CommandHandler],
        on_job: Callable[[contract.JobDocument], None] | None = None,
        rng: random.Random | None = None,
        transport: TransportFactory | None = None,
    ) -> None:
        self.cfg = cfg
        self.dev = cfg.device.id
        self.outbox = outbox
        self._birth = birth
        self._on_desired = on_desired
        self._commands = commands
        #: the running app's own commands (the kiosk's call control), replaced on app restart
        self.app_commands: dict[str, CommandHandler] = {}
        self._on_job = on_job
        self._job_states: dict[str, contract.JobStatus] = {}
        self._stats = LinkStats()
        self.twin_version = 0

        self._hub_online = threading.Event()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._acks: deque[tuple[int, int, bool]] = deque()
        self._drain_thread: threading.Thread | None = None
        self._bdseq_file = Path(cfg.device.data_dir) / "bdseq"
        self.bdseq = self._load_bdseq()
        self._drain = Drain(cfg.outbox.inflight, resend_upto=outbox.last_seq())

        hooks: dict[str, Any] = {
            "subscriptions": [(t, 1) for t in contract.device_subscriptions(self.dev)],
            "will": self._will,
            "on_connect": self._on_connect,
            "on_disconnect": self._on_disconnect,
            "on_publish": self._on_publish,
            "on_reject": self._on_reject,
        }
        make = transport or partial(MqttTransport, endpoint_of(cfg), rng=rng)
        self.transport: Transport = make(**hooks)
        self.transport.route("hub/state", self._hub_state)
        self.transport.route("twin/desired", self._desired)
        self.transport.route("cmd", self._command)
        self.transport.route("jobs", self._job)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._drain_thread = threading.Thread(
            target=self._drain_loop, name=f"{self.dev}-drain", daemon=True
        )
        self._drain_thread.start()
        self.transport.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish a clean death (online:false), disconnect and join the threads."""
        self._stopping.set()
        self._wake.set()
        death = contract.StatePayload(online=False, bdseq=self.bdseq).dumps()
        self.transport.stop(farewell=(contract.state(self.dev), death))
        if self._drain_thread is not None:
            self._drain_thread.join(timeout)
            self._drain_thread = None

    @property
    def stats(self) -> LinkStats:
        """Connects, acks, bad messages, the last backoff (a live view)."""
        self._stats.connects = self.transport.connects
        self._stats.last_reconnect_delay_s = self.transport.last_reconnect_delay_s
        self._stats.bad_messages = sum(self.transport.rejects.values())
        return self._stats

    @property
    def connected(self) -> bool:
        return self.transport.connected

    @property
    def hub_online(self) -> bool:
        return self._hub_online.is_set()

    def wake(self) -> None:
        """Tell the drain thread there is something new in the outbox."""
        self._wake.set()

    def publish_tele(self, payload: contract.TelePayload) -> bool:
        if not self.transport.connected:
            return False
        self.transport.publish(contract.tele(self.dev), payload.dumps(), qos=0)
        return True

    def publish_live(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False, meta: str = ""
    ) -> bool:
        """Publish now if connected (False if not); ``meta`` goes in the user property."""
        if not self.transport.connected:
            return False
        info = self.transport.publish(topic, payload, qos=qos, retain=retain, meta=meta or None)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def publish_reported(self, reported: contract.TwinReported) -> None:
        if self.transport.connected:
            self.transport.publish(
                contract.twin_reported(self.dev), reported.dumps(), qos=1, retain=True
            )

    def report_job(self, status: contract.JobStatus) -> None:
        """Publish a job's state (not retained: the hub's session queues it); kept and
        republished on reconnect if offline."""
        self._job_states[status.job_id] = status
        if self.transport.connected:
            self._publish_job_status(status)

    def _publish_job_status(self, status: contract.JobStatus) -> None:
        self.transport.publish(
            contract.job_status(self.dev, status.job_id), status.dumps(), qos=1, retain=False
        )

    # -- connection ----------------------------------------------------------------------

    def _load_bdseq(self) -> int:
        try:
            return int(self._bdseq_file.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _next_bdseq(self) -> int:
        self.bdseq += 1
        self._bdseq_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._bdseq_file.with_suffix(".tmp")
        tmp.write_text(str(self.bdseq))
        tmp.replace(self._bdseq_file)
        return self.bdseq

    def _will(self) -> Will:
        """Each connection's will: offline, with the new ``bdseq`` its birth will carry."""
        state = contract.StatePayload(online=False, bdseq=self._next_bdseq())
        return Will(contract.state(self.dev), state.dumps())

    def _on_connect(self, session_present: bool) -> None:
        self.transport.publish(
            contract.state(self.dev),
            contract.StatePayload(online=True, bdseq=self.bdseq).dumps(),
            qos=1,
            retain=True,
        )
        self.transport.publish(
            contract.birth(self.dev),
            contract.BirthPayload(bdseq=self.bdseq, **self._birth()).dumps(),
            qos=1,
            retain=True,
        )
        for status in list(self._job_states.values()):  # what happened while offline
            self._publish_job_status(status)
        log.info(
            "connected to %s:%d as %s (bdseq %d)",
            self.cfg.mqtt.host,
            self.cfg.mqtt.port,
            self.dev,
            self.bdseq,
        )

    def _on_disconnect(self) -> None:
        self._hub_online.clear()
        self._stats.disconnects += 1
        self._wake.set()

    def _on_publish(self, session: int, mid: int, ok: bool) -> None:
        # runs on paho's thread while it holds its own locks: only record and wake
        self._acks.append((session, mid, ok))
        self._wake.set()

    def _on_reject(self, msg: Packet, err: contract.ContractError) -> None:
        log.warning("ignored message on %s (%s): %s", msg.topic, err.reason, err)

    # -- incoming ------------------------------------------------------------------------

    def _hub_state(self, msg: Packet) -> None:
        try:
            hub = contract.HubState.model_validate_json(msg.payload)
        except ValidationError as e:
            raise contract.ContractError(
                f"topic {msg.topic!r}: {contract.format_validation(e)}",
                reason=contract.Reason.SCHEMA,
            ) from None
        (self._hub_online.set if hub.online else self._hub_online.clear)()
        self._wake.set()
        log.info("hub is %s", "online" if hub.online else "offline")

    def _own(self, msg: Packet) -> tuple[contract.Topic, contract.Payload]:
        topic, payload = contract.decode(msg.topic, msg.payload)
        if topic.dev != self.dev:
            raise contract.ContractError(
                f"topic {msg.topic!r} is not for {self.dev}", reason=contract.Reason.NOT_ALLOWED
            )
        return topic, payload

    def _desired(self, msg: Packet) -> None:
        _, desired = self._own(msg)
        assert isinstance(desired, contract.TwinDesired)
        if desired.version == self.twin_version:
            return  # the retained copy of what is already applied
        try:
            view = self._on_desired(desired.version, desired.config)
        except ValueError as e:
            log.warning("twin version %d refused: %s", desired.version, e)
            self.publish_reported(
                contract.TwinReported(version=desired.version, applied=False, error=str(e))
            )
            return
        self.twin_version = desired.version
        self.publish_reported(
            contract.TwinReported(version=desired.version, applied=True, config=view)
        )

    def _job(self, msg: Packet) -> None:
        topic, job = self._own(msg)
        assert isinstance(job, contract.JobDocument)
        if self._on_job is None:
            return
        if job.job_id != topic.rest:
            raise contract.ContractError(
                f"job id {job.job_id!r} differs from the topic", reason=contract.Reason.SCHEMA
            )
        self._on_job(job)

    def _command(self, msg: Packet) -> None:
        topic, req = self._own(msg)
        assert isinstance(req, contract.CommandRequest)
        name = topic.rest
        handler = self._commands.get(name) or self.app_commands.get(name)
        try:
            if handler is None:
                known = sorted({*self._commands, *self.app_commands})
                raise KeyError(f"unknown command {name!r} (known: {', '.join(known)})")
            result = handler(req.args)
            if result is None:
                return
            reply = contract.CommandReply(name=name, ok=True, result=result)
        except Exception as e:
            reply = contract.CommandReply(name=name, ok=False, error=str(e))
        own = contract.reply(self.dev, name)
        asked = msg.response_topic or own
        # the ACL only lets us write our own tree
        mine = asked.startswith(contract.BY_NAME["reply"].filter(self.dev, last=""))
        self.transport.publish(asked if mine else own, reply.dumps(), qos=1, corr=msg.corr)

    # -- draining ------------------------------------------------------------------------

    def _drain_loop(self) -> None:
        d = self._drain
        while not self._stopping.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            online = self.transport.connected
            d.window = self.cfg.outbox.inflight
            d.on_session(self.transport.session if online else -1)
            acks = []
            while self._acks:
                acks.append(self._acks.popleft())
            result = d.on_acks(acks)
            for seq in result.refused:
                self._stats.refused_by_broker += 1
                log.error("broker refused event seq %d; dropped", seq)
            if result.done:
                try:
                    self.outbox.ack(result.done)
                    self._stats.acked += len(result.done)
                except OutboxError as e:
                    log.error("%s", e)
                    d.ack_failed()
                    self._stopping.wait(1.0)
            if not online or not self._hub_online.is_set() or d.room <= 0:
                continue
            room = d.room
            rows = self.outbox.pending(room, after=d.sent_upto)
            for row in rows:
                payload = row.payload(resent=d.is_resend(row.seq), age_s=self.outbox.age_s(row))
                info = self.transport.publish(
                    contract.event(self.dev, row.kind), payload.dumps(), qos=1
                )
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    break  # connection lost mid-batch; the rest waits for the next session
                d.sent(info.mid, row.seq)
                self._stats.published += 1
            if rows and len(rows) == room:
                self._wake.set()
