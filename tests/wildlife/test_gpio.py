"""PIR wake-up and the deterrent on gpiozero MockFactory pins (the hardware seam)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
from gpiozero.pins.mock import MockFactory

from mimamori.edge.camera import Frame
from mimamori.edge.contract import Priority
from mimamori.edge.vision.onnx import Finding
from mimamori.edge.wildlife.app import WildlifeApp
from mimamori.edge.wildlife.deterrent import Deterrent, DeterrentRules, Pir
from mimamori.edge.wildlife.incursion import Rules
from tests.mqtt_probe import wait_until


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_deterrent_fires_a_random_bounded_pattern_and_respects_the_gap(pins: MockFactory) -> None:
    clock = Clock()
    d = Deterrent(
        DeterrentRules(pin=17, min_s=0.3, max_s=0.6, min_gap_s=300),
        pin_factory=pins,
        rng=random.Random(3),
        clock=clock,
    )
    pin = pins.pin(17)
    assert d.fire(night=False)
    wait_until(lambda: pin.state == 1, 2, "deterrent on")
    d.wait(5)
    assert pin.state == 0  # off again after the pattern
    clock.t += 100
    assert not d.fire(night=False)  # within the minimum gap
    clock.t += 300
    assert d.fire(night=False)
    d.wait(5)
    assert not d.fire(night=True)  # quiet at night unless configured
    patterns = {tuple(round(on, 2) for on, _ in d.pattern()) for _ in range(5)}
    assert len(patterns) == 5  # never the same pattern twice: no habituation
    for _ in range(20):
        total = sum(on + off for on, off in d.pattern())
        assert 0.3 <= total <= 0.6 + 0.8 + 1e-9
    d.close()


def test_hold_keeps_it_silent_while_a_hunter_is_coming(pins: MockFactory) -> None:
    clock = Clock()
    d = Deterrent(
        DeterrentRules(pin=18, min_s=5, max_s=6, min_gap_s=0), pin_factory=pins, clock=clock
    )
    assert d.fire(night=False)
    wait_until(lambda: pins.pin(18).state == 1, 2, "on")
    d.hold(3600)  # the hunter answered "I'm on it"
    d.wait(2)
    assert pins.pin(18).state == 0  # the running pattern stopped at once
    clock.t += 60
    assert not d.fire(night=False)
    clock.t += 3600
    assert d.fire(night=False)
    d.close()


class Frames:
    """A camera stand-in that counts how often it is read."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self) -> Frame:
        self.reads += 1
        ts = datetime(2026, 11, 24, tzinfo=UTC) + timedelta(seconds=self.reads)
        day = np.zeros((48, 64, 3), np.uint8)
        day[:, :, 1] = 160  # green field in daylight (a grayscale frame would be night)
        return Frame(day, ts, self.reads)

    def close(self) -> None:
        pass


class Always:
    """A model stand-in at the vision seam that always sees a monkey."""

    def monkey(self, image: np.ndarray) -> Finding:
        return Finding(0.95, (0, 0, 10, 10), "macaque")


def test_pir_wakes_detection_and_the_incursion_fires_the_deterrent(pins: MockFactory) -> None:
    clock = Clock()
    pir = Pir(4, wake_s=30, pin_factory=pins, clock=clock)
    deterrent = Deterrent(DeterrentRules(pin=17, min_s=0.2, max_s=0.3), pin_factory=pins)
    frames, emitted = Frames(), []
    app = WildlifeApp(
        frames,
        Always(),
        lambda k, d, p: emitted.append((k, p)),  # type: ignore[arg-type]
        rules=Rules(start_frames=2, quiet_s=5),
        night_threshold=0.8,
        deterrent=deterrent,
        pir=pir,
    )
    for _ in range(5):
        app.step(0)
    assert frames.reads == 0  # asleep: the camera is not even read
    pins.pin(4).drive_high()  # something warm moves in front of the PIR
    wait_until(lambda: pir.awake, 2, "PIR motion")
    for _ in range(3):
        app.step(0)
    assert frames.reads == 3
    assert emitted[0] == ("wildlife.incursion", Priority.ALARM)
    assert deterrent.fired == 1
    deterrent.wait(5)
    assert pins.pin(17).state == 0
    app.close()
