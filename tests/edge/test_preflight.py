"""`check-config` and `device run` check every file a config names, on a real fleet's files."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mimamori.edge import preflight
from mimamori.edge.config import EXIT_BAD_CONFIG, load_config
from mimamori.edge.errors import ConfigError
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.pki import Authority
from tests.conftest import free_ports

MIMAMORI = [sys.executable, "-m", "mimamori.edge.cli"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    port, hub_port, web_port = free_ports(3)
    fleet = Fleet.init(
        tmp_path_factory.mktemp("preflight") / "fleet",
        port=port,
        hub_port=hub_port,
        web_port=web_port,
    )
    fleet.add_device("field-01", "wildlife")
    fleet.add_device("field-02", "wildlife")
    return fleet


def device_copy(fleet: Fleet, tmp_path: Path, name: str = "field-01") -> Path:
    """The device's folder as it would sit on the Pi (config, certificate, key, CA)."""
    folder = tmp_path / name
    shutil.copytree(fleet.root / "devices" / name, folder)
    return folder / "device.toml"


def problems(cfg_path: Path, **kw: object) -> list[str]:
    with pytest.raises(ConfigError) as err:
        preflight.check(load_config(cfg_path), str(cfg_path), **kw)  # type: ignore[arg-type]
    return err.value.problems


def test_an_issued_device_passes(fleet: Fleet, tmp_path: Path) -> None:
    cfg = device_copy(fleet, tmp_path)
    preflight.check(load_config(cfg), str(cfg))
    ok = subprocess.run([*MIMAMORI, "check-config", str(cfg)], capture_output=True, text=True)
    assert ok.returncode == 0 and "ok (device field-01" in ok.stdout


def test_missing_certificate_fails_check_config_and_device_run_alike(
    fleet: Fleet, tmp_path: Path
) -> None:
    cfg = device_copy(fleet, tmp_path)
    (cfg.parent / "device.crt").unlink()
    check = subprocess.run([*MIMAMORI, "check-config", str(cfg)], capture_output=True, text=True)
    assert check.returncode == EXIT_BAD_CONFIG
    assert "mqtt.tls.cert_file: file not found" in check.stderr
    run = subprocess.run(
        [*MIMAMORI, "device", "run", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == EXIT_BAD_CONFIG
    assert "mqtt.tls.cert_file: file not found" in run.stderr


def test_key_of_another_device_and_certificate_of_another_fleet(
    fleet: Fleet, tmp_path: Path
) -> None:
    cfg = device_copy(fleet, tmp_path)
    shutil.copyfile(fleet.root / "devices" / "field-02" / "device.key", cfg.parent / "device.key")
    assert any("does not belong to the certificate" in p for p in problems(cfg))

    cfg = device_copy(fleet, tmp_path / "other")
    other = Authority.create(tmp_path / "other-ca")
    other.issue("field-01", cfg.parent / "device.key", cfg.parent / "device.crt")
    assert any("not signed by the CA" in p for p in problems(cfg))


def test_expired_certificate_wrong_name_and_broken_files(fleet: Fleet, tmp_path: Path) -> None:
    cfg = device_copy(fleet, tmp_path)
    later = datetime.now(UTC) + timedelta(days=365 * 11)  # leaves live ten years
    assert any("expired on" in p for p in problems(cfg, now=later))

    cfg = device_copy(fleet, tmp_path / "named", "field-02")
    text = cfg.read_text().replace('id = "field-02"', 'id = "field-03"')
    cfg.write_text(text)
    assert any("issued to 'field-02'" in p for p in problems(cfg))

    cfg = device_copy(fleet, tmp_path / "broken")
    (cfg.parent / "ca.crt").write_text("not a certificate")
    (cfg.parent / "model-signing.pub").unlink()
    found = problems(cfg)
    assert any(p.startswith("mqtt.tls.ca_file: not a PEM certificate") for p in found)
    assert any(p.startswith("updates.public_key_file: file not found") for p in found)
