"""Alembic environment: migrations run on the connection `workers.store.migrate` passes, or
on DATABASE_URL when run with the `alembic` command (alembic.ini at the repository root)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from workers.store.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    from workers.store import get_database

    with get_database().engine.begin() as conn:
        _run(conn)
