"""The two live views (face, document): one camera each, sent only during a connected call.

A ``View`` owns its camera while a call is connected and closes it when the call ends, so no
frame is taken, let alone sent, between calls. Frames are downscaled for the link (the
camera keeps its full resolution for document stills) and JPEG-encoded.

Flow control is end to end: the hub acknowledges each frame it relays (``view-ack``), and a
view keeps at most ``window`` frames unacknowledged. On a slow link frames are skipped at the
source instead of queueing anywhere (no backlog, no growing delay); the JPEG quality and size
follow the measured round trip, and come back up when the link recovers. Each frame's
size and round trip also go to ``on_delivery`` (the kiosk's ``Uplink``), and a view can be
*held*: when the link is too thin for video it sends one frame of the lowest quality every
so often (to go on measuring), or none, while its camera stays open for stills.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import cv2
import numpy as np

from mimamori.edge import contract
from mimamori.edge.camera import CameraError, FrameSource

log = logging.getLogger(__name__)

#: (jpeg bytes, meta json) -> sent?  (the app's seam to the MQTT link)
Send = Callable[[bytes, str], bool]
#: (frame bytes, seconds until acknowledged or given up on)
Delivered = Callable[[int, float], None]
#: an unacknowledged frame is given up on after this long (and the link probed again)
GIVE_UP_S = 2.0


@dataclass
class Quality:
    """What the link currently affords: JPEG quality, longest side and frame rate."""

    q: int = 70
    long_px: int = 1280
    fps: float = 10.0

    LEVELS = ((70, 1280), (60, 1280), (50, 960), (40, 800), (35, 640), (30, 480))


class View:
    def __init__(
        self,
        name: str,
        open_camera: Callable[[], FrameSource],
        send: Send,
        *,
        fps: float = 10.0,
        long_px: int = 1280,
        max_q: int = 70,
        window: int = 2,
        target_rtt_s: float = 0.3,
        clock: Callable[[], float] = time.monotonic,
        on_delivery: Delivered | None = None,
    ) -> None:
        if name not in contract.VIEWS:
            raise ValueError(f"view {name!r}: expected one of {', '.join(contract.VIEWS)}")
        self.name = name
        self._open_camera = open_camera
        self._send = send
        self.max_fps = fps
        self.max_long_px = long_px
        self.max_q = max_q
        self.window = window
        self.target_rtt_s = target_rtt_s
        self._clock = clock
        self._on_delivery = on_delivery
        self._held: float | None = None  # held: seconds between frames (inf: none)
        self._lock = threading.Lock()
        self._call: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._level = 0
        self.fps = fps
        self._seq = 0
        self._acked = -1
        self._sent_at: dict[int, tuple[float, int]] = {}  # seq -> (sent at, bytes)
        self._rtts: list[float] = []
        self.last_full: np.ndarray | None = None
        self.camera: FrameSource | None = None
        self.stats = {"sent": 0, "skipped": 0, "bytes": 0}
        self.error: str | None = None

    # -- call lifecycle ------------------------------------------------------------------

    @property
    def sending(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, call: str) -> None:
        self.stop()
        with self._lock:
            self._call, self._seq, self._acked = call, 0, -1
            self._sent_at.clear()
            self._rtts.clear()
            self._level, self.fps, self.error = 0, self.max_fps, None
            self._held = None
        self._stop.clear()
        # started before it is published: a stop() from another thread never joins a thread
        # not yet started (and one started just before a stop() sees the stop at once)
        t = threading.Thread(target=self._run, name=f"view-{self.name}", daemon=True)
        t.start()
        self._thread = t

    def stop(self) -> None:
        """Stop sending and close the camera; returns when no further frame can go out."""
        self._stop.set()
        t = self._thread
        if t is not None:
            t.join(10)
        self._thread = None
        with self._lock:
            self._call = None
            self.last_full = None

    def hold(self, every_s: float | None) -> None:
        """Too thin for video: send one frame of the lowest quality every ``every_s``
        seconds (``math.inf``: none), the camera still open; ``None``: stream again."""
        with self._lock:
            self._held = every_s
            if every_s is not None:
                self._level = len(Quality.LEVELS) - 1

    def ack(self, call: str, seq: int) -> None:
        now = self._clock()
        with self._lock:
            if call != self._call or seq <= self._acked:
                return
            self._acked = seq
            sent = self._sent_at.pop(seq, None)
            for s in [s for s in self._sent_at if s < seq]:
                del self._sent_at[s]
            if sent is not None:
                self._rtts = (self._rtts + [now - sent[0]])[-5:]
                self._adapt()
        if sent is not None and self._on_delivery is not None:
            self._on_delivery(sent[1], now - sent[0])

    # -- adaptation ----------------------------------------------------------------------

    def _adapt(self) -> None:
        if self._held is not None:
            return  # held frames stay at the lowest quality
        rtt = sorted(self._rtts)[len(self._rtts) // 2]
        if rtt > self.target_rtt_s and self._level < len(Quality.LEVELS) - 1:
            self._level += 1
            self._rtts.clear()
        elif rtt < self.target_rtt_s / 3 and self._level > 0 and len(self._rtts) >= 5:
            self._level -= 1
            self._rtts.clear()
        # the frame rate follows what the window lets through; cap it by level too
        self.fps = max(2.0, self.max_fps * (1.0 - 0.12 * self._level))

    def quality(self) -> Quality:
        q, long_px = Quality.LEVELS[self._level]
        return Quality(min(q, self.max_q), min(long_px, self.max_long_px), self.fps)

    # -- the sending loop ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            camera = self._open_camera()
        except (CameraError, OSError) as e:
            self.error = f"{self.name} camera: {e}"
            log.error("%s", self.error)
            return
        self.camera = camera
        try:
            next_at = self._clock()
            while not self._stop.is_set():
                frame = camera.read()
                if frame is None:
                    self.error = f"{self.name} camera: no more frames"
                    break
                with self._lock:
                    self.last_full = frame.image
                now = self._clock()
                if now < next_at:
                    continue  # the camera runs at its own rate; send at ours
                every = self._held if self._held is not None else 1.0 / self.fps
                if every == math.inf:
                    continue
                next_at = max(next_at + every, now - 0.5)
                self._send_one(frame.image, contract.utcnow())
        except CameraError as e:
            self.error = str(e)
            log.error("%s camera failed: %s", self.name, e)
        except Exception as e:  # a bug ends this view, not the kiosk; staff see it stop
            self.error = f"{self.name} view failed: {e!r}"
            log.exception("%s view failed", self.name)
        finally:
            camera.close()
            self.camera = None

    def _send_one(self, image: np.ndarray, ts: datetime) -> None:
        with self._lock:
            call = self._call
            inflight = self._seq - 1 - self._acked
            if call is None or self._stop.is_set():
                return
            given_up = None
            if inflight >= self.window:
                oldest = min(self._sent_at.values(), default=(self._clock(), 0))
                if self._clock() - oldest[0] < GIVE_UP_S:
                    self.stats["skipped"] += 1
                    return
                # no ack for 2 s: the hub may have missed it; probe again, slowly
                self._acked = self._seq - 1
                self._sent_at.clear()
                self._level = min(self._level + 1, len(Quality.LEVELS) - 1)
                given_up = (oldest[1], self._clock() - oldest[0])
            quality = self.quality()
            seq = self._seq
        if given_up is not None and self._on_delivery is not None:
            self._on_delivery(*given_up)
        jpeg, w, h = encode(image, quality)
        meta = contract.ViewMeta(call=call, seq=seq, ts=ts, w=w, h=h, q=quality.q)
        with self._lock:
            if self._call != call or self._stop.is_set():
                return  # the call ended while encoding: this frame never leaves
            if not self._send(jpeg, contract.jpeg_meta_json(meta)):
                self.stats["skipped"] += 1
                return
            self._sent_at[seq] = (self._clock(), len(jpeg))
            self._seq += 1
            self.stats["sent"] += 1
            self.stats["bytes"] += len(jpeg)


def encode(image: np.ndarray, quality: Quality) -> tuple[bytes, int, int]:
    """Downscale to the quality's longest side and JPEG-encode."""
    h, w = image.shape[:2]
    scale = min(1.0, quality.long_px / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality.q])
    if not ok:
        raise CameraError("JPEG encoding failed")
    return buf.tobytes(), image.shape[1], image.shape[0]
