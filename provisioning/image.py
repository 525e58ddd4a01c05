"""Write a device's cloud-init seed into a Raspberry Pi OS image, without root or loop mounts.

The image's MBR partition table gives the FAT boot partition's offset; ``mtools`` writes the
files straight into that partition inside the image file (``mcopy -i IMAGE@@OFFSET``).
Nothing else in the image is touched.

The software: the seed carries a wheelhouse (``provisioning.wheelhouse``) in
``mimamori-wheels/`` on the boot partition: this project's own wheel, built from the checkout
at seed time (``pip wheel --no-deps``) or given as a file, and every wheel of its runtime
dependencies for Raspberry Pi OS 64-bit (CPython 3.11, aarch64), downloaded on the admin
machine. ``user-data`` writes the wheelhouse's ``requirements.txt`` (one ``name==version
--hash=sha256:...`` line per wheel) to ``/opt/mimamori``; first boot installs with ``pip
install --require-hashes --no-index --find-links``, so nothing is looked up on a package index
(the public index has an unrelated project called ``mimamori``) and a wheel that does not
match its hash is refused. The wheelhouse leaves the boot partition once installed.

Secrets: the device's private key travels inside ``user-data`` (cloud-init writes it to
``/etc/mimamori`` readable only by the service user) and the Wi-Fi passphrase inside
``network-config``. The seed also carries ``user-data.redacted`` and
``network-config.redacted``, the same documents without any secret. Right after the wheel is
installed, first boot runs ``/opt/mimamori/wipe-seed`` (``provisioning/wipe_seed.py``): it
deletes cloud-init's copies of the raw user-data under ``/var/lib/cloud/instances/*/``
(``user-data.txt``, ``user-data.txt.i``, ``cloud-config.txt``, ``obj.pkl``), redacts any other
trace of the key or passphrase in cloud-init's state and logs and finally
replaces ``user-data`` and ``network-config`` with the redacted copies. The key then lives only
in ``/etc/mimamori/device.key`` and the passphrase only in the network manager's configuration.
``updates.network.when: [boot-new-instance]`` keeps cloud-init from ever re-applying the
redacted ``network-config``.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import yaml

from mimamori.provisioning.fleet import Fleet, FleetError
from mimamori.provisioning.wheelhouse import load as load_wheelhouse

SECTOR = 512
FAT_TYPES = {0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E}
INSTALL_DIR = "/opt/mimamori"
CONFIG_DIR = "/etc/mimamori"
BOOT_DIR = "/boot/firmware"
PROJECT = "mimamori"
CHECKOUT = Path(__file__).resolve().parent.parent
UNITS_DIR = CHECKOUT / "systemd"
WIPE_SCRIPT = Path(__file__).resolve().with_name("wipe_seed.py")
WIPE_PATH = f"{INSTALL_DIR}/wipe-seed"


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
    """Copy ``files`` (name -> bytes; a name may hold one folder, ``DIR/NAME``) into the root
    of the image's boot partition."""
    part = boot_partition(image)
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            src = Path(tmp) / name
            src.parent.mkdir(parents=True, exist_ok=True)
            src.write_bytes(data)
        for top in sorted(Path(tmp).iterdir()):
            recurse = ["-s"] if top.is_dir() else []
            _mtools("mcopy", *recurse, "-o", "-i", _target(image, part), str(top), "::/")
    return part


# -- the project's own wheel -------------------------------------------------------------

_WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_wheel(path: Path) -> Path:
    """``path`` if it is a wheel of this project (by file name and by its own metadata)."""
    m = _WHEEL_NAME.match(path.name)
    if not path.is_file() or m is None or _normalize(m["name"]) != PROJECT:
        raise ImageError(f"{path}: not a {PROJECT} wheel file ({PROJECT}-VERSION-...whl)")
    try:
        with zipfile.ZipFile(path) as whl:
            meta = [n for n in whl.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
            headers = BytesHeaderParser().parsebytes(whl.read(meta[0])) if meta else None
    except (zipfile.BadZipFile, OSError) as e:
        raise ImageError(f"{path}: not a readable wheel: {e}") from e
    if headers is None or _normalize(headers.get("Name", "")) != PROJECT:
        raise ImageError(f"{path}: its metadata does not name the {PROJECT} project")
    return path


def requirements(wheel: Path) -> list[str]:
    """The wheel's own dependencies (Requires-Dist without the optional extras)."""
    with zipfile.ZipFile(wheel) as whl:
        meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        headers = BytesHeaderParser().parsebytes(whl.read(meta))
    return [r for r in headers.get_all("Requires-Dist") or [] if "extra" not in r.partition(";")[2]]


def build_wheel(out_dir: Path, checkout: Path = CHECKOUT) -> Path:
    """Build this project's wheel from ``checkout`` into ``out_dir`` (``pip wheel --no-deps``).

    The sources are copied to a scratch directory first, so the build neither writes into the
    checkout nor picks up a stale ``build/`` tree from it.
    """
    pyproject = checkout / "pyproject.toml"
    if not pyproject.is_file():
        raise ImageError(
            f"{checkout}: no pyproject.toml to build the {PROJECT} wheel from "
            "(run from a mimamori checkout, or pass --package PATH.whl)"
        )
    find = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["packages"]["find"]
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for item in checkout.iterdir():
            if item.is_file():
                shutil.copy2(item, src / item.name)
            elif item.is_dir() and any(item.match(pat) for pat in find["include"]):
                shutil.copytree(item, src / item.name, ignore=shutil.ignore_patterns("__pycache__"))
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--quiet",
                "-w",
                str(out_dir),
                str(src),
            ],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise ImageError(
                f"building the {PROJECT} wheel failed:\n{(res.stdout + res.stderr).strip()}"
            )
    wheels = sorted(out_dir.glob(f"{PROJECT}-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise ImageError(f"pip wheel left no {PROJECT} wheel in {out_dir}")
    return check_wheel(wheels[-1])


def seed_wheel(package: str | None, out_dir: Path) -> Path:
    """The wheel to ship: ``package`` (a path to a prebuilt wheel) or one built from the checkout.

    A requirement or bare name is refused: first boot would resolve it on a package index, and
    the public index has an unrelated project called ``mimamori``.
    """
    if package is None:
        return build_wheel(out_dir)
    path = Path(package)
    if not path.exists() and not package.endswith(".whl"):
        raise ImageError(
            f"--package {package!r} is not a wheel file: the seed never installs {PROJECT} by "
            "name, because a package index would resolve it (the public index has an unrelated "
            f"project called {PROJECT}). Give the path to a {PROJECT} .whl, or leave --package "
            "out to build the wheel from this checkout"
        )
    return check_wheel(path)


WHEELS_DIR = "mimamori-wheels"
REQUIREMENTS_PATH = f"{INSTALL_DIR}/requirements.txt"


def _install_steps() -> list[list[str]]:
    """First-boot commands: every wheel from the seed, each checked against its sha256."""
    return [
        ["python3", "-m", "venv", f"{INSTALL_DIR}/.venv"],
        [
            f"{INSTALL_DIR}/.venv/bin/pip",
            "install",
            "--require-hashes",
            "--no-index",
            "--find-links",
            f"{BOOT_DIR}/{WHEELS_DIR}",
            "-r",
            REQUIREMENTS_PATH,
        ],
    ]


def seed_wheelhouse(wheelhouse: Path, wheel: Path) -> tuple[str, dict[str, bytes]]:
    """The wheelhouse's requirements and its files for the seed; it must hold ``wheel``."""
    text, wheels = load_wheelhouse(wheelhouse)
    if not any(w.read_bytes() == wheel.read_bytes() for w in wheels):
        raise ImageError(f"{wheelhouse}: does not hold {wheel.name} (build it with that wheel)")
    return text, {f"{WHEELS_DIR}/{w.name}": w.read_bytes() for w in wheels}


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
#: Debian packages a role needs beyond Python: the kiosk's screen is mostly Japanese
PACKAGES_BY_ROLE = {"kiosk": ["fonts-noto-cjk"]}


def build_seed(
    fleet: Fleet, name: str, network: Network, *, wheel: Path, wheelhouse: Path
) -> dict[str, bytes]:
    """The cloud-init NoCloud files for device ``name``: ``wheel`` and the rest of
    ``wheelhouse`` (``provisioning.wheelhouse``) to install on first boot."""
    info = fleet.inventory().get(name)
    if info is None:
        raise FleetError(f"device {name!r} is not in the inventory")
    if info.get("revoked"):
        raise FleetError(f"device {name!r} is revoked")
    requirements, wheel_files = seed_wheelhouse(wheelhouse, check_wheel(wheel))
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
        {"path": WIPE_PATH, "content": WIPE_SCRIPT.read_text(), "permissions": "0700"},
        {"path": REQUIREMENTS_PATH, "content": requirements, "permissions": "0644"},
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
        # cloud-init applies network-config once; later boots must not apply the redacted copy
        "updates": {"network": {"when": ["boot-new-instance"]}},
        "package_update": True,
        "packages": ["python3-venv", *PACKAGES_BY_ROLE.get(info["role"], [])],
        "write_files": public_files + secret_files,
        "runcmd": [
            *_install_steps(),
            # the key and the passphrase leave the boot partition and cloud-init's state as
            # soon as the wheels are in: deferred write_files ran before runcmd
            ["python3", WIPE_PATH, "--root", "/"],
            ["rm", "-rf", f"{BOOT_DIR}/{WHEELS_DIR}"],
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", unit],
            ["sync"],
        ],
    }
    redacted = {**user_data, "write_files": public_files}
    return {
        "user-data": _cloud_config(user_data),
        "user-data.redacted": _cloud_config(redacted),
        "network-config": _yaml(_network_config(network)),
        "network-config.redacted": _yaml(_network_config(network, redact=True)),
        "meta-data": _yaml(
            {"instance-id": f"mimamori-{name}-{info['serial'][-8:]}", "local-hostname": name}
        ),
        **wheel_files,
    }


def _installed_config(text: str) -> str:
    """The device.toml as installed: data in /var/lib/mimamori, credentials in /etc/mimamori."""
    import tomli_w

    cfg = tomllib.loads(text)
    cfg["device"]["data_dir"] = "/var/lib/mimamori"
    return tomli_w.dumps(cfg)


def _cloud_config(doc: dict[str, Any]) -> bytes:
    return b"#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False, width=1000).encode()


def _yaml(doc: dict[str, Any]) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False).encode()


def _network_config(net: Network, *, redact: bool = False) -> dict[str, Any]:
    if net.ssid:
        access_point = {"password": net.password} if net.password and not redact else {}
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
