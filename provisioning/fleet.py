"""A fleet directory: the broker's config, the hub's and every device's credentials.

Layout (the directory is the fleet's secret: keep it on the city-hall admin machine)::

    FLEET/fleet.toml              broker address the devices and hub use
    FLEET/inventory.json          every device ever issued, with role, serial and revocation
    FLEET/ca/                     ca.crt, ca.key (never leaves this directory), crl.pem,
                                  model-signing.key/.pub (Ed25519, signs model updates)
    FLEET/hub-ca/                 the hub CA: signs only the hub's and the administrator's
                                  certificates (the broker's hub listener trusts nothing else)
    FLEET/admin/                  admin.crt/.key: provisioning's identity at the running broker
    FLEET/broker/                 mosquitto.conf, dynamic-security.json, server.crt/.key, data/
    FLEET/hub/                    hub.toml, hub.crt/.key, ca.crt, devices.json (the roster:
                                  each device's role and vehicle, as issued here; the hub
                                  trusts this, never what a device says of itself)
    FLEET/devices/NAME/           device.toml, device.crt/.key, ca.crt, model-signing.pub
"""

from __future__ import annotations

import json
import logging
import shutil
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from mimamori.edge import contract
from mimamori.edge.config import parse_config
from mimamori.edge.errors import ConfigError
from mimamori.hub.roster import ROSTER_FILE
from mimamori.provisioning.broker import (
    ADMIN_USER,
    HUB_USER,
    BrokerControl,
    add_device_commands,
    revoke_device_commands,
    write_broker_files,
)
from mimamori.provisioning.mosquitto import MosquittoProcess
from mimamori.provisioning.pki import Authority, serial_of
from mimamori.provisioning.signing import create_key


class FleetError(ConfigError):
    """The fleet directory is missing, damaged, or the request conflicts with it."""

    def __init__(self, message: str) -> None:
        super().__init__("fleet", [message])


log = logging.getLogger(__name__)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(path)


