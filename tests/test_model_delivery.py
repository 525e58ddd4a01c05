"""A model too large for one MQTT message, served by the hub over HTTPS: only to the device
its job names, resumed after the rural link cuts it, never longer than signed; a staged
rollout from the Models page, and a device rolled back to the model it had before.

Everything is real: Mosquitto, the hub's model server with certificates from provisioning,
the device service, and the bad-link proxy between the device and the model server.
"""

from __future__ import annotations

import logging
import threading
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from mimamori.edge import contract
from mimamori.edge.download import download, https_fetch
from mimamori.edge.errors import UpdateRejected
from mimamori.edge.service import Service
from mimamori.hub.cli import Hub
from mimamori.hub.jobs import MAX_INLINE_BYTES
from mimamori.hub.rollouts import Rollouts
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.signing import sign_model
from tests.conftest import add_device
from tests.hub.conftest import staff_client
from tests.mqtt_probe import wait_until
from tests.reliability.badlink import BadLink
from tests.running import RunningService

REAL_MODEL = Path(__file__).resolve().parents[1] / "models" / "efficientnet-lite0.onnx"


def wide_model(n: int, bias: float) -> bytes:
    """y = x + w on a 1xN input, w filled with ``bias``: a real ONNX graph of about 4N bytes."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])
    w = helper.make_tensor(
        "w", TensorProto.FLOAT, [1, n], np.full(n, bias, np.float32).tobytes(), raw=True
    )
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "wide", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


#: 3.2 MB: twice what one job message carries, so it must travel by URL
N = 800_000


def bias_of(path: Path) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return float(session.run(None, {"x": np.zeros((1, N), np.float32)})[0][0, 0])


def identity(fleet: Fleet, dev: str) -> tuple[Path, Path, Path]:
    folder = fleet.root / "devices" / dev
    return folder / "ca.crt", folder / "device.crt", folder / "device.key"


def rollouts(hub: Hub) -> Rollouts:
    assert hub.rollouts is not None, "provisioning gives the hub a model server"
    return hub.rollouts


def push(
    hub: Hub, fleet: Fleet, tmp_path: Path, dev: str, model: bytes, version: int
) -> tuple[str, contract.JobDocument]:
    """Keep ``model`` as a rollout starting with ``dev``; return it and ``dev``'s job."""
    path = tmp_path / f"monkey-v{version}.onnx"
    path.write_bytes(model)
    signed = sign_model(fleet.signing_key, model, name="monkey", version=version)
    r = rollouts(hub)
    rollout = r.add(path, signed, "wildlife", dev)
    return rollout, r.job(rollout, dev)


def job_row(hub: Hub, dev: str, job_id: str) -> dict[str, object] | None:
    return next((j for j in hub.store.jobs(dev) if j["job_id"] == job_id), None)


def finished(hub: Hub, dev: str, job_id: str, timeout: float = 30) -> dict[str, object]:
    def done() -> dict[str, object] | None:
        row = job_row(hub, dev, job_id)
        return row if row and row["status"] not in ("QUEUED", "IN_PROGRESS") else None

    return wait_until(done, timeout, f"{job_id} finished at the hub")  # type: ignore[no-any-return]


def partials(device: Service) -> list[Path]:
    return list(device.models.slot("monkey").glob(".*.partial"))


def resumed_from(caplog: pytest.LogCaptureFixture) -> int:
    """The byte the model server last started a download from (its log says so)."""
    starts = [
        int(r.getMessage().rsplit(" ", 1)[1])
        for r in caplog.records
        if "from byte" in r.getMessage()
    ]
    assert starts, "the model server served nothing"
    return starts[-1]


@pytest.fixture
def device(fleet: Fleet, hub: Hub) -> Iterator[Service]:
    with RunningService(add_device(fleet, "field-01")) as svc:
        wait_until(lambda: svc.link.connected, 15, "device link")
        yield svc


