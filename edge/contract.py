"""The MQTT contract (v1): topic builders and payload schemas.

This is the one module that both device code (``edge``, ``kiosk``) and the hub import.
Everything else on either side stays private to its side.

Topics live under ``mimamori/v1/{dev}/...``; the device id is the MQTT username (and the
certificate CN), always at the third level so one ACL pattern covers the whole fleet.
Payloads are UTF-8 JSON objects with ``v`` (schema version) and ``ts`` (UTC, ISO 8601).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import IntEnum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

ROOT = "mimamori/v1"
SCHEMA_VERSION = 1
HUB_STATE = f"{ROOT}/hub/state"

#: device ids: lower-case letters, digits and dashes; "hub" is the hub's own tree
DEVICE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
KIND_RE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")

#: largest payload the hub accepts on any topic (an event may carry a downscaled snapshot)
MAX_EVENT_BYTES = 512 * 1024
MAX_OTHER_BYTES = 64 * 1024
MAX_JOB_BYTES = 2 * 1024 * 1024 - 4096  # under the broker's max_packet_size

Role = Literal["wildlife", "ridership", "kiosk"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: names the hub side uses as MQTT user names: no device may be issued one
RESERVED_IDS = frozenset({"hub", "fleet-admin"})


def check_device_id(dev: str) -> str:
    if dev in RESERVED_IDS or dev.startswith("hub-") or not DEVICE_ID_RE.match(dev):
        raise ContractError(
            f"device id {dev!r}: expected 1-63 of a-z, 0-9 and '-', starting with a letter "
            "or digit, and not 'hub', 'hub-...' or 'fleet-admin' (the hub's own names)"
        )
    return dev


class ContractError(ValueError):
    """A topic or payload that breaks the contract; the message names the topic and field.

    ``reason`` is a short stable key for reject counters (``not_allowed``, ``unknown_device``,
    ``stale_time``...); None where the hub derives it from the message.
    """

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


# -- topic builders ---------------------------------------------------------------------


def _t(dev: str, *rest: str) -> str:
    return "/".join((ROOT, check_device_id(dev), *rest))


def state(dev: str) -> str:
    return _t(dev, "state")


def birth(dev: str) -> str:
    return _t(dev, "birth")


def tele(dev: str) -> str:
    return _t(dev, "tele")


def event(dev: str, kind: str) -> str:
    if not KIND_RE.match(kind):
        raise ContractError(f"event kind {kind!r}: expected 'app.name', e.g. 'wildlife.sighting'")
    return _t(dev, "event", kind)


def twin_desired(dev: str) -> str:
    return _t(dev, "twin", "desired")


def twin_reported(dev: str) -> str:
    return _t(dev, "twin", "reported")


def cmd(dev: str, name: str) -> str:
    if not NAME_RE.match(name):
        raise ContractError(f"command name {name!r}: expected a-z, 0-9 and '-'")
    return _t(dev, "cmd", name)


def reply(dev: str, name: str) -> str:
    return _t(dev, "reply", name)


def job(dev: str, job_id: str) -> str:
    return _t(dev, "jobs", job_id)


def job_status(dev: str, job_id: str) -> str:
    return _t(dev, "jobs", job_id, "status")


def call(dev: str) -> str:
    return _t(dev, "call")


def view(dev: str, name: str) -> str:
    if name not in VIEWS:
        raise ContractError(f"view {name!r}: expected one of {', '.join(VIEWS)}")
    return _t(dev, "view", name)


def still(dev: str) -> str:
    return _t(dev, "still")


def signal(dev: str) -> str:
    return _t(dev, "signal")


@dataclass(frozen=True)
class Topic:
    """A parsed device topic: ``mimamori/v1/{dev}/{channel}[/{rest}]``."""

    dev: str
    channel: str
    rest: str = ""


_CHANNEL_DEPTH = {
    "state": 0,
    "birth": 0,
    "tele": 0,
    "event": 1,
    "twin": 1,
    "cmd": 1,
    "reply": 1,
    "jobs": (1, 2),
    "call": 0,
    "view": 1,
    "still": 0,
    "signal": 0,
}

#: channels whose payload is a JPEG, not JSON; what describes it rides in the MQTT v5 user
#: property ``meta`` (JSON), so no frame is base64-inflated on a slow link
BINARY_CHANNELS = frozenset({"view", "still"})
#: the kiosk's two camera views: the resident's face and the document on the desk
VIEWS = ("face", "doc")
MAX_VIEW_BYTES = 512 * 1024
MAX_STILL_BYTES = MAX_JOB_BYTES


def parse_topic(topic: str) -> Topic:
    """Split a device topic; raise ContractError naming the topic and what was expected."""
    parts = topic.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != ROOT:
        raise ContractError(f"topic {topic!r}: expected {ROOT}/<device>/<channel>[/...]")
    dev, channel, rest = parts[2], parts[3], parts[4:]
    try:
        check_device_id(dev)
    except ContractError as e:
        raise ContractError(f"topic {topic!r}: {e}") from None
    depth = _CHANNEL_DEPTH.get(channel)
    if depth is None:
        raise ContractError(f"topic {topic!r}: unknown channel {channel!r}")
    allowed = depth if isinstance(depth, tuple) else (depth,)
    if len(rest) not in allowed:
        raise ContractError(
            f"topic {topic!r}: channel {channel!r} takes {' or '.join(map(str, allowed))} "
            f"more level(s), got {len(rest)}"
        )
    if channel == "twin" and rest[0] not in ("desired", "reported"):
        raise ContractError(f"topic {topic!r}: expected twin/desired or twin/reported")
    if channel == "event" and not KIND_RE.match(rest[0]):
        raise ContractError(f"topic {topic!r}: event kind {rest[0]!r} is not 'app.name'")
    if channel == "view" and rest[0] not in VIEWS:
        raise ContractError(f"topic {topic!r}: view {rest[0]!r} is not one of {', '.join(VIEWS)}")
    if channel == "jobs" and len(rest) == 2 and rest[1] != "status":
        raise ContractError(f"topic {topic!r}: expected jobs/<id> or jobs/<id>/status")
    return Topic(dev, channel, "/".join(rest))


# -- what each role may publish ---------------------------------------------------------

#: channels only a kiosk publishes (its call, the two views, stills, voice signalling)
KIOSK_CHANNELS = frozenset({"call", "view", "still", "signal"})
#: channels every device publishes about itself
DEVICE_CHANNELS = frozenset({"state", "birth", "tele", "event", "twin", "reply", "jobs"})
#: event kinds are ``app.name``; the app part names the role that may raise them, and
#: ``device.*`` (notices) is for every role
ROLE_OF_APP = {"wildlife": "wildlife", "ridership": "ridership", "kiosk": "kiosk"}
ROLES: tuple[str, ...] = ("wildlife", "ridership", "kiosk")


#: the channels a device's messages may be retained on (the broker clears the flag elsewhere)
RETAINED_CHANNELS = frozenset({"state", "birth", "twin", "call"})


def device_limit(channel: str) -> int:
    """The largest payload a device may publish on ``channel`` (bytes)."""
    return {"event": MAX_EVENT_BYTES, "view": MAX_VIEW_BYTES, "still": MAX_STILL_BYTES}.get(
        channel, MAX_OTHER_BYTES
    )


def role_may_publish(role: str, channel: str, rest: str = "") -> bool:
    """True if a device of ``role`` may publish on ``channel`` (``rest``: the event kind,
    ``reported`` for twin, ``<id>/status`` for jobs)."""
    if channel in KIOSK_CHANNELS:
        return role == "kiosk"
    if channel == "event":
        app = rest.split(".", 1)[0]
        return app == "device" or ROLE_OF_APP.get(app) == role
    if channel == "twin":
        return rest == "reported"
    if channel == "jobs":
        return rest.endswith("/status")
    return channel in DEVICE_CHANNELS


def event_kinds_of(role: str) -> list[str]:
    """The event kinds of the contract a device of ``role`` may raise."""
    return [k for k in EVENT_DATA if role_may_publish(role, "event", k)]


def check_role(role: str, t: Topic) -> None:
    """Raise ContractError(reason=not_allowed) if a ``role`` device may not publish ``t``."""
    if not role_may_publish(role, t.channel, t.rest):
        what = f"event {t.rest!r}" if t.channel == "event" else f"channel {t.channel!r}"
        raise ContractError(
            f"device {t.dev!r} ({role}) may not publish {what}", reason="not_allowed"
        )


# -- payload schemas --------------------------------------------------------------------


class Payload(BaseModel):
    """Base of every payload: schema version and UTC timestamp; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = Field(1, description="schema version (SCHEMA_VERSION)")
    ts: datetime = Field(default_factory=utcnow, description="UTC time the payload was made")

    @field_validator("ts")
    @classmethod
    def _aware(cls, ts: datetime) -> datetime:
        if ts.tzinfo is None:
            raise ValueError("timestamp must carry a UTC offset (e.g. 2026-01-01T00:00:00Z)")
        return ts

    def dumps(self) -> bytes:
        return self.model_dump_json(exclude_none=False).encode()


