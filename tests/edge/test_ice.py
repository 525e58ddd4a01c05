"""ICE server entries in the kiosk's and the hub's config: URL strings or tables with the
town's TURN credentials, validated, and the credential kept out of dumps and reports."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from mimamori.edge.config import DeviceConfig, apply_patch, load_config, remote_view
from mimamori.edge.errors import ConfigError
from mimamori.hub.config import load_hub_config
from mimamori.hub.errors import HubConfigError

KIOSK = """
[device]
id = "kiosk-01"
role = "kiosk"
data_dir = "data"

[mqtt]
host = "127.0.0.1"
password_file = "password"

[kiosk]
phone = "0120-000-111"
face_source = "face.jpg"
doc_source = "desk.jpg"
ice_servers = [
  "stun:stun.city.local:3478",
  {urls = "turn:turn.city.local:3478?transport=udp", username = "kiosk-01", credential = "s3cret"},
  {urls = ["turns:turn.city.local:5349"], username = "kiosk-01", credential = "s3cret"},
]
"""


def kiosk(tmp_path: Path, text: str = KIOSK) -> DeviceConfig:
    (tmp_path / "kiosk.toml").write_text(text)
    return load_config(tmp_path / "kiosk.toml")


def test_urls_and_credential_tables_reach_the_browser_as_ice_servers(tmp_path: Path) -> None:
    servers = [s.for_browser("kiosk-01") for s in kiosk(tmp_path).kiosk.ice_servers]  # type: ignore[union-attr]
    assert servers == [
        {"urls": ["stun:stun.city.local:3478"]},
        {
            "urls": ["turn:turn.city.local:3478?transport=udp"],
            "username": "kiosk-01",
            "credential": "s3cret",
        },
        {"urls": ["turns:turn.city.local:5349"], "username": "kiosk-01", "credential": "s3cret"},
    ]


def test_the_credential_never_shows_in_dumps_reprs_or_the_twin_report(tmp_path: Path) -> None:
    cfg = kiosk(tmp_path)
    assert "s3cret" not in repr(cfg)
    assert "s3cret" not in str(remote_view(cfg))
    # a twin patch of another kiosk field keeps the credential as it was
    patched = apply_patch(cfg, {"kiosk": {"office": "北分室"}})
    assert patched.kiosk is not None
    assert patched.kiosk.ice_servers[1].for_browser("kiosk-01")["credential"] == "s3cret"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('"https://turn.city.local"', "expected stun:HOST[:PORT]"),
        ('"turn:turn.city.local"', "a TURN server needs username and credential"),
        ('{urls = "stun:s.local", username = "a", credential = "b"}', "turn: and turns: URLs"),
        ('{urls = "stun:s.local", secret_file = "s"}', "turn: and turns: URLs"),
        (
            '{urls = "turn:t.local", username = "a", credential = "b", secret_file = "s"}',
            "not both",
        ),
        ('{urls = "turn:t.local", username = "a"}', "both username and credential"),
        ('{urls = "turn:t.local", username = "a", credential = "b", pwd = "c"}', "pwd"),
    ],
)
def test_bad_entries_are_config_errors_naming_the_field(
    tmp_path: Path, entry: str, message: str
) -> None:
    with pytest.raises(ConfigError) as e:
        kiosk(tmp_path, KIOSK.split("ice_servers")[0] + f"ice_servers = [{entry}]\n")
    text = "\n".join(e.value.problems)
    assert "kiosk.ice_servers.0" in text and message in text, text


def test_the_hub_reads_the_same_entries_for_the_staff_console(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(
        "[counter]\nice_servers = [{urls = 'turn:10.0.0.1:3478', username = 'hub', "
        "credential = 'h1dden'}]\n"
    )
    cfg = load_hub_config(path)
    assert [s.for_browser("suzuki") for s in cfg.counter.ice_servers] == [
        {"urls": ["turn:10.0.0.1:3478"], "username": "hub", "credential": "h1dden"}
    ]
    assert "h1dden" not in repr(cfg) and "h1dden" not in cfg.model_dump_json()
    path.write_text("[counter]\nice_servers = ['turns:t.local:5349']\n")
    with pytest.raises(HubConfigError, match="needs username and credential"):
        load_hub_config(path)


def test_a_shared_secret_mints_time_limited_credentials_as_coturn_checks_them(
    tmp_path: Path,
) -> None:
    """coturn's use-auth-secret: user name EXPIRY:USER, password base64(HMAC-SHA1(secret,
    user name)); the end-to-end proof that coturn takes them is tests/kiosk/test_turn.py."""
    path = tmp_path / "hub.toml"
    path.write_text("[counter]\nice_servers = [{urls = 'turn:t.local', secret_file = 'sec'}]\n")
    with pytest.raises(HubConfigError, match=r"counter.ice_servers.0.secret_file: cannot read"):
        load_hub_config(path)
    (tmp_path / "sec").write_text("north\n")
    server = load_hub_config(path).counter.ice_servers[0]
    assert server.secret_file == tmp_path / "sec"
    given = server.for_browser("suzuki", now=1_700_000_000)
    expiry, user = given["username"].split(":")
    assert int(expiry) == 1_700_000_000 + 12 * 3600 and user == "suzuki"
    mac = hmac.new(b"north", given["username"].encode(), hashlib.sha1).digest()
    assert given["credential"] == base64.b64encode(mac).decode()
