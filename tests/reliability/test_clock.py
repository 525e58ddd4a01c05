"""A Pi has no real-time clock: the clock jumps by hours at boot. Order comes from sequence
numbers, "late" from the device's own measure of waiting, and a clock before a certificate's
validity is named as the cause."""

from __future__ import annotations

import base64
import ipaddress
import logging
import uuid
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mimamori.edge import contract
from mimamori.edge.contract import Priority
from mimamori.edge.service import Service
from mimamori.hub.alerts.tables import sightings, troops
from mimamori.hub.cli import Hub
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import stored_events
from tests.mqtt_probe import wait_until
from tests.reliability.conftest import RunningService, device_config, report


def incursion(at: datetime) -> dict:
    ok, jpeg = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    return contract.IncursionData(
        incursion=uuid.uuid4().hex,
        started=at,
        score=0.9,
        label="macaque",
        box=(1, 1, 8, 8),
        frames=3,
        snapshot_jpeg=base64.b64encode(jpeg.tobytes()).decode(),
    ).model_dump(mode="json")


def late_of(hub: Hub, inc: str) -> bool | None:
    with hub.store.engine.connect() as conn:
        return conn.execute(
            sa.select(troops.c.late)
            .join(sightings, sightings.c.troop == troops.c.id)
            .where(sightings.c.incursion == inc)
        ).scalar()


def test_clock_jumps_keep_order_and_do_not_make_alarms_late(
    fleet: Fleet, broker: MosquittoProcess, hub: Hub
) -> None:
    offset = [timedelta(0)]

    def wall() -> datetime:
        return datetime.now(UTC) + offset[0]

    svc = Service(device_config(fleet, "field-01"), wall=wall)
    with RunningService(svc):
        wait_until(lambda: svc.link.hub_online, 15, "online")
        ids, alarms = [], []
        for jump in (timedelta(0), timedelta(hours=5), timedelta(hours=-3), timedelta(0)):
            offset[0] = jump  # the clock is set, then set again, by hours
            ids.append(svc.emit("device.notice", {"level": "info", "message": str(jump)}).id)
            data = incursion(wall())
            alarms.append(data["incursion"])
            ids.append(svc.emit("wildlife.incursion", data, Priority.ALARM).id)
        wait_until(lambda: hub.store.count_events() >= len(ids), 20, "all stored")
        wait_until(lambda: all(late_of(hub, a) is not None for a in alarms), 10, "alerts")
    stored = stored_events(hub.store, "field-01")
    assert [e for e, _ in stored] == ids, "stored out of order"
    created = [e["created"] for e in reversed(hub.store.events("field-01", limit=100))]
    assert created != sorted(created), "the clock did not jump (test broken)"
    lates = [late_of(hub, a) for a in alarms]
    assert lates == [False] * 4, f"alarms sent at once were marked late: {lates}"
    report(
        "clock jumps",
        "device clock set +5 h, then -3 h, then right, while recording",
        sent=len(ids),
        stored=len(stored),
        lost=len(ids) - len(stored),
        alarms_marked_late=sum(bool(x) for x in lates),
    )


def future_server_cert(fleet: Fleet) -> None:
    """Replace the broker's certificate with one valid only from three days on."""
    ca_dir, broker_dir = fleet.root / "ca", fleet.root / "broker"
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "broker")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + timedelta(days=3))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (broker_dir / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (broker_dir / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def test_a_clock_before_the_certificates_validity_is_named_as_the_cause(
    fleet: Fleet, broker: MosquittoProcess, caplog: pytest.LogCaptureFixture
) -> None:
    good_crt = (fleet.root / "broker" / "server.crt").read_bytes()
    good_key = (fleet.root / "broker" / "server.key").read_bytes()
    future_server_cert(fleet)  # as a device whose clock is three days behind would see it
    broker.restart()
    caplog.set_level(logging.ERROR, logger="mimamori.edge.link")
    with RunningService(device_config(fleet, "field-01")) as svc:
        wait_until(lambda: "by this device's clock" in caplog.text, 15, "a clear clock error")
        assert not svc.link.connected, "connected despite an invalid certificate"
        assert "not yet valid" in caplog.text and "NTP" in caplog.text
        (fleet.root / "broker" / "server.crt").write_bytes(good_crt)  # the clock is right again
        (fleet.root / "broker" / "server.key").write_bytes(good_key)
        broker.restart()
        wait_until(lambda: svc.link.connected, 20, "connected once valid")
