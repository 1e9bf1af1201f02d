"""Alembic environment: run by ``service.store.migrate`` with a live connection (no alembic.ini).

For a new revision: ``.venv/bin/python -m service.store.migrate revision "what changed"``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from service.store.models import Base

config = context.config


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite",
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    with create_engine(config.get_main_option("sqlalchemy.url") or "").connect() as conn:
        _run(conn)
