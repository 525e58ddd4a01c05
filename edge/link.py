"""The device's MQTT link to the hub (paho-mqtt 2, MQTT v5).

One ``Link`` per device process. It owns two threads:

* the connection thread connects, runs the paho loop until the connection drops, then
  waits an exponential backoff with full jitter and connects again with a fresh paho client
  (so paho's in-memory retransmissions never duplicate what the outbox resends);
* the drain thread publishes outbox rows at QoS 1 with a bounded number in flight, only
  while the hub is online, and deletes a row only after its PUBACK.

On connect it publishes the retained ``state`` (online, ``bdseq``; the Last Will carries the
same ``bdseq`` with online:false) and the retained ``birth``, then subscribes to its own
``twin/desired``, ``cmd/+`` and the hub state.
"""

from __future__ import annotations

import contextlib
import logging
import random
import ssl
import threading
import time
from collections import deque
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

from edge import contract
from edge.config import DeviceConfig
from edge.errors import OutboxError
from edge.outbox import Outbox

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


def backoff_delay(attempt: int, lo: float, hi: float, rng: random.Random) -> float:
    """Exponential backoff with jitter from the first retry: a random delay between ``lo``
    and ``lo * 2**(attempt + 1)`` (capped at ``hi``), so a fleet that lost the broker at the
    same moment does not come back in the same second."""
    return rng.uniform(lo, min(hi, lo * 2.0 ** (attempt + 1)))


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
        self._rng = rng or random.Random()
        self.stats = LinkStats()
        self.twin_version = 0

        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._hub_online = threading.Event()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        #: set when the current connection is over (lost, refused or closed)
        self._session_over = threading.Event()
        self._acks: deque[tuple[mqtt.Client, int, bool]] = deque()
        self._threads: list[threading.Thread] = []
        self._bdseq_file = Path(cfg.device.data_dir) / "bdseq"
        self.bdseq = self._load_bdseq()
        # rows up to here were (or may have been) sent before: a resend is marked hist
        self._resend_upto = outbox.last_seq()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        for target, name in ((self._run, "link"), (self._drain, "drain")):
            t = threading.Thread(target=target, name=f"{self.dev}-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        """Publish a clean death (online:false), disconnect and join the threads."""
        self._stopping.set()
        self._wake.set()
        client = self._client
        if client is not None and self._connected.is_set():
            info = client.publish(
                contract.state(self.dev),
                contract.StatePayload(online=False, bdseq=self.bdseq).dumps(),
                qos=1,
                retain=True,
            )
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2.0)
            client.disconnect()
        self._session_over.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def hub_online(self) -> bool:
        return self._hub_online.is_set()

    def wake(self) -> None:
        """Tell the drain thread there is something new in the outbox."""
        self._wake.set()

    def publish_tele(self, payload: contract.TelePayload) -> bool:
        client = self._client
        if client is None or not self._connected.is_set():
            return False
        client.publish(contract.tele(self.dev), payload.dumps(), qos=0)
        return True

    def publish_live(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False, meta: str = ""
    ) -> bool:
        """Publish now if connected (False if not); ``meta`` goes in the user property."""
        client = self._client
        if client is None or not self._connected.is_set():
            return False
        props = None
        if meta:
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = ("meta", meta)
        info = client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def publish_reported(self, reported: contract.TwinReported) -> None:
        client = self._client
        if client is not None and self._connected.is_set():
            client.publish(contract.twin_reported(self.dev), reported.dumps(), qos=1, retain=True)

    def report_job(self, status: contract.JobStatus) -> None:
        """Publish a job's state (not retained: the hub's session queues it); kept and
        republished on reconnect if offline."""
        self._job_states[status.job_id] = status
        client = self._client
        if client is not None and self._connected.is_set():
            self._publish_job_status(client, status)

    def _publish_job_status(self, client: mqtt.Client, status: contract.JobStatus) -> None:
        client.publish(
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

    def _new_client(self) -> mqtt.Client:
        m = self.cfg.mqtt
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.dev,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        password = m.password_file.read_text().strip() if m.password_file else None
        client.username_pw_set(self.cfg.username, password)
        if m.tls:
            client.tls_set(
                ca_certs=str(m.tls.ca_file),
                certfile=str(m.tls.cert_file) if m.tls.cert_file else None,
                keyfile=str(m.tls.key_file) if m.tls.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.connect_timeout = m.connect_timeout_s
        client.max_inflight_messages_set(self.cfg.outbox.inflight)
        client.max_queued_messages_set(0)
        client.will_set(
            contract.state(self.dev),
            contract.StatePayload(online=False, bdseq=self._next_bdseq()).dumps(),
            qos=1,
            retain=True,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def _run(self) -> None:
        m = self.cfg.mqtt
        attempt = 0
        while not self._stopping.is_set():
            client = self._new_client()
            self._session_over.clear()
            self._client = client
            started = time.monotonic()
            try:
                client.connect(m.host, m.port, keepalive=m.keepalive_s, clean_start=True)
                # paho's own network thread does every read and write on the socket;
                # publish() from other threads (the drain, the kiosk's views) only queues
                # and wakes it. (Driving loop_forever here instead would let a publishing
                # thread write to the TLS connection while this one reads from it.)
                client.loop_start()
                self._session_over.wait()
                client.disconnect()
                client.loop_stop()
            except ssl.SSLCertVerificationError as e:
                log.error("broker %s:%d: %s", m.host, m.port, tls_problem(e, contract.utcnow()))
            except (OSError, ssl.SSLError) as e:
                log.warning("cannot reach broker %s:%d: %s", m.host, m.port, e)
            except Exception:
                log.exception("MQTT loop failed")
            self._connected.clear()
            self._hub_online.clear()
            if self._stopping.is_set():
                break
            if time.monotonic() - started > 60:
                attempt = 0  # the last session was healthy: start the backoff again
            delay = backoff_delay(attempt, m.reconnect_min_s, m.reconnect_max_s, self._rng)
            attempt += 1
            self.stats.last_reconnect_delay_s = round(delay, 2)
            log.info("reconnecting in %.1f s", delay)
            self._stopping.wait(delay)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            self._session_over.set()
            return
        self.stats.connects += 1
        client.publish(
            contract.state(self.dev),
            contract.StatePayload(online=True, bdseq=self.bdseq).dumps(),
            qos=1,
            retain=True,
        )
        client.publish(
            contract.birth(self.dev),
            contract.BirthPayload(bdseq=self.bdseq, **self._birth()).dumps(),
            qos=1,
            retain=True,
        )
        client.subscribe(
            [
                (contract.twin_desired(self.dev), 1),
                (contract.cmd(self.dev, "x").rsplit("/", 1)[0] + "/+", 1),
                (contract.job(self.dev, "+"), 1),
                (contract.HUB_STATE, 1),
            ]
        )
        for status in list(self._job_states.values()):  # what happened while offline
            self._publish_job_status(client, status)
        self._connected.set()
        log.info(
            "connected to %s:%d as %s (bdseq %d)",
            self.cfg.mqtt.host,
            self.cfg.mqtt.port,
            self.dev,
            self.bdseq,
        )

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if client is self._client:
            self._connected.clear()
            self._hub_online.clear()
            self.stats.disconnects += 1
            self._wake.set()
            self._session_over.set()
        log.info("disconnected: %s", reason)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # runs on paho's thread while it holds its own locks: only record and wake
        self._acks.append((client, mid, not reason.is_failure))
        self._wake.set()

    # -- incoming ------------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            if msg.topic == contract.HUB_STATE:
                hub = contract.HubState.model_validate_json(msg.payload)
                (self._hub_online.set if hub.online else self._hub_online.clear)()
                self._wake.set()
                log.info("hub is %s", "online" if hub.online else "offline")
                return
            topic, payload = contract.decode(msg.topic, bytes(msg.payload))
            if topic.dev != self.dev:
                raise contract.ContractError(f"topic {msg.topic!r} is not for {self.dev}")
            if isinstance(payload, contract.TwinDesired):
                self._handle_desired(payload)
            elif isinstance(payload, contract.CommandRequest):
                self._handle_command(client, topic.rest, payload, msg.properties)
            elif isinstance(payload, contract.JobDocument) and self._on_job is not None:
                if payload.job_id != topic.rest:
                    raise contract.ContractError(
                        f"job id {payload.job_id!r} differs from the topic"
                    )
                self._on_job(payload)
        except Exception as e:  # a bad message must never take the link down
            self.stats.bad_messages += 1
            log.warning("ignored message on %s: %s", msg.topic, e)

    def _handle_desired(self, desired: contract.TwinDesired) -> None:
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

    def _handle_command(
        self, client: mqtt.Client, name: str, req: contract.CommandRequest, props: Any
    ) -> None:
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
        topic = getattr(props, "ResponseTopic", None) or own
        if not topic.startswith(contract.state(self.dev).rsplit("/", 1)[0] + "/reply/"):
            topic = own  # the ACL only lets us write our own tree
        out = Properties(PacketTypes.PUBLISH)
        corr = getattr(props, "CorrelationData", None)
        if corr:
            out.CorrelationData = corr
        client.publish(topic, reply.dumps(), qos=1, properties=out)

    # -- draining ------------------------------------------------------------------------

    def _drain(self) -> None:
        inflight: dict[int, int] = {}  # mid -> seq, for the current client only
        client: mqtt.Client | None = None
        sent_upto = 0
        while not self._stopping.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if client is not self._client or not self._connected.is_set():
                inflight.clear()  # unacked rows stay in the outbox; resent next session
                client, sent_upto = self._client, 0
            acked = []
            while self._acks:
                c, mid, ok = self._acks.popleft()
                if c is not client or mid not in inflight:
                    continue
                seq = inflight.pop(mid)
                acked.append(seq)
                if not ok:
                    self.stats.refused_by_broker += 1
                    log.error("broker refused event seq %d; dropped", seq)
            if acked:
                try:
                    self.outbox.ack(acked)
                    self.stats.acked += len(acked)
                except OutboxError as e:
                    # the rows stay queued: send them again (the hub drops the repeats)
                    log.error("%s", e)
                    sent_upto = 0
                    self._stopping.wait(1.0)
            if client is None or not self._connected.is_set() or not self._hub_online.is_set():
                continue
            room = self.cfg.outbox.inflight - len(inflight)
            if room <= 0:
                continue
            rows = self.outbox.pending(room, after=sent_upto)
            for row in rows:
                payload = row.payload(
                    resent=row.seq <= self._resend_upto, age_s=self.outbox.age_s(row)
                )
                info = client.publish(contract.event(self.dev, row.kind), payload.dumps(), qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    break  # connection lost mid-batch; the rest waits for the next session
                inflight[info.mid] = row.seq
                sent_upto = row.seq
                self._resend_upto = max(self._resend_upto, row.seq)
                self.stats.published += 1
            if rows and len(rows) == room:
                self._wake.set()
