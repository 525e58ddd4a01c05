"""The counter relay: kiosk calls as city hall sees them, and the live media between sides.

Its own MQTT connection (clean session: nothing here is worth replaying later) follows each
kiosk's retained call state, the two views' JPEG frames, document stills and the voice
signalling; staff pages reach it through plain method calls. Kiosks only ever connect out,
so everything the hub says to a kiosk is a command on the kiosk's ``cmd/`` topics.

* Only kiosks (by the fleet roster, not by their word) may speak on the call channels.
* A call is recorded (``CallBook``) when it starts ringing; the first member of staff to
  answer wins by an atomic claim, and the kiosk then starts its cameras. The hub owns the
  call: a kiosk's "connected" only confirms a claim the hub holds, for the same member of
  staff; "connected" for a call nobody answered is refused, audited and ended (a stolen
  kiosk certificate must never open a member of staff's camera and microphone).
* Frames are kept only as "the latest of each view" of a connected call and handed to the
  answering staff member alone; each frame handed over is acknowledged to the kiosk
  (``view-ack``), so the kiosk sends no faster than the staff browser takes frames and a
  slow link lowers the frame rate instead of building a backlog.
* Stills live in memory for the call and are dropped with it, unless staff save one with a
  reason (stored and audit-logged).
* A call ends cleanly from either side: the kiosk says so, staff end it, the staff page
  stops polling (browser closed), or the kiosk stays offline past the grace period.
* Malformed messages are counted by reason and logged; none can stop the relay.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from edge import contract
from hub.config import HubConfig
from hub.counter.calls import CallBook
from hub.counter.heap import limit_heap_growth
from hub.ingest import reason_of
from hub.roster import Roster

log = logging.getLogger(__name__)

SUBSCRIPTIONS = [
    (f"{contract.ROOT}/+/call", 1),
    (f"{contract.ROOT}/+/state", 1),
    (f"{contract.ROOT}/+/signal", 1),
    (f"{contract.ROOT}/+/still", 1),
    (f"{contract.ROOT}/+/view/+", 0),
    (f"{contract.ROOT}/+/reply/still-capture", 1),
]
#: the staff page polls every second or so; this long without a poll means the page is gone
STAFF_GONE_S = 20.0
#: a kiosk offline this long has lost its call (the kiosk itself gives up after its grace)
KIOSK_GONE_S = 30.0
#: stills kept per call in memory
MAX_STILLS = 20
#: commands expire at the broker after this long: a stale one must never reach a kiosk
LIVE_EXPIRY_S = 10
#: a refused call state is audited and ended once per call in this long (it may be retained
#: and come again on every reconnect) ...
REFUSE_AGAIN_S = 60.0
#: ... and a device gets at most this many audit entries an hour (the counters count all)
REFUSALS_AUDITED_PER_HOUR = 20
#: calls remembered as over, so a late or replayed state cannot bring one back
FINISHED_KEPT = 1024

SendCommand = Callable[[str, str, dict[str, Any]], str]
Audit = Callable[[str, str, str, str], None]  # user, action, target, detail


class CounterError(Exception):
    """What a member of staff asked for cannot be done (shown to them as is)."""


@dataclass
class Frame:
    seq: int
    meta: contract.ViewMeta
    jpeg: bytes
    received: datetime


@dataclass
class Still:
    meta: contract.StillMeta
    jpeg: bytes


@dataclass
class LiveCall:
    call: str
    dev: str
    rang: datetime
    state: str = "ringing"
    staff: str | None = None
    answered: datetime | None = None
    position: int | None = None
    sending: list[str] = field(default_factory=list)
    frames: dict[str, Frame] = field(default_factory=dict)
    stills: OrderedDict[str, Still] = field(default_factory=OrderedDict)
    signals: list[dict[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    polled: float = 0.0
    capture_corr: set[str] = field(default_factory=set)


@dataclass
class KioskSeen:
    dev: str
    online: bool = False
    since: float = 0.0  # monotonic time of the last online/offline change
    state: contract.CallState | None = None


class Relay:
    def __init__(
        self,
        cfg: HubConfig,
        book: CallBook,
        send_command: SendCommand,
        audit: Audit,
        *,
        roster: Roster,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg, self.book, self.roster = cfg, book, roster
        self._send_command, self._audit, self._clock = send_command, audit, clock
        self.counters: Counter[str] = Counter()
        self.staff_gone_s, self.kiosk_gone_s = STAFF_GONE_S, KIOSK_GONE_S
        self.kiosks: dict[str, KioskSeen] = {}
        self.calls: dict[str, LiveCall] = {}  # ringing or connected, by call id
        self._finished: OrderedDict[str, None] = OrderedDict()  # calls over, newest last
        self._refused: OrderedDict[tuple[str, str], float] = OrderedDict()  # (dev, call)
        self._audited: dict[str, deque[float]] = {}  # refusals audited per device
        self._cv = threading.Condition()
        self._stopping = threading.Event()
        m = cfg.mqtt
        self._client = m.client(f"{m.client_id}-counter")
        self._client.reconnect_delay_set(1, 10)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._watchdog = threading.Thread(target=self._watch, name="counter", daemon=True)
        self._connected = threading.Event()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Relay:
        limit_heap_growth()  # frames must not fragment the C heap (see hub/counter/heap.py)
        m = self.cfg.mqtt
        self._client.connect_async(m.host, m.port, keepalive=m.keepalive_s, clean_start=True)
        self._client.loop_start()
        self._watchdog.start()
        return self

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._connected.wait(timeout)

    def stop(self) -> None:
        self._stopping.set()
        with self._cv:
            self._cv.notify_all()
        self._client.disconnect()
        self._client.loop_stop()
        if self._watchdog.is_alive():
            self._watchdog.join(3)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the counter relay: %s", reason)
            return
        client.subscribe(SUBSCRIPTIONS)
        self._connected.set()

    # -- from the kiosks -----------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == contract.HUB_STATE:
            return  # the hub's own retained state matches +/state
        try:
            t = contract.parse_topic(msg.topic)
            self.roster.check(t)  # a known device, on a channel of its role (kiosk)
            if t.channel in contract.BINARY_CHANNELS:
                meta = dict(getattr(msg.properties, "UserProperty", None) or []).get("meta")
                _, m, jpeg = contract.decode_jpeg(msg.topic, bytes(msg.payload), meta)
                if isinstance(m, contract.ViewMeta):
                    self._frame(t.dev, t.rest, m, jpeg)
                else:
                    self._still(t.dev, m, jpeg)
                return
            if t.channel == "reply":
                self._reply(t.dev, msg)
                return
            _, payload = contract.decode(msg.topic, bytes(msg.payload))
            if isinstance(payload, contract.CallState):
                self._call_state(t.dev, payload)
            elif isinstance(payload, contract.StatePayload):
                self._device_state(t.dev, payload.online)
            elif isinstance(payload, contract.Signal):
                self._signal(t.dev, payload)
        except contract.ContractError as e:
            self._reject(msg.topic, reason_of(e), str(e))
        except Exception as e:  # a bug must not stop the relay: count it like a reject
            log.exception("counter relay: unexpected error on %s", msg.topic)
            self._reject(msg.topic, "internal", repr(e))

    def _reject(self, topic: str, reason: str, detail: str) -> None:
        self.counters["rejected"] += 1
        self.counters[f"rejected.{reason}"] += 1
        log.warning("counter relay rejected %r (%s): %s", topic[:200], reason, detail[:500])

    def _device_state(self, dev: str, online: bool) -> None:
        if self.roster.role(dev) != "kiosk":
            return  # only kiosks have calls
        with self._cv:
            k = self.kiosks.setdefault(dev, KioskSeen(dev))
            if k.online != online:
                k.online, k.since = online, self._clock()
            self._cv.notify_all()

    def _call_state(self, dev: str, s: contract.CallState) -> None:
        """Follow a kiosk's word on its call, as far as the hub agrees with it.

        Ringing and ended are the kiosk's to say about its own calls. Connected only
        confirms a claim the hub holds (``CallBook.holder``) for the same member of staff;
        the kiosk's ``staff`` field is checked against the claim, never taken from it."""
        held = None
        if s.call and s.state == "connected":
            held = self.book.holder(s.call, dev)
        ended: list[tuple[LiveCall, str]] = []
        refused: str | None = None
        with self._cv:
            live = self.calls.get(s.call) if s.call else None
            if live is not None and live.dev != dev:
                refused, live = "other_device", None
            elif s.call and s.call in self._finished and s.state != "ended":
                self.counters["late_states"] += 1  # a call already over stays over
                return
            elif s.state == "connected" and (held is None or held["staff"] != s.staff):
                refused = "unanswered" if held is None else "wrong_staff"
                if refused == "unanswered" and live is not None:
                    ended.append((live, "refused"))  # out of the queue: nobody takes it now
            else:
                self.kiosks.setdefault(dev, KioskSeen(dev)).state = s
                # whatever this kiosk had open before and is not this call is over
                ended += [
                    (c, "kiosk_restarted")
                    for c in self.calls.values()
                    if c.dev == dev and c.call != s.call
                ]
                if s.call and s.state in ("ringing", "connected"):
                    if live is None:
                        live = LiveCall(s.call, dev, s.since)
                        self.calls[s.call] = live
                        self.counters["calls"] += 1
                    live.state, live.sending = s.state, list(s.sending)
                    if held is not None:  # connected, to the staff member holding the claim
                        live.staff = held["staff"]
                        live.answered = live.answered or held["answered"]
                        live.polled = live.polled or self._clock()
                elif s.call and s.state == "ended" and live is not None:
                    ended.append((live, s.reason or "cancelled"))
            self._cv.notify_all()
        if refused:
            self._refuse(dev, s, refused, held)
        elif s.call and s.state == "ringing":
            self.book.rang(s.call, dev, s.since)
        elif s.call and s.state == "ended" and not ended:
            # ended while this hub was away: close the record it may have left open
            self._record_end(s.call, dev, s.reason or "link_lost")
        for c, reason in ended:
            self._finish(c, reason)
        self._requeue()

    def _refuse(
        self, dev: str, s: contract.CallState, reason: str, held: dict[str, Any] | None
    ) -> None:
        """Count, log and audit a call state the hub does not accept; end an unanswered
        "connected" at the kiosk. Once per call a minute: a retained state comes again."""
        said = f"{s.state} with {s.staff!r}" if s.staff else s.state
        why = {
            "unanswered": "no member of staff answered this call",
            "wrong_staff": f"the call is answered by {held['staff'] if held else None!r}",
            "other_device": "the call belongs to another kiosk",
        }[reason]
        self._reject(contract.call(dev), reason, f"call {s.call}: says {said}; {why}")
        now = self._clock()
        with self._cv:
            key = (dev, s.call or "")
            last = self._refused.get(key)
            if last is not None and now - last < REFUSE_AGAIN_S:
                return
            self._refused[key] = now
            self._refused.move_to_end(key)
            while len(self._refused) > FINISHED_KEPT:
                self._refused.popitem(last=False)
            seen = self._audited.setdefault(dev, deque())
            while seen and now - seen[0] > 3600:
                seen.popleft()
            audit = len(seen) < REFUSALS_AUDITED_PER_HOUR
            if audit:
                seen.append(now)
        if reason == "unanswered" and s.call:
            self._send_command(dev, "call-end", {"call": s.call})
        if audit:
            self._audit(dev, "counter.refused", dev, f"call {s.call}: said {said}; {why}")

    def _frame(self, dev: str, name: str, m: contract.ViewMeta, jpeg: bytes) -> None:
        with self._cv:
            live = self.calls.get(m.call)
            if live is None or live.dev != dev or live.state != "connected":
                self.counters["frames_dropped"] += 1  # late frame of a call that is over
                return
            live.frames[name] = Frame(m.seq, m, jpeg, datetime.now(UTC))
            self.counters["frames"] += 1
            self._cv.notify_all()

    def _still(self, dev: str, m: contract.StillMeta, jpeg: bytes) -> None:
        with self._cv:
            live = self.calls.get(m.call)
            if live is None or live.dev != dev or live.state != "connected":
                return
            live.stills[m.still] = Still(m, jpeg)
            while len(live.stills) > MAX_STILLS:
                live.stills.popitem(last=False)
            self._cv.notify_all()

    def _signal(self, dev: str, s: contract.Signal) -> None:
        with self._cv:
            live = self.calls.get(s.call)
            if live is None or live.dev != dev:
                return
            live.signals.append({"type": s.type, "sdp": s.sdp})
            self._cv.notify_all()

    def _reply(self, dev: str, msg: mqtt.MQTTMessage) -> None:
        corr = getattr(msg.properties, "CorrelationData", None)
        if not corr:
            return
        corr_s = corr.decode(errors="replace")
        with self._cv:
            live = next((c for c in self.calls.values() if corr_s in c.capture_corr), None)
            if live is None or live.dev != dev:
                return
        _, reply = contract.decode(msg.topic, bytes(msg.payload))
        assert isinstance(reply, contract.CommandReply)
        if not reply.ok:
            with self._cv:
                live.problems.append(f"capture failed: {reply.error}")
                self._cv.notify_all()

    # -- ending --------------------------------------------------------------------------

    def _finish(self, live: LiveCall, reason: str) -> None:
        """Forget the call's media and record its end (once, whichever side ended it)."""
        with self._cv:
            self.calls.pop(live.call, None)
            self._finished[live.call] = None
            while len(self._finished) > FINISHED_KEPT:
                self._finished.popitem(last=False)
            live.frames.clear()
            live.stills.clear()
            live.state = "ended"
            self._cv.notify_all()
        self._record_end(live.call, live.dev, reason)

    def _record_end(self, call: str, dev: str, reason: str) -> None:
        row = self.book.end(call, reason, dev)
        if row and row.get("staff") and row.get("answered"):
            secs = (row["ended"] - row["answered"]).total_seconds()
            self._audit(
                row["staff"],
                "counter.call",
                dev,
                f"answered {contract.iso(row['answered'])}, {secs:.0f} s, ended: {reason}",
            )

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            try:
                self.check()
            except Exception:
                log.exception("counter relay watchdog")

    def check(self) -> None:
        """End calls whose staff page went away or whose kiosk stayed offline."""
        now = self._clock()
        gone: list[tuple[LiveCall, str]] = []
        with self._cv:
            for live in self.calls.values():
                k = self.kiosks.get(live.dev)
                if k is not None and not k.online and k.since and now - k.since > self.kiosk_gone_s:
                    gone.append((live, "link_lost"))
                elif (
                    live.state == "connected"
                    and live.polled
                    and now - live.polled > self.staff_gone_s
                ):
                    gone.append((live, "staff_ended"))
        for live, reason in gone:
            log.warning("call %s at %s: ending (%s)", live.call, live.dev, reason)
            if reason == "staff_ended":
                self._send_command(live.dev, "call-end", {"call": live.call})
            self._finish(live, reason)
        if gone:
            self._requeue()

    # -- to the kiosks -------------------------------------------------------------------

    def _live_command(self, dev: str, name: str, args: dict[str, Any], qos: int = 0) -> None:
        """A fire-and-forget command (no reply, not logged): acks, queue places, signalling."""
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = LIVE_EXPIRY_S
        self._client.publish(
            contract.cmd(dev, name),
            contract.CommandRequest(args=args).dumps(),
            qos=qos,
            properties=props,
        )

    def _requeue(self) -> None:
        """Tell each ringing kiosk its place when it changed (several ringing at once)."""
        with self._cv:
            ringing = sorted(
                (c for c in self.calls.values() if c.state == "ringing"), key=lambda c: c.rang
            )
            changed = []
            for i, c in enumerate(ringing, 1):
                if c.position != i:
                    c.position = i
                    changed.append(c)
        for c in changed:
            self._live_command(c.dev, "call-queue", {"call": c.call, "position": c.position}, 1)

    # -- for staff -----------------------------------------------------------------------

    def _mine(self, call: str, staff: str) -> LiveCall:
        live = self.calls.get(call)
        if live is None:
            raise CounterError("this call has ended")
        if live.staff != staff:
            raise CounterError(f"this call is answered by {live.staff or 'nobody yet'}")
        return live

    def answer(self, call: str, staff: str) -> LiveCall:
        with self._cv:
            live = self.calls.get(call)
            if live is None:
                raise CounterError("this call has ended")
        # the ring is written to the book just after the call shows in the queue: a quick
        # answer must not find no row to claim (idempotent)
        self.book.rang(call, live.dev, live.rang)
        if not self.book.claim(call, staff):
            row = self.book.get(call) or {}
            raise CounterError(f"already taken by {row.get('staff') or 'someone else'}")
        with self._cv:
            live.staff, live.polled = staff, self._clock()
        self._send_command(live.dev, "call-answer", {"call": call, "staff": staff})
        return live

    def end(self, call: str, staff: str) -> None:
        with self._cv:
            live = self._mine(call, staff)
        self._send_command(live.dev, "call-end", {"call": call})
        self._finish(live, "staff_ended")
        self._requeue()

    def capture(self, call: str, staff: str) -> None:
        with self._cv:
            live = self._mine(call, staff)
            if live.state != "connected":
                raise CounterError("the kiosk has not connected the call yet")
        corr = self._send_command(live.dev, "still-capture", {"call": call})
        with self._cv:
            live.capture_corr.add(corr)

    def point(self, call: str, staff: str, mark: str, x: float, y: float, on: str = "view") -> None:
        """Show (or clear) a mark on the resident's form, on the kiosk's screen; audited,
        nothing recorded."""
        try:
            args = contract.PointCommand.model_validate(
                {"call": call, "mark": mark, "x": x, "y": y, "on": on}
            )
        except ValidationError as e:
            raise CounterError(f"point: {contract.format_validation(e)}") from None
        with self._cv:
            live = self._mine(call, staff)
            if live.state != "connected":
                raise CounterError("the kiosk has not connected the call yet")
        self._live_command(live.dev, "call-point", args.model_dump(mode="json"), qos=1)
        where = "" if mark == "clear" else f" at ({x:.2f}, {y:.2f}) of the {on}"
        self._audit(staff, "counter.point", live.dev, f"{mark}{where}, call {call}")

    def offer(self, call: str, staff: str, sdp: str) -> None:
        with self._cv:
            live = self._mine(call, staff)
            live.signals.clear()
        args = contract.CallCommand(call=call, type="offer", sdp=sdp).model_dump(
            mode="json", exclude_none=True
        )
        self._live_command(live.dev, "call-signal", args, qos=1)

    def wait_signal(self, call: str, staff: str, after: int, timeout: float) -> list[dict]:
        with self._cv:
            live = self._mine(call, staff)
            self._cv.wait_for(
                lambda: (
                    len(live.signals) > after or live.state == "ended" or self._stopping.is_set()
                ),
                timeout,
            )
            return list(live.signals[after:])

    def frame(self, call: str, staff: str, view: str, after: int, timeout: float) -> Frame | None:
        """The newest frame of ``view`` past ``after`` (waits up to ``timeout``); the kiosk
        hears that it was taken, which lets it send the next one."""
        if view not in contract.VIEWS:
            raise CounterError(f"view {view!r}: expected one of {', '.join(contract.VIEWS)}")
        with self._cv:
            live = self._mine(call, staff)
            live.polled = self._clock()

            def fresh() -> bool:
                f = live.frames.get(view)
                return (f is not None and f.seq > after) or live.state == "ended"

            self._cv.wait_for(lambda: fresh() or self._stopping.is_set(), timeout)
            f = live.frames.get(view)
            if f is None or f.seq <= after or live.state == "ended":
                return None
        self._live_command(live.dev, "view-ack", {"call": call, "seq": {view: f.seq}})
        return f

    def still(self, call: str, staff: str, still: str) -> Still:
        with self._cv:
            live = self._mine(call, staff)
            s = live.stills.get(still)
        if s is None:
            raise CounterError("no such still in this call (stills are dropped when it ends)")
        return s

    def save_still(self, call: str, staff: str, still: str, reason: str) -> None:
        reason = reason.strip()
        if len(reason) < 3:
            raise CounterError("say why this still is kept (at least a few words)")
        s = self.still(call, staff, still)
        with self._cv:
            dev = self._mine(call, staff).dev
        self.book.save_still(
            still, call, dev, staff, reason[:500], s.meta.model_dump(mode="json"), s.jpeg
        )
        self._audit(staff, "counter.still_save", dev, f"still {still} of call {call}: {reason}")

    def touch(self, staff: str) -> None:
        """The staff page is still open (it polls the console state)."""
        now = self._clock()
        with self._cv:
            for live in self.calls.values():
                if live.staff == staff:
                    live.polled = now

    def console(self, staff: str) -> dict[str, Any]:
        """What the staff console shows: kiosks, the ringing queue, this person's call.

        "This person's call" is one they answered: the call book holds their claim
        (``answered_by_me``); the console starts no camera or microphone for anything else.
        """
        self.touch(staff)
        now = datetime.now(UTC)
        with self._cv:
            held = next((c for c in self.calls.values() if c.staff == staff), None)
        claimed = (
            held is not None and (self.book.holder(held.call, held.dev) or {}).get("staff") == staff
        )
        if held is not None and not claimed:
            log.error("call %s at %s: not claimed by %s in the book", held.call, held.dev, staff)
        with self._cv:
            queue = sorted(
                (c for c in self.calls.values() if c.state == "ringing" and not c.staff),
                key=lambda c: c.rang,
            )
            mine = held if claimed and held and self.calls.get(held.call) is held else None
            others = [c for c in self.calls.values() if c.staff and c.staff != staff]
            kiosks = [
                {
                    "dev": k.dev,
                    "online": k.online,
                    "state": k.state.state if k.state else "unknown",
                }
                for k in sorted(self.kiosks.values(), key=lambda k: k.dev)
                if k.state is not None
            ]
            return {
                "queue": [
                    {
                        "call": c.call,
                        "dev": c.dev,
                        "waiting_s": round((now - c.rang).total_seconds()),
                        "position": i,
                    }
                    for i, c in enumerate(queue, 1)
                ],
                "mine": None
                if mine is None
                else {
                    "call": mine.call,
                    "dev": mine.dev,
                    "state": mine.state,
                    "answered_by_me": True,
                    "sending": mine.sending,
                    "answered": contract.iso(mine.answered) if mine.answered else None,
                    "stills": [
                        {
                            "still": sid,
                            "found": s.meta.found,
                            "dpi": s.meta.dpi,
                            "w": s.meta.w,
                            "h": s.meta.h,
                            "warnings": s.meta.warnings,
                        }
                        for sid, s in mine.stills.items()
                    ],
                    "problems": mine.problems[-3:],
                },
                "taken": [{"dev": c.dev, "staff": c.staff} for c in others],
                "kiosks": kiosks,
            }
