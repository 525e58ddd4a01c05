"""Signed model updates: verification, atomic install, self-test and rollback."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from mimamori.edge import contract
from mimamori.edge.errors import UpdateRejected
from mimamori.edge.updates import ModelStore, load_public_key, run_job, verify
from mimamori.provisioning.signing import create_key, sign_model


def tiny_model(scale: float) -> bytes:
    """y = x * scale on a 1x3 input: a real ONNX graph onnxruntime can run."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    k = helper.make_tensor("k", TensorProto.FLOAT, [1], [scale])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "k"], ["y"])], "tiny", [x], [y], [k])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    key, pub = tmp_path / "signing.key", tmp_path / "signing.pub"
    create_key(key, pub)
    return key, pub


def job(job_id: str, signed: contract.SignedManifest, model: bytes) -> contract.JobDocument:
    return contract.JobDocument(
        job_id=job_id,
        operation="model-update",
        update=signed,
        model_b64=base64.b64encode(model).decode(),
    )


def run(store: ModelStore, pub: Path, doc: contract.JobDocument) -> list[contract.JobStatus]:
    seen: list[contract.JobStatus] = []
    run_job(doc, store, load_public_key(pub), seen.append, fetch=lambda url, offset: b"")
    return seen


def output_of(path: Path) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return float(session.run(None, {"x": np.ones((1, 3), np.float32)})[0][0, 0])


def test_good_update_installs_and_reports_succeeded(tmp_path: Path, keys) -> None:
    key, pub = keys
    store = ModelStore(tmp_path / "models")
    model = tiny_model(2.0)
    states = run(store, pub, job("j1", sign_model(key, model, name="monkey", version=1), model))
    assert [s.status for s in states] == ["IN_PROGRESS", "SUCCEEDED"]
    assert store.installed_version("monkey") == 1
    assert output_of(store.current("monkey")) == 2.0


@pytest.mark.parametrize("attack", ["model-bytes", "manifest", "signature", "other-key"])
def test_tampered_updates_are_rejected_and_nothing_changes(
    tmp_path: Path, keys, attack: str
) -> None:
    key, pub = keys
    store = ModelStore(tmp_path / "models")
    good = tiny_model(2.0)
    run(store, pub, job("j1", sign_model(key, good, name="monkey", version=1), good))
    evil = tiny_model(-1.0)
    signed = sign_model(key, evil, name="monkey", version=2)
    if attack == "model-bytes":  # a valid manifest, other bytes
        signed = sign_model(key, good[:-1] + b"\0", name="monkey", version=2)
    elif attack == "manifest":  # manifest edited after signing
        signed = contract.SignedManifest(
            manifest=signed.manifest.model_copy(update={"version": 9}), signature=signed.signature
        )
    elif attack == "signature":
        signed = contract.SignedManifest(
            manifest=signed.manifest, signature="AAAA" + signed.signature[4:]
        )
    else:
        create_key(tmp_path / "k2", tmp_path / "p2")
        signed = sign_model(tmp_path / "k2", evil, name="monkey", version=2)
    states = run(store, pub, job("j2", signed, evil))
    assert states[-1].status == "REJECTED"
    assert states[-1].reason
    assert store.installed_version("monkey") == 1 and output_of(store.current("monkey")) == 2.0


def test_downgrade_and_expired_are_rejected_with_reason(tmp_path: Path, keys) -> None:
    key, pub = keys
    store = ModelStore(tmp_path / "models")
    m3 = tiny_model(3.0)
    run(store, pub, job("j1", sign_model(key, m3, name="monkey", version=3), m3))
    m2 = tiny_model(2.0)
    states = run(store, pub, job("j2", sign_model(key, m2, name="monkey", version=2), m2))
    assert states[-1].status == "REJECTED" and "downgrade" in (states[-1].reason or "")
    m4 = tiny_model(4.0)
    old = sign_model(
        key,
        m4,
        name="monkey",
        version=4,
        now=datetime.now(UTC) - timedelta(days=40),
        valid_for=timedelta(days=30),
    )
    states = run(store, pub, job("j3", old, m4))
    assert states[-1].status == "REJECTED" and "expired" in (states[-1].reason or "")
    assert store.installed_version("monkey") == 3


def test_self_test_failure_rolls_back_to_the_old_model(tmp_path: Path, keys) -> None:
    key, pub = keys
    store = ModelStore(tmp_path / "models")
    good = tiny_model(2.0)
    run(store, pub, job("j1", sign_model(key, good, name="monkey", version=1), good))
    broken = b"this is not an onnx graph"  # correctly signed, but it cannot run
    states = run(store, pub, job("j2", sign_model(key, broken, name="monkey", version=2), broken))
    assert states[-1].status == "FAILED" and "rolled back to version 1" in (states[-1].reason or "")
    assert store.installed_version("monkey") == 1
    assert output_of(store.current("monkey")) == 2.0
    assert sorted(p.name for p in store.slot("monkey").glob("v*.onnx")) == ["v1.onnx"]


def test_verify_checks_size_before_hash(tmp_path: Path, keys) -> None:
    key, pub = keys
    model = tiny_model(1.0)
    signed = sign_model(key, model, name="monkey", version=1)
    with pytest.raises(UpdateRejected, match="bytes, manifest says"):
        verify(signed, model + b"x", load_public_key(pub), installed_version=0)
    assert onnx.load_from_string(model).graph.name == "tiny"


def test_a_large_model_gets_time_for_a_slow_link() -> None:
    from mimamori.edge.download import DOWNLOAD_DEADLINE_S, deadline_for

    assert deadline_for(3_000) == DOWNLOAD_DEADLINE_S  # small: the 30-minute floor
    monkey = 18_614_047  # the default monkey model
    needs_at_64k = monkey * 8 / 64_000  # the reliability suite's link: about 39 minutes
    assert needs_at_64k > DOWNLOAD_DEADLINE_S
    assert deadline_for(monkey) >= 2 * needs_at_64k
