"""Alembic environment for the store. microseg runs migrations programmatically
(`microseg db init`, or automatically when a store is opened) and passes its connection in
`config.attributes["connection"]`. For development (`alembic revision --autogenerate`),
run alembic with `-c src/microseg/store/migrations/alembic.ini` and MICROSEG_DATABASE_URL set.
"""

from __future__ import annotations

from alembic import context

from microseg.store.schema import Base

target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place: later migrations copy-and-move tables.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    from microseg.store.database import create_store_engine, database_url

    engine = create_store_engine(database_url())
    with engine.connect() as own_connection:
        _run(own_connection)
    engine.dispose()
