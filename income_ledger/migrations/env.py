"""Alembic's entry point: runs the ledger's revisions on the connection it is handed.

`income-ledger db upgrade` hands it a connection already holding the schema lock, inside a
transaction. The `alembic` command (from a checkout, to write a revision) gets neither and
uses LEDGER_DATABASE_URL, so point that at a scratch database.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from income_ledger.schema_versions import compare_type, migration_engine, target_metadata


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        compare_type=compare_type,
        # SQLite alters a table by copying it; batch mode writes revisions that do that.
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("the ledger's revisions look at the database they upgrade: no --sql mode")
handed = context.config.attributes.get("connection")
if handed is not None:
    run(handed)
else:
    from income_ledger.settings import Settings

    engine = migration_engine(Settings().database_url)
    with engine.connect() as connection:
        run(connection)
        connection.commit()
    engine.dispose()
