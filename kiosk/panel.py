"""The kiosk's physical panel: one big call button and its light (gpiozero).

A press calls staff at once, exactly as the on-screen button does (on the press, not the
release: some residents hold a button down). Holding it for ``hold_s`` hangs up, but only a
call that was already going when the press began, so a long first press still calls. The light blinks while ringing and stays on while staff are connected.
Pins come from gpiozero, so tests drive them with its MockFactory pins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mimamori.edge.contract import CallStateName


class Panel:
    def __init__(
        self,
        button_pin: int,
        led_pin: int | None,
        *,
        on_press: Callable[[], object],
        on_hold: Callable[[], object],
        in_call: Callable[[], bool],
        hold_s: float = 2.0,
        pin_factory: Any = None,
    ) -> None:
        from gpiozero import LED, Button  # hardware library, imported when used

        self.button = Button(
            button_pin, pull_up=True, bounce_time=0.05, hold_time=hold_s, pin_factory=pin_factory
        )
        self.led = LED(led_pin, pin_factory=pin_factory) if led_pin is not None else None
        self._was_in_call = False
        self._on_press, self._on_hold, self._in_call = on_press, on_hold, in_call
        self.button.when_pressed = self._pressed
        self.button.when_held = self._hold

    def _pressed(self) -> None:
        self._was_in_call = self._in_call()
        if not self._was_in_call:
            self._on_press()

    def _hold(self) -> None:
        if self._was_in_call:
            self._on_hold()

    def show(self, state: CallStateName) -> None:
        if self.led is None:
            return
        if state == "ringing":
            self.led.blink(on_time=0.5, off_time=0.5)
        elif state == "connected":
            self.led.on()
        else:
            self.led.off()

    def close(self) -> None:
        self.button.close()
        if self.led is not None:
            self.led.close()