@dataclass
class Fleet:
    root: Path

    # -- creation ------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        root: Path,
        *,
        broker_host: str = "localhost",
        port: int = 8883,
        hub_port: int | None = None,
        bind: str = "127.0.0.1",
        web_port: int = 8080,
        broker_user: str | None = None,
    ) -> Fleet:
        root = root.resolve()
        if (root / "fleet.toml").exists():
            raise FleetError(f"{root} already holds a fleet (fleet.toml exists)")
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)
        broker: dict[str, Any] = {
            "host": broker_host,
            "port": port,
            "hub_port": hub_port or port + 1,
            "bind": bind,
        }
        if broker_user:
            broker["user"] = broker_user
        settings = {"broker": broker}
        (root / "fleet.toml").write_text(tomli_w.dumps(settings))
        fleet = cls(root)
        (root / "hub").mkdir()
        fleet._save_inventory({})
        ca = Authority.create(root / "ca")
        create_key(root / "ca" / "model-signing.key", root / "ca" / "model-signing.pub")
        ca.issue(
            "broker",
            root / "broker" / "server.key",
            root / "broker" / "server.crt",
            server_names=sorted({broker_host, "localhost", "127.0.0.1"}),
        )
        Authority.create(root / "hub-ca", org="mimamori hub")
        hub_dir = root / "hub"
        fleet._issue_client(HUB_USER, hub_dir, "hub", fleet.hub_ca)
        fleet._issue_client(ADMIN_USER, root / "admin", "admin", fleet.hub_ca)
        hub_toml = {
            "site": {"timezone": "Asia/Tokyo"},
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker["hub_port"],
                "username": HUB_USER,
                "tls": {"ca_file": "ca.crt", "cert_file": "hub.crt", "key_file": "hub.key"},
            },
            "store": {"url": f"sqlite:///{hub_dir / 'hub.db'}"},
            "web": {"bind": "127.0.0.1", "port": web_port},
        }
        (hub_dir / "hub.toml").write_text(tomli_w.dumps(hub_toml))
        fleet.write_broker()
        return fleet

    @classmethod
    def open(cls, root: Path) -> Fleet:
        root = root.resolve()
        if not (root / "fleet.toml").is_file():
            raise FleetError(f"{root}: not a fleet directory (run `mimamori provision init`)")
        return cls(root)

    # -- accessors -----------------------------------------------------------------------

    @property
    def settings(self) -> dict[str, Any]:
        return tomllib.loads((self.root / "fleet.toml").read_text())

    @property
    def broker_conf(self) -> Path:
        return self.root / "broker" / "mosquitto.conf"

    @property
    def hub_config(self) -> Path:
        return self.root / "hub" / "hub.toml"

    def broker_process(self, log_file: Path | None = None) -> MosquittoProcess:
        """This fleet's broker (not started): both listeners, the devices' and the hub's."""
        broker = self.settings["broker"]
        return MosquittoProcess(
            self.broker_conf,
            broker["port"],
            log_file=log_file,
            more_ports=(broker.get("hub_port", broker["port"] + 1),),
        )

    @property
    def ca(self) -> Authority:
        return Authority(self.root / "ca")

    @property
    def signing_key(self) -> Path:
        """The Ed25519 key that signs model updates (never leaves the fleet directory)."""
        return self.root / "ca" / "model-signing.key"

    @property
    def hub_ca(self) -> Authority:
        return Authority(self.root / "hub-ca", org="mimamori hub")

    def _issue_client(
        self, cn: str, folder: Path, stem: str, authority: Authority | None = None
    ) -> int:
        folder.mkdir(parents=True, exist_ok=True)
        (authority or self.ca).issue(cn, folder / f"{stem}.key", folder / f"{stem}.crt")
        shutil.copyfile(self.ca.cert_file, folder / "ca.crt")
        return serial_of(folder / f"{stem}.crt")

    def device_config(self, name: str) -> Path:
        return self.root / "devices" / name / "device.toml"

    def inventory(self) -> dict[str, dict[str, Any]]:
        data: dict[str, dict[str, Any]] = json.loads((self.root / "inventory.json").read_text())[
            "devices"
        ]
        return data

    def _save_inventory(self, devices: dict[str, dict[str, Any]]) -> None:
        _write_json(self.root / "inventory.json", {"devices": devices})
        roster = {
            name: {
                "role": info["role"],
                "vehicle": info.get("vehicle"),
                "revoked": info.get("revoked"),
                # where a camera stands, for the hub's map (never taken from the device)
                "lat": info.get("lat"),
                "lon": info.get("lon"),
            }
            for name, info in devices.items()
        }
        _write_json(self.root / "hub" / ROSTER_FILE, {"devices": roster})

    # -- devices -------------------------------------------------------------------------

    def add_device(
        self,
        name: str,
        role: str,
        *,
        location: str = "",
        lat: float | None = None,
        lon: float | None = None,
        data_dir: Path | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """Issue credentials for ``name``, write its device.toml, record it (with where it
        stands, ``lat``/``lon`` in WGS 84 degrees, if given); return the file."""
        try:
            contract.check_device_id(name)
        except contract.ContractError as e:
            raise FleetError(str(e)) from None
        position = _position(lat, lon)
        devices = self.inventory()
        if name in devices:
            raise FleetError(f"device {name!r} already exists in the inventory")
        dev_dir = self.root / "devices" / name
        serial = self._issue_client(name, dev_dir, "device")
        shutil.copyfile(self.signing_key.with_suffix(".pub"), dev_dir / "model-signing.pub")
        broker = self.settings["broker"]
        cfg: dict[str, Any] = {
            "device": {
                "id": name,
                "role": role,
                "location": location,
                "data_dir": str(data_dir or dev_dir / "data"),
            },
            "mqtt": {
                "host": broker["host"],
                "port": broker["port"],
                "tls": {"ca_file": "ca.crt", "cert_file": "device.crt", "key_file": "device.key"},
            },
            "updates": {"public_key_file": "model-signing.pub"},
            **(extra or {}),
        }
        parse_config(cfg, f"device {name}")  # refuse to write a config the device would reject
        self.device_config(name).write_text(tomli_w.dumps(cfg))
        devices[name] = {
            "role": role,
            "vehicle": (cfg.get("ridership") or {}).get("vehicle") or None,
            "location": location,
            **position,
            "issued": datetime.now(UTC).isoformat(timespec="seconds"),
            "serial": str(serial),
            "revoked": None,
        }
        self._save_inventory(devices)
        self.write_broker()
        self._tell_broker(add_device_commands(name, role))
        return self.device_config(name)

    def place(self, name: str, lat: float, lon: float) -> None:
        """Record where ``name`` stands (WGS 84 degrees): the hub's alert map shows it there."""
        devices = self.inventory()
        if name not in devices:
            raise FleetError(f"device {name!r} is not in the inventory")
        devices[name].update(_position(lat, lon))
        self._save_inventory(devices)

    def revoke(self, name: str) -> bool:
        """Revoke ``name``; True if a running broker dropped its session now."""
        devices = self.inventory()
        if name not in devices:
            raise FleetError(f"device {name!r} is not in the inventory")
        devices[name]["revoked"] = datetime.now(UTC).isoformat(timespec="seconds")
        self._save_inventory(devices)
        self.ca.write_crl([int(d["serial"]) for d in devices.values() if d.get("revoked")])
        self.write_broker()
        return self._tell_broker(revoke_device_commands(name))

    def _tell_broker(self, commands: list[dict[str, Any]]) -> bool:
        """Apply a change at the running broker; False if none is running (it reads the
        written state when it starts)."""
        broker = self.settings["broker"]
        admin = self.root / "admin"
        control = BrokerControl(
            "127.0.0.1",  # the hub listener is on loopback (broker.render_conf)
            broker["hub_port"],
            admin / "ca.crt",
            admin / "admin.crt",
            admin / "admin.key",
        )
        try:
            control.run(commands)
        except OSError:
            log.info(
                "no broker answering on 127.0.0.1:%s: it applies the change when it starts",
                broker["hub_port"],
            )
            return False
        return True

    def write_broker(self) -> Path:
        broker = self.settings["broker"]
        return write_broker_files(
            self.root / "broker",
            self.root / "ca",
            self.root / "hub-ca",
            port=broker["port"],
            hub_port=broker.get("hub_port", broker["port"] + 1),
            bind=broker["bind"],
            devices=self.inventory(),
            user=broker.get("user"),
        )


def _position(lat: float | None, lon: float | None) -> dict[str, float]:
    """``{"lat", "lon"}`` checked, or nothing when neither is given."""
    if lat is None and lon is None:
        return {}
    if lat is None or lon is None:
        raise FleetError("position: give both --lat and --lon (degrees, e.g. 36.2 and 137.25)")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise FleetError(f"position: latitude -90..90, longitude -180..180 (got {lat}, {lon})")
    return {"lat": lat, "lon": lon}
