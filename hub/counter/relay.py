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

The calls themselves are ``hub.counter.room.Room``: plain state and transitions. This module
is the shell around it: the transport (``edge.transport``), the roster check, the call book's
claim, the audit, the watchdog thread and the staff pages' waits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from pydantic import ValidationError

from mimamori.edge import contract
from mimamori.edge.transport import MqttTransport, Packet, Transport, TransportFactory
from mimamori.hub.config import HubConfig
from mimamori.hub.counter.calls import CallBook
from mimamori.hub.counter.heap import limit_heap_growth
from mimamori.hub.counter.room import (
    CallEnded,
    Command,
    CounterError,
    Frame,
    KioskSeen,
    LiveCall,
    Outcome,
    Room,
    Still,
)
from mimamori.hub.roster import Roster

__all__ = ["CallEnded", "CounterError", "Frame", "LiveCall", "Relay", "Still"]

log = logging.getLogger(__name__)

#: commands expire at the broker after this long: a stale one must never reach a kiosk
LIVE_EXPIRY_S = 10

SendCommand = Callable[[str, str, dict[str, Any]], str]
Audit = Callable[[str, str, str, str], None]  # user, action, target, detail


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
        transport: TransportFactory | None = None,
    ) -> None:
        self.cfg, self.book, self.roster = cfg, book, roster
        self._send_command, self._audit, self._clock = send_command, audit, clock
        self.room = Room()
        self._cv = threading.Condition()
        self._stopping = threading.Event()
        hooks: dict[str, Any] = {
            "subscriptions": contract.relay_subscriptions(),
            "on_reject": self._refused_message,
        }
        make = transport or partial(
            MqttTransport, cfg.mqtt.endpoint(f"{cfg.mqtt.client_id}-counter")
        )
        self.transport: Transport = make(**hooks)
        self.transport.route("state", self._on_state)
        self.transport.route("call", self._on_call)
        self.transport.route("signal", self._on_signal)
        self.transport.route("view", self._on_jpeg)
        self.transport.route("still", self._on_jpeg)
        self.transport.route("reply", self._on_reply)
        self._watchdog = threading.Thread(target=self._watch, name="counter", daemon=True)

    # -- the room's state, as the pages and tests read it ---------------------------------

    @property
    def counters(self) -> Counter[str]:
        return self.room.counters

    @property
    def calls(self) -> dict[str, LiveCall]:
        return self.room.calls

    @property
    def kiosks(self) -> dict[str, KioskSeen]:
        return self.room.kiosks

    @property
    def kiosk_gone_s(self) -> float:
        return self.room.kiosk_gone_s

    @kiosk_gone_s.setter
    def kiosk_gone_s(self, seconds: float) -> None:
        self.room.kiosk_gone_s = seconds

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Relay:
        limit_heap_growth()  # frames must not fragment the C heap (see hub/counter/heap.py)
        self.transport.start()
        self._watchdog.start()
        return self

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self.transport.wait_connected(timeout)

    def stop(self) -> None:
        self._stopping.set()
        with self._cv:
            self._cv.notify_all()
        self.transport.stop()
        if self._watchdog.is_alive():
            self._watchdog.join(3)

    # -- from the kiosks -----------------------------------------------------------------

    def _checked(self, msg: Packet) -> contract.Topic:
        """The topic of a known device, on a channel of its role (kiosk), by the roster."""
        t = contract.parse_topic(msg.topic)
        self.roster.check(t)
        return t

    def _refused_message(self, msg: Packet, err: contract.ContractError) -> None:
        self._reject(msg.topic, err.reason, str(err))

    def _reject(self, topic: str, reason: contract.Reason, detail: str) -> None:
        self.counters["rejected"] += 1
        self.counters[f"rejected.{reason}"] += 1
        log.warning("counter relay rejected %r (%s): %s", topic[:200], reason, detail[:500])

    def _on_state(self, msg: Packet) -> None:
        t = self._checked(msg)
        _, state = contract.decode(msg.topic, msg.payload)
        assert isinstance(state, contract.StatePayload)
        if self.roster.role(t.dev) != "kiosk":
            return  # only kiosks have calls
        with self._cv:
            self.room.device_state(t.dev, state.online, self._clock())
            self._cv.notify_all()

    def _on_call(self, msg: Packet) -> None:
        t = self._checked(msg)
        _, s = contract.decode(msg.topic, msg.payload)
        assert isinstance(s, contract.CallState)
        held = None
        if s.call and s.state == "connected":
            held = self.book.holder(s.call, t.dev)
        with self._cv:
            out = self.room.call_state(t.dev, s, held, self._clock())
            self._cv.notify_all()
        self._apply(out)

    def _on_signal(self, msg: Packet) -> None:
        t = self._checked(msg)
        _, s = contract.decode(msg.topic, msg.payload)
        assert isinstance(s, contract.Signal)
        with self._cv:
            self.room.signal(t.dev, s)
            self._cv.notify_all()

    def _on_jpeg(self, msg: Packet) -> None:
        t = self._checked(msg)
        _, m, jpeg = contract.decode_jpeg(msg.topic, msg.payload, msg.meta)
        with self._cv:
            if isinstance(m, contract.ViewMeta):
                self.room.frame(t.dev, t.rest, m, jpeg, datetime.now(UTC))
            else:
                self.room.still(t.dev, m, jpeg)
            self._cv.notify_all()

    def _on_reply(self, msg: Packet) -> None:
        t = self._checked(msg)
        if not msg.corr:
            return
        with self._cv:
            live = self.room.capturing(t.dev, msg.corr.decode(errors="replace"))
        if live is None:
            return
        _, reply = contract.decode(msg.topic, msg.payload)
        assert isinstance(reply, contract.CommandReply)
        if not reply.ok:
            with self._cv:
                live.problems.append(f"capture failed: {reply.error}")
                self._cv.notify_all()

    # -- doing what the room decided -----------------------------------------------------

    def _apply(self, out: Outcome) -> None:
        r = out.refusal
        if r is not None:
            self._reject(contract.call(r.dev), r.reason, r.detail)
        if out.rang is not None:
            self.book.rang(*out.rang)
        for c in out.commands:
            self._command(c)
        for call, dev, reason in out.ended:
            self._record_end(call, dev, reason)
        if r is not None and r.audit is not None:
            self._audit(r.dev, "counter.refused", r.dev, r.audit)

    def _command(self, c: Command) -> str | None:
        if c.qos is None:
            return self._send_command(c.dev, c.name, c.args)
        self.transport.publish(
            contract.cmd(c.dev, c.name),
            contract.CommandRequest(args=c.args).dumps(),
            qos=c.qos,
            expiry_s=LIVE_EXPIRY_S,
        )
        return None

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
        with self._cv:
            out = self.room.check(self._clock())
            self._cv.notify_all()
        for call, dev, reason in out.ended:
            log.warning("call %s at %s: ending (%s)", call, dev, reason)
        self._apply(out)

    # -- for staff -----------------------------------------------------------------------

    def answer(self, call: str, staff: str) -> LiveCall:
        with self._cv:
            live = self.room.calls.get(call)
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
            out = self.room.end(call, staff)
            self._cv.notify_all()
        self._apply(out)

    def capture(self, call: str, staff: str) -> None:
        with self._cv:
            live = self.room.connected_call(call, staff)
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
            live = self.room.connected_call(call, staff)
        self._command(Command(live.dev, "call-point", args.model_dump(mode="json"), qos=1))
        where = "" if mark == "clear" else f" at ({x:.2f}, {y:.2f}) of the {on}"
        self._audit(staff, "counter.point", live.dev, f"{mark}{where}, call {call}")

    def offer(self, call: str, staff: str, sdp: str) -> None:
        with self._cv:
            live = self.room.mine(call, staff)
            live.signals.clear()
        args = contract.CallCommand(call=call, type="offer", sdp=sdp).model_dump(
            mode="json", exclude_none=True
        )
        self._command(Command(live.dev, "call-signal", args, qos=1))

    def wait_signal(self, call: str, staff: str, after: int, timeout: float) -> list[dict]:
        with self._cv:
            live = self.room.mine(call, staff)
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
            live = self.room.mine(call, staff)
            live.polled = self._clock()

            def fresh() -> bool:
                f = live.frames.get(view)
                return (f is not None and f.seq > after) or live.state == "ended"

            self._cv.wait_for(lambda: fresh() or self._stopping.is_set(), timeout)
            f = live.frames.get(view)
            if f is None or f.seq <= after or live.state == "ended":
                return None
        self._command(Command(live.dev, "view-ack", {"call": call, "seq": {view: f.seq}}, qos=0))
        return f

    def still(self, call: str, staff: str, still: str) -> Still:
        with self._cv:
            live = self.room.mine(call, staff)
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
            dev = self.room.mine(call, staff).dev
        self.book.save_still(
            still, call, dev, staff, reason[:500], s.meta.model_dump(mode="json"), s.jpeg
        )
        self._audit(staff, "counter.still_save", dev, f"still {still} of call {call}: {reason}")

    def touch(self, staff: str) -> None:
        """The staff page is still open (it polls the console state)."""
        with self._cv:
            self.room.touch(staff, self._clock())

    def console(self, staff: str) -> dict[str, Any]:
        """What the staff console shows: kiosks, the ringing queue, this person's call.

        "This person's call" is one they answered: the call book holds their claim
        (``answered_by_me``); the console starts no camera or microphone for anything else.
        """
        self.touch(staff)
        with self._cv:
            held = self.room.held_by(staff)
        claimed = (
            held is not None and (self.book.holder(held.call, held.dev) or {}).get("staff") == staff
        )
        if held is not None and not claimed:
            log.error("call %s at %s: not claimed by %s in the book", held.call, held.dev, staff)
        with self._cv:
            return self.room.console(staff, held if claimed else None, datetime.now(UTC))