class StatePayload(Payload):
    online: bool = Field(description="true in the birth state, false in the Last Will")
    bdseq: int = Field(
        ge=0, description="birth/death sequence; a will older than the birth is stale"
    )


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(max_length=100)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class BirthPayload(Payload):
    role: Role
    bdseq: int = Field(ge=0)
    sw_version: str = Field(max_length=50)
    model: ModelInfo | None = None
    config_version: int = Field(ge=0, description="twin version of the config in force (0 = file)")
    boot_id: str = Field(max_length=64)
    capabilities: list[str] = Field(default_factory=list, max_length=50)
    location: str = Field("", max_length=200)


class TelePayload(Payload):
    cpu_temp_c: float | None = None
    load1: float = Field(ge=0)
    mem_used_pct: float = Field(ge=0, le=100)
    rss_mb: float = Field(ge=0)
    disk_free_mb: float = Field(ge=0)
    uptime_s: float = Field(ge=0)
    outbox_depth: int = Field(ge=0)
    outbox_dropped: int = Field(0, ge=0)
    fps: float | None = Field(None, ge=0)
    inference_ms: float | None = Field(None, ge=0)


class Priority(IntEnum):
    """Outbox priority: under the size cap low rows go first; alarms are never dropped."""

    LOW = 0
    NORMAL = 1
    ALARM = 2


