"""What the device service drives: the ``App`` interface and the ``Emitter`` apps record with.

An app is built from its config section and a ``Device`` (identity, data dir, emitter); the
service steps it from its loop, adds its ``commands`` to the link's and reads its
``telemetry()`` for the ``tele`` topic. An app never touches MQTT or the outbox itself.

Imports: this module knows the outbox and the link, never an app; apps import it.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mimamori.edge.contract import ModelInfo, Priority
from mimamori.edge.link import CommandHandler, Link
from mimamori.edge.outbox import Outbox, Row


class Emitter:
    """Records app events durably in the outbox and wakes the link to send them."""

    def __init__(self, outbox: Outbox, link: Link) -> None:
        self._outbox, self._link = outbox, link

    def __call__(self, kind: str, data: dict[str, Any], prio: Priority = Priority.NORMAL) -> Row:
        row = self._outbox.put(kind, data, prio=prio, offline=not self.ready)
        self._link.wake()
        return row

    @property
    def ready(self) -> bool:
        """Connected and the hub is online: live data (a call) can reach city hall now."""
        return self._link.connected and self._link.hub_online

    @property
    def sessions(self) -> int:
        """Connections made so far; a change means retained live state must be sent again."""
        return self._link.stats.connects

    def live(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False, meta: str = ""
    ) -> bool:
        """Send now or never (call state, video frames): never queued in the outbox."""
        return self._link.publish_live(topic, payload, qos=qos, retain=retain, meta=meta)


@dataclass(frozen=True)
class Device:
    """What every app is built with besides its own config section."""

    id: str
    location: str
    data_dir: Path
    emit: Emitter


@dataclass(frozen=True)
class Telemetry:
    """An app's share of ``tele``: frames looked at per second and model time per frame."""

    fps: float | None = None
    inference_ms: float | None = None


class Meter:
    """Counts frames and times model calls; ``read()`` gives the figures since the last read."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._since = clock()
        self._frames = 0
        self._calls = 0
        self._busy_s = 0.0

    def frame(self, n: int = 1) -> None:
        self._frames += n

    @contextmanager
    def inference(self) -> Iterator[None]:
        start = self._clock()
        try:
            yield
        finally:
            self._busy_s += self._clock() - start
            self._calls += 1

    def read(self) -> Telemetry:
        now = self._clock()
        span = now - self._since
        out = Telemetry(
            fps=round(self._frames / span, 2) if span > 0 else None,
            inference_ms=round(1000 * self._busy_s / self._calls, 1) if self._calls else None,
        )
        self._since, self._frames, self._calls, self._busy_s = now, 0, 0, 0.0
        return out


class App(ABC):
    """An appliance's work, driven by the service: ``step`` about every ``tick_s`` seconds."""

    #: seconds the service waits between steps; 0: the app paces itself on its camera
    tick_s: float = 0.1
    #: commands the app adds to the link's (name -> handler), e.g. the kiosk's call control
    commands: Mapping[str, CommandHandler] = MappingProxyType({})
    #: the model it has loaded, told to the hub in birth and tele (None: it runs no model)
    model_info: ModelInfo | None = None

    @abstractmethod
    def step(self, now: float) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def telemetry(self) -> Telemetry:
        """Figures since the last call (the service reads them once per ``tele``)."""
        return Telemetry()
