"""The fleet's model-signing key (Ed25519) and signed update manifests.

The private key lives in ``FLEET/ca/model-signing.key`` beside the CA key; devices carry only
the public key. A manifest is signed over its canonical JSON (sorted keys, no spaces), which
``edge.updates`` verifies byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mimamori.edge import contract


def create_key(key_file: Path, pub_file: Path) -> None:
    key = Ed25519PrivateKey.generate()
    key_file.touch(mode=0o600, exist_ok=True)
    key_file.chmod(0o600)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub_file.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _load(key_file: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{key_file}: not an Ed25519 private key")
    return key


def sign_model(
    key_file: Path,
    model: bytes,
    *,
    name: str,
    version: int,
    min_version: int = 0,
    valid_for: timedelta = timedelta(days=30),
    now: datetime | None = None,
) -> contract.SignedManifest:
    """A signed manifest for ``model`` (its sha256, version, rollback floor and expiry)."""
    issued = now or datetime.now(UTC)
    manifest = contract.ModelManifest(
        name=name,
        version=version,
        min_version=min_version,
        sha256=hashlib.sha256(model).hexdigest(),
        size=len(model),
        issued=issued,
        expires=issued + valid_for,
    )
    signature = _load(key_file).sign(manifest.canonical())
    return contract.SignedManifest(
        manifest=manifest, signature=base64.b64encode(signature).decode()
    )
