"""The alert tables: subscribers, troop incursions, which camera's incursion joined which
troop, and every delivery attempt."""

from __future__ import annotations

import sqlalchemy as sa

from mimamori.hub.store import TS, pk, table

subscribers = table(
    "alert_subscribers",
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("cameras", sa.String(500), nullable=False, default="*"),
    sa.Column("quiet_from", sa.Integer),  # local hour, e.g. 22
    sa.Column("quiet_to", sa.Integer),  # local hour, e.g. 5
    # 0: alerted at once; N: alerted if nobody has taken it after N escalation steps
    sa.Column("duty", sa.Integer, nullable=False, default=0),
)

troops = table(
    "troop_incursions",
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("cameras", sa.JSON, nullable=False),  # device ids in the order they saw it
    sa.Column("started", TS, nullable=False),
    sa.Column("last_seen", TS, nullable=False),
    sa.Column("ended", TS),
    sa.Column("max_score", sa.Float, nullable=False),
    sa.Column("snapshot", sa.Text),
    sa.Column("late", sa.Boolean, nullable=False, default=False),
    sa.Column("delivered", TS, nullable=False),
    sa.Column("taken_by", sa.String(64)),
    sa.Column("taken_at", TS),
)

sightings = table(
    "incursion_sightings",
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("incursion", sa.String(32), primary_key=True),
    sa.Column("troop", sa.String(32), nullable=False, index=True),
)

deliveries = table(
    "alert_deliveries",
    pk(),
    sa.Column("troop", sa.String(32), nullable=False, index=True),
    sa.Column("subscriber", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # alert | taken
    sa.Column("at", TS, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
)
