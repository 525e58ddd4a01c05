"""The wheels a Raspberry Pi needs, fetched on the admin machine and pinned by sha256.

A Pi in a field has no business resolving names on a package index: the image seed carries
every wheel of the project's runtime dependencies for Raspberry Pi OS 64-bit (CPython 3.11,
aarch64) and a ``requirements.txt`` with one ``name==version --hash=sha256:...`` line per
wheel; first boot installs them with ``pip install --require-hashes --no-index
--find-links``.

The wheels come from ``pip download`` for the Pi's platform with ``--only-binary=:all:``,
so a dependency without an aarch64 wheel fails here, on the admin machine, naming the
package, not on a pole. The only exceptions are the pure-Python projects of
``BUILT_HERE`` that publish no wheel at all: they are built here with ``pip wheel``, and the
result must be a ``py3-none-any`` wheel (one that runs on every platform) or it is refused.
pip's cache keeps repeated builds off the network.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from mimamori.provisioning.fleet import FleetError

CHECKOUT = Path(__file__).resolve().parent.parent
#: Raspberry Pi OS 64-bit (bookworm): CPython 3.11 on aarch64, glibc 2.36
PI_TARGET = [
    "--platform",
    "manylinux2014_aarch64",
    "--platform",
    "manylinux_2_17_aarch64",
    "--platform",
    "manylinux_2_28_aarch64",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--only-binary=:all:",
]
#: pure-Python dependencies published as an sdist only: built here into a py3-none-any wheel
BUILT_HERE = frozenset({"sdnotify"})
REQUIREMENTS = "requirements.txt"
_NOT_FOUND = re.compile(r"No matching distribution found for (\S+)")


class WheelhouseError(FleetError):
    """A dependency has no wheel for the Pi, or a wheelhouse does not match its hashes."""


def runtime_dependencies(pyproject: Path = CHECKOUT / "pyproject.toml") -> list[str]:
    """``[project] dependencies`` of ``pyproject`` (no extras: tests and postgres stay home)."""
    deps: list[str] = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return deps


def dist_name(requirement: str) -> str:
    """The normalized project name of a requirement (``paho-mqtt>=2.1`` -> ``paho-mqtt``)."""
    return str(canonicalize_name(Requirement(requirement).name))


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, check=False
    )


def download(requirements: list[str], dest: Path) -> list[Path]:
    """Every wheel ``requirements`` need on the Pi, into ``dest``; WheelhouseError names the
    first requirement that has none."""
    dest.mkdir(parents=True, exist_ok=True)
    for req in requirements:
        if dist_name(req) not in BUILT_HERE:
            continue
        res = _pip("wheel", "--no-deps", "--no-binary", ":all:", "-w", str(dest), req)
        built = [p for p in dest.glob("*.whl") if _dist(p) == dist_name(req)]
        if res.returncode != 0 or not built:
            raise WheelhouseError(f"{req}: building its wheel failed:\n{res.stderr.strip()}")
        for whl in built:
            if not whl.name.endswith("-py3-none-any.whl"):
                raise WheelhouseError(f"{req}: built {whl.name}, not a pure-Python wheel")
    res = _pip(
        "download", *PI_TARGET, "--find-links", str(dest), "--dest", str(dest), *requirements
    )
    if res.returncode != 0:
        missing = _NOT_FOUND.search(res.stderr)
        what = missing[1] if missing else "a dependency"
        raise WheelhouseError(
            f"{what}: no wheel for Raspberry Pi OS 64-bit (CPython 3.11, aarch64)\n"
            + "\n".join(res.stderr.strip().splitlines()[-5:])
        )
    return sorted(dest.glob("*.whl"))


def _dist(wheel: Path) -> str:
    return str(parse_wheel_filename(wheel.name)[0])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def requirements_text(wheels: list[Path]) -> str:
    """One pinned, hashed line per wheel, for ``pip install --require-hashes``."""
    lines = []
    for whl in sorted(wheels, key=lambda p: p.name):
        name, version, _, _ = parse_wheel_filename(whl.name)
        lines.append(f"{name}=={version} --hash=sha256:{sha256(whl)}")
    return "\n".join(lines) + "\n"


def build(dest: Path, project_wheel: Path, requirements: list[str]) -> Path:
    """A wheelhouse in ``dest``: the project's wheel, the Pi's wheels of ``requirements``
    and ``requirements.txt`` over all of them; returns ``dest``."""
    download(requirements, dest)
    own = dest / project_wheel.name
    if own.resolve() != project_wheel.resolve():
        own.write_bytes(project_wheel.read_bytes())
    (dest / REQUIREMENTS).write_text(requirements_text(sorted(dest.glob("*.whl"))))
    return dest


def load(folder: Path) -> tuple[str, list[Path]]:
    """A wheelhouse's requirements and the wheels it names, every hash checked."""
    req_file = folder / REQUIREMENTS
    if not req_file.is_file():
        raise WheelhouseError(
            f"{folder}: no {REQUIREMENTS} (build it with `mimamori provision wheelhouse`)"
        )
    text = req_file.read_text()
    by_pin: dict[str, Path] = {}
    for path in folder.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(path.name)
        by_pin[f"{name}=={version}"] = path
    wheels = []
    for line in text.splitlines():
        pin, _, digest = line.partition(" --hash=sha256:")
        whl = by_pin.get(pin)
        if whl is None or sha256(whl) != digest:
            raise WheelhouseError(f"{folder}: {pin} is missing or does not match its sha256")
        wheels.append(whl)
    return text, wheels
