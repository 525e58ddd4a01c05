"""Signed model updates on the device: verify, install atomically, self-test, roll back.

A model slot ``NAME`` lives in ``data_dir/models/NAME/``: one file per version
(``v7.onnx``) and a ``current`` symlink that is swapped atomically (new link, fsync, rename).
The previous version stays on disk so a failed self-test can switch back, and so the hub
can ask for it again (``rollback``).

A model fetched from a job's URL is never held in memory: the signed manifest is checked
first, then ``edge.download`` streams the body into a partial file in the slot (capped at the
manifest's size, hashed, resumed after a cut), and only that verified file is installed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http.client
import io
import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mimamori.edge import contract
from mimamori.edge.download import Fetch, deadline_for, download
from mimamori.edge.errors import UpdateFailed, UpdateRejected

log = logging.getLogger(__name__)

#: runs the freshly installed model once; raises if it does not work
SelfTest = Callable[[Path], None]


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise UpdateRejected(f"{path}: not an Ed25519 public key")
    return key


def verify_manifest(
    signed: contract.SignedManifest,
    key: Ed25519PublicKey,
    *,
    installed_version: int,
    now: datetime | None = None,
) -> contract.ModelManifest:
    """Check signature, expiry and version, before any model byte is fetched."""
    m = _signed_and_current(signed, key, now)
    _check_newer(m, installed_version)
    return m


def verify(
    signed: contract.SignedManifest,
    model: bytes,
    key: Ed25519PublicKey,
    *,
    installed_version: int,
    now: datetime | None = None,
) -> contract.ModelManifest:
    """Check signature, hash, size, version and expiry; raise UpdateRejected with the reason."""
    m = _signed_and_current(signed, key, now)
    if len(model) != m.size:
        raise UpdateRejected(f"model is {len(model)} bytes, manifest says {m.size}")
    digest = hashlib.sha256(model).hexdigest()
    if digest != m.sha256:
        raise UpdateRejected(f"model sha256 {digest} does not match the manifest's {m.sha256}")
    _check_newer(m, installed_version)
    return m


def _signed_and_current(
    signed: contract.SignedManifest, key: Ed25519PublicKey, now: datetime | None
) -> contract.ModelManifest:
    m = signed.manifest
    try:
        key.verify(base64.b64decode(signed.signature, validate=True), m.canonical())
    except (InvalidSignature, binascii.Error, ValueError):
        raise UpdateRejected(
            "signature does not verify with the fleet's model-signing key"
        ) from None
    now = now or datetime.now(UTC)
    if now > m.expires:
        raise UpdateRejected(f"manifest expired at {contract.iso(m.expires)}")
    return m


def _check_newer(m: contract.ModelManifest, installed_version: int) -> None:
    if m.version <= installed_version:
        raise UpdateRejected(
            f"version {m.version} is not newer than the installed {installed_version} (downgrade)"
        )


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        #: one update at a time: a download, its install and its self-test
        self.lock = threading.Lock()

    def slot(self, name: str) -> Path:
        return self.root / name

    def current(self, name: str) -> Path | None:
        link = self.slot(name) / "current"
        return link.resolve() if link.exists() else None

    def installed_version(self, name: str) -> int:
        state = self.slot(name) / "state.json"
        try:
            return int(json.loads(state.read_text())["version"])
        except (FileNotFoundError, KeyError, ValueError):
            return 0

    def _point(self, name: str, target: Path, version: int) -> None:
        slot = self.slot(name)
        tmp = slot / "current.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target.name)
        tmp.replace(slot / "current")
        state = slot / "state.json.tmp"
        state.write_text(json.dumps({"version": version, "file": target.name}))
        _fsync_file(state)
        state.replace(slot / "state.json")
        _fsync_dir(slot)

    def install(self, manifest: contract.ModelManifest, model: Path, self_test: SelfTest) -> Path:
        """Move the verified ``model`` (from ``edge.download``) into place, switch ``current``,
        self-test; on failure switch back and raise."""
        slot = self.slot(manifest.name)
        slot.mkdir(parents=True, exist_ok=True)
        previous = self.current(manifest.name)
        previous_version = self.installed_version(manifest.name)
        final = slot / f"v{manifest.version}.onnx"
        model.replace(final)  # same folder: a rename, the bytes are not copied
        self._point(manifest.name, final, manifest.version)
        try:
            self_test(final)
        except Exception as e:
            if previous is not None:
                self._point(manifest.name, previous, previous_version)
            else:
                (slot / "current").unlink(missing_ok=True)
                (slot / "state.json").unlink(missing_ok=True)
            final.unlink(missing_ok=True)
            raise UpdateFailed(
                f"self-test failed, rolled back to version {previous_version}: {e}"
            ) from e
        for old in slot.glob("v*.onnx"):  # keep the new and the previous one only
            if old not in (final, previous):
                old.unlink()
        log.info("model %s version %d installed", manifest.name, manifest.version)
        return final

    def rollback(self, name: str) -> int:
        """Switch ``current`` back to the previous version kept on disk; return its number."""
        with self.lock:
            installed = self.installed_version(name)
            kept = [
                (int(p.stem[1:]), p)
                for p in self.slot(name).glob("v*.onnx")
                if p.stem[1:].isdigit() and int(p.stem[1:]) < installed
            ]
            if not kept:
                raise UpdateFailed(f"no version of {name} before {installed} is kept")
            version, previous = max(kept)
            self._point(name, previous, version)
        log.info("model %s rolled back from version %d to %d", name, installed, version)
        return version


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    _fsync_file(path)


def onnx_self_test(path: Path) -> None:
    """Load the model with onnxruntime and run it once on zeros of its input shape."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    outputs = session.run(None, {inp.name: np.zeros(shape, dtype=np.float32)})
    if not outputs or not all(np.isfinite(np.asarray(o, dtype=np.float64)).all() for o in outputs):
        raise UpdateFailed("model output is empty or not finite")


