"""Typed device configuration: one TOML file per device, validated at start-up.

Every field has a description; misspelt keys are errors. ``load_config`` raises
``ConfigError`` whose ``problems`` read ``section.key: what is wrong (got VALUE)``.
Some sections may be changed from the hub through the twin (``REMOTE_SECTIONS``);
identity and broker settings may not.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mimamori.edge import contract, ice
from mimamori.edge.camera import is_file_source
from mimamori.edge.errors import ConfigError
from mimamori.edge.tomlfile import load_toml, validate

#: exit status of a service started with a bad config (sysexits EX_CONFIG); units list it in
#: RestartPreventExitStatus= so systemd does not restart-loop on it
EXIT_BAD_CONFIG = 78


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DeviceSection(Section):
    id: str = Field(description="device id: MQTT username and certificate CN, e.g. 'field-03'")
    role: contract.Role = Field(description="which appliance this device runs")
    location: str = Field("", max_length=200, description="where it stands, shown at the hub")
    data_dir: Path = Field(
        Path("/var/lib/mimamori"), description="writable directory for the outbox and state"
    )

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        try:
            return contract.check_device_id(v)
        except contract.ContractError as e:
            raise ValueError(str(e)) from None


class TlsSection(Section):
    ca_file: Path = Field(description="CA certificate that signed the broker's certificate")
    cert_file: Path | None = Field(None, description="this device's client certificate")
    key_file: Path | None = Field(None, description="this device's private key")

    @model_validator(mode="after")
    def _pair(self) -> TlsSection:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class MqttSection(Section):
    host: str = Field("localhost", min_length=1, description="broker host name or address")
    port: int = Field(8883, ge=1, le=65535, description="broker port")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds")
    connect_timeout_s: float = Field(
        30.0,
        ge=1,
        le=300,
        description="time allowed for TCP, TLS and CONNECT: a TLS handshake over a slow rural "
        "link (800 ms each way, 64 kbit/s) takes 5-10 s",
    )
    username: str | None = Field(None, description="MQTT user name; defaults to device.id")
    password_file: Path | None = Field(None, description="file holding this device's password")
    tls: TlsSection | None = Field(None, description="TLS settings; omit only on loopback")
    reconnect_min_s: float = Field(1.0, gt=0, le=60, description="first reconnect delay")
    reconnect_max_s: float = Field(120.0, gt=0, le=3600, description="longest reconnect delay")


class TelemetrySection(Section):
    interval_s: float = Field(60.0, ge=1, le=3600, description="seconds between health reports")


class OutboxSection(Section):
    max_mb: float = Field(
        64.0, gt=0, le=4096, description="size cap; low-priority rows are dropped first"
    )
    inflight: int = Field(20, ge=1, le=1000, description="events published but not yet acked")


class UpdatesSection(Section):
    public_key_file: Path = Field(
        description="the fleet's Ed25519 model-signing public key (PEM); updates signed by "
        "anything else are rejected"
    )


class DeterrentSection(Section):
    pin: int = Field(17, ge=0, le=27, description="BCM pin of the buzzer/strobe/relay")
    min_s: float = Field(3.0, gt=0, le=120, description="shortest random pattern")
    max_s: float = Field(8.0, gt=0, le=300, description="longest random pattern")
    min_gap_s: float = Field(300.0, ge=0, le=86400, description="never fire more often")
    at_night: bool = Field(False, description="fire at night too (infrared frames)")


class WildlifeSection(Section):
    source: str = Field(
        description="'picamera', a camera index ('0'), an rtsp:// or http:// URL, or a video "
        "file, image or folder of images (replayed, for demos and tests)"
    )
    fps: float = Field(2.0, gt=0, le=30, description="frames per second to look at")
    loop: bool = Field(False, description="replay files forever (demo)")
    camera_id: str = Field("cam0", max_length=40, description="which camera on this device")
    model: Path | None = Field(None, description="model manifest (default: EfficientNet-Lite0)")
    proposer: bool = Field(
        True,
        description="find animals with YOLOX-nano first and score a crop around each "
        "(small and distant monkeys); false: whole frame and tiles only",
    )
    blur_people: bool = Field(
        True,
        description="blur people in snapshots sent to the hub (kept unblurred on the device)",
    )
    threshold: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="day threshold (default: 0.8, the watch's measured operating point; "
        "a detector model's own score_threshold)",
    )
    night_threshold: float = Field(0.8, gt=0, lt=1, description="threshold for infrared frames")
    start_frames: int = Field(
        2,
        ge=1,
        le=100,
        description="positives that start an incursion (2: bench/wildlife_incursions.py finds "
        "more infrared visits than with 3 and no false incursion with either)",
    )
    window_s: float = Field(10.0, gt=0, le=600, description="...within this many seconds")
    quiet_s: float = Field(30.0, gt=0, le=3600, description="no positive this long ends it")
    cooldown_s: float = Field(60.0, ge=0, le=3600, description="no new incursion before this")
    motion: bool = Field(True, description="run the model only when something moves")
    ignore: list[tuple[float, float, float, float]] = Field(
        default_factory=list,
        description="zones to ignore (a road, a swaying tree) as "
        "[x1, y1, x2, y2] fractions of the frame, e.g. [[0.0, 0.8, 1.0, 1.0]]",
    )
    log_mb: float = Field(
        200.0,
        ge=1,
        le=100_000,
        description="snapshots and event log kept "
        "on the device (data_dir/wildlife), oldest removed first",
    )
    pir_pin: int | None = Field(
        None,
        ge=0,
        le=27,
        description="BCM pin of a PIR sensor: look only after it sees movement (battery nodes)",
    )
    pir_wake_s: float = Field(60.0, gt=0, le=3600, description="stay awake after PIR motion")
    deterrent: DeterrentSection | None = Field(None, description="scare device; omit for none")


class DoorSection(Section):
    name: str = Field("front", min_length=1, max_length=20, description="door name")
    source: str = Field(
        description="this door's camera: 'picamera', a camera index, a URL, or a video file "
        "(replayed, for demos and tests)"
    )
    fps: float = Field(10.0, gt=0, le=60, description="frames per second to count on")
    loop: bool = Field(False, description="replay files forever (demo)")
    line: tuple[float, float, float, float] = Field(
        description="counting line [x1, y1, x2, y2] in frame pixels; crossing toward its "
        "clockwise side (downward for a line drawn left to right) is a boarding"
    )
    detector: Literal["blobs", "hog", "yolox"] = Field(
        "blobs",
        description="person detector: blobs (background subtraction; overhead cameras), "
        "yolox (YOLOX-nano people, run while something moves; angled and side views), hog",
    )
    gate: bool = Field(True, description="yolox: run the detector only while something moves")
    person_score: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="yolox: the lowest score taken as a person (default: the model's manifest, "
        "0.65; `mimamori ridership calibrate` chooses it from a labelled clip)",
    )
    person_area: float | None = Field(
        None,
        gt=0,
        lt=0.5,
        description="blobs: one person's blob as a fraction of the frame; blobs of two or "
        "more are split (overhead cameras; omit to never split)",
    )
    shadow_ratio: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="blobs: darkest shadow, as a share of the floor's brightness, that is "
        "not a person (0.35 for an overhead camera under changing light)",
    )
    background_frames: int = Field(
        300,
        ge=30,
        le=5000,
        description="blobs: frames the floor's model remembers (it learns at 1/N while nobody "
        "is in view, about a sixth of that while someone is): fewer follow light changes "
        "sooner, more keep a slow or waiting rider in view (`mimamori ridership calibrate` "
        "chooses it from a labelled clip)",
    )
    anchor: Literal["center", "bottom"] = Field(
        "center", description="center for an overhead camera, bottom (feet) for an angled one"
    )
    band_px: float = Field(12.0, ge=0, le=200, description="hysteresis each side of the line")
    pin: int | None = Field(
        None, ge=0, le=27, description="BCM pin of the door-open signal (from the door relay)"
    )
    active_high: bool = Field(True, description="the pin reads high while the door is open")
    schedule: list[tuple[float, float]] | None = Field(
        None,
        description="replays without a relay: [[open_s, close_s], ...] within each "
        "schedule_period_s, e.g. [[5, 25]]",
    )
    schedule_period_s: float = Field(60.0, gt=0, le=86400, description="schedule repeats")

    @model_validator(mode="after")
    def _signal(self) -> DoorSection:
        if (self.pin is None) == (self.schedule is None):
            raise ValueError("give the door-open signal as either pin or schedule (one of them)")
        return self


class RidershipSection(Section):
    vehicle: str = Field("", max_length=40, description="bus number shown at the hub")
    gtfs: Path | None = Field(
        None, description="GTFS feed (folder or .zip) whose stops tag each door opening"
    )
    route_id: str | None = Field(None, description="the route this bus runs (faster matching)")
    radius_m: float = Field(60.0, gt=0, le=1000, description="farthest a stop may be")
    gps: str | None = Field(
        None, description="NMEA source: a serial device (/dev/ttyACM0) or a recorded log"
    )
    gps_baud: int = Field(9600, ge=1200, le=921600, description="serial speed")
    gps_replay_speed: float = Field(1.0, ge=0, le=1000, description="replay pace (0: at once)")
    tail_s: float = Field(3.0, ge=0, le=60, description="keep counting after the doors close")
    doors: list[DoorSection] = Field(min_length=1, max_length=4, description="one per door")

    @field_validator("doors")
    @classmethod
    def _unique(cls, v: list[DoorSection]) -> list[DoorSection]:
        names = [d.name for d in v]
        if len(set(names)) != len(names):
            raise ValueError(f"door names must differ (got {names})")
        return v


class KioskSection(Section):
    office: str = Field("", max_length=100, description="branch office name on the screen")
    phone: str = Field(
        min_length=3,
        max_length=40,
        description="number the screen gives when nobody can answer, e.g. '0120-123-456'",
    )
    face_source: str = Field(
        description="camera facing the resident: 'picamera', 'picamera:1', a camera index, a "
        "URL, or a video/image file (replayed, for demos and tests)"
    )
    doc_source: str = Field(
        description="camera looking down at the desk (full resolution for document stills)"
    )
    loop: bool = Field(True, description="replay files forever (demo)")
    fps: float = Field(10.0, gt=0, le=30, description="highest frame rate sent per view")
    long_px: int = Field(1280, ge=160, le=1920, description="longest side of a sent frame")
    button_pin: int | None = Field(
        None, ge=0, le=27, description="BCM pin of the big call button (to ground)"
    )
    led_pin: int | None = Field(None, ge=0, le=27, description="BCM pin of the button's light")
    hold_s: float = Field(2.0, ge=0.5, le=10, description="holding the button this long hangs up")
    screen_port: int = Field(8090, ge=1, le=65535, description="resident screen, on localhost")
    days: list[int] = Field(
        [0, 1, 2, 3, 4], min_length=1, max_length=7, description="open days, 0 = Monday"
    )
    opens: str = Field("08:30", pattern=r"^\d{1,2}:\d{2}$", description="local time staff start")
    closes: str = Field(
        "17:15", pattern=r"^\d{1,2}:\d{2}$", description="...and stop answering ('24:00': midnight)"
    )
    closed_dates: list[str] = Field(
        default_factory=list, description="holidays, as YYYY-MM-DD (the screen says closed)"
    )
    ring_timeout_s: float = Field(
        180.0, ge=10, le=3600, description="ringing this long unanswered: give the phone number"
    )
    ended_show_s: float = Field(30.0, ge=3, le=600, description="how long the goodbye stays")
    link_grace_s: float = Field(
        20.0, ge=2, le=600, description="a call survives a link outage this long"
    )
    ice_servers: list[ice.IceServer] = Field(
        default_factory=list,
        description="the town's own TURN/STUN servers for voice (never a public one): URL "
        "strings, or tables with urls, username, credential; empty: direct only",
    )
    speak: bool = Field(True, description="speak the prompts aloud where the browser can")

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[int]) -> list[int]:
        if any(not 0 <= d <= 6 for d in v):
            raise ValueError(f"days are 0 (Monday) to 6 (Sunday), got {v}")
        return v

    @field_validator("opens", "closes")
    @classmethod
    def _clock(cls, v: str) -> str:
        h, m = (int(x) for x in v.split(":"))
        if not (0 <= h <= 23 and 0 <= m <= 59) and (h, m) != (24, 0):
            raise ValueError(f"expected a time of day HH:MM, got {v!r}")
        return v


class SimSection(Section):
    event_interval_s: float = Field(
        5.0, gt=0, le=3600, description="seconds between simulated events"
    )


class DeviceConfig(Section):
    device: DeviceSection = Field(description="identity")
    mqtt: MqttSection = Field(default_factory=MqttSection, description="link to the hub")
    telemetry: TelemetrySection = Field(default_factory=TelemetrySection)
    outbox: OutboxSection = Field(default_factory=OutboxSection)
    updates: UpdatesSection | None = Field(
        None, description="signed model updates; without it every update job is rejected"
    )
    wildlife: WildlifeSection | None = Field(None, description="the monkey watch (role wildlife)")
    ridership: RidershipSection | None = Field(None, description="door counters (role ridership)")
    kiosk: KioskSection | None = Field(None, description="remote counter (role kiosk)")
    sim: SimSection | None = Field(
        None, description="simulated app for demos: publishes notices instead of real work"
    )

    @property
    def username(self) -> str:
        return self.mqtt.username or self.device.id


#: sections the hub may change through twin/desired
REMOTE_SECTIONS = frozenset({"telemetry", "outbox", "sim", "wildlife", "ridership", "kiosk"})


def parse_config(data: dict[str, Any], source: str = "config") -> DeviceConfig:
    return validate(DeviceConfig, data, source, ConfigError)


def load_config(path: Path | str) -> DeviceConfig:
    """Read and validate a device TOML file; relative paths inside resolve from its folder."""
    path = Path(path)
    cfg = _resolve_paths(load_toml(path, DeviceConfig, ConfigError), path.parent)
    problem = ice.resolve(cfg.kiosk.ice_servers, path.parent) if cfg.kiosk else None
    if problem:
        raise ConfigError(str(path), [f"kiosk.{problem}"])
    return cfg


def _resolve_paths(cfg: DeviceConfig, base: Path) -> DeviceConfig:
    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else (base / p)

    cfg.device.data_dir = fix(cfg.device.data_dir) or cfg.device.data_dir
    cfg.mqtt.password_file = fix(cfg.mqtt.password_file)
    if cfg.wildlife:
        w = cfg.wildlife
        if w.model is not None:
            w.model = fix(w.model)
        if is_file_source(w.source) and not Path(w.source).is_absolute():
            w.source = str(base / w.source)
    if cfg.ridership:
        r = cfg.ridership
        r.gtfs = fix(r.gtfs)
        if r.gps and not r.gps.startswith("/dev/") and not Path(r.gps).is_absolute():
            r.gps = str(base / r.gps)
        for d in r.doors:
            if is_file_source(d.source) and not Path(d.source).is_absolute():
                d.source = str(base / d.source)
    if cfg.kiosk:
        k = cfg.kiosk
        for attr in ("face_source", "doc_source"):
            src = getattr(k, attr)
            if is_file_source(src) and not Path(src).is_absolute():
                setattr(k, attr, str(base / src))
    if cfg.updates:
        cfg.updates.public_key_file = (
            fix(cfg.updates.public_key_file) or cfg.updates.public_key_file
        )
    if cfg.mqtt.tls:
        tls = cfg.mqtt.tls
        tls.ca_file = fix(tls.ca_file) or tls.ca_file
        tls.cert_file, tls.key_file = fix(tls.cert_file), fix(tls.key_file)
    return cfg


def apply_patch(cfg: DeviceConfig, patch: dict[str, Any]) -> DeviceConfig:
    """Return ``cfg`` with the twin's sections merged in, validated as a whole.

    Raises ConfigError (and leaves ``cfg`` untouched) if the patch touches a section the hub
    may not change or if any resulting value is invalid.
    """
    bad = sorted(set(patch) - REMOTE_SECTIONS)
    if bad:
        raise ConfigError(
            "twin/desired",
            [
                f"{k}: cannot be changed remotely (allowed: {', '.join(sorted(REMOTE_SECTIONS))})"
                for k in bad
            ],
        )
    merged = cfg.model_dump()
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **copy.deepcopy(value)}
        else:
            merged[key] = copy.deepcopy(value)
    return parse_config(merged, "twin/desired")


def remote_view(cfg: DeviceConfig) -> dict[str, Any]:
    """The remotely changeable sections, as reported in twin/reported."""
    dumped = cfg.model_dump(mode="json")
    return {k: dumped[k] for k in sorted(REMOTE_SECTIONS) if dumped.get(k) is not None}
