"""Every file a device config points at, checked before the service starts.

A config can be valid TOML with sound values and still name a certificate that is missing, a
key that belongs to another certificate, or a certificate another fleet's CA signed; the link
would then fail in its own thread while the process stays up, offline for good. ``check``
finds all of that at once, and `mimamori check-config` and `mimamori device run` (exit 78)
print the same lines.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from mimamori.edge.camera import is_file_source
from mimamori.edge.config import DeviceConfig
from mimamori.edge.errors import ConfigError


def _read(path: Path, what: str, problems: list[str]) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        problems.append(f"{what}: file not found ({path})")
    except IsADirectoryError:
        problems.append(f"{what}: is a folder, expected a file ({path})")
    except OSError as e:
        problems.append(f"{what}: cannot read {path}: {e.strerror or e}")
    return None


def _cert(path: Path, what: str, problems: list[str]) -> x509.Certificate | None:
    raw = _read(path, what, problems)
    if raw is None:
        return None
    try:
        return x509.load_pem_x509_certificate(raw)
    except ValueError:
        problems.append(f"{what}: not a PEM certificate ({path})")
        return None


def _tls(cfg: DeviceConfig, problems: list[str], now: datetime) -> None:
    tls = cfg.mqtt.tls
    if tls is None:
        return
    ca = _cert(tls.ca_file, "mqtt.tls.ca_file", problems)
    if tls.cert_file is None or tls.key_file is None:
        return
    cert = _cert(tls.cert_file, "mqtt.tls.cert_file", problems)
    raw_key = _read(tls.key_file, "mqtt.tls.key_file", problems)
    if raw_key is not None:
        try:
            key = serialization.load_pem_private_key(raw_key, password=None)
        except (ValueError, TypeError):
            problems.append(f"mqtt.tls.key_file: not an unencrypted PEM key ({tls.key_file})")
        else:
            if cert is not None and key.public_key() != cert.public_key():
                problems.append(
                    f"mqtt.tls.key_file: does not belong to the certificate {tls.cert_file}"
                )
    if cert is None:
        return
    if cert.not_valid_after_utc < now:
        problems.append(
            f"mqtt.tls.cert_file: expired on {cert.not_valid_after_utc:%Y-%m-%d} "
            f"(this device's clock says {now:%Y-%m-%d})"
        )
    if ca is not None:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            problems.append(
                f"mqtt.tls.cert_file: not signed by the CA in {tls.ca_file} "
                "(a certificate of another fleet?)"
            )
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if cn and cn[0].value != cfg.device.id:
        problems.append(
            f"mqtt.tls.cert_file: issued to {cn[0].value!r}, but device.id is {cfg.device.id!r}"
        )


def _sources(cfg: DeviceConfig) -> list[tuple[str, str]]:
    """(config key, source) of every camera source in the config."""
    out: list[tuple[str, str]] = []
    if cfg.wildlife:
        out.append(("wildlife.source", cfg.wildlife.source))
    if cfg.ridership:
        out += [
            (f"ridership.doors.{i}.source", d.source) for i, d in enumerate(cfg.ridership.doors)
        ]
    if cfg.kiosk:
        out += [("kiosk.face_source", cfg.kiosk.face_source)]
        out += [("kiosk.doc_source", cfg.kiosk.doc_source)]
    return out


def check(cfg: DeviceConfig, source: str, now: datetime | None = None) -> None:
    """Raise ConfigError (from ``source``) listing every file the config names that is
    missing or wrong."""
    now = now or datetime.now(UTC)
    problems: list[str] = []
    _tls(cfg, problems, now)
    if cfg.mqtt.password_file is not None:
        _read(cfg.mqtt.password_file, "mqtt.password_file", problems)
    if cfg.updates is not None:
        raw = _read(cfg.updates.public_key_file, "updates.public_key_file", problems)
        if raw is not None:
            try:
                serialization.load_pem_public_key(raw)
            except (ValueError, TypeError):
                problems.append(
                    f"updates.public_key_file: not a PEM public key ({cfg.updates.public_key_file})"
                )
    if cfg.wildlife and cfg.wildlife.model is not None and not cfg.wildlife.model.exists():
        problems.append(f"wildlife.model: file not found ({cfg.wildlife.model})")
    if cfg.ridership and cfg.ridership.gtfs is not None and not cfg.ridership.gtfs.exists():
        problems.append(f"ridership.gtfs: not found ({cfg.ridership.gtfs})")
    for key, source in _sources(cfg):
        if is_file_source(source) and not Path(source).exists():
            problems.append(f"{key}: file not found ({source})")
    if problems:
        raise ConfigError(source, problems)
