"""Alembic's entry point: run by ``hub.migrations`` on the connection it hands over."""

from __future__ import annotations

from alembic import context

from mimamori.hub.migrations import ON_APPLY, target_metadata

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=target_metadata(),
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters a table by copying it
    compare_type=True,
    on_version_apply=config.attributes.get(ON_APPLY),
)
with context.begin_transaction():
    context.run_migrations()
