"""Is the door open? From the door relay on a GPIO pin, or from a schedule for replays.

On a bus the door controller closes a relay contact while the door is open; wired to a GPIO
pin (with an opto-isolator: bus electrics are 24 V) gpiozero reads it. ``pin_factory`` is the
hardware seam (gpiozero's MockFactory in tests and demos).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol


class DoorSignal(Protocol):
    @property
    def is_open(self) -> bool: ...

    def close(self) -> None: ...


class GpioDoor:
    def __init__(self, pin: int, *, active_high: bool = True, pin_factory: Any = None) -> None:
        from gpiozero import DigitalInputDevice

        self.device = DigitalInputDevice(
            pin, pull_up=not active_high, bounce_time=0.05, pin_factory=pin_factory
        )

    @property
    def is_open(self) -> bool:
        return bool(self.device.is_active)

    def close(self) -> None:
        self.device.close()


class ScheduleDoor:
    """Open during ``windows`` ([open_s, close_s] pairs) of every ``period_s`` seconds."""

    def __init__(
        self,
        windows: list[tuple[float, float]],
        period_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.windows, self.period, self.clock = windows, period_s, clock
        self._start = clock()

    @property
    def is_open(self) -> bool:
        t = (self.clock() - self._start) % self.period
        return any(a <= t < b for a, b in self.windows)

    def close(self) -> None:
        pass
