"""Staged model rollouts: a signed model kept at the hub, sent to one device first, then to
the rest of its role.

A rollout is one signed model (``model_rollouts``), its file kept as ``[models] dir/ID.onnx``;
each device it goes to gets its own job (``model_jobs``). A model that fits one MQTT message
(``hub.jobs.MAX_INLINE_BYTES``, about 1.5 MB) travels inside the job, as it always did: no
second connection to fail. A larger one travels by a URL that names the job, so the model
server (``hub.model_server``) hands the file only to the device of the job. The first
device's job state, its self-test and its telemetry in the hour after install are what staff
look at before pushing to the rest.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mimamori.edge import contract
from mimamori.hub import jobs
from mimamori.hub.config import ModelsSection
from mimamori.hub.store import TS, Store, fetch_all, fetch_one, table, telemetry
from mimamori.hub.store import jobs as job_states

#: how long after install the first device's telemetry is shown
WATCH = timedelta(hours=1)

rollouts = table(
    "model_rollouts",
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("first_device", sa.String(64), nullable=False),
    sa.Column("signed", sa.JSON, nullable=False),
    sa.Column("created", TS, nullable=False),
    sa.Column("rest_at", TS),
)

model_jobs = table(
    "model_jobs",
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("rollout", sa.String(64), nullable=False, index=True),
    sa.Column("device", sa.String(64), nullable=False),
    sa.Column("sent", TS, nullable=False),
)


class Rollouts:
    def __init__(self, store: Store, cfg: ModelsSection) -> None:
        self.store = store
        self.cfg = cfg

    def file(self, rollout: str) -> Path:
        return self.cfg.dir / f"{rollout}.onnx"

    def add(self, model: Path, signed: contract.SignedManifest, role: str, first: str) -> str:
        """Keep ``model`` for a new rollout to ``role`` starting with device ``first``."""
        jobs.check_size(model.stat().st_size, signed)
        m = signed.manifest
        rollout = jobs.job_id(m).removeprefix("model-")
        self.cfg.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.file(rollout).with_suffix(".tmp")
        shutil.copyfile(model, tmp)
        tmp.replace(self.file(rollout))
        with self.store.engine.begin() as conn:
            conn.execute(
                rollouts.insert().values(
                    id=rollout,
                    name=m.name,
                    version=m.version,
                    size=m.size,
                    role=role,
                    first_device=first,
                    signed=signed.model_dump(mode="json"),
                    created=datetime.now(UTC),
                )
            )
        return rollout

    def job(self, rollout: str, dev: str) -> contract.JobDocument:
        """A job that sends the rollout's model to ``dev`` (recorded; not published): inline
        when it fits one message, else by the URL only ``dev`` may fetch."""
        row = self.get(rollout)
        if row is None:
            raise jobs.JobError(f"no rollout {rollout!r}")
        signed = contract.SignedManifest.model_validate(row["signed"])
        if row["size"] <= jobs.MAX_INLINE_BYTES:
            doc = jobs.model_job(self.file(rollout).read_bytes(), signed)
        else:
            job_id = jobs.job_id(signed.manifest)
            doc = contract.JobDocument(
                job_id=job_id,
                operation="model-update",
                update=signed,
                url=f"{self.cfg.public_url.rstrip('/')}/jobs/{job_id}",
            )
        with self.store.engine.begin() as conn:
            conn.execute(
                model_jobs.insert().values(
                    job_id=doc.job_id, rollout=rollout, device=dev, sent=datetime.now(UTC)
                )
            )
        return doc

    def rest(self, rollout: str, fleet: list[str]) -> list[tuple[str, contract.JobDocument]]:
        """Jobs for the devices of ``fleet`` that have none in this rollout yet."""
        done = {d["device"] for d in self.devices(rollout)}
        sent = [(dev, self.job(rollout, dev)) for dev in fleet if dev not in done]
        with self.store.engine.begin() as conn:
            conn.execute(
                rollouts.update().where(rollouts.c.id == rollout).values(rest_at=datetime.now(UTC))
            )
        return sent

    def target(self, job_id: str) -> tuple[str, Path] | None:
        """The device a job names and the file it may fetch, or None for no such job."""
        row = fetch_one(
            self.store.engine, sa.select(model_jobs).where(model_jobs.c.job_id == job_id)
        )
        return (row["device"], self.file(row["rollout"])) if row else None

    # -- reading -------------------------------------------------------------------------

    def get(self, rollout: str) -> dict[str, Any] | None:
        return fetch_one(self.store.engine, sa.select(rollouts).where(rollouts.c.id == rollout))

    def all(self) -> list[dict[str, Any]]:
        return fetch_all(self.store.engine, sa.select(rollouts).order_by(rollouts.c.created.desc()))

    def devices(self, rollout: str) -> list[dict[str, Any]]:
        """Each job of the rollout, oldest first, with the state its device last reported."""
        j = job_states
        q = (
            sa.select(
                model_jobs,
                j.c.status,
                j.c.reason,
                j.c.detail,
                j.c.updated,
            )
            .select_from(
                model_jobs.outerjoin(
                    j, sa.and_(j.c.job_id == model_jobs.c.job_id, j.c.device == model_jobs.c.device)
                )
            )
            .where(model_jobs.c.rollout == rollout)
            .order_by(model_jobs.c.sent)
        )
        return fetch_all(self.store.engine, q)

    def watch(self, dev: str, installed: datetime) -> list[dict[str, Any]]:
        """``dev``'s telemetry in the hour after ``installed``, oldest first."""
        q = (
            sa.select(telemetry.c.ts, telemetry.c.data)
            .where(
                telemetry.c.device == dev,
                telemetry.c.ts >= installed,
                telemetry.c.ts < installed + WATCH,
            )
            .order_by(telemetry.c.ts)
        )
        return fetch_all(self.store.engine, q)