def deliver_through_a_cut(
    hub: Hub, fleet: Fleet, device: Service, tmp_path: Path, model: bytes, kbit_s: float
) -> tuple[dict[str, object], BadLink]:
    """Send ``model`` to ``device`` through the bad link, cut once 40 % of it has arrived."""
    assert hub.cfg.models is not None
    link = BadLink(("127.0.0.1", hub.cfg.models.port), delay_s=0.05, jitter_s=0.02, kbit_s=kbit_s)
    link.start()
    hub.cfg.models.public_url = f"https://127.0.0.1:{link.port}"  # devices reach it via the link
    stop = threading.Event()

    def cut_midway() -> None:  # once 40 % of the model is on the device's disk
        while not stop.wait(0.01):
            if sum(p.stat().st_size for p in partials(device)) > 0.4 * len(model):
                link.cut_all()
                return

    cutter = threading.Thread(target=cut_midway, daemon=True)
    cutter.start()
    try:
        _, job = push(hub, fleet, tmp_path, "field-01", model, 1)
        assert job.url and job.model_b64 is None
        hub.ingest.send_job("field-01", job)
        row = finished(hub, "field-01", job.job_id, timeout=600)
    finally:
        stop.set()
        link.stop()
    return row, link


def test_a_model_too_large_for_a_message_is_resumed_after_the_link_cuts_it(
    fleet: Fleet, hub: Hub, device: Service, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "mimamori.hub.model_server")
    model = wide_model(N, 0.5)
    assert len(model) > 2 * MAX_INLINE_BYTES
    row, link = deliver_through_a_cut(hub, fleet, device, tmp_path, model, kbit_s=80_000)
    assert row["status"] == "SUCCEEDED", row["reason"]
    detail = row["detail"]
    assert isinstance(detail, dict)
    assert detail["self_test"] == "passed" and detail["resumes"] >= 1
    assert link.stats.cuts == 1 and link.stats.connections >= 2
    assert resumed_from(caplog) > 0  # the second request asked for the rest, not all of it
    assert device.models.installed_version("monkey") == 1
    current = device.models.current("monkey")
    assert current is not None and current.read_bytes() == model and bias_of(current) == 0.5
    assert not partials(device)


@pytest.mark.slow
def test_the_full_size_model_is_resumed_after_the_link_cuts_it(
    fleet: Fleet, hub: Hub, device: Service, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "mimamori.hub.model_server")
    model = REAL_MODEL.read_bytes()  # 18.6 MB, the default monkey model
    row, link = deliver_through_a_cut(hub, fleet, device, tmp_path, model, kbit_s=80_000)
    assert row["status"] == "SUCCEEDED", row["reason"]
    assert link.stats.cuts == 1 and resumed_from(caplog) > 0
    current = device.models.current("monkey")
    assert current is not None and current.read_bytes() == model


def test_only_the_device_a_job_names_may_fetch_its_model(
    fleet: Fleet, hub: Hub, tmp_path: Path
) -> None:
    add_device(fleet, "field-01")
    add_device(fleet, "field-02")
    model = wide_model(N, 0.5)
    _, job = push(hub, fleet, tmp_path, "field-01", model, 1)
    assert job.url
    with https_fetch(*identity(fleet, "field-01"))(job.url, 0) as body:
        assert body.status == 200 and body.read() == model
    with https_fetch(*identity(fleet, "field-01"))(job.url, 1000) as body:
        assert body.status == 206
        assert body.headers["Content-Range"] == f"bytes 1000-{len(model) - 1}/{len(model)}"
        assert body.read() == model[1000:]
    # another device of the fleet, with its own valid certificate: refused
    with pytest.raises(urllib.error.HTTPError) as refused:
        https_fetch(*identity(fleet, "field-02"))(job.url, 0)
    assert refused.value.code == 403
    # a job id nobody was given: refused the same way
    with pytest.raises(urllib.error.HTTPError) as unknown:
        https_fetch(*identity(fleet, "field-01"))(job.url + "x", 0)
    assert unknown.value.code == 403
    # no client certificate at all: no TLS session (an alert, or the connection closed)
    ca = identity(fleet, "field-01")[0]
    with pytest.raises(OSError):
        https_fetch(ca, None, None)(job.url, 0).read()
    # the device is revoked (stolen from its pole): its certificate still chains to the CA,
    # but the roster says no, so its own job's model is refused too
    fleet.revoke("field-01")
    with pytest.raises(urllib.error.HTTPError) as revoked:
        https_fetch(*identity(fleet, "field-01"))(job.url, 0)
    assert revoked.value.code == 403


