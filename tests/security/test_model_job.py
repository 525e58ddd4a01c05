"""A model job whose URL serves too much, the wrong bytes or too few.

The attacker (a hostile or broken file server, or whoever can point a job at one) answers a
correctly signed manifest with an oversized or endless body, a body of the signed size with
other bytes, or a body cut short. A real device process fetches it over HTTPS with its
certificate from a real server on a free loopback port; the device must refuse with a reason
that names what was wrong, without holding the download in memory, keep its installed model
and leave no partial file behind.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mimamori.edge import contract
from mimamori.edge.config import load_config
from mimamori.edge.updates import ModelStore, load_public_key, run_job
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from mimamori.provisioning.signing import sign_model
from tests.conftest import add_device, free_port
from tests.edge.test_updates import tiny_model
from tests.mqtt_probe import Probe, wait_until

DEV = "field-01"
CHUNK = 64 * 1024
MB = 1024 * 1024
#: the old device read the whole body into memory: these sizes push it far past the bound
HUGE = 300 * MB
BIG = 96 * MB
MAX_GROWTH_MB = 50


@dataclass(frozen=True)
class Body:
    """What the server sends: ``length`` bytes of ``fill``, announcing ``declared`` (or not)."""

    length: int
    fill: bytes = b"\0"
    declared: int | None = None


class ModelServer:
    """HTTPS on 127.0.0.1 with the fleet's server certificate; requires a client certificate.

    Bodies are generated lazily in 64 KB chunks, so a 300 MB answer costs the test nothing.
    """

    def __init__(self, fleet: Fleet) -> None:
        self.bodies: dict[str, Body] = {}
        self.clients: list[str] = []  # CN of each client certificate presented
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                cert = self.connection.getpeercert()  # type: ignore[attr-defined]
                server.clients.extend(
                    v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"
                )
                body = server.bodies.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if body.declared is not None:
                    self.send_header("Content-Length", str(body.declared))
                self.end_headers()  # HTTP/1.0: the body ends when the connection closes
                chunk = body.fill * CHUNK
                sent = 0
                try:
                    while sent < body.length:
                        n = min(CHUNK, body.length - sent)
                        self.wfile.write(chunk[:n])
                        sent += n
                except OSError:  # the device hung up: what it should do
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(
            fleet.root / "broker" / "server.crt", fleet.root / "broker" / "server.key"
        )
        ctx.load_verify_locations(fleet.root / "devices" / DEV / "ca.crt")
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"


@pytest.fixture
def server(fleet: Fleet) -> Iterator[ModelServer]:
    srv = ModelServer(fleet)
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


class Device:
    """The device service as its own process (``mimamori device run``)."""

    def __init__(self, cfg: Path, log: Path) -> None:
        self.cfg = load_config(cfg)
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mimamori.edge.cli", "device", "run", str(cfg)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def slot(self) -> Path:
        return self.cfg.device.data_dir / "models" / "monkey"

    def peak_rss_mb(self) -> float:
        """The process's high-water resident set (VmHWM), in MB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        kb = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
        return int(kb) / 1024

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


@pytest.fixture
def device(fleet: Fleet, broker: MosquittoProcess, tmp_path: Path) -> Iterator[Device]:
    dev = Device(add_device(fleet, DEV), tmp_path / "device.log")
    yield dev
    dev.stop()


def send_job(probe: Probe, doc: contract.JobDocument) -> None:
    probe.client.publish(
        contract.job(DEV, doc.job_id), doc.dumps(), qos=1, retain=True
    ).wait_for_publish(5)


def final_state(probe: Probe, job_id: str, timeout: float = 60) -> contract.JobStatus:
    def done() -> contract.JobStatus | None:
        for m in probe.on(f"/jobs/{job_id}/status"):
            st = contract.JobStatus.model_validate_json(m.payload)
            if st.status not in ("QUEUED", "IN_PROGRESS"):
                return st
        return None

    return wait_until(done, timeout, f"a final state of job {job_id}")  # type: ignore[no-any-return]