class NoticeData(BaseModel):
    """``device.notice``: something an operator should see (disk full, camera lost...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    level: Literal["info", "warning", "error"]
    message: str = Field(max_length=2000)


def _b64_jpeg(value: str | None) -> str | None:
    """A snapshot must be base64 of a JPEG: a broken one is refused at the door."""
    if value is None:
        return None
    try:
        head = base64.b64decode(value[:8], validate=True)
        base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise ValueError("snapshot_jpeg is not base64") from None
    if not head.startswith(b"\xff\xd8"):
        raise ValueError("snapshot_jpeg is not a JPEG (no FF D8 start)")
    return value


class IncursionData(BaseModel):
    """``wildlife.incursion``: monkeys seen; sent at once, one per incursion, as an alarm."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    incursion: str = Field(pattern=r"^[0-9a-f]{32}$", description="joins start and end")
    camera: str = Field("cam0", max_length=40, description="which camera on the device")
    location: str = Field("", max_length=200, description="where the device stands")
    started: datetime = Field(description="first positive frame")
    score: float = Field(ge=0, le=1)
    label: str = Field(max_length=100)
    box: tuple[int, int, int, int] = Field(description="x1, y1, x2, y2 in the snapshot")
    frames: int = Field(ge=1)
    night: bool = False
    snapshot_jpeg: str = Field(max_length=400_000, description="base64 JPEG, box drawn")

    _snapshot = field_validator("snapshot_jpeg")(_b64_jpeg)


