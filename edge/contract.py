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
from enum import IntEnum, StrEnum
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
            "or digit, and not 'hub', 'hub-...' or 'fleet-admin' (the hub's own names)",
            reason=Reason.BAD_TOPIC,
        )
    return dev


class Reason(StrEnum):
    """Why a message was refused: the stable key of the reject counters and pages."""

    BAD_TOPIC = "bad_topic"
    OVERSIZED = "oversized"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    SCHEMA = "schema"
    KIND_MISMATCH = "kind_mismatch"
    UNKNOWN_KIND = "unknown_kind"
    UNKNOWN_DEVICE = "unknown_device"
    NOT_ALLOWED = "not_allowed"
    #: the counter relay's refusals of a kiosk's call state
    UNANSWERED = "unanswered"
    WRONG_STAFF = "wrong_staff"
    OTHER_DEVICE = "other_device"
    #: a bug met on a message (counted like a reject, never stops the reader)
    INTERNAL = "internal"


class ContractError(ValueError):
    """A topic or payload that breaks the contract; the message names the topic and field,
    ``reason`` says which rule it broke (the reject counters' key)."""

    def __init__(self, message: str, *, reason: Reason = Reason.SCHEMA) -> None:
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
        raise ContractError(
            f"event kind {kind!r}: expected 'app.name', e.g. 'wildlife.sighting'",
            reason=Reason.BAD_TOPIC,
        )
    return _t(dev, "event", kind)


def twin_desired(dev: str) -> str:
    return _t(dev, "twin", "desired")


def twin_reported(dev: str) -> str:
    return _t(dev, "twin", "reported")


def cmd(dev: str, name: str) -> str:
    if not NAME_RE.match(name):
        raise ContractError(
            f"command name {name!r}: expected a-z, 0-9 and '-'", reason=Reason.BAD_TOPIC
        )
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
        raise ContractError(
            f"view {name!r}: expected one of {', '.join(VIEWS)}", reason=Reason.BAD_TOPIC
        )
    return _t(dev, "view", name)


def still(dev: str) -> str:
    return _t(dev, "still")


def signal(dev: str) -> str:
    return _t(dev, "signal")


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
    """The model a device's app has loaded (or, before its app starts, the newest update)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(max_length=100)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    version: int | None = Field(None, ge=0, description="an update's version")
    source: Literal["image", "update", "local"] | None = Field(
        None,
        description="came with the image (models/), a signed update, or a file set in the config",
    )


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
    model: ModelInfo | None = None


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
            raise ContractError(
                f"event kind {self.kind!r} is not in the contract", reason=Reason.UNKNOWN_KIND
            )
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
    thin: bool = Field(
        False, description="connected, but the uplink is too thin for video: voice and stills"
    )


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


# -- the channel table ------------------------------------------------------------------

#: the kiosk's two camera views: the resident's face and the document on the desk
VIEWS = ("face", "doc")
MAX_VIEW_BYTES = 512 * 1024
MAX_STILL_BYTES = MAX_JOB_BYTES

#: event kinds are ``app.name``; the app part names the role that may raise them, and
#: ``device.*`` (notices) is for every role
ROLE_OF_APP = {"wildlife": "wildlife", "ridership": "ridership", "kiosk": "kiosk"}
ROLES: tuple[str, ...] = ("wildlife", "ridership", "kiosk")
#: the publisher of the hub's own channels (a row's ``publishers``)
HUB = "hub"

#: what a variable level of a channel must look like: (what it is, pattern, in words)
_LEVEL_RULES: dict[str, tuple[str, re.Pattern[str], str]] = {
    "<kind>": ("event kind", KIND_RE, "'app.name'"),
    "<view>": ("view", re.compile(f"^({'|'.join(VIEWS)})$"), f"one of {', '.join(VIEWS)}"),
}


@dataclass(frozen=True)
class Channel:
    """One row of the contract: a channel of a device's tree (or the hub's own state).

    ``levels`` are the topic levels after the device id; ``<...>`` is a variable level (an
    event kind, a command name, a job id...). The hub's subscriptions say how the hub reads
    the channel: ``ingest`` ("shared": split among hub processes; "plain": retained, so every
    hub process needs it) and ``relay_qos`` (the counter relay follows it)."""

    name: str
    levels: tuple[str, ...]
    #: the JSON payload's schema; None for a JPEG, described by ``meta`` (a user property)
    schema: type[Payload] | None
    limit: int
    retained: bool
    #: the device roles that may publish it, or the hub (``HUB``)
    publishers: frozenset[str]
    meta: type[ViewMeta] | type[StillMeta] | None = None
    ingest: Literal["shared", "plain"] | None = None
    relay_qos: int | None = None
    #: the relay's filter for a variable last level (only still-capture replies)
    relay_last: str = "+"
    #: counted against the device's byte budget at the broker (live views are not)
    budgeted: bool = True
    hub_tree: bool = False

    @property
    def binary(self) -> bool:
        return self.schema is None

    @property
    def channel(self) -> str:
        """The first level: what ``Topic.channel`` says and the broker guard keys on."""
        return self.levels[0]

    @property
    def shape(self) -> str:
        return "/".join(self.levels)

    def filter(self, dev: str = "+", last: str = "+") -> str:
        """The subscription filter of this channel: one device's (``dev``) or every
        device's (``+``); ``last`` fills a variable last level (a command's name...)."""
        if self.hub_tree:
            return "/".join((ROOT, HUB, *self.levels))
        levels = [("+" if lv.startswith("<") else lv) for lv in self.levels]
        if self.levels[-1].startswith("<"):
            levels[-1] = last
        return "/".join((ROOT, dev, *levels))

    def fits(self, levels: list[str]) -> bool:
        """The levels have this channel's shape (literals equal; variables unchecked)."""
        return len(levels) == len(self.levels) and all(
            want.startswith("<") or want == got
            for want, got in zip(self.levels, levels, strict=True)
        )


