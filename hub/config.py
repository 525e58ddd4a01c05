"""Hub configuration (``hub.toml``), validated at start-up like the device config."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mimamori.edge import ice
from mimamori.edge.tomlfile import load_toml
from mimamori.edge.transport import Endpoint
from mimamori.hub.errors import HubConfigError

#: exit status of the hub started with a bad config (as for devices: sysexits EX_CONFIG)
EXIT_BAD_CONFIG = 78


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TlsSection(Section):
    ca_file: Path = Field(description="the fleet CA certificate")
    cert_file: Path = Field(description="the hub's client certificate (CN = hub)")
    key_file: Path = Field(description="the hub's private key")


class MqttSection(Section):
    """How the hub reaches the broker; ``client()`` makes a paho client with this identity."""

    host: str = Field("localhost", description="broker host")
    port: int = Field(8883, ge=1, le=65535, description="broker port")
    username: str = Field("hub", description="MQTT user (the certificate CN with TLS)")
    client_id: str = Field("hub-ingest", description="stable id: the broker queues for it")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive")
    tls: TlsSection | None = Field(None, description="TLS identity; omit only on loopback")

    def endpoint(self, client_id: str, **session: Any) -> Endpoint:
        """The broker and the hub's identity, for ``edge.transport`` (``session``: more
        ``Endpoint`` fields, e.g. a persistent session)."""
        tls = self.tls
        return Endpoint(
            host=self.host,
            port=self.port,
            client_id=client_id,
            username=self.username,
            ca_file=tls.ca_file if tls else None,
            cert_file=tls.cert_file if tls else None,
            key_file=tls.key_file if tls else None,
            keepalive_s=self.keepalive_s,
            **session,
        )


class StoreSection(Section):
    url: str = Field(
        "sqlite:///hub.db",
        description="SQLAlchemy URL: sqlite:///PATH or postgresql+psycopg://user@host/db",
    )


class WebSection(Section):
    bind: str = Field("127.0.0.1", description="address the staff pages listen on")
    port: int = Field(8080, ge=1, le=65535, description="port of the staff pages")
    public_url: str | None = Field(
        None,
        description="how subscribers' phones reach these pages, for alert links "
        "(default: http://BIND:PORT)",
    )
    secure_cookies: bool = Field(
        True,
        description="mark the session cookie Secure (browsers accept it on localhost; "
        "elsewhere serve the hub behind HTTPS)",
    )
    secret_file: Path = Field(
        Path("web-secret"),
        description="session-signing key, created on first start (mode 0600); must be "
        "writable, e.g. /var/lib/mimamori/web-secret under systemd",
    )


class ModelsSection(Section):
    """The model server: signed model files for update jobs, over HTTPS, each only to the
    device its job names (client certificate required)."""

    bind: str = Field("0.0.0.0", description="address the model server listens on")
    port: int = Field(8443, ge=1, le=65535, description="port devices fetch models from")
    public_url: str = Field(
        description="how devices reach the model server, e.g. https://hub.town.lan:8443 "
        "(the name must be in its certificate)",
        pattern=r"^https://",
    )
    dir: Path = Field(Path("models"), description="where pushed model files are kept")
    cert_file: Path = Field(
        Path("models-server.crt"), description="the server certificate, from the fleet CA"
    )
    key_file: Path = Field(Path("models-server.key"), description="its private key")
    ca_file: Path = Field(
        Path("ca.crt"), description="the fleet CA: a device's certificate must chain to it"
    )


class IngestSection(Section):
    batch_max: int = Field(500, ge=1, le=10_000, description="messages per database commit")
    batch_wait_ms: int = Field(20, ge=0, le=5000, description="wait to fill a batch")
    workers: int = Field(
        0,
        ge=0,
        le=64,
        description="separate ingest worker processes (`mimamori hub ingest --worker K`, K = "
        "1..workers) that split the events, telemetry and command replies; the hub process "
        "then keeps only device state, births, twins and job states. 0: the hub process "
        "ingests everything. For PostgreSQL: SQLite takes one writer at a time",
    )


class FleetSection(Section):
    roster_file: Path = Field(
        Path("devices.json"),
        description="the device roster written by `mimamori provision` (role and vehicle of "
        "every device); the hub refuses messages from devices missing from it",
    )


class AlertsSection(Section):
    areas: list[list[str]] = Field(
        default_factory=list,
        description="groups of wildlife cameras that watch one stretch of fields, e.g. "
        '[["field-01", "field-02"], ["field-07"]]: one troop can move between cameras of a '
        "group, so their sightings merge into one alert; empty: all cameras are one group",
    )


class RidershipSection(Section):
    gtfs: Path | None = Field(
        None,
        description="the GTFS feed the buses run (a folder or .zip, relative to this file): "
        "the Ridership page names routes and directions from it; unset: it shows their codes",
    )


class CounterSection(Section):
    ice_servers: list[ice.IceServer] = Field(
        default_factory=list,
        description="the town's own TURN/STUN servers for the staff console's voice, as "
        "city hall reaches them (URL strings, or tables with urls, username, credential); "
        "empty: direct only",
    )


class SiteSection(Section):
    timezone: str = Field(
        "Asia/Tokyo",
        description="the town's time zone (IANA name): staff pages show local time in it, and "
        "quiet hours, service days and time bands follow it; exports keep ISO 8601 with offset",
    )

    @field_validator("timezone")
    @classmethod
    def _known(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {name!r}; expected an IANA name such as Asia/Tokyo"
            ) from None
        return name


class HubConfig(Section):
    site: SiteSection = Field(default_factory=SiteSection)
    mqtt: MqttSection = Field(default_factory=MqttSection)
    fleet: FleetSection = Field(default_factory=FleetSection)
    store: StoreSection = Field(default_factory=StoreSection)
    web: WebSection = Field(default_factory=WebSection)
    ingest: IngestSection = Field(default_factory=IngestSection)
    alerts: AlertsSection = Field(default_factory=AlertsSection)
    ridership: RidershipSection = Field(default_factory=RidershipSection)
    models: ModelsSection | None = Field(
        None, description="the model server; without it models travel inline (small ones)"
    )
    counter: CounterSection = Field(default_factory=CounterSection)


def load_hub_config(path: Path | str) -> HubConfig:
    path = Path(path)
    cfg = load_toml(path, HubConfig, HubConfigError)
    base = path.parent
    if cfg.mqtt.tls:
        t = cfg.mqtt.tls
        t.ca_file, t.cert_file, t.key_file = (
            p if p.is_absolute() else base / p for p in (t.ca_file, t.cert_file, t.key_file)
        )
    if not cfg.fleet.roster_file.is_absolute():
        cfg.fleet.roster_file = base / cfg.fleet.roster_file
    if cfg.ridership.gtfs and not cfg.ridership.gtfs.is_absolute():
        cfg.ridership.gtfs = base / cfg.ridership.gtfs
    if cfg.models:
        m = cfg.models
        m.dir, m.cert_file, m.key_file, m.ca_file = (
            p if p.is_absolute() else base / p for p in (m.dir, m.cert_file, m.key_file, m.ca_file)
        )
    if not cfg.web.secret_file.is_absolute():
        cfg.web.secret_file = base / cfg.web.secret_file
    if cfg.ingest.workers and not cfg.store.url.startswith("postgresql"):
        raise HubConfigError(
            str(path),
            [
                f"ingest.workers: {cfg.ingest.workers} needs a PostgreSQL store ([store] url); "
                "SQLite takes one writer at a time"
            ],
        )
    if cfg.store.url.startswith("sqlite:///") and not cfg.store.url.startswith("sqlite:////"):
        rel = cfg.store.url.removeprefix("sqlite:///")
        cfg.store.url = f"sqlite:///{(base / rel).resolve()}"
    problem = ice.resolve(cfg.counter.ice_servers, base)
    if problem:
        raise HubConfigError(str(path), [f"counter.{problem}"])
    return cfg