class IncursionEndData(BaseModel):
    """``wildlife.incursion_end``: the same incursion is over; its totals."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    incursion: str = Field(pattern=r"^[0-9a-f]{32}$")
    started: datetime
    ended: datetime
    frames: int = Field(ge=1)
    max_score: float = Field(ge=0, le=1)
    snapshot_jpeg: str | None = Field(None, max_length=400_000, description="the best frame")

    _snapshot = field_validator("snapshot_jpeg")(_b64_jpeg)


class DoorCount(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    door: str = Field(max_length=20, description="which door, e.g. 'front'")
    boardings: int = Field(ge=0, le=500)
    alightings: int = Field(ge=0, le=500)


class FixInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    quality: int = Field(ge=0, le=8, description="GGA fix quality: 0 none, 1 GPS, 2 DGPS...")
    sats: int | None = Field(None, ge=0, le=99)
    hdop: float | None = Field(None, ge=0, le=100)
    age_s: float = Field(ge=0, description="how old the fix was at the door opening")


class StopVisitData(BaseModel):
    """``ridership.stop_visit``: one door-open/close cycle at a stop, with the counts."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    visit: str = Field(pattern=r"^[0-9a-f]{32}$")
    vehicle: str = Field(max_length=40, description="bus number (default: the device id)")
    service_date: date = Field(description="the timetable day the trip belongs to")
    route_id: str | None = Field(None, max_length=64)
    trip_id: str | None = Field(None, max_length=64)
    direction_id: int | None = Field(None, ge=0, le=1)
    stop_id: str | None = Field(None, max_length=64, description="None: no fix or no stop near")
    stop_name: str = Field("", max_length=200)
    stop_sequence: int | None = Field(None, ge=0)
    arrival: datetime = Field(description="first door opened")
    departure: datetime = Field(description="last door closed")
    boardings: int = Field(ge=0, le=1000)
    alightings: int = Field(ge=0, le=1000)
    doors: list[DoorCount] = Field(min_length=1, max_length=6)
    fix: FixInfo | None = None
    match: Literal["trip", "nearest", "none"] = "none"
    distance_m: float | None = Field(None, ge=0)
    partial: bool = Field(False, description="the device stopped before the door closed")

    @model_validator(mode="after")
    def _totals(self) -> StopVisitData:
        if (
            sum(d.boardings for d in self.doors) != self.boardings
            or sum(d.alightings for d in self.doors) != self.alightings
        ):
            raise ValueError("boardings/alightings must equal the sum over doors")
        if self.departure < self.arrival:
            raise ValueError("departure is before arrival")
        return self


CALL_ID = r"^[0-9a-f]{32}$"
CallStateName = Literal["idle", "ringing", "connected", "ended"]
CallEnd = Literal["cancelled", "staff_ended", "no_answer", "link_lost", "kiosk_restarted"]


class KioskCallData(BaseModel):
    """``kiosk.call``: one finished call at a kiosk (statistics; no picture, no sound)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    call: str = Field(pattern=CALL_ID)
    rang: datetime = Field(description="when the resident pressed the button")
    answered: datetime | None = Field(None, description="when staff answered; None: nobody")
    ended: datetime
    staff: str | None = Field(None, max_length=64)
    reason: CallEnd
    stills: int = Field(0, ge=0, le=1000, description="document stills taken in the call")


#: per event kind, the schema of ``data``; each app registers its kinds here
EVENT_DATA: dict[str, type[BaseModel]] = {
    "device.notice": NoticeData,
    "wildlife.incursion": IncursionData,
    "wildlife.incursion_end": IncursionEndData,
    "ridership.stop_visit": StopVisitData,
    "kiosk.call": KioskCallData,
}


class EventPayload(Payload):
    id: str = Field(pattern=r"^[0-9a-f]{32}$", description="unique per device (uuid4 hex)")
    seq: int = Field(ge=1, description="persisted, monotonic per device")
    kind: str = Field(pattern=KIND_RE.pattern)
    prio: Priority = Priority.NORMAL
    hist: bool = Field(False, description="true when replayed from the outbox, not sent live")
    created: datetime = Field(description="when the device recorded the event")
    age_s: float | None = Field(
        None,
        ge=0,
        description="seconds from recording to sending, by the device's own clock (so a "
        "clock that is hours off, as on a Pi without a real-time clock, does not make an "
        "event look late)",
    )
    data: dict[str, Any]

    def checked_data(self) -> BaseModel:
        schema = EVENT_DATA.get(self.kind)
        if schema is None:
            raise ContractError(f"event kind {self.kind!r} is not in the contract")
        return schema.model_validate(self.data)


class TwinDesired(Payload):
    version: int = Field(ge=1)
    config: dict[str, Any] = Field(
        description="config sections to change, e.g. {'telemetry': {...}}"
    )


class TwinReported(Payload):
    version: int = Field(ge=0, description="version applied, or the version refused when error")
    applied: bool
    error: str | None = Field(None, max_length=4000)
    config: dict[str, Any] | None = None


class CommandRequest(Payload):
    args: dict[str, Any] = Field(default_factory=dict)


class CommandReply(Payload):
    name: str
    ok: bool
    result: dict[str, Any] | None = None
    error: str | None = Field(None, max_length=4000)


class HubState(Payload):
    online: bool


class ModelManifest(BaseModel):
    """What a model update promises; signed by the fleet's Ed25519 model-signing key."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", description="model slot, e.g. 'monkey'"
    )
    version: int = Field(ge=1, description="monotonic per name; a lower one is a downgrade")
    min_version: int = Field(0, ge=0, description="devices below this may not keep an older model")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=1, le=512 * 1024 * 1024)
    issued: datetime
    expires: datetime

    def canonical(self) -> bytes:
        """The exact bytes that are signed: sorted-key compact JSON."""
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
        ).encode()


class SignedManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    manifest: ModelManifest
    signature: str = Field(max_length=200, description="base64 Ed25519 signature of canonical()")


JOB_ID_RE = r"^[a-z0-9][a-z0-9-]{0,63}$"

JobState = Literal["QUEUED", "IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED", "CANCELED"]


class JobDocument(Payload):
    """A long job for one device (AWS IoT Jobs style); retained on ``jobs/{id}``."""

    job_id: str = Field(pattern=JOB_ID_RE)
    operation: Literal["model-update"]
    update: SignedManifest
    model_b64: str | None = Field(None, description="the model inline (small models only)")
    url: str | None = Field(None, max_length=500, description="where to fetch larger models")


class JobStatus(Payload):
    job_id: str = Field(pattern=JOB_ID_RE)
    status: JobState
    reason: str | None = Field(None, max_length=2000)
    detail: dict[str, Any] = Field(default_factory=dict)


class CallState(Payload):
    """Retained on ``{dev}/call``: the kiosk's call as the kiosk sees it. The hub owns the
    call: ``connected`` only confirms a staff member's answer the hub already holds."""

    call: str | None = Field(None, pattern=CALL_ID, description="None while idle")
    state: CallStateName
    since: datetime = Field(description="when this state began")
    staff: str | None = Field(None, max_length=64, description="who answered (connected)")
    reason: CallEnd | None = Field(None, description="why it ended (ended)")
    sending: list[str] = Field(default_factory=list, description="views being sent now")
    position: int | None = Field(None, ge=1, description="place in the queue (ringing)")


class Signal(Payload):
    """WebRTC signalling for a call's voice, relayed by the hub (never a public server)."""

    call: str = Field(pattern=CALL_ID)
    type: Literal["offer", "answer"]
    sdp: str = Field(max_length=60_000)


class ViewMeta(BaseModel):
    """The ``meta`` user property of a ``view/{face|doc}`` JPEG."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    call: str = Field(pattern=CALL_ID)
    seq: int = Field(ge=0, description="frame number in this call, per view")
    ts: datetime = Field(description="when the frame was taken (kiosk clock, UTC)")
    w: int = Field(ge=1, le=8192)
    h: int = Field(ge=1, le=8192)
    q: int = Field(ge=1, le=100, description="JPEG quality chosen for the link")


class StillMeta(BaseModel):
    """The ``meta`` user property of a ``still`` JPEG: a rectified document photograph."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    call: str = Field(pattern=CALL_ID)
    still: str = Field(pattern=CALL_ID)
    ts: datetime
    found: bool = Field(description="a page was found and flattened")
    corners: list[tuple[float, float]] = Field(
        default_factory=list, max_length=4, description="page corners in the camera frame"
    )
    w: int = Field(ge=1, le=20_000)
    h: int = Field(ge=1, le=20_000)
    dpi: float | None = Field(None, ge=0, description="resolution over an A4 page")
    warnings: list[str] = Field(default_factory=list, max_length=10)


class CallCommand(BaseModel):
    """Arguments of the hub's call commands (``call-answer``, ``call-end``, ``call-queue``,
    ``still-capture``): always the call they are about, so a stale command is refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    call: str = Field(pattern=CALL_ID)
    staff: str | None = Field(None, max_length=64, description="call-answer: who answers")
    position: int | None = Field(None, ge=1, le=1000, description="call-queue: place")
    type: Literal["offer", "answer"] | None = Field(None, description="call-signal")
    sdp: str | None = Field(None, max_length=60_000, description="call-signal")


class PointCommand(BaseModel):
    """Arguments of the hub's ``call-point``: a mark a member of staff puts on the resident's
    form, shown on the kiosk screen over the resident's view of the desk (nothing recorded).
    ``on="view"``: ``x``, ``y`` are fractions of the desk view's frame (the kiosk pins the mark
    to the page found there, so it stays on the paper as the paper moves); ``on="page"``:
    fractions of the flattened page (a document still)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    call: str = Field(pattern=CALL_ID)
    mark: Literal["dot", "circle", "arrow", "clear"]
    x: float = Field(0.5, ge=0, le=1, description="across, from the left")
    y: float = Field(0.5, ge=0, le=1, description="down, from the top")
    on: Literal["view", "page"] = "view"


