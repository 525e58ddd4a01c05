from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mimamori.edge.config import EXIT_BAD_CONFIG, apply_patch, load_config
from mimamori.edge.errors import ConfigError

GOOD = """
[device]
id = "field-01"
role = "wildlife"
data_dir = "data"

[mqtt]
host = "127.0.0.1"
port = 1883
password_file = "password"

[telemetry]
interval_s = 30
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "device.toml"
    path.write_text(text)
    return path


def test_good_config_resolves_relative_paths(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.device.id == "field-01"
    assert cfg.device.data_dir == tmp_path / "data"
    assert cfg.mqtt.password_file == tmp_path / "password"
    assert cfg.telemetry.interval_s == 30
    assert cfg.username == "field-01"


def test_each_problem_names_field_and_value(tmp_path: Path) -> None:
    bad = GOOD.replace("interval_s = 30", "interval_s = -5\nintervall = 3").replace(
        'role = "wildlife"', 'role = "robot"'
    )
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, bad))
    problems = "\n".join(err.value.problems)
    assert "telemetry.interval_s: Input should be greater than or equal to 1 (got -5)" in problems
    assert "telemetry.intervall: Extra inputs are not permitted (got 3)" in problems
    assert "device.role:" in problems and "(got 'robot')" in problems


def test_toml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[device\nid=1"))
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_check_config_cli_exit_codes(tmp_path: Path) -> None:
    mimamori = [sys.executable, "-m", "mimamori.edge.cli"]
    (tmp_path / "password").write_text("secret\n")  # every file the config names must exist
    ok = subprocess.run(
        [*mimamori, "check-config", str(write(tmp_path, GOOD))], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert "ok (device field-01, role wildlife)" in ok.stdout
    bad = write(tmp_path, GOOD.replace("port = 1883", "port = 70000"))
    res = subprocess.run([*mimamori, "check-config", str(bad)], capture_output=True, text=True)
    assert res.returncode == EXIT_BAD_CONFIG
    assert "mqtt.port: Input should be less than or equal to 65535 (got 70000)" in res.stderr


def test_device_run_with_bad_config_exits_78(tmp_path: Path) -> None:
    bad = write(tmp_path, GOOD.replace('id = "field-01"', 'id = "Field 01"'))
    res = subprocess.run(
        [sys.executable, "-m", "mimamori.edge.cli", "device", "run", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == EXIT_BAD_CONFIG
    assert "device.id" in res.stderr


def test_twin_patch_validates_whole_and_refuses_identity(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    new = apply_patch(cfg, {"telemetry": {"interval_s": 5}})
    assert new.telemetry.interval_s == 5 and cfg.telemetry.interval_s == 30
    with pytest.raises(ConfigError, match="telemetry.interval_s"):
        apply_patch(cfg, {"telemetry": {"interval_s": 0}})
    with pytest.raises(ConfigError, match="mqtt: cannot be changed remotely"):
        apply_patch(cfg, {"mqtt": {"host": "evil.example"}})
