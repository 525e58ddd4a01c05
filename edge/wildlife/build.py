"""Wire the monkey watch from its config section (the one place that does)."""

from __future__ import annotations

from typing import Any

from mimamori.edge.app import Device
from mimamori.edge.camera import FrameSource, is_file_source, open_source
from mimamori.edge.config import WildlifeSection
from mimamori.edge.vision.manifest import DEFAULT_MODEL, load_manifest, model_info, with_update
from mimamori.edge.vision.onnx import OnnxModel
from mimamori.edge.vision.yolox import DEFAULT_YOLOX
from mimamori.edge.wildlife.app import MotionGate, SnapshotLog, WildlifeApp
from mimamori.edge.wildlife.deterrent import Deterrent, DeterrentRules, Pir
from mimamori.edge.wildlife.incursion import Rules
from mimamori.edge.wildlife.watch import THRESHOLD, Classifier, MonkeyWatch, lean_yolox


def build_wildlife(cfg: WildlifeSection, device: Device, pin_factory: Any = None) -> WildlifeApp:
    # a signed update installed under the manifest's name replaces its model file
    manifest = with_update(load_manifest(cfg.model or DEFAULT_MODEL), device.data_dir)
    classify = manifest.task == "classify"
    rules = Rules(
        threshold=cfg.threshold or (THRESHOLD if classify else manifest.score_threshold),
        start_frames=cfg.start_frames,
        window_s=cfg.window_s,
        quiet_s=cfg.quiet_s,
        cooldown_s=cfg.cooldown_s,
    )

    def camera() -> FrameSource:
        return open_source(cfg.source, loop=cfg.loop, fps=cfg.fps)

    model: OnnxModel | MonkeyWatch
    if classify:
        model = MonkeyWatch(
            Classifier(manifest, threads=2),
            lean_yolox(with_update(load_manifest(DEFAULT_YOLOX), device.data_dir), threads=2)
            if cfg.proposer
            else None,
        )
    else:
        model = OnnxModel(manifest, threads=2)
    app = WildlifeApp(
        camera(),
        model,
        device.emit,
        rules=rules,
        night_threshold=cfg.night_threshold,
        motion=MotionGate() if cfg.motion else None,
        deterrent=Deterrent(DeterrentRules(**cfg.deterrent.model_dump()), pin_factory=pin_factory)
        if cfg.deterrent
        else None,
        pir=Pir(cfg.pir_pin, cfg.pir_wake_s, pin_factory=pin_factory)
        if cfg.pir_pin is not None
        else None,
        ignore=cfg.ignore,
        log=SnapshotLog(device.data_dir / "wildlife", int(cfg.log_mb * 2**20)),
        camera=cfg.camera_id,
        location=device.location,
        reopen=None if is_file_source(cfg.source) else camera,
        blur_people=cfg.blur_people,
    )
    app.model_info = model_info(manifest, device.data_dir)
    return app
