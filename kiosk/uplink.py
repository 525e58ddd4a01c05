"""Is the kiosk's uplink too thin for the two live views? Judged with hysteresis from how
fast view frames reach city hall.

Each view frame the hub acknowledges is one measurement: its size over its round trip
(bits/s). A frame still unacknowledged when its view gives up waiting (``View``'s probe
time) counts as its size over that wait: the link carried less than that.

The link turns *thin* once every measurement for ``thin_after_s`` (at least
``min_samples`` of them) has been below ``thin_bps``. While thin the kiosk stops both views
and sends only a small face frame every ``probe_s``, to go on measuring; voice (WebRTC, its
own path) and document stills on request go on. It is *good* again only once every
measurement for ``good_after_s`` (at least ``min_samples``) has been at least ``good_bps``,
well above ``thin_bps``: a link on the edge does not flap between video and voice, and a
stalled link, which gives no measurement, stays thin.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Uplink:
    def __init__(
        self,
        clock: Callable[[], float],
        *,
        thin_bps: float = 250_000,
        good_bps: float = 600_000,
        thin_after_s: float = 6.0,
        good_after_s: float = 30.0,
        min_samples: int = 3,
        probe_s: float = 5.0,
    ) -> None:
        self._clock = clock
        self.thin_bps, self.good_bps = thin_bps, good_bps
        self.thin_after_s, self.good_after_s = thin_after_s, good_after_s
        self.min_samples, self.probe_s = min_samples, probe_s
        self.thin = False
        # the run of measurements pointing to the other state: since when, how many
        self._since: float | None = None
        self._count = 0
        self._lock = threading.Lock()

    def reset(self) -> None:
        """A new call: start from "good", with no measurements."""
        with self._lock:
            self.thin, self._since, self._count = False, None, 0

    def delivered(self, nbytes: int, seconds: float) -> None:
        """A view frame of ``nbytes`` took ``seconds`` to be acknowledged (or was given up on
        after that long)."""
        bps = nbytes * 8 / max(seconds, 1e-3)
        now = self._clock()
        with self._lock:
            if (bps >= self.good_bps) if self.thin else (bps < self.thin_bps):
                self._since = now if self._since is None else self._since
                self._count += 1
            else:
                self._since, self._count = None, 0

    def judge(self) -> bool:
        """Update ``thin`` from the measurements; True when it changed."""
        now = self._clock()
        with self._lock:
            after = self.good_after_s if self.thin else self.thin_after_s
            if self._since is None or now - self._since < after or self._count < self.min_samples:
                return False
            self.thin, self._since, self._count = not self.thin, None, 0
            return True
