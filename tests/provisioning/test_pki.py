from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mimamori.provisioning.pki import Authority, serial_of


def test_device_and_server_certificates_chain_to_the_ca(tmp_path: Path) -> None:
    ca = Authority.create(tmp_path / "ca")
    assert oct((tmp_path / "ca" / "ca.key").stat().st_mode & 0o777) == "0o600"
    dev = ca.issue("field-01", tmp_path / "d.key", tmp_path / "d.crt")
    srv = ca.issue(
        "broker",
        tmp_path / "s.key",
        tmp_path / "s.crt",
        server_names=["hub.city.local", "127.0.0.1"],
    )
    root = x509.load_pem_x509_certificate(ca.cert_file.read_bytes())
    for cert in (dev, srv):
        cert.verify_directly_issued_by(root)
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert dev.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "field-01"
    eku = dev.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    san = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["hub.city.local"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_crl_lists_revoked_serials(tmp_path: Path) -> None:
    ca = Authority.create(tmp_path / "ca")
    ca.issue("bus-01", tmp_path / "b.key", tmp_path / "b.crt")
    crl = x509.load_pem_x509_crl(ca.crl_file.read_bytes())
    assert len(list(crl)) == 0
    ca.write_crl([serial_of(tmp_path / "b.crt")])
    crl = x509.load_pem_x509_crl(ca.crl_file.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(serial_of(tmp_path / "b.crt"))
    root = x509.load_pem_x509_certificate(ca.cert_file.read_bytes())
    assert crl.is_signature_valid(root.public_key())
