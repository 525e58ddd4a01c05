"""hub.toml is read like a device config: errors name the file and every bad field."""

from __future__ import annotations

from pathlib import Path

import pytest

from mimamori.hub.config import load_hub_config
from mimamori.hub.errors import HubConfigError


def test_each_problem_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text('[web]\nport = 0\n[ingest]\nbatch_max = "many"\n[alerts]\ncolour = 1\n')
    with pytest.raises(HubConfigError) as e:
        load_hub_config(path)
    assert e.value.source == str(path)
    assert [p.split(":")[0] for p in e.value.problems] == [
        "web.port",
        "ingest.batch_max",
        "alerts.colour",
    ]
    assert "(got 0)" in e.value.problems[0]


def test_missing_and_malformed_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(HubConfigError, match=r"hub\.toml: file not found"):
        load_hub_config(tmp_path / "hub.toml")
    (tmp_path / "hub.toml").write_text("[web\n")
    with pytest.raises(HubConfigError, match=r"hub\.toml: not valid TOML"):
        load_hub_config(tmp_path / "hub.toml")


def test_relative_paths_resolve_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text('[store]\nurl = "sqlite:///hub.db"\n[web]\nsecret_file = "web-secret"\n')
    cfg = load_hub_config(path)
    assert cfg.store.url == f"sqlite:///{tmp_path.resolve() / 'hub.db'}"
    assert cfg.web.secret_file == tmp_path / "web-secret"
