"""The initial schema: the tables ``create_all`` made before migrations existed.

A database made that way is marked as this revision by `mimamori hub db stamp`.

Revision ID: 0001
Revises: -
Create Date: 2026-12-03 01:55:59.840240
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_deliveries",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("troop", sa.String(length=32), nullable=False),
        sa.Column("subscriber", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    op.create_index("ix_alert_deliveries_troop", "alert_deliveries", ["troop"])

    op.create_table(
        "alert_subscribers",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("cameras", sa.String(length=500), nullable=False),
        sa.Column("quiet_from", sa.Integer(), nullable=True),
        sa.Column("quiet_to", sa.Integer(), nullable=True),
        sa.Column("duty", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "audit_log",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])

    op.create_table(
        "command_replies",
        sa.Column("corr", sa.String(length=64), nullable=False),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("args", sa.JSON(), nullable=True),
        sa.Column("sent", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replied", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("corr"),
    )
    op.create_index("ix_command_replies_device", "command_replies", ["device"])

    op.create_table(
        "counter_calls",
        sa.Column("call", sa.String(length=32), nullable=False),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("rang", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered", sa.DateTime(timezone=True), nullable=True),
        sa.Column("staff", sa.String(length=64), nullable=True),
        sa.Column("ended", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("call"),
    )
    op.create_index("ix_counter_calls_device", "counter_calls", ["device"])
    op.create_index("ix_counter_calls_rang", "counter_calls", ["rang"])

    op.create_table(
        "counter_stills",
        sa.Column("still", sa.String(length=32), nullable=False),
        sa.Column("call", sa.String(length=32), nullable=False),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("staff", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("saved", sa.DateTime(timezone=True), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("jpeg", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("still"),
    )
    op.create_index("ix_counter_stills_call", "counter_stills", ["call"])
    op.create_index("ix_counter_stills_saved", "counter_stills", ["saved"])

    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=True),
        sa.Column("location", sa.String(length=200), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("bdseq", sa.BigInteger(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("birth", sa.JSON(), nullable=True),
        sa.Column("tele", sa.JSON(), nullable=True),
        sa.Column("tele_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reported", sa.JSON(), nullable=True),
        sa.Column("desired_version", sa.Integer(), nullable=False),
        sa.Column("desired_config", sa.JSON(), nullable=True),
        sa.Column("desired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "events",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("prio", sa.SmallInteger(), nullable=False),
        sa.Column("hist", sa.Boolean(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("device", "event_id", name="events_device_event_id"),
    )
    op.create_index("events_device_seq", "events", ["device", "seq"])
    op.create_index("events_kind_created", "events", ["kind", "created"])

    op.create_table(
        "incursion_sightings",
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("incursion", sa.String(length=32), nullable=False),
        sa.Column("troop", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("device", "incursion"),
    )
    op.create_index("ix_incursion_sightings_troop", "incursion_sightings", ["troop"])

    op.create_table(
        "ingest_reject_log",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("topic", sa.String(length=300), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    op.create_table(
        "ingest_rejects",
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("reason"),
    )
    op.create_table(
        "job_status",
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("device", "job_id"),
    )
    op.create_table(
        "ridership_vehicle_factors",
        sa.Column("vehicle", sa.String(length=40), nullable=False),
        sa.Column("board", sa.Float(), nullable=False),
        sa.Column("alight", sa.Float(), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("set_by", sa.String(length=64), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("vehicle"),
    )
    op.create_table(
        "staff_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_staff_sessions_user", "staff_sessions", ["user"])

    op.create_table(
        "staff_users",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=300), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "telemetry",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    op.create_index("ix_telemetry_device", "telemetry", ["device"])

    op.create_table(
        "troop_incursions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("cameras", sa.JSON(), nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended", sa.DateTime(timezone=True), nullable=True),
        sa.Column("max_score", sa.Float(), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=True),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("delivered", sa.DateTime(timezone=True), nullable=False),
        sa.Column("taken_by", sa.String(length=64), nullable=True),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("troop_incursions")
    op.drop_table("telemetry")
    op.drop_table("staff_users")
    op.drop_table("staff_sessions")
    op.drop_table("ridership_vehicle_factors")
    op.drop_table("job_status")
    op.drop_table("ingest_rejects")
    op.drop_table("ingest_reject_log")
    op.drop_table("incursion_sightings")
    op.drop_table("events")
    op.drop_table("devices")
    op.drop_table("counter_stills")
    op.drop_table("counter_calls")
    op.drop_table("command_replies")
    op.drop_table("audit_log")
    op.drop_table("alert_subscribers")
    op.drop_table("alert_deliveries")
