"""Scare or hold: a buzzer, strobe or relay fired when an incursion starts.

Troops get used to a fixed sound, so each firing plays a random pattern of random length. A
minimum gap keeps it from firing all day; a night rule keeps it quiet at night (neighbours); and
it is **held** silent while a hunter is on the way or a trap is set, so the troop is not scared
off before they arrive. Pins come from gpiozero, so tests use its MockFactory pins.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeterrentRules:
    pin: int = 17
    min_s: float = 3.0
    max_s: float = 8.0
    min_gap_s: float = 300.0
    at_night: bool = False


class Deterrent:
    def __init__(
        self,
        rules: DeterrentRules,
        *,
        pin_factory: Any = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from gpiozero import DigitalOutputDevice  # hardware library, imported when used

        self.rules = rules
        self.device = DigitalOutputDevice(rules.pin, pin_factory=pin_factory)
        self.rng = rng or random.Random()
        self.clock = clock
        self._last: float | None = None
        self._held_until = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fired = 0

    def hold(self, seconds: float) -> None:
        """Stay silent (a hunter is coming, a trap is set); also stops a pattern in progress."""
        self._held_until = self.clock() + seconds
        self._stop.set()
        self.device.off()

    def pattern(self) -> list[tuple[float, float]]:
        """Random (on, off) pairs adding up to a random length between min_s and max_s."""
        total = self.rng.uniform(self.rules.min_s, self.rules.max_s)
        out: list[tuple[float, float]] = []
        while total > 0:
            on = min(total, self.rng.uniform(0.2, 1.5))
            off = self.rng.uniform(0.1, 0.8)
            out.append((on, off))
            total -= on + off
        return out

    def fire(self, *, night: bool) -> bool:
        now = self.clock()
        if now < self._held_until:
            log.info("deterrent held (a hunter is on the way)")
            return False
        if night and not self.rules.at_night:
            return False
        if self._last is not None and now - self._last < self.rules.min_gap_s:
            return False
        self._last = now
        self.fired += 1
        self._stop.clear()
        steps = self.pattern()
        self._thread = threading.Thread(target=self._play, args=(steps,), daemon=True)
        self._thread.start()
        return True

    def _play(self, steps: list[tuple[float, float]]) -> None:
        for on, off in steps:
            self.device.on()
            if self._stop.wait(on):
                break
            self.device.off()
            if self._stop.wait(off):
                break
        self.device.off()

    def wait(self, timeout: float = 30) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        self._stop.set()
        self.wait(2)
        self.device.close()


class Pir:
    """A PIR sensor (gpiozero MotionSensor): motion wakes detection for ``wake_s`` seconds,
    so a solar/battery node can leave the camera and model idle between visits."""

    def __init__(
        self,
        pin: int,
        wake_s: float,
        *,
        pin_factory: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from gpiozero import MotionSensor

        self.wake_s, self.clock = wake_s, clock
        self._awake_until = 0.0
        self.sensor = MotionSensor(pin, pin_factory=pin_factory, queue_len=1, threshold=0.5)
        self.sensor.when_motion = self._motion

    def _motion(self) -> None:
        self._awake_until = self.clock() + self.wake_s

    @property
    def awake(self) -> bool:
        return self.sensor.motion_detected or self.clock() < self._awake_until

    def close(self) -> None:
        self.sensor.close()
