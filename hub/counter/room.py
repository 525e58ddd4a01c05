"""The call room: every kiosk call the hub follows, as plain state and transitions.

No threads, no MQTT, no database: each transition takes what the outside world said (a
kiosk's call state, the claim the call book holds, the time from an injected clock) and
returns an ``Outcome``, what ``hub.counter.relay`` must then do: commands to the kiosks, a
ring or ends to write in the call book, a refusal to count and audit. The relay holds the
lock around it and does the I/O.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mimamori.edge import contract

#: the staff page polls every second or so; this long without a poll means the page is gone
STAFF_GONE_S = 20.0
#: a kiosk offline this long has lost its call (the kiosk itself gives up after its grace)
KIOSK_GONE_S = 30.0
#: stills kept per call in memory
MAX_STILLS = 20
#: a refused call state is audited and ended once per call in this long (it may be retained
#: and come again on every reconnect) ...
REFUSE_AGAIN_S = 60.0
#: ... and a device gets at most this many audit entries an hour (the counters count all)
REFUSALS_AUDITED_PER_HOUR = 20
#: calls remembered as over, so a late or replayed state cannot bring one back
FINISHED_KEPT = 1024


class CounterError(Exception):
    """What a member of staff asked for cannot be done (shown to them as is)."""


class CallEnded(CounterError):
    """The call is no longer live (the console's polls for it stop when they hear this)."""


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
    thin: bool = False  # the kiosk's uplink is too thin for video: voice and stills only
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


@dataclass(frozen=True)
class Command:
    """A command to a kiosk: ``qos`` None is a logged command with a reply (the hub's
    ``send_command``), otherwise a short-lived fire-and-forget one at that QoS."""

    dev: str
    name: str
    args: dict[str, Any]
    qos: int | None = None


@dataclass(frozen=True)
class Refusal:
    """A call state the hub does not accept: counted always (``detail``), audited with
    ``audit`` unless None (once per call a minute, a few times an hour per device)."""

    dev: str
    reason: contract.Reason
    detail: str
    audit: str | None


@dataclass
class Outcome:
    commands: list[Command] = field(default_factory=list)
    #: a ring to write in the call book: (call, dev, since)
    rang: tuple[str, str, datetime] | None = None
    #: ends to write in the call book: (call, dev, reason)
    ended: list[tuple[str, str, str]] = field(default_factory=list)
    refusal: Refusal | None = None


class Room:
    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.staff_gone_s, self.kiosk_gone_s = STAFF_GONE_S, KIOSK_GONE_S
        self.kiosks: dict[str, KioskSeen] = {}
        self.calls: dict[str, LiveCall] = {}  # ringing or connected, by call id
        self._finished: OrderedDict[str, None] = OrderedDict()  # calls over, newest last
        self._refused: OrderedDict[tuple[str, str], float] = OrderedDict()  # (dev, call)
        self._audited: dict[str, deque[float]] = {}  # refusals audited per device

    # -- from the kiosks -----------------------------------------------------------------

    def device_state(self, dev: str, online: bool, now: float) -> None:
        k = self.kiosks.setdefault(dev, KioskSeen(dev))
        if k.online != online:
            k.online, k.since = online, now

    def call_state(
        self, dev: str, s: contract.CallState, held: dict[str, Any] | None, now: float
    ) -> Outcome:
        """Follow a kiosk's word on its call, as far as the hub agrees with it.

        Ringing and ended are the kiosk's to say about its own calls. Connected only
        confirms a claim the hub holds (``held``: ``CallBook.holder``) for the same member of
        staff; the kiosk's ``staff`` field is checked against the claim, never taken from it."""
        out = Outcome()
        ended: list[tuple[LiveCall, str]] = []
        refused: contract.Reason | None = None
        live = self.calls.get(s.call) if s.call else None
        if live is not None and live.dev != dev:
            refused, live = contract.Reason.OTHER_DEVICE, None
        elif s.call and s.call in self._finished and s.state != "ended":
            self.counters["late_states"] += 1  # a call already over stays over
            return out
        elif s.state == "connected" and (held is None or held["staff"] != s.staff):
            refused = contract.Reason.UNANSWERED if held is None else contract.Reason.WRONG_STAFF
            if refused == contract.Reason.UNANSWERED and live is not None:
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
                live.state, live.sending, live.thin = s.state, list(s.sending), s.thin
                if held is not None:  # connected, to the staff member holding the claim
                    live.staff = held["staff"]
                    live.answered = live.answered or held["answered"]
                    live.polled = live.polled or now
            elif s.call and s.state == "ended" and live is not None:
                ended.append((live, s.reason or "cancelled"))
        if refused:
            self._refuse(out, dev, s, refused, held, now)
        elif s.call and s.state == "ringing":
            out.rang = (s.call, dev, s.since)
        elif s.call and s.state == "ended" and not ended:
            # ended while this hub was away: close the record it may have left open
            out.ended.append((s.call, dev, s.reason or "link_lost"))
        for c, reason in ended:
            out.ended.append(self.finish(c, reason))
        out.commands += self.requeue()
        return out

    def _refuse(
        self,
        out: Outcome,
        dev: str,
        s: contract.CallState,
        reason: contract.Reason,
        held: dict[str, Any] | None,
        now: float,
    ) -> None:
        """Count and audit a call state the hub does not accept; end an unanswered
        "connected" at the kiosk. Once per call a minute: a retained state comes again."""
        said = f"{s.state} with {s.staff!r}" if s.staff else s.state
        why = {
            contract.Reason.UNANSWERED: "no member of staff answered this call",
            contract.Reason.WRONG_STAFF: (
                f"the call is answered by {held['staff'] if held else None!r}"
            ),
            contract.Reason.OTHER_DEVICE: "the call belongs to another kiosk",
        }[reason]
        detail = f"call {s.call}: says {said}; {why}"
        out.refusal = Refusal(dev, reason, detail, audit=None)
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
        if len(seen) < REFUSALS_AUDITED_PER_HOUR:
            seen.append(now)
            out.refusal = Refusal(dev, reason, detail, f"call {s.call}: said {said}; {why}")
        if reason == contract.Reason.UNANSWERED and s.call:
            out.commands.append(Command(dev, "call-end", {"call": s.call}))

    def frame(self, dev: str, name: str, m: contract.ViewMeta, jpeg: bytes, at: datetime) -> None:
        live = self.calls.get(m.call)
        if live is None or live.dev != dev or live.state != "connected":
            self.counters["frames_dropped"] += 1  # late frame of a call that is over
            return
        live.frames[name] = Frame(m.seq, m, jpeg, at)
        self.counters["frames"] += 1

    def still(self, dev: str, m: contract.StillMeta, jpeg: bytes) -> None:
        live = self.calls.get(m.call)
        if live is None or live.dev != dev or live.state != "connected":
            return
        live.stills[m.still] = Still(m, jpeg)
        while len(live.stills) > MAX_STILLS:
            live.stills.popitem(last=False)

    def signal(self, dev: str, s: contract.Signal) -> None:
        live = self.calls.get(s.call)
        if live is None or live.dev != dev:
            return
        live.signals.append({"type": s.type, "sdp": s.sdp})

    def capturing(self, dev: str, corr: str) -> LiveCall | None:
        """The call of ``dev`` a still capture with this correlation id was asked for."""
        live = next((c for c in self.calls.values() if corr in c.capture_corr), None)
        return live if live is not None and live.dev == dev else None

    # -- ending --------------------------------------------------------------------------

    def finish(self, live: LiveCall, reason: str) -> tuple[str, str, str]:
        """Forget the call's media; return the end to record (call, dev, reason)."""
        self.calls.pop(live.call, None)
        self._finished[live.call] = None
        while len(self._finished) > FINISHED_KEPT:
            self._finished.popitem(last=False)
        live.frames.clear()
        live.stills.clear()
        live.state = "ended"
        return (live.call, live.dev, reason)

    def check(self, now: float) -> Outcome:
        """End calls whose staff page went away or whose kiosk stayed offline."""
        out = Outcome()
        gone: list[tuple[LiveCall, str]] = []
        for live in self.calls.values():
            k = self.kiosks.get(live.dev)
            if k is not None and not k.online and k.since and now - k.since > self.kiosk_gone_s:
                gone.append((live, "link_lost"))
            elif (
                live.state == "connected" and live.polled and now - live.polled > self.staff_gone_s
            ):
                gone.append((live, "staff_ended"))
        for live, reason in gone:
            if reason == "staff_ended":
                out.commands.append(Command(live.dev, "call-end", {"call": live.call}))
            out.ended.append(self.finish(live, reason))
        if gone:
            out.commands += self.requeue()
        return out

    def requeue(self) -> list[Command]:
        """Each ringing kiosk's place, where it changed (several ringing at once)."""
        ringing = sorted(
            (c for c in self.calls.values() if c.state == "ringing"), key=lambda c: c.rang
        )
        out = []
        for i, c in enumerate(ringing, 1):
            if c.position != i:
                c.position = i
                out.append(Command(c.dev, "call-queue", {"call": c.call, "position": i}, qos=1))
        return out

    # -- for staff -----------------------------------------------------------------------

    def mine(self, call: str, staff: str) -> LiveCall:
        live = self.calls.get(call)
        if live is None:
            raise CallEnded("this call has ended")
        if live.staff != staff:
            raise CounterError(f"this call is answered by {live.staff or 'nobody yet'}")
        return live

    def connected_call(self, call: str, staff: str) -> LiveCall:
        live = self.mine(call, staff)
        if live.state != "connected":
            raise CounterError("the kiosk has not connected the call yet")
        return live

    def end(self, call: str, staff: str) -> Outcome:
        """Staff end their call."""
        live = self.mine(call, staff)
        out = Outcome(commands=[Command(live.dev, "call-end", {"call": call})])
        out.ended.append(self.finish(live, "staff_ended"))
        out.commands += self.requeue()
        return out

    def touch(self, staff: str, now: float) -> None:
        """The staff page is still open (it polls the console state)."""
        for live in self.calls.values():
            if live.staff == staff:
                live.polled = now

    def held_by(self, staff: str) -> LiveCall | None:
        return next((c for c in self.calls.values() if c.staff == staff), None)

    def console(self, staff: str, mine: LiveCall | None, now: datetime) -> dict[str, Any]:
        """What the staff console shows: kiosks, the ringing queue, ``mine`` (the call this
        person holds by the call book's claim, if it is still live)."""
        queue = sorted(
            (c for c in self.calls.values() if c.state == "ringing" and not c.staff),
            key=lambda c: c.rang,
        )
        if mine is not None and self.calls.get(mine.call) is not mine:
            mine = None
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
            "mine": None if mine is None else _mine_view(mine),
            "taken": [
                {"dev": c.dev, "staff": c.staff}
                for c in self.calls.values()
                if c.staff and c.staff != staff
            ],
            "kiosks": [
                {"dev": k.dev, "online": k.online, "state": k.state.state}
                for k in sorted(self.kiosks.values(), key=lambda k: k.dev)
                if k.state is not None
            ],
        }


def _mine_view(mine: LiveCall) -> dict[str, Any]:
    return {
        "call": mine.call,
        "dev": mine.dev,
        "state": mine.state,
        "answered_by_me": True,
        "sending": mine.sending,
        "thin": mine.thin,
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
    }