_DEVICES = frozenset(ROLES)
_KIOSK = frozenset({"kiosk"})
_HUB = frozenset({HUB})

#: the contract, one row a channel
CHANNELS: tuple[Channel, ...] = (
    Channel("state", ("state",), StatePayload, MAX_OTHER_BYTES, True, _DEVICES,
            ingest="plain", relay_qos=1),
    Channel("birth", ("birth",), BirthPayload, MAX_OTHER_BYTES, True, _DEVICES, ingest="plain"),
    Channel("tele", ("tele",), TelePayload, MAX_OTHER_BYTES, False, _DEVICES, ingest="shared"),
    Channel("event", ("event", "<kind>"), EventPayload, MAX_EVENT_BYTES, False, _DEVICES,
            ingest="shared"),
    Channel("twin/desired", ("twin", "desired"), TwinDesired, MAX_OTHER_BYTES, True, _HUB),
    Channel("twin/reported", ("twin", "reported"), TwinReported, MAX_OTHER_BYTES, True,
            _DEVICES, ingest="plain"),
    Channel("cmd", ("cmd", "<name>"), CommandRequest, MAX_OTHER_BYTES, False, _HUB),
    Channel("reply", ("reply", "<name>"), CommandReply, MAX_OTHER_BYTES, False, _DEVICES,
            ingest="shared", relay_qos=1, relay_last="still-capture"),
    Channel("jobs", ("jobs", "<id>"), JobDocument, MAX_JOB_BYTES, True, _HUB),
    Channel("jobs/status", ("jobs", "<id>", "status"), JobStatus, MAX_OTHER_BYTES, False,
            _DEVICES, ingest="plain"),
    Channel("call", ("call",), CallState, MAX_OTHER_BYTES, True, _KIOSK, relay_qos=1),
    Channel("view", ("view", "<view>"), None, MAX_VIEW_BYTES, False, _KIOSK, meta=ViewMeta,
            relay_qos=0, budgeted=False),
    Channel("still", ("still",), None, MAX_STILL_BYTES, False, _KIOSK, meta=StillMeta,
            relay_qos=1),
    Channel("signal", ("signal",), Signal, MAX_OTHER_BYTES, False, _KIOSK, relay_qos=1),
    Channel("hub/state", ("state",), HubState, MAX_OTHER_BYTES, True, _HUB, hub_tree=True),
)  # fmt: skip
BY_NAME = {c.name: c for c in CHANNELS}
HUB_STATE_CHANNEL = BY_NAME["hub/state"]
HUB_STATE = HUB_STATE_CHANNEL.filter()
_DEVICE_ROWS = tuple(c for c in CHANNELS if not c.hub_tree)

#: the event kinds a town forwards to the prefecture broker (``provisioning.bridge``): alarms and
#: ridership summaries; no other channel of a device's tree is ever bridged
BRIDGED_KINDS: tuple[str, ...] = (
    "wildlife.incursion",
    "wildlife.incursion_end",
    "ridership.stop_visit",
)


