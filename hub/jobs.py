"""Model-update jobs from the hub: publish a signed model to a device (retained job topic).

Signing happens on the admin machine that holds the fleet directory
(`mimamori provision sign-model`); the hub only forwards the signed manifest and the bytes,
so a compromised hub cannot make devices run a model of its own.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from mimamori.edge import contract
from mimamori.edge.transport import MqttTransport
from mimamori.hub.config import HubConfig

#: inline models must fit in one MQTT message under the broker's 2 MiB packet limit
MAX_INLINE_BYTES = (contract.MAX_JOB_BYTES - 8192) * 3 // 4


class JobError(ValueError):
    """The job cannot be sent (model too large for inline delivery, manifest mismatch...)."""


def model_job(model: bytes, signed: contract.SignedManifest) -> contract.JobDocument:
    m = signed.manifest
    if len(model) != m.size:
        raise JobError(f"model is {len(model)} bytes but the manifest says {m.size}")
    if len(model) > MAX_INLINE_BYTES:
        raise JobError(
            f"model of {len(model)} bytes exceeds {MAX_INLINE_BYTES} bytes, the most one MQTT "
            "message carries; serve it over HTTPS and send its URL instead"
        )
    return contract.JobDocument(
        job_id=f"model-{m.name.replace('.', '-').replace('_', '-')}-v{m.version}-{uuid.uuid4().hex[:6]}",
        operation="model-update",
        update=signed,
        model_b64=base64.b64encode(model).decode(),
    )


def publish(cfg: HubConfig, dev: str, job: contract.JobDocument, timeout: float = 30) -> None:
    """Publish ``job`` for ``dev`` as a one-shot hub client (not the ingest session)."""
    link = MqttTransport(cfg.mqtt.endpoint(f"hub-cli-{uuid.uuid4().hex[:8]}"))
    link.start()
    try:
        if not link.wait_connected(timeout):
            raise JobError(f"cannot reach the broker at {cfg.mqtt.host}:{cfg.mqtt.port}")
        info = link.publish(contract.job(dev, job.job_id), job.dumps(), qos=1, retain=True)
        info.wait_for_publish(timeout)
    finally:
        link.stop()


def read_signed(path: Path) -> contract.SignedManifest:
    return contract.SignedManifest.model_validate_json(path.read_text())
