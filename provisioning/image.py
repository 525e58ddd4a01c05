"""Write a device's cloud-init seed into a Raspberry Pi OS image, without root or loop mounts.

The image's MBR partition table gives the FAT boot partition's offset; ``mtools`` writes the
files straight into that partition inside the image file (``mcopy -i IMAGE@@OFFSET``).
Nothing else in the image is touched.

Secrets: the device's private key travels inside ``user-data`` (cloud-init writes it to
``/etc/mimamori`` readable only by the service user). The seed also carries
``user-data.redacted``, the same document without any secret; the last first-boot command
replaces ``user-data`` with it, so the key stays on the FAT partition only until the first boot
completes and the SD card never carries it afterwards.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from provisioning.fleet import Fleet, FleetError

SECTOR = 512
FAT_TYPES = {0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E}
INSTALL_DIR = "/opt/mimamori"
CONFIG_DIR = "/etc/mimamori"
BOOT_DIR = "/boot/firmware"
SEED_FILES = ("user-data", "user-data.redacted", "network-config", "meta-data")
UNITS_DIR = Path(__file__).resolve().parent.parent / "systemd"


@dataclass(frozen=True)
class Partition:
    index: int
    type: int
    start: int  # bytes
    size: int  # bytes


class ImageError(FleetError):
    """The image file is not what a Raspberry Pi OS image should be, or mtools failed."""


def partitions(image: Path) -> list[Partition]:
    """Read the four primary entries of the image's MBR partition table."""
    with image.open("rb") as f:
        mbr = f.read(SECTOR)
    if len(mbr) < SECTOR or mbr[510:512] != b"\x55\xaa":
        raise ImageError(f"{image}: no MBR partition table (expected a Raspberry Pi OS .img)")
    parts = []
    for i in range(4):
        entry = mbr[446 + 16 * i : 446 + 16 * (i + 1)]
        ptype = entry[4]
        lba, sectors = struct.unpack("<II", entry[8:16])
        if ptype and sectors:
            parts.append(Partition(i + 1, ptype, lba * SECTOR, sectors * SECTOR))
    return parts


def boot_partition(image: Path) -> Partition:
    for part in partitions(image):
        if part.type in FAT_TYPES:
            return part
    raise ImageError(f"{image}: no FAT partition in the partition table (the boot partition)")


def _mtools(*args: str) -> subprocess.CompletedProcess[bytes]:
    exe = shutil.which(args[0])
    if exe is None:
        raise ImageError(f"{args[0]} not found: install mtools (apt-get install mtools)")
    res = subprocess.run([exe, *args[1:]], capture_output=True, env={"MTOOLS_SKIP_CHECK": "1"})
    if res.returncode != 0:
        raise ImageError(f"{' '.join(args[:2])}: {res.stderr.decode(errors='replace').strip()}")
    return res


def _target(image: Path, part: Partition) -> str:
    return f"{image}@@{part.start}"


def write_files(image: Path, files: dict[str, bytes]) -> Partition:
    """Copy ``files`` (name -> bytes) into the root of the image's boot partition."""
    part = boot_partition(image)
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            src = Path(tmp) / name
            src.write_bytes(data)
            _mtools("mcopy", "-o", "-i", _target(image, part), str(src), f"::/{name}")
    return part


# -- the seed ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Network:
    """Wi-Fi (ssid + password) or, when ssid is None, wired DHCP."""

    ssid: str | None = None
    password: str | None = None
    country: str = "JP"


UNIT_BY_ROLE = {
    "wildlife": "mimamori-wildlife.service",
    "ridership": "mimamori-ridership.service",
    "kiosk": "mimamori-kiosk.service",
}


def build_seed(fleet: Fleet, name: str, network: Network, *, package: str) -> dict[str, bytes]:
    """The cloud-init NoCloud files for device ``name``."""
    info = fleet.inventory().get(name)
    if info is None:
        raise FleetError(f"device {name!r} is not in the inventory")
    if info.get("revoked"):
        raise FleetError(f"device {name!r} is revoked")
    dev_dir = fleet.root / "devices" / name
    config = fleet.device_config(name).read_text()
    config = _installed_config(config)
    secret_files = [
        {
            "path": f"{CONFIG_DIR}/device.key",
            "content": (dev_dir / "device.key").read_text(),
            "owner": "mimamori:mimamori",
            "permissions": "0600",
            "defer": True,
        },
    ]
    public_files = [
        {
            "path": f"{CONFIG_DIR}/device.toml",
            "content": config,
            "owner": "root:mimamori",
            "permissions": "0640",
            "defer": True,
        },
        {
            "path": f"{CONFIG_DIR}/device.crt",
            "content": (dev_dir / "device.crt").read_text(),
            "permissions": "0644",
        },
        {
            "path": f"{CONFIG_DIR}/ca.crt",
            "content": (dev_dir / "ca.crt").read_text(),
            "permissions": "0644",
        },
    ]
    unit = UNIT_BY_ROLE[info["role"]]
    unit_file = UNITS_DIR / unit
    if not unit_file.is_file():
        raise ImageError(f"{unit_file}: unit file missing (run from a mimamori checkout)")
    public_files.append(
        {
            "path": f"/etc/systemd/system/{unit}",
            "content": unit_file.read_text(),
            "permissions": "0644",
        }
    )
    user_data: dict[str, Any] = {
        "hostname": name,
        "manage_etc_hosts": True,
        "timezone": "Asia/Tokyo",
        "users": [
            {
                "name": "mimamori",
                "system": True,
                "shell": "/usr/sbin/nologin",
                "groups": ["video", "gpio", "dialout", "audio"],
            },
        ],
        "package_update": True,
        "packages": ["python3-venv", "python3-pip"],
        "write_files": public_files + secret_files,
        "runcmd": [
            ["python3", "-m", "venv", f"{INSTALL_DIR}/.venv"],
            [f"{INSTALL_DIR}/.venv/bin/pip", "install", package],
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", unit],
            # the private key leaves the FAT partition once it is on the root filesystem
            ["mv", f"{BOOT_DIR}/user-data.redacted", f"{BOOT_DIR}/user-data"],
            ["sync"],
        ],
    }
    redacted = {**user_data, "write_files": public_files}
    return {
        "user-data": _cloud_config(user_data),
        "user-data.redacted": _cloud_config(redacted),
        "network-config": yaml.safe_dump(_network_config(network), sort_keys=False).encode(),
        "meta-data": yaml.safe_dump(
            {"instance-id": f"mimamori-{name}-{info['serial'][-8:]}", "local-hostname": name}
        ).encode(),
    }


def _installed_config(text: str) -> str:
    """The device.toml as installed: data in /var/lib/mimamori, credentials in /etc/mimamori."""
    import tomllib

    import tomli_w

    cfg = tomllib.loads(text)
    cfg["device"]["data_dir"] = "/var/lib/mimamori"
    return tomli_w.dumps(cfg)


def _cloud_config(doc: dict[str, Any]) -> bytes:
    return b"#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False, width=1000).encode()


def _network_config(net: Network) -> dict[str, Any]:
    if net.ssid:
        access_point = {"password": net.password} if net.password else {}
        return {
            "version": 2,
            "wifis": {
                "wlan0": {
                    "dhcp4": True,
                    "optional": True,
                    "regulatory-domain": net.country,
                    "access-points": {net.ssid: access_point},
                }
            },
        }
    return {"version": 2, "ethernets": {"eth0": {"dhcp4": True, "optional": True}}}