def test_a_body_longer_than_signed_is_refused(fleet: Fleet, hub: Hub, tmp_path: Path) -> None:
    add_device(fleet, "field-01")
    model = wide_model(N, 0.5)
    rollout, job = push(hub, fleet, tmp_path, "field-01", model, 1)
    assert job.url
    rollouts(hub).file(rollout).write_bytes(model + b"\0" * 4096)  # the hub's copy swapped
    slot = tmp_path / "device" / "monkey"
    fetch = https_fetch(*identity(fleet, "field-01"))
    with pytest.raises(UpdateRejected, match="exceeds the signed size"):
        download(job.update.manifest, job.url, fetch, slot)
    assert list(slot.iterdir()) == []


def test_staged_rollout_then_rollback_from_the_models_page(
    fleet: Fleet, hub: Hub, tmp_path: Path
) -> None:
    first = add_device(fleet, "field-01")
    second = add_device(fleet, "field-02")
    add_device(fleet, "bus-01", "ridership")  # another role: not part of the rollout
    admin = staff_client(hub, "sato", "admin")
    with RunningService(first) as one, RunningService(second) as two:
        wait_until(lambda: one.link.connected and two.link.connected, 15, "device links")
        _, v1 = push(hub, fleet, tmp_path, "field-01", wide_model(N, 1.0), 1)
        hub.ingest.send_job("field-01", v1)
        assert finished(hub, "field-01", v1.job_id)["status"] == "SUCCEEDED"
        rollout, v2 = push(hub, fleet, tmp_path, "field-01", wide_model(N, 2.0), 2)
        hub.ingest.send_job("field-01", v2)
        assert finished(hub, "field-01", v2.job_id)["status"] == "SUCCEEDED"

        # the first device's telemetry after install shows on the page
        one.send_tele()
        wait_until(lambda: rollouts(hub).watch("field-01", job_updated(hub, v2)), 10, "telemetry")
        page = admin.get("/models").get_data(as_text=True)
        assert "monkey v2" in page and "passed" in page and "Telemetry in the hour" in page
        assert "field-02" not in page  # not sent to the rest yet

        assert admin.post(f"/models/{rollout}/rest").status_code == 302
        sent = {d["device"]: d["job_id"] for d in rollouts(hub).devices(rollout)}
        assert set(sent) == {"field-01", "field-02"}
        assert finished(hub, "field-02", sent["field-02"])["status"] == "SUCCEEDED"
        assert two.models.installed_version("monkey") == 2

        # one click: field-01 goes back to v1, which it kept on disk
        assert admin.post(f"/models/{rollout}/rollback/field-01").status_code == 302
        wait_until(lambda: one.models.installed_version("monkey") == 1, 10, "rolled back")
        current = one.models.current("monkey")
        assert current is not None and bias_of(current) == 1.0
        reply = wait_until(
            lambda: next((r for r in hub.store.replies("field-01") if r["replied"]), None),
            10,
            "rollback reply",
        )
        assert reply["ok"] and reply["result"] == {"name": "monkey", "version": 1}
        assert two.models.installed_version("monkey") == 2
    # staff without the admin role cannot push or roll back
    clerk = staff_client(hub, "suzuki", "wildlife")
    assert clerk.post(f"/models/{rollout}/rest").status_code == 403
    assert clerk.post(f"/models/{rollout}/rollback/field-01").status_code == 403


def job_updated(hub: Hub, job: contract.JobDocument) -> object:
    row = job_row(hub, "field-01", job.job_id)
    assert row is not None
    return row["updated"]