def run_job(
    job: contract.JobDocument,
    store: ModelStore,
    key: Ed25519PublicKey,
    report: Callable[[contract.JobStatus], None],
    *,
    fetch: Fetch,
    self_test: SelfTest = onnx_self_test,
    deadline_s: float | None = None,
) -> contract.JobStatus:
    """Carry out a model-update job, reporting IN_PROGRESS (with the bytes downloaded and the
    resumes so far) then a final state. The download's deadline is ``deadline_for`` the
    signed size unless ``deadline_s`` is given.

    ``fetch`` opens ``job.url`` from an offset (HTTPS, with the device's certificate); it is
    called only after the signed manifest has been accepted.
    """

    def status(
        state: contract.JobState, reason: str | None = None, /, **detail: object
    ) -> contract.JobStatus:
        st = contract.JobStatus(job_id=job.job_id, status=state, reason=reason, detail=dict(detail))
        report(st)
        return st

    status("IN_PROGRESS", step="verifying")
    m = job.update.manifest
    slot = store.slot(m.name)
    deadline_s = deadline_for(m.size) if deadline_s is None else deadline_s
    fetched: dict[str, object] = {}  # resumes of a download by URL
    with store.lock:
        installed = store.installed_version(m.name)
        try:
            if job.model_b64 is not None:
                model = base64.b64decode(job.model_b64, validate=True)
                verify(job.update, model, key, installed_version=installed)
                verified = download(
                    m, "inline", lambda url, at: io.BytesIO(model[at:]), slot, deadline_s=deadline_s
                )
                del model
            elif job.url:
                verify_manifest(job.update, key, installed_version=installed)
                if urlsplit(job.url).scheme != "https":
                    raise UpdateRejected(f"model URL {job.url!r} is not https")

                def progress(got: int, resumes: int) -> None:
                    fetched["resumes"] = resumes
                    status(
                        "IN_PROGRESS", step="downloading", bytes=got, size=m.size, resumes=resumes
                    )

                verified = download(
                    m, job.url, fetch, slot, deadline_s=deadline_s, progress=progress
                )
            else:
                raise UpdateRejected("job carries neither model bytes nor a URL")
        except (UpdateRejected, binascii.Error) as e:
            log.warning("model update %s rejected: %s", job.job_id, e)
            return status("REJECTED", str(e), version=installed)
        except UpdateFailed as e:
            log.warning("model update %s failed: %s", job.job_id, e)
            return status("FAILED", str(e), version=installed)
        except (OSError, http.client.HTTPException, ValueError) as e:
            log.warning("model update %s: cannot fetch the model: %s", job.job_id, e)
            return status("FAILED", f"cannot fetch the model: {str(e) or type(e).__name__}")
        try:
            store.install(m, verified, self_test)
        except (UpdateFailed, OSError) as e:
            log.error("model update %s failed: %s", job.job_id, e)
            verified.unlink(missing_ok=True)
            return status("FAILED", str(e), version=store.installed_version(m.name))
    return status("SUCCEEDED", version=m.version, sha256=m.sha256, self_test="passed", **fetched)
