"""Wire the bus app from its config section (the one place that does)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mimamori.edge.app import Device
from mimamori.edge.camera import open_source
from mimamori.edge.config import RidershipSection
from mimamori.edge.ridership.app import Door, RidershipApp
from mimamori.edge.ridership.count import DoorCounter
from mimamori.edge.ridership.door import DoorSignal, GpioDoor, ScheduleDoor
from mimamori.edge.ridership.gps import Gps, Reader, replay_lines, serial_lines
from mimamori.edge.ridership.gtfs import load_feed
from mimamori.edge.ridership.stops import StopMatcher
from mimamori.edge.vision.manifest import load_manifest, model_info, with_update


def build_ridership(cfg: RidershipSection, device: Device, pin_factory: Any = None) -> RidershipApp:
    matcher = (
        StopMatcher(load_feed(cfg.gtfs), route_id=cfg.route_id, radius_m=cfg.radius_m)
        if cfg.gtfs
        else None
    )
    gps = reader = None
    if cfg.gps:
        source = cfg.gps
        gps = Gps()
        reader = Reader(
            gps,
            lambda sleep: (
                serial_lines(source, cfg.gps_baud)
                if source.startswith("/dev/")
                else replay_lines(Path(source), speed=cfg.gps_replay_speed, loop=True, sleep=sleep)
            ),
        )
    # the person detector's manifest, its file replaced by a signed update if one is
    # installed (onnxruntime is imported only for a door that uses it)
    yolox = None
    if any(d.detector == "yolox" for d in cfg.doors):
        from mimamori.edge.vision.yolox import DEFAULT_YOLOX

        yolox = with_update(load_manifest(DEFAULT_YOLOX), device.data_dir)
    doors = []
    for d in cfg.doors:
        signal: DoorSignal = (
            GpioDoor(d.pin, active_high=d.active_high, pin_factory=pin_factory)
            if d.pin is not None
            else ScheduleDoor(d.schedule or [], d.schedule_period_s)
        )
        doors.append(
            Door(
                d.name,
                open_source(d.source, loop=d.loop, fps=d.fps),
                DoorCounter(
                    d.line,
                    detector=d.detector,
                    anchor=d.anchor,
                    band_px=d.band_px,
                    gate=d.gate,
                    person_area=d.person_area,
                    shadow_ratio=d.shadow_ratio,
                    background_frames=d.background_frames,
                    person_score=d.person_score,
                    model=yolox,
                ),
                signal,
            )
        )
    app = RidershipApp(
        doors,
        device.emit,
        vehicle=cfg.vehicle or device.id,
        gps=gps,
        matcher=matcher,
        tail_s=cfg.tail_s,
        on_close=reader.stop if reader else None,
    )
    if yolox is not None:
        app.model_info = model_info(yolox, device.data_dir)
    return app