_CHANNEL_SCHEMA: dict[tuple[str, str], type[Payload]] = {
    ("state", ""): StatePayload,
    ("birth", ""): BirthPayload,
    ("tele", ""): TelePayload,
    ("twin", "desired"): TwinDesired,
    ("twin", "reported"): TwinReported,
    ("reply", ""): CommandReply,
    ("call", ""): CallState,
    ("signal", ""): Signal,
}


def schema_for(t: Topic) -> type[Payload]:
    if t.channel == "event":
        return EventPayload
    if t.channel == "jobs":
        return JobStatus if t.rest.endswith("/status") else JobDocument
    if t.channel == "cmd":
        return CommandRequest
    key = (t.channel, t.rest if t.channel == "twin" else "")
    try:
        return _CHANNEL_SCHEMA[key]
    except KeyError:
        raise ContractError(f"no payload schema for channel {t.channel!r}") from None


def decode(topic: str, raw: bytes) -> tuple[Topic, Payload]:
    """Parse a topic and validate its payload; ContractError says what was wrong and where."""
    t = parse_topic(topic)
    if t.channel in BINARY_CHANNELS:
        raise ContractError(f"topic {topic!r}: a JPEG channel; use decode_jpeg()")
    limit = {"event": MAX_EVENT_BYTES, "jobs": MAX_JOB_BYTES}.get(t.channel, MAX_OTHER_BYTES)
    if len(raw) > limit:
        raise ContractError(f"topic {topic!r}: payload of {len(raw)} bytes exceeds {limit}")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ContractError(f"topic {topic!r}: payload is not UTF-8 JSON ({e})") from None
    except RecursionError:
        raise ContractError(
            f"topic {topic!r}: payload is not UTF-8 JSON (nested too deeply)"
        ) from None
    if not isinstance(obj, dict):
        raise ContractError(f"topic {topic!r}: payload must be a JSON object")
    schema = schema_for(t)
    try:
        payload = schema.model_validate(obj)
        if isinstance(payload, EventPayload):
            if payload.kind != t.rest:
                raise ContractError(
                    f"topic {topic!r}: payload kind {payload.kind!r} differs from the topic"
                )
            payload.checked_data()
    except ValidationError as e:
        raise ContractError(f"topic {topic!r}: {format_validation(e)}") from None
    except ContractError as e:
        raise ContractError(str(e) if topic in str(e) else f"topic {topic!r}: {e}") from None
    return t, payload


def format_validation(err: ValidationError, prefix: str = "") -> str:
    """One line per problem: ``a.b: message (got VALUE)``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in (prefix, *e["loc"]) if p != "")
        got = repr(e.get("input"))
        if len(got) > 60:
            got = got[:57] + "..."
        lines.append(f"{loc or '(root)'}: {e['msg']} (got {got})")
    return "; ".join(lines)


def jpeg_meta_json(meta: ViewMeta | StillMeta) -> str:
    """The ``meta`` user property to send with a view frame or a still."""
    return meta.model_dump_json()


def decode_jpeg(
    topic: str, raw: bytes, meta: str | None
) -> tuple[Topic, ViewMeta | StillMeta, bytes]:
    """Check a ``view``/``still`` message: topic, size, JPEG magic and its ``meta`` property."""
    t = parse_topic(topic)
    if t.channel not in BINARY_CHANNELS:
        raise ContractError(f"topic {topic!r}: not a JPEG channel")
    limit = MAX_VIEW_BYTES if t.channel == "view" else MAX_STILL_BYTES
    if len(raw) > limit:
        raise ContractError(f"topic {topic!r}: payload of {len(raw)} bytes exceeds {limit}")
    if not raw.startswith(b"\xff\xd8"):
        raise ContractError(f"topic {topic!r}: payload is not a JPEG (no FF D8 start)")
    if not meta:
        raise ContractError(f"topic {topic!r}: missing the 'meta' user property")
    schema: type[ViewMeta | StillMeta] = ViewMeta if t.channel == "view" else StillMeta
    try:
        return t, schema.model_validate_json(meta), raw
    except ValidationError as e:
        raise ContractError(f"topic {topic!r}: meta: {format_validation(e)}") from None