def bridged_filters() -> list[str]:
    """Every device's topics of the bridged event kinds, without the ``ROOT/`` prefix."""
    row = BY_NAME["event"]
    return [row.filter(last=k).removeprefix(f"{ROOT}/") for k in BRIDGED_KINDS]


#: channels whose payload is a JPEG, not JSON; what describes it rides in the MQTT v5 user
#: property ``meta`` (JSON), so no frame is base64-inflated on a slow link
BINARY_CHANNELS = frozenset(c.channel for c in CHANNELS if c.binary)


@dataclass(frozen=True)
class Topic:
    """A parsed device topic: ``mimamori/v1/{dev}/{channel}[/{rest}]``."""

    dev: str
    channel: str
    rest: str = ""

    @property
    def row(self) -> Channel:
        """The contract's row for this topic."""
        levels = [self.channel, *self.rest.split("/")] if self.rest else [self.channel]
        for c in _DEVICE_ROWS:
            if c.fits(levels):
                return c
        raise ContractError(
            f"no channel {'/'.join(levels)!r} in the contract", reason=Reason.BAD_TOPIC
        )


def parse_topic(topic: str) -> Topic:
    """Split a device topic; raise ContractError naming the topic and what was expected."""
    parts = topic.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != ROOT:
        raise ContractError(
            f"topic {topic!r}: expected {ROOT}/<device>/<channel>[/...]", reason=Reason.BAD_TOPIC
        )
    dev, levels = parts[2], parts[3:]
    try:
        check_device_id(dev)
    except ContractError as e:
        raise ContractError(f"topic {topic!r}: {e}", reason=Reason.BAD_TOPIC) from None
    rows = [c for c in _DEVICE_ROWS if c.channel == levels[0]]
    if not rows:
        raise ContractError(
            f"topic {topic!r}: unknown channel {levels[0]!r}", reason=Reason.BAD_TOPIC
        )
    depths = sorted({len(c.levels) - 1 for c in rows})
    if len(levels) - 1 not in depths:
        raise ContractError(
            f"topic {topic!r}: channel {levels[0]!r} takes {' or '.join(map(str, depths))} "
            f"more level(s), got {len(levels) - 1}",
            reason=Reason.BAD_TOPIC,
        )
    row = next((c for c in rows if c.fits(levels)), None)
    if row is None:
        raise ContractError(
            f"topic {topic!r}: expected {' or '.join(c.shape for c in rows)}",
            reason=Reason.BAD_TOPIC,
        )
    for want, got in zip(row.levels, levels, strict=True):
        if want in _LEVEL_RULES:
            what, pattern, expected = _LEVEL_RULES[want]
            if not pattern.match(got):
                raise ContractError(
                    f"topic {topic!r}: {what} {got!r} is not {expected}", reason=Reason.BAD_TOPIC
                )
    return Topic(dev, levels[0], "/".join(levels[1:]))


# -- who may publish what ---------------------------------------------------------------


def device_limit(channel: str) -> int:
    """The largest payload a device may publish on ``channel`` (its first level; bytes)."""
    return max(
        (c.limit for c in _DEVICE_ROWS if c.channel == channel and HUB not in c.publishers),
        default=MAX_OTHER_BYTES,
    )


def device_channels() -> list[str]:
    """The first levels devices publish on (what the broker guard knows)."""
    return sorted({c.channel for c in _DEVICE_ROWS if HUB not in c.publishers})


def retained_channels() -> list[str]:
    """The first levels a device's message may be retained on (the broker refuses others)."""
    return sorted({c.channel for c in _DEVICE_ROWS if c.retained and HUB not in c.publishers})


def rows_of(role: str) -> list[Channel]:
    """The rows a device of ``role`` publishes on (events: only its own kinds, see
    ``event_kinds_of``)."""
    return [c for c in _DEVICE_ROWS if role in c.publishers]


def role_may_publish(role: str, channel: str, rest: str = "") -> bool:
    """True if a device of ``role`` may publish on ``channel`` (``rest``: the event kind,
    ``reported`` for twin, ``<id>/status`` for jobs)."""
    levels = [channel, *rest.split("/")] if rest else [channel]
    row = next((c for c in _DEVICE_ROWS if c.fits(levels)), None)
    if row is None or role not in row.publishers:
        return False
    if row.name == "event":
        app = rest.split(".", 1)[0]
        return app == "device" or ROLE_OF_APP.get(app) == role
    return True


def event_kinds_of(role: str) -> list[str]:
    """The event kinds of the contract a device of ``role`` may raise."""
    return [k for k in EVENT_DATA if role_may_publish(role, "event", k)]


