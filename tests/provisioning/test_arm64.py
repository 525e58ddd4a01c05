"""The project on a Raspberry Pi (Raspberry Pi OS 64-bit: CPython 3.11, aarch64)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename

from mimamori.provisioning import arm64_check, wheelhouse


def _wheel(folder: Path, name: str) -> Path:
    path = folder / name
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.py", name)
    return path


def test_wheelhouse_pins_every_wheel_and_refuses_a_changed_one(tmp_path: Path) -> None:
    a = _wheel(tmp_path, "paho_mqtt-2.2.0-py3-none-any.whl")
    b = _wheel(tmp_path, "numpy-2.4.6-cp311-cp311-manylinux_2_27_aarch64.whl")
    text = wheelhouse.requirements_text([a, b])
    assert text.splitlines() == [
        f"numpy==2.4.6 --hash=sha256:{wheelhouse.sha256(b)}",
        f"paho-mqtt==2.2.0 --hash=sha256:{wheelhouse.sha256(a)}",
    ]
    (tmp_path / wheelhouse.REQUIREMENTS).write_text(text)
    assert wheelhouse.load(tmp_path) == (text, [b, a])
    b.write_bytes(b.read_bytes() + b"\0")
    with pytest.raises(wheelhouse.WheelhouseError, match="numpy==2.4.6 is missing or does not"):
        wheelhouse.load(tmp_path)


def test_runtime_dependencies_are_the_project_ones_without_extras() -> None:
    deps = wheelhouse.runtime_dependencies()
    names = {wheelhouse.dist_name(d) for d in deps}
    assert {"paho-mqtt", "onnxruntime", "opencv-python-headless", "sdnotify"} <= names
    assert not names & {"pytest", "playwright", "psycopg"}


@pytest.mark.slow
def test_every_runtime_dependency_has_a_wheel_for_the_pi(tmp_path: Path) -> None:
    """pip download for aarch64 / CPython 3.11, binary only, through pip's cache."""
    deps = wheelhouse.runtime_dependencies()
    try:
        wheels = wheelhouse.download(deps, tmp_path)
    except wheelhouse.WheelhouseError as e:
        pytest.fail(f"no Raspberry Pi wheel: {e}")
    got = {canonicalize_name(parse_wheel_filename(w.name)[0]) for w in wheels}
    for dep in deps:
        assert wheelhouse.dist_name(dep) in got, f"{dep}: no wheel downloaded"
    for w in wheels:
        tags = {t.platform for t in parse_wheel_filename(w.name)[3]}
        assert tags <= {"any"} or any("aarch64" in t for t in tags), w.name


@pytest.mark.slow
def test_a_dependency_without_a_pi_wheel_is_named(tmp_path: Path) -> None:
    """RPi.GPIO ships only a C source archive: it would need a compiler on the pole."""
    with pytest.raises(wheelhouse.WheelhouseError, match=r"(?i)rpi.gpio: no wheel for Raspberry"):
        wheelhouse.download(["RPi.GPIO"], tmp_path)


@pytest.mark.slow
def test_installs_and_scans_on_arm64_under_qemu() -> None:
    why = arm64_check.problem()
    if why:
        pytest.skip(f"arm64 under qemu-user is not usable here: {why}")
    image = arm64_check.DEFAULT_IMAGE
    out = arm64_check.check(arm64_check.DEFAULT_ROOT, image)
    lines = out.splitlines()
    assert lines[0] == "aarch64"
    assert lines[1] == "/opt/check/device/device.toml: ok (device field-01, role wildlife)"
    # the emulated aarch64 onnxruntime scores the image as this machine's does
    here = subprocess.run(
        [sys.executable, "-m", "mimamori.edge.cli", "wildlife", "scan", str(image)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert lines[2] == here.replace(str(image), f"/opt/check/{image.name}")
