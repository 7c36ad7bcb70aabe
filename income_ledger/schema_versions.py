"""The database schema's version: Alembic revisions in income_ledger/migrations (issue #13).

`upgrade_database` brings any database the ledger has made (empty, release 0.1.0 without a
version, or an older revision) to this release's schema, serialised across processes: a
PostgreSQL advisory lock, or SQLite's write lock held for the whole upgrade. Every revision
runs in one transaction, so an upgrade that fails changes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    BINARY,
    NUMERIC,
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    Uuid,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.types import TypeEngine

from application.tables import metadata as application_metadata

EVENTS_TABLE = "ledger_events"
MIGRATIONS = "income_ledger:migrations"
# An arbitrary constant: the PostgreSQL advisory lock that serialises schema changes.
SCHEMA_LOCK_ID = 727_001
# How long a process waits for another's upgrade of a SQLite file before giving up.
SQLITE_LOCK_WAIT_S = 120

# The event store table exactly as eventsourcing-sqlalchemy creates it (tests hold the two
# together): declared here so that Alembic owns it like every other table.
events_metadata = MetaData()
Table(
    EVENTS_TABLE,
    events_metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("originator_id", Uuid().with_variant(BINARY(16), "sqlite"), nullable=False),
    Column("originator_version", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
    Column("topic", Text(), nullable=False),
    Column("state", LargeBinary(), nullable=False),
    Index(f"{EVENTS_TABLE}_aggregate_idx", "originator_id", "originator_version", unique=True),
)


def compare_type(
    context: MigrationContext,
    inspected_column: Column[Any],
    metadata_column: Column[Any],
    inspected_type: TypeEngine[Any],
    metadata_type: TypeEngine[Any],
) -> bool | None:
    """Alembic's type comparison, except where SQLite cannot say what it was told: it reads
    a BINARY(16) column back as NUMERIC(16) (the type's affinity), which is no change."""
    if (
        context.dialect.name == "sqlite"
        and isinstance(metadata_type.dialect_impl(context.dialect), BINARY)
        and isinstance(inspected_type, NUMERIC)
    ):
        return False
    return None  # Alembic's own comparison


def target_metadata() -> MetaData:
    """Every table the ledger owns, as this release's code defines it: the migrations must
    build exactly this (tests/ops/test_migrations.py compares them)."""
    import application.books_snapshot  # noqa: F401 (its table is in application_metadata)
    from projections.chain import chain_metadata
    from projections.schema import LIVE, tracking_metadata
    from projections.status import status_metadata

    combined = MetaData()
    for metadata in (
        events_metadata,
        application_metadata,
        LIVE.metadata,
        tracking_metadata,
        status_metadata,
        chain_metadata,
    ):
        for table in metadata.tables.values():
            table.to_metadata(combined)
    return combined


class DatabaseNotInitialised(RuntimeError):
    """The database is not at the schema this release needs; the message says what to run."""


@dataclass(frozen=True)
class SchemaVersion:
    current: str | None  # the revision stamped in the database; None when it has none
    head: str  # the revision this release needs
    has_tables: bool  # any of the ledger's tables exist (a database without a revision
    # but with tables was made by release 0.1.0, before migrations)

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    @property
    def known(self) -> bool:
        """False when a newer release has upgraded the database past this one's revisions."""
        return self.current is None or self.current in _revisions()

    def describe(self) -> str:
        if self.up_to_date:
            return f"schema at revision {self.current}: up to date"
        if not self.known:
            return (
                f"schema at revision {self.current}, which this release does not know: a "
                f"newer release of income-ledger upgraded it (this one needs {self.head})"
            )
        if self.current is None and not self.has_tables:
            return f"no ledger tables yet: `income-ledger db init` creates them ({self.head})"
        was = self.current or "release 0.1.0, from before migrations"
        return f"schema at {was}; this release needs {self.head}: run `income-ledger db upgrade`"

    def to_dict(self) -> dict[str, object]:
        return {
            "current": self.current,
            "head": self.head,
            "up_to_date": self.up_to_date,
            "known": self.known,
            "has_tables": self.has_tables,
        }


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = connection
    return config


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


@functools.cache
def _revisions() -> frozenset[str]:
    return frozenset(revision.revision for revision in _script().walk_revisions())


def head_revision() -> str:
    head = _script().get_current_head()
    assert head is not None, "income_ledger/migrations has no revisions"
    return head


def schema_version(database_url: str) -> SchemaVersion:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
            existing = set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
    owned = set(target_metadata().tables)
    return SchemaVersion(current, head_revision(), bool(existing & owned))


def upgrade_database(database_url: str, revision: str = "head") -> tuple[str | None, str]:
    """Apply the revisions the database lacks; returns its revision before and after."""
    engine = migration_engine(database_url)
    try:
        with schema_lock(engine), engine.connect() as connection:
            with connection.begin():
                before = MigrationContext.configure(connection).get_current_revision()
                if before is not None and before not in _revisions():
                    raise DatabaseNotInitialised(
                        f"{SchemaVersion(before, head_revision(), True).describe()}; "
                        "nothing was changed"
                    )
                command.upgrade(alembic_config(connection), revision)
                after = MigrationContext.configure(connection).get_current_revision()
            if engine.dialect.name == "sqlite":
                # WAL is a property of the file: set it here, once, so that no later process
                # has to switch the journal mode while another holds the write lock. Straight
                # to the driver: the engine would wrap it in a transaction, where SQLite
                # refuses it.
                connection.connection.driver_connection.execute("PRAGMA journal_mode=WAL")  # type: ignore[union-attr]
    finally:
        engine.dispose()
    assert after is not None
    return before, after


def migration_engine(database_url: str) -> Engine:
    """An engine whose transactions hold the whole database while they change the schema.

    pysqlite starts no transaction before DDL, so each CREATE would commit on its own and
    two processes could interleave; this engine begins every transaction itself with
    BEGIN IMMEDIATE (SQLite's write lock, released at commit), as SQLAlchemy's pysqlite
    documentation recommends.
    """
    if not database_url.startswith("sqlite"):
        return create_engine(database_url)
    engine = create_engine(database_url, connect_args={"timeout": SQLITE_LOCK_WAIT_S})

    @event.listens_for(engine, "connect")
    def _driver_leaves_transactions_to_us(dbapi_connection: object, _: object) -> None:
        dbapi_connection.isolation_level = None  # type: ignore[attr-defined]

    @event.listens_for(engine, "begin")
    def _take_the_write_lock(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextmanager
def schema_lock(engine: Engine) -> Iterator[None]:
    """On PostgreSQL, one process at a time changes the schema (SQLite: see migration_engine)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": SCHEMA_LOCK_ID})
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": SCHEMA_LOCK_ID})
            connection.commit()


def revisions_between(before: str | None, after: str) -> list[str]:
    """The revisions an upgrade from `before` to `after` applied, oldest first, each as
    'id: first line of its description'."""
    applied = _script().iterate_revisions(after, before or "base")
    return [f"{r.revision}: {(r.doc or '').splitlines()[0]}" for r in reversed(list(applied))]