def check_role(role: str, t: Topic) -> None:
    """Raise ContractError(reason=not_allowed) if a ``role`` device may not publish ``t``."""
    if not role_may_publish(role, t.channel, t.rest):
        what = f"event {t.rest!r}" if t.channel == "event" else f"channel {t.channel!r}"
        raise ContractError(
            f"device {t.dev!r} ({role}) may not publish {what}", reason=Reason.NOT_ALLOWED
        )


def device_subscriptions(dev: str) -> list[str]:
    """What device ``dev`` subscribes to: the hub's channels in its own tree, the hub state."""
    return [c.filter(dev) for c in CHANNELS if HUB in c.publishers]


def ingest_subscriptions(group: str) -> list[str]:
    """Hub ingest's filters: shared (``$share/{group}/...``) where the load is split,
    plain where the broker keeps a retained copy (not delivered to shared subscriptions)."""
    return [
        f"$share/{group}/{c.filter()}" if c.ingest == "shared" else c.filter()
        for c in CHANNELS
        if c.ingest
    ]


def relay_subscriptions() -> list[tuple[str, int]]:
    """The counter relay's filters: the kiosks' call channels, presence and capture replies."""
    return [(c.filter(last=c.relay_last), c.relay_qos) for c in CHANNELS if c.relay_qos is not None]


def channel_of(topic: str) -> Channel:
    """The row a topic belongs to (the hub's state included); ContractError if none."""
    if topic == HUB_STATE:
        return HUB_STATE_CHANNEL
    return parse_topic(topic).row


def schema_for(t: Topic) -> type[Payload]:
    """The JSON schema of ``t``'s channel (ContractError on a JPEG channel)."""
    schema = t.row.schema
    if schema is None:
        raise ContractError(
            f"channel {t.row.name!r} carries a JPEG; use decode_jpeg()", reason=Reason.SCHEMA
        )
    return schema


def _check_size(topic: str, row: Channel, raw: bytes) -> None:
    if len(raw) > row.limit:
        raise ContractError(
            f"topic {topic!r}: payload of {len(raw)} bytes exceeds {row.limit}",
            reason=Reason.OVERSIZED,
        )


def decode(topic: str, raw: bytes) -> tuple[Topic, Payload]:
    """Parse a topic and validate its payload; ContractError says what was wrong and where."""
    t = parse_topic(topic)
    row = t.row
    if row.schema is None:
        raise ContractError(
            f"topic {topic!r}: a JPEG channel; use decode_jpeg()", reason=Reason.SCHEMA
        )
    _check_size(topic, row, raw)
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ContractError(
            f"topic {topic!r}: payload is not UTF-8 JSON ({e})", reason=Reason.NOT_JSON
        ) from None
    except RecursionError:
        raise ContractError(
            f"topic {topic!r}: payload is not UTF-8 JSON (nested too deeply)",
            reason=Reason.NOT_JSON,
        ) from None
    if not isinstance(obj, dict):
        raise ContractError(
            f"topic {topic!r}: payload must be a JSON object", reason=Reason.NOT_OBJECT
        )
    try:
        payload = row.schema.model_validate(obj)
        if isinstance(payload, EventPayload):
            if payload.kind != t.rest:
                raise ContractError(
                    f"topic {topic!r}: payload kind {payload.kind!r} differs from the topic",
                    reason=Reason.KIND_MISMATCH,
                )
            payload.checked_data()
    except ValidationError as e:
        raise ContractError(
            f"topic {topic!r}: {format_validation(e)}", reason=Reason.SCHEMA
        ) from None
    except ContractError as e:
        text = str(e) if topic in str(e) else f"topic {topic!r}: {e}"
        raise ContractError(text, reason=e.reason) from None
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
    row = t.row
    if row.meta is None:
        raise ContractError(f"topic {topic!r}: not a JPEG channel", reason=Reason.SCHEMA)
    _check_size(topic, row, raw)
    if not raw.startswith(b"\xff\xd8"):
        raise ContractError(
            f"topic {topic!r}: payload is not a JPEG (no FF D8 start)", reason=Reason.SCHEMA
        )
    if not meta:
        raise ContractError(
            f"topic {topic!r}: missing the 'meta' user property", reason=Reason.SCHEMA
        )
    try:
        return t, row.meta.model_validate_json(meta), raw
    except ValidationError as e:
        raise ContractError(
            f"topic {topic!r}: meta: {format_validation(e)}", reason=Reason.SCHEMA
        ) from None
