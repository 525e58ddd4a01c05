"""The remote-counter kiosk app: call, panel, resident screen, the two views, stills, voice.

Everything the kiosk sends goes out over its own outbound MQTT connection (LTE routers and
closed municipal networks let nothing in): the call state (retained), the views' JPEG
frames and document stills (only while a call is connected), and the voice signalling.
City hall's part of each exchange arrives as commands on the device's ``cmd/`` topics:

``call-answer``, ``call-end``, ``call-queue``, ``call-signal``, ``view-ack``, ``still-capture``

When the uplink is too thin for video (``kiosk.uplink``), both views are held and the call
goes on as voice plus stills on request; the call state says so (``thin``), for the
resident's screen and the staff console, until the link is good again for a while.

Each carries the call id; a command for any other call is refused, so nothing stale can
open a camera. A finished call is recorded once, as a ``kiosk.call`` event in the outbox.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from datetime import date, datetime
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

import cv2

from mimamori.edge import contract
from mimamori.edge.app import App, Device, Emitter, Meter, Telemetry
from mimamori.edge.camera import FrameSource, open_source
from mimamori.edge.config import KioskSection
from mimamori.kiosk.call import Call, CallMachine, Hours
from mimamori.kiosk.document import rectify
from mimamori.kiosk.pointer import Mark, draw, pin
from mimamori.kiosk.uplink import Uplink
from mimamori.kiosk.views import View

log = logging.getLogger(__name__)

TOWN_TZ = ZoneInfo("Asia/Tokyo")
STILL_QUALITY = (85, 75, 65, 50)
#: the face view by default: what a thin LTE uplink carries (the desk view keeps the config)
FACE_LONG_PX = 480
FACE_Q = 60
FACE_FPS = 8.0


def hours_of(cfg: KioskSection) -> Hours:
    def hm(text: str) -> dtime:
        h, m = (int(x) for x in text.split(":"))
        return dtime.max if (h, m) == (24, 0) else dtime(h, m)

    return Hours(
        tuple(cfg.days),
        hm(cfg.opens),
        hm(cfg.closes),
        TOWN_TZ,
        frozenset(date.fromisoformat(d) for d in cfg.closed_dates),
    )


class KioskApp(App):
    def __init__(
        self,
        cfg: KioskSection,
        emit: Emitter,
        dev: str,
        *,
        pin_factory: Any = None,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], datetime] = contract.utcnow,
        screen: bool = True,
    ) -> None:
        self.cfg, self.emit, self.dev = cfg, emit, dev
        self.hours = hours_of(cfg)
        self._wall = wall
        extra = {"clock": clock} if clock else {}
        self.uplink = Uplink(clock or time.monotonic)
        self.machine = CallMachine(
            self._changed,
            ring_timeout_s=cfg.ring_timeout_s,
            ended_show_s=cfg.ended_show_s,
            link_grace_s=cfg.link_grace_s,
            wall=wall,
            **extra,
        )
        self.views = {
            "face": View(
                "face", self._camera(cfg.face_source), self._sender("face"), **self._vk("face")
            ),
            "doc": View(
                "doc", self._camera(cfg.doc_source, True), self._sender("doc"), **self._vk("doc")
            ),
        }
        self.notice: str | None = None
        self.mark: Mark | None = None  # staff pointing at the form (this call only)
        self.stills = 0
        self._signals: list[dict[str, Any]] = []
        self._signal_cv = threading.Condition()
        self._sessions = -1
        self._publish_lock = threading.Lock()
        self.meter = Meter()
        self._frames_sent = 0
        self.commands = {
            "call-answer": self._cmd_answer,
            "call-end": self._cmd_end,
            "call-queue": self._cmd_queue,
            "call-signal": self._cmd_signal,
            "view-ack": self._cmd_view_ack,
            "still-capture": self._cmd_still,
            "call-point": self._cmd_point,
        }
        self.panel = None
        if cfg.button_pin is not None:
            from mimamori.kiosk.panel import Panel

            self.panel = Panel(
                cfg.button_pin,
                cfg.led_pin,
                on_press=self.press,
                on_hold=self.machine.cancel,
                in_call=lambda: self.machine.current.state in ("ringing", "connected"),
                hold_s=cfg.hold_s,
                pin_factory=pin_factory,
            )
        self.screen = None
        if screen:
            from mimamori.kiosk.screen import Screen

            self.screen = Screen(self, port=cfg.screen_port).start()
        self._publish_state()  # a restart ends whatever call the last run left open

    def _vk(self, view: str) -> dict[str, Any]:
        """The desk view as configured (sharp: staff read the form); the face view at what
        a thin LTE uplink carries (a face needs far less: 1.1 Mbit/s instead of 7.7 on the
        busy walking clip, see the README's figures)."""
        measured = {"on_delivery": self.uplink.delivered}
        if view == "face":
            return {
                "fps": min(self.cfg.fps, FACE_FPS),
                "long_px": min(self.cfg.long_px, FACE_LONG_PX),
                "max_q": FACE_Q,
                **measured,
            }
        return {"fps": self.cfg.fps, "long_px": self.cfg.long_px, **measured}

    def _camera(self, source: str, full_res: bool = False) -> Callable[[], FrameSource]:
        # opened when a call connects and closed when it ends: no frame is taken otherwise
        return lambda: open_source(
            source, loop=self.cfg.loop, fps=max(self.cfg.fps, 15), full_res=full_res
        )

    def _sender(self, name: str) -> Callable[[bytes, str], bool]:
        topic = contract.view(self.dev, name)

        def send(jpeg: bytes, meta: str) -> bool:
            # the call's state changes before the views are told to stop: from that moment
            # on not one more frame goes out, even one already taken and encoded
            if self.machine.current.state != "connected":
                return False
            return self.emit.live(topic, jpeg, qos=0, meta=meta)

        return send

    # -- the resident --------------------------------------------------------------------

    def press(self) -> Call:
        """The big button (on the panel or on the screen)."""
        now = self._wall()
        if self.machine.current.state in ("ringing", "connected"):
            return self.machine.current
        if not self.hours.is_open(now):
            self.notice = "closed"
            return self.machine.current
        if not self.emit.ready:
            self.notice = "offline"
            return self.machine.current
        self.notice = None
        return self.machine.ring()

    def cancel(self) -> Call:
        return self.machine.cancel()

    def send_signal(self, call: str, kind: str, sdp: str) -> None:
        """The screen's WebRTC answer, on its way to the staff member's browser."""
        self.machine.check(call)
        msg = contract.Signal.model_validate({"call": call, "type": kind, "sdp": sdp})
        if not self.emit.live(contract.signal(self.dev), msg.dumps(), qos=1):
            raise ConnectionError("not connected to city hall")

    def wait_signal(self, call: str, after: int, timeout: float) -> list[dict[str, Any]]:
        with self._signal_cv:
            self._signal_cv.wait_for(
                lambda: len(self._signals) > after or self.machine.current.call != call,
                timeout,
            )
            if self.machine.current.call != call:
                return []
            return self._signals[after:]

    # -- city hall -----------------------------------------------------------------------

    @staticmethod
    def _args(args: dict[str, Any]) -> contract.CallCommand:
        return contract.CallCommand.model_validate(args)

    def _cmd_answer(self, args: dict[str, Any]) -> dict[str, Any]:
        a = self._args(args)
        if not a.staff:
            raise ValueError("call-answer: 'staff' is required")
        return {"state": self.machine.answer(a.call, a.staff).state}

    def _cmd_end(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"state": self.machine.hang_up(self._args(args).call).state}

    def _cmd_queue(self, args: dict[str, Any]) -> None:
        a = self._args(args)
        if a.position is not None:
            self.machine.queued(a.call, a.position)

    def _cmd_signal(self, args: dict[str, Any]) -> None:
        a = self._args(args)
        self.machine.check(a.call)
        if not a.type or not a.sdp:
            raise ValueError("call-signal: 'type' and 'sdp' are required")
        with self._signal_cv:
            self._signals.append({"type": a.type, "sdp": a.sdp})
            self._signal_cv.notify_all()

    def _cmd_view_ack(self, args: dict[str, Any]) -> None:
        call, seqs = args.get("call"), args.get("seq")
        if not isinstance(call, str) or not isinstance(seqs, dict):
            raise ValueError("view-ack: expected {call, seq: {view: n}}")
        for name, seq in seqs.items():
            view = self.views.get(name)
            if view is not None and isinstance(seq, int):
                view.ack(call, seq)

    def _cmd_point(self, args: dict[str, Any]) -> None:
        a = contract.PointCommand.model_validate(args)
        self.machine.check(a.call)
        if self.machine.current.state != "connected":
            raise ValueError("call-point: the call is not connected")
        if a.mark == "clear":
            self.mark = None
            return
        mark = pin(self.views["doc"].last_full, a.mark, a.x, a.y, a.on)
        cur = self.machine.current  # finding the page takes a moment: still this call?
        if cur.call == a.call and cur.state == "connected":
            self.mark = mark

    def desk_view(self) -> bytes | None:
        """The resident's own view of the desk with staff's mark, JPEG; None without a mark."""
        mark, frame = self.mark, self.views["doc"].last_full
        if mark is None or frame is None or self.machine.current.state != "connected":
            return None
        ok, buf = cv2.imencode(".jpg", draw(frame, mark), [cv2.IMWRITE_JPEG_QUALITY, 80])
        return bytes(buf) if ok else None

    def _cmd_still(self, args: dict[str, Any]) -> dict[str, Any]:
        call = self._args(args).call
        self.machine.check(call)
        view = self.views["doc"]
        camera = view.camera
        full = camera.still() if hasattr(camera, "still") else view.last_full  # type: ignore[union-attr]
        if full is None:
            raise RuntimeError("the document camera has no frame yet; try again")
        still_id = uuid.uuid4().hex
        threading.Thread(
            target=self._send_still, args=(call, still_id, full), name="still", daemon=True
        ).start()
        return {"still": still_id}

    def _send_still(self, call: str, still_id: str, image: Any) -> None:
        try:
            still = rectify(image)
        except ValueError as e:
            log.warning("document still: %s", e)
            return
        for q in STILL_QUALITY:
            ok, buf = cv2.imencode(".jpg", still.image, [cv2.IMWRITE_JPEG_QUALITY, q])
            if ok and len(buf) <= contract.MAX_STILL_BYTES:
                break
        h, w = still.image.shape[:2]
        meta = contract.StillMeta(
            call=call,
            still=still_id,
            ts=self._wall(),
            found=still.found,
            corners=still.corners,
            w=w,
            h=h,
            dpi=still.dpi,
            warnings=still.warnings,
        )
        if self.machine.current.call != call or self.machine.current.state != "connected":
            return  # the call ended while flattening: the still is dropped, never sent
        if self.emit.live(
            contract.still(self.dev), buf.tobytes(), qos=1, meta=contract.jpeg_meta_json(meta)
        ):
            self.stills += 1

    # -- state ---------------------------------------------------------------------------

    def _changed(self, old: Call, new: Call) -> None:
        if new.state == "connected" and old.state != "connected" and new.call:
            self.uplink.reset()
            for v in self.views.values():
                v.start(new.call)
        elif old.state == "connected" and new.state != "connected":
            for v in self.views.values():
                v.stop()  # returns only when no further frame can leave
        if new.state != "connected":
            self.mark = None  # a mark lives for the call only
        if new.call != old.call:
            with self._signal_cv:
                self._signals = []
                self._signal_cv.notify_all()
            self.stills = 0
        if new.state != old.state:
            self.notice = None
        if self.panel is not None:
            self.panel.show(new.state)
        self._publish_state()
        if new.state == "ended" and old.state != "ended" and new.call and new.rang:
            data = contract.KioskCallData(
                call=new.call,
                rang=new.rang,
                answered=new.answered,
                ended=new.since or self._wall(),
                staff=new.staff,
                reason=new.reason or "cancelled",
                stills=self.stills,
            )
            self.emit("kiosk.call", data.model_dump(mode="json"))

    def sending(self) -> list[str]:
        return [name for name, v in self.views.items() if v.sending]

    def _publish_state(self) -> None:
        with self._publish_lock:
            c = self.machine.current
            payload = contract.CallState(
                call=c.call,
                state=c.state,
                since=c.since or self._wall(),
                staff=c.staff,
                reason=c.reason,
                sending=self.sending(),
                position=c.position,
                thin=self.thin,
            )
            if self.emit.live(contract.call(self.dev), payload.dumps(), qos=1, retain=True):
                self._sessions = self.emit.sessions

    @property
    def thin(self) -> bool:
        """The call goes on as voice and stills: the uplink is too thin for video."""
        return self.machine.current.state == "connected" and self.uplink.thin

    def _judge_uplink(self) -> None:
        if self.machine.current.state != "connected" or not self.uplink.judge():
            return
        thin = self.uplink.thin
        log.warning(
            "call %s: uplink %s",
            self.machine.current.call,
            "too thin for video: voice and stills only" if thin else "good again: video back",
        )
        # the face view goes on at a trickle to measure the link; the desk view stops
        self.views["face"].hold(self.uplink.probe_s if thin else None)
        self.views["doc"].hold(math.inf if thin else None)
        self._publish_state()

    def step(self, now: float) -> None:
        self.machine.tick(link_ok=self.emit.ready)
        self._judge_uplink()
        if self._sessions != self.emit.sessions:
            self._publish_state()  # reconnected: the retained state may be stale

    def telemetry(self) -> Telemetry:
        """Frames the two views sent to city hall per second (no model runs on a kiosk)."""
        sent = sum(v.stats["sent"] for v in self.views.values())
        self.meter.frame(sent - self._frames_sent)
        self._frames_sent = sent
        return self.meter.read()

    def close(self) -> None:
        for v in self.views.values():
            v.stop()
        if self.machine.current.state in ("ringing", "connected"):
            self.machine.cancel()
        if self.screen is not None:
            self.screen.stop()
        if self.panel is not None:
            self.panel.close()


def build_kiosk(cfg: KioskSection, device: Device) -> KioskApp:
    return KioskApp(cfg, device.emit, device.id)
