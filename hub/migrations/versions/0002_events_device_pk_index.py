"""Index events by (device, pk): a device's newest events without sorting all of them.

``Store.events(dev)`` (the device page, the API) reads ``WHERE device = ? ORDER BY pk DESC
LIMIT n``; ``events_device_seq`` finds the device's rows but not in ``pk`` order, so
PostgreSQL sorted every event the device ever sent.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 02:05:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("events_device_pk", "events", ["device", "pk"])


def downgrade() -> None:
    op.drop_index("events_device_pk", table_name="events")