def signed_for(key_file: Path, digest: str, size: int, version: int) -> contract.SignedManifest:
    """A manifest correctly signed with the fleet's key for content known by hash and size."""
    issued = datetime.now(UTC)
    manifest = contract.ModelManifest(
        name="monkey",
        version=version,
        sha256=digest,
        size=size,
        issued=issued,
        expires=issued + timedelta(days=30),
    )
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    return contract.SignedManifest(
        manifest=manifest, signature=base64.b64encode(key.sign(manifest.canonical())).decode()
    )


def zeros_sha256(size: int) -> str:
    h, block = hashlib.sha256(), bytes(MB)
    for _ in range(size // MB):
        h.update(block)
    h.update(bytes(size % MB))
    return h.hexdigest()


#: (case, body served, signed size, expected final state, words the reason must contain)
SMALL = len(tiny_model(3.0))
CASES = {
    # an endless-looking body with no length: the signed size is a few hundred bytes
    "oversized": (Body(HUGE), SMALL, "REJECTED", f"exceeds the signed size of {SMALL} bytes"),
    # the server announces the 300 MB it is about to send
    "oversized-declared": (
        Body(HUGE, declared=HUGE),
        SMALL,
        "REJECTED",
        f"exceeds the signed size of {SMALL} bytes",
    ),
    # exactly the signed size, other bytes
    "wrong-hash": (Body(BIG, fill=b"\1", declared=BIG), BIG, "REJECTED", "sha256"),
    # the signed size announced, half of it sent, then the connection closes
    "truncated": (
        Body(BIG // 2, declared=BIG),
        BIG,
        "FAILED",
        f"ended after {BIG // 2} of the signed {BIG} bytes",
    ),
}


def install_v1(fleet: Fleet, hub_probe: Probe) -> bytes:
    """Version 1, inline: the model the device must keep serving."""
    wait_until(
        lambda: any(b"true" in m.payload for m in hub_probe.on(f"{DEV}/state")), 30, "online"
    )
    v1 = tiny_model(2.0)
    send_job(
        hub_probe,
        contract.JobDocument(
            job_id="model-v1",
            operation="model-update",
            update=sign_model(fleet.signing_key, v1, name="monkey", version=1),
            model_b64=base64.b64encode(v1).decode(),
        ),
    )
    assert final_state(hub_probe, "model-v1").status == "SUCCEEDED"
    return v1


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_model_download_is_refused_in_bounded_memory(
    fleet: Fleet, hub_probe: Probe, device: Device, server: ModelServer, case: str
) -> None:
    body, signed_size, expected, words = CASES[case]
    v1 = install_v1(fleet, hub_probe)
    before_files = sorted(p.name for p in device.slot.iterdir())
    before_state = (device.slot / "state.json").read_text()
    before_mb = device.peak_rss_mb()

    # version 2 over HTTPS: a correctly signed manifest, a hostile body
    if signed_size == SMALL:
        signed = sign_model(fleet.signing_key, tiny_model(3.0), name="monkey", version=2)
    else:
        signed = signed_for(fleet.signing_key, zeros_sha256(signed_size), signed_size, 2)
    server.bodies["/monkey-v2.onnx"] = body
    send_job(
        hub_probe,
        contract.JobDocument(
            job_id="model-v2",
            operation="model-update",
            update=signed,
            url=server.url("/monkey-v2.onnx"),
        ),
    )
    final = final_state(hub_probe, "model-v2")
    growth = device.peak_rss_mb() - before_mb
    print(f"{case}: {final.status} {final.reason!r}; device peak RSS grew {growth:.1f} MB")

    assert DEV in server.clients  # fetched with the device's own certificate
    assert final.status == expected
    assert words in (final.reason or "")
    assert growth < MAX_GROWTH_MB, f"peak RSS grew {growth:.0f} MB"
    # the old model still serving, nothing half-written left behind
    assert sorted(p.name for p in device.slot.iterdir()) == before_files
    assert (device.slot / "state.json").read_text() == before_state
    assert (device.slot / "current").resolve().read_bytes() == v1
    assert not [p for p in device.cfg.device.data_dir.rglob("*") if "partial" in p.name]


def test_a_good_model_from_a_url_is_installed(
    fleet: Fleet, hub_probe: Probe, device: Device, server: ModelServer
) -> None:
    install_v1(fleet, hub_probe)
    v2 = tiny_model(3.0)
    server.bodies["/monkey-v2.onnx"] = Body(len(v2), fill=v2, declared=len(v2))
    send_job(
        hub_probe,
        contract.JobDocument(
            job_id="model-v2",
            operation="model-update",
            update=sign_model(fleet.signing_key, v2, name="monkey", version=2),
            url=server.url("/monkey-v2.onnx"),
        ),
    )
    assert final_state(hub_probe, "model-v2").status == "SUCCEEDED"
    assert (device.slot / "current").resolve().read_bytes() == v2
    assert sorted(p.name for p in device.slot.iterdir()) == [
        "current",
        "state.json",
        "v1.onnx",
        "v2.onnx",
    ]


# -- the same rules in-process, where the order of the checks can be seen ---------------


class Trickle:
    """A server that sends one byte every ``pause`` seconds and never finishes."""

    def __init__(self, pause: float) -> None:
        self.pause = pause

    def read(self, n: int = -1) -> bytes:
        time.sleep(self.pause)
        return b"\0"

    def __enter__(self) -> Trickle:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def run(
    store: ModelStore,
    fleet: Fleet,
    doc: contract.JobDocument,
    pause: float = 0.0,
    deadline_s: float = 60.0,
) -> tuple[contract.JobStatus, list[str]]:
    """Run ``doc`` with a fake fetch that trickles; return the final state and the URLs fetched."""
    fetched: list[str] = []

    def fetch(url: str) -> Trickle:
        fetched.append(url)
        return Trickle(pause)

    pub = load_public_key(fleet.signing_key.with_suffix(".pub"))
    final = run_job(
        doc,
        store,
        pub,
        lambda st: None,
        fetch=fetch,
        self_test=lambda p: None,
        deadline_s=deadline_s,
    )
    return final, fetched


def url_job(
    signed: contract.SignedManifest, url: str = "https://hub.invalid/m.onnx"
) -> contract.JobDocument:
    return contract.JobDocument(job_id="model-v2", operation="model-update", update=signed, url=url)


def test_the_manifest_is_checked_before_anything_is_fetched(fleet: Fleet, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    m = tiny_model(3.0)
    good = sign_model(fleet.signing_key, m, name="monkey", version=2)
    forged = contract.SignedManifest(
        manifest=good.manifest.model_copy(update={"size": 10**8}), signature=good.signature
    )
    expired = sign_model(
        fleet.signing_key,
        m,
        name="monkey",
        version=2,
        now=datetime.now(UTC) - timedelta(days=40),
        valid_for=timedelta(days=30),
    )
    (store.slot("monkey")).mkdir(parents=True)
    (store.slot("monkey") / "state.json").write_text('{"version": 5, "file": "v5.onnx"}')
    for signed, words in [(forged, "signature"), (expired, "expired"), (good, "downgrade")]:
        final, fetched = run(store, fleet, url_job(signed))
        assert final.status == "REJECTED" and words in (final.reason or "")
        assert fetched == []  # not one byte asked for
    final, fetched = run(ModelStore(tmp_path / "other"), fleet, url_job(good, "file:///etc/shadow"))
    assert final.status == "REJECTED" and "not https" in (final.reason or "")
    assert fetched == []


def test_a_trickling_download_is_given_up_at_the_deadline(fleet: Fleet, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    m = tiny_model(3.0)
    signed = sign_model(fleet.signing_key, m, name="monkey", version=1)
    t0 = time.monotonic()
    final, fetched = run(store, fleet, url_job(signed), pause=0.05, deadline_s=0.3)
    assert fetched == ["https://hub.invalid/m.onnx"]
    assert time.monotonic() - t0 < 5
    assert final.status == "FAILED" and "longer than" in (final.reason or "")
    assert list(store.slot("monkey").iterdir()) == []
    assert store.installed_version("monkey") == 0
