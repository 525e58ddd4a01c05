"""GPS from NMEA 0183 sentences (a USB/serial receiver, or a recorded log replayed).

``pynmea2`` parses and checks each sentence; RMC gives time, position, speed and course, GGA
the fix quality, satellites and HDOP. A line that is not a valid sentence (noise on the
serial line, a cut-off write, a wrong checksum) is counted by reason and skipped, never fatal.
The reader keeps the newest fix and the last *moving* course: a stopped bus's course is noise,
and the course it had while driving in is what tells the two sides of a road apart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pynmea2

log = logging.getLogger(__name__)

MOVING_KMH = 5.0  # above this the receiver's course over ground is trustworthy
KNOTS_TO_KMH = 1.852


@dataclass(frozen=True)
class Fix:
    ts: datetime  # UTC time of the fix, from the receiver
    lat: float
    lon: float
    speed_kmh: float | None = None
    course: float | None = None  # degrees from true north, while moving
    quality: int = 1  # GGA fix quality: 0 none, 1 GPS, 2 DGPS, 4/5 RTK, 6 dead reckoning
    sats: int | None = None
    hdop: float | None = None


class NmeaParser:
    """Feed lines; each valid RMC with a fix yields a ``Fix`` (GGA details merged in)."""

    def __init__(self) -> None:
        self.rejected: Counter[str] = Counter()
        self._gga: pynmea2.GGA | None = None

    def feed(self, line: str | bytes) -> Fix | None:
        if isinstance(line, bytes):
            line = line.decode("ascii", errors="replace")
        line = line.strip()
        if not line:
            return None
        try:
            msg = pynmea2.parse(line, check=True)
        except pynmea2.ChecksumError:
            self._rejected("checksum", line)
            return None
        except (pynmea2.ParseError, ValueError, AttributeError, TypeError):
            self._rejected("unparseable", line)
            return None
        try:
            if isinstance(msg, pynmea2.GGA):
                self._gga = msg
                return None
            if isinstance(msg, pynmea2.RMC):
                return self._rmc(msg)
        except (ValueError, TypeError, AttributeError):
            self._rejected("bad field", line)
        return None  # other sentences (GSV, VTG...) are not needed

    def _rmc(self, m: pynmea2.RMC) -> Fix | None:
        if m.status != "A" or m.datestamp is None or m.timestamp is None:
            self.rejected["no fix"] += 1
            return None
        ts = datetime.combine(m.datestamp, m.timestamp.replace(tzinfo=None), tzinfo=UTC)
        lat, lon = float(m.latitude), float(m.longitude)
        if not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0 and lon == 0):
            self._rejected("impossible position", str(m))
            return None
        speed = float(m.spd_over_grnd) * KNOTS_TO_KMH if m.spd_over_grnd is not None else None
        course = float(m.true_course) if m.true_course is not None else None
        fix = Fix(ts, lat, lon, speed, course)
        g = self._gga
        if (
            g is not None
            and g.timestamp is not None
            and g.timestamp.replace(tzinfo=None) == m.timestamp.replace(tzinfo=None)
        ):
            fix = replace(
                fix,
                quality=int(g.gps_qual or 0),
                sats=int(g.num_sats) if g.num_sats else None,
                hdop=float(g.horizontal_dil) if g.horizontal_dil else None,
            )
        return fix

    def _rejected(self, reason: str, line: str) -> None:
        """Count and log (once per reason) a skipped sentence."""
        if not self.rejected[reason]:
            log.warning("GPS: %s sentence skipped (first of its kind): %.80s", reason, line)
        self.rejected[reason] += 1
        return None


class Gps:
    """The newest fix and the last course while moving, from any source of NMEA lines."""

    def __init__(self) -> None:
        self.parser = NmeaParser()
        self.fix: Fix | None = None
        self.course: float | None = None
        self.received = 0.0  # time.monotonic() when the newest fix arrived
        self._lock = threading.Lock()

    def feed(self, line: str | bytes) -> Fix | None:
        fix = self.parser.feed(line)
        if fix is not None:
            with self._lock:
                self.fix = fix
                self.received = time.monotonic()
                if fix.speed_kmh is not None and fix.speed_kmh >= MOVING_KMH:
                    self.course = fix.course
        return fix

    def current(self, max_age_s: float = 30.0) -> tuple[Fix | None, float | None]:
        """The newest fix (None if none arrived in ``max_age_s``: a stale position is worse
        than none) and the last course while moving. Age is by this clock, not the
        receiver's, so a replayed log or a receiver with a wrong date still works."""
        with self._lock:
            if self.fix is None or time.monotonic() - self.received > max_age_s:
                return None, self.course
            return self.fix, self.course


def replay_lines(
    path: Path,
    *,
    speed: float = 1.0,
    loop: bool = False,
    sleep: Callable[[float], object] = time.sleep,
) -> Iterator[str]:
    """Lines of a recorded NMEA log, paced by the RMC times (``speed`` x real time)."""
    while True:
        last: datetime | None = None
        with path.open(encoding="ascii", errors="replace") as f:
            for line in f:
                if speed > 0 and line.startswith(("$GPRMC", "$GNRMC")):
                    fix = NmeaParser().feed(line)
                    if fix is not None:
                        if last is not None and fix.ts > last:
                            sleep((fix.ts - last).total_seconds() / speed)
                        last = fix.ts
                yield line
        if not loop:
            return


def serial_lines(device: str, baud: int = 9600) -> Iterator[bytes]:
    """Lines from a serial GPS receiver (``/dev/ttyACM0``, ``/dev/serial0``)."""
    import serial  # pyserial, imported only where a receiver is attached

    with serial.Serial(device, baud, timeout=2) as port:
        while True:
            yield port.readline()


class Reader:
    """Feeds a ``Gps`` from a source of NMEA lines on its own thread, until ``stop()``.

    ``open_lines`` gets a ``sleep`` that returns early once stopped, for sources that pace
    themselves (replays); a serial read times out every 2 s, so the port is let go within
    that when the app restarts.
    """

    def __init__(
        self, gps: Gps, open_lines: Callable[[Callable[[float], object]], Iterable[str | bytes]]
    ) -> None:
        self.gps = gps
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(open_lines,), name="gps", daemon=True
        )
        self._thread.start()

    def _run(
        self, open_lines: Callable[[Callable[[float], object]], Iterable[str | bytes]]
    ) -> None:
        try:
            for line in open_lines(self._stopped.wait):
                if self._stopped.is_set():
                    return
                self.gps.feed(line)
        except Exception:  # the receiver unplugged: keep counting without position
            log.exception("GPS reader stopped")

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(3)
