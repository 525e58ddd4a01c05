"""Model rollouts: models served by the hub over HTTPS, one job per device, and the detail
(bytes, resumes, self-test) of each job's state.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 05:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("job_status", sa.Column("detail", sa.JSON(), nullable=True))
    op.create_table(
        "model_rollouts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("first_device", sa.String(length=64), nullable=False),
        sa.Column("signed", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rest_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "model_jobs",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("rollout", sa.String(length=64), nullable=False),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("sent", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_id"),
    )
    op.create_index("ix_model_jobs_rollout", "model_jobs", ["rollout"])


def downgrade() -> None:
    op.drop_index("ix_model_jobs_rollout", table_name="model_jobs")
    op.drop_table("model_jobs")
    op.drop_table("model_rollouts")
    op.drop_column("job_status", "detail")
