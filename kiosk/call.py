"""The kiosk's call: idle -> ringing -> connected -> ended -> idle, and the opening hours.

The kiosk is the authority on its own call; the hub proposes (answer, end) and the kiosk
decides, so a late or duplicated command from city hall can never reopen a call the
resident has left. Every change goes to ``on_change`` (the app publishes it, drives the
LED and the views). Time comes from the injected clocks, so tests run it instantly.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from datetime import time as dtime
from zoneinfo import ZoneInfo

from mimamori.edge.contract import CallEnd, CallStateName, utcnow

log = logging.getLogger(__name__)

WEEKDAYS_JA = "月火水木金土日"


@dataclass(frozen=True)
class Hours:
    """When staff answer: days of the week (0 = Monday) and one opening per day."""

    days: tuple[int, ...]
    opens: dtime
    closes: dtime
    tz: ZoneInfo
    closed_dates: frozenset[date] = frozenset()

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(self.tz)
        return (
            local.weekday() in self.days
            and local.date() not in self.closed_dates
            and self.opens <= local.time() < self.closes
        )

    def next_open(self, now: datetime) -> datetime:
        local = now.astimezone(self.tz)
        for i in range(0, 15):
            day = local.date() + timedelta(days=i)
            start = datetime.combine(day, self.opens, self.tz)
            if day.weekday() in self.days and day not in self.closed_dates and start > local:
                return start
        return datetime.combine(local.date() + timedelta(days=1), self.opens, self.tz)

    def describe(self) -> tuple[str, str]:
        """The opening hours in Japanese and English as people say them: 月〜金 8:30〜17:15,
        毎日 24時間 (every day, 24 hours)."""
        days = sorted(self.days)
        run = len(days) > 2 and days == list(range(days[0], days[-1] + 1))
        en_names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        if len(days) == 7:
            ja, en = "毎日", "every day"
        elif run:
            ja = f"{WEEKDAYS_JA[days[0]]}〜{WEEKDAYS_JA[days[-1]]}"
            en = f"{en_names[days[0]]}-{en_names[days[-1]]}"
        else:
            ja = "・".join(WEEKDAYS_JA[d] for d in days)
            en = ", ".join(en_names[d] for d in days)
        if self.opens == dtime.min and self.closes == dtime.max:
            return f"{ja} 24時間", f"{en}, 24 hours"
        closes = "24:00" if self.closes == dtime.max else f"{self.closes:%-H:%M}"
        return f"{ja} {self.opens:%-H:%M}〜{closes}", f"{en} {self.opens:%-H:%M}-{closes}"


@dataclass(frozen=True)
class Call:
    state: CallStateName = "idle"
    call: str | None = None
    since: datetime | None = None  # wall clock, for the hub and the screen
    rang: datetime | None = None
    answered: datetime | None = None
    staff: str | None = None
    reason: CallEnd | None = None
    position: int | None = None


class CallError(ValueError):
    """A call command that does not fit the call in progress (stale, or for another call)."""


class CallMachine:
    def __init__(
        self,
        on_change: Callable[[Call, Call], None],
        *,
        ring_timeout_s: float = 180.0,
        ended_show_s: float = 30.0,
        link_grace_s: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utcnow,
    ) -> None:
        self._on_change = on_change
        self.ring_timeout_s = ring_timeout_s
        self.ended_show_s = ended_show_s
        self.link_grace_s = link_grace_s
        self._clock, self._wall = clock, wall
        self._lock = threading.RLock()
        self.current = Call(since=wall())
        self._entered = clock()
        self._link_lost_at: float | None = None

    # -- transitions ---------------------------------------------------------------------

    def _go(self, new: Call) -> None:
        old = self.current
        self.current = new
        if new.state != old.state:
            self._entered = self._clock()
        log.info("call %s: %s -> %s", new.call or old.call, old.state, new.state)
        self._on_change(old, new)

    def _end(self, reason: CallEnd) -> None:
        self._go(replace(self.current, state="ended", since=self._wall(), reason=reason))

    def ring(self) -> Call:
        """The resident asks for staff (button or screen). Pressing while ringing or in a
        call changes nothing: an anxious second press must not hang up."""
        with self._lock:
            if self.current.state in ("ringing", "connected"):
                return self.current
            now = self._wall()
            self._link_lost_at = None
            self._go(Call("ringing", uuid.uuid4().hex, since=now, rang=now))
            return self.current

    def cancel(self) -> Call:
        """The resident hangs up (long press or the screen's button)."""
        with self._lock:
            if self.current.state in ("ringing", "connected"):
                self._end("cancelled")
            return self.current

    def answer(self, call: str, staff: str) -> Call:
        with self._lock:
            cur = self.current
            if cur.call != call or cur.state != "ringing":
                raise CallError(f"call {call}: not ringing here (now {cur.state} {cur.call})")
            self._go(
                replace(
                    cur,
                    state="connected",
                    since=self._wall(),
                    answered=self._wall(),
                    staff=staff,
                    position=None,
                )
            )
            return self.current

    def hang_up(self, call: str) -> Call:
        """Staff end the call (or give up on a ringing one)."""
        with self._lock:
            cur = self.current
            if cur.call != call:
                raise CallError(f"call {call}: not the call here ({cur.call})")
            if cur.state in ("ringing", "connected"):
                self._end("staff_ended")
            return self.current

    def queued(self, call: str, position: int) -> Call:
        with self._lock:
            cur = self.current
            if cur.call == call and cur.state == "ringing" and cur.position != position:
                self._go(replace(cur, position=position))
            return self.current

    def check(self, call: str) -> Call:
        """The call a command is for must be the one in progress."""
        with self._lock:
            cur = self.current
            if cur.call != call or cur.state != "connected":
                raise CallError(f"call {call}: not connected here (now {cur.state})")
            return cur

    def tick(self, link_ok: bool) -> None:
        """Time-outs: unanswered ringing, a link lost for too long, the ended screen."""
        with self._lock:
            now = self._clock()
            state, age = self.current.state, now - self._entered
            if state in ("ringing", "connected"):
                if link_ok:
                    self._link_lost_at = None
                elif self._link_lost_at is None:
                    self._link_lost_at = now
                elif now - self._link_lost_at >= self.link_grace_s:
                    self._end("link_lost")
                    return
            if state == "ringing" and age >= self.ring_timeout_s:
                self._end("no_answer")
            elif state == "ended" and age >= self.ended_show_s:
                self._go(Call(since=self._wall()))
