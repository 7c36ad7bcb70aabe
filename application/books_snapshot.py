"""The exceptions report's books kept in the database with the position they are valid at
(a snapshot of reconciliation.BooksFold), so that a new process (every CLI call, an API
worker just started) folds only the events recorded since, not the whole store (issue #10).

A snapshot names the event stored at its position (its originator id and version, and a
digest of its bytes as stored, topic and state: a Mark). A store restored to an older
state, failed over to a replica behind it, or another store altogether has no such event
there: the snapshot is ignored and the books are folded afresh (reconciliation.KeptBooks
checks its own fold the same way on every call). The digest tells apart the same payment
recorded again after a restore (its id is made from its channel and external id, so its
first event may land at the very same position with the same id and version): its state
holds the time it was recorded, which differs. The digest is stored as the first
DIGEST_SIZE bytes of the `books` column (no column of its own: no migration).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    String,
    Table,
    delete,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from application import event_store
from application.ledger import IncomeLedger
from application.tables import metadata

log = logging.getLogger(__name__)

EXCEPTIONS_BOOKS = "exceptions_books"

books_snapshot_table = Table(
    "books_snapshot",
    metadata,
    Column("name", String(50), primary_key=True),
    # The shape of `books` (reconciliation.BOOKS_SNAPSHOT_FORMAT): another is ignored.
    Column("format", Integer, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("originator_id", String(36), nullable=False),
    Column("originator_version", BigInteger, nullable=False),
    Column("books", LargeBinary, nullable=False),
    Column("saved_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Mark:
    """One event's place in one store: its position, which event it is, and a digest of
    its stored bytes (event_digest)."""

    position: int
    originator_id: str
    originator_version: int
    digest: bytes


DIGEST_SIZE = 32


def event_digest(topic: str, state: bytes) -> bytes:
    """SHA-256 of an event's topic and state as stored (the state holds its timestamp)."""
    return hashlib.sha256(topic.encode() + b"\0" + bytes(state)).digest()


def mark_of(notification: Any) -> Mark:
    """The mark of a stored event (a notification, as the recorder selects it)."""
    return Mark(
        notification.id,
        str(notification.originator_id),
        notification.originator_version,
        event_digest(notification.topic, notification.state),
    )


def mark_at(ledger: IncomeLedger, position: int) -> Mark | None:
    """The event stored at exactly this position (None: none is, or none is yet)."""
    found = ledger.recorder.select_notifications(start=position, limit=1, inclusive_of_start=True)
    if not found or found[0].id != position:
        return None
    return mark_of(found[0])


def stands(ledger: IncomeLedger, mark: Mark) -> bool:
    """Whether the store still holds this very event at its position: a store restored to
    an older state, or another store, does not."""
    return mark_at(ledger, mark.position) == mark


@dataclass(frozen=True)
class Snapshot:
    mark: Mark
    books: bytes


def load(ledger: IncomeLedger, name: str, books_format: int) -> Snapshot | None:
    """The snapshot stored under this name, if it is of this format and its event still
    stands in this store (else None: the caller folds afresh)."""
    table = books_snapshot_table
    try:
        with _engine(ledger).connect() as connection:
            row = connection.execute(select(table).where(table.c.name == name)).first()
    except SQLAlchemyError:
        log.warning("could not read the %s snapshot: folding the events afresh", name)
        return None
    if row is None or row.format != books_format:
        return None
    stored = bytes(row.books)
    mark = Mark(row.position, row.originator_id, row.originator_version, stored[:DIGEST_SIZE])
    if not stands(ledger, mark):
        log.warning(
            "the %s snapshot at position %d names an event this store does not hold there "
            "(a restore to an older state, or another store): folding the events afresh",
            name,
            mark.position,
        )
        forget(ledger, name, mark)
        return None
    return Snapshot(mark, stored[DIGEST_SIZE:])


def stored(ledger: IncomeLedger, name: str) -> tuple[int, Snapshot] | None:
    """The snapshot stored under this name as it is, with its format, whether or not it
    stands (None: none is stored). Reads only: for checking it (projections verify)."""
    table = books_snapshot_table
    with _engine(ledger).connect() as connection:
        row = connection.execute(select(table).where(table.c.name == name)).first()
    if row is None:
        return None
    books = bytes(row.books)
    mark = Mark(row.position, row.originator_id, row.originator_version, books[:DIGEST_SIZE])
    return row.format, Snapshot(mark, books[DIGEST_SIZE:])


def saved_position(ledger: IncomeLedger, name: str, books_format: int) -> int | None:
    """The position of the snapshot stored under this name (0: none, or one of an older
    format, which load ignores: books folded afresh replace it at once; None: unreadable,
    or of a newer format, a later release's, which this one leaves alone)."""
    table = books_snapshot_table
    try:
        with _engine(ledger).connect() as connection:
            row = connection.execute(
                select(table.c.position, table.c.format).where(table.c.name == name)
            ).first()
    except SQLAlchemyError:
        log.warning("could not read the %s snapshot's position", name)
        return None
    if row is None or row.format < books_format:
        return 0
    return row.position if row.format == books_format else None


def save(ledger: IncomeLedger, name: str, books_format: int, snapshot: Snapshot) -> None:
    """Store the snapshot unless one of a later position, or of a newer format, is stored
    already (two processes may save at once: the later books stay). A failure is logged, never raised: the
    snapshot only saves the next process time."""
    table = books_snapshot_table
    engine = _engine(ledger)
    insert = (postgresql if engine.dialect.name == "postgresql" else sqlite).insert
    values = {
        "name": name,
        "format": books_format,
        "position": snapshot.mark.position,
        "originator_id": snapshot.mark.originator_id,
        "originator_version": snapshot.mark.originator_version,
        # the mark's digest first (load)
        "books": snapshot.mark.digest + snapshot.books,
        "saved_at": datetime.now(UTC),
    }
    statement = insert(table).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.name],
        set_={key: statement.excluded[key] for key in values if key != "name"},
        # One of an older format is replaced whatever its position (load ignores it); one
        # of a newer format (a later release's, while both run) is left alone.
        where=(
            (table.c.format == statement.excluded.format)
            & (table.c.position < statement.excluded.position)
        )
        | (table.c.format < statement.excluded.format),
    )
    try:
        with engine.begin() as connection:
            connection.execute(statement)
    except SQLAlchemyError:
        log.warning("could not save the %s snapshot: the next process folds more", name)


def forget(ledger: IncomeLedger, name: str, mark: Mark) -> None:
    """Delete a snapshot whose event no longer stands, or that cannot be read (unless another
    process replaced it meanwhile), so that the books folded afresh can be saved in its place."""
    table = books_snapshot_table
    try:
        with _engine(ledger).begin() as connection:
            connection.execute(
                delete(table).where(
                    table.c.name == name,
                    table.c.position == mark.position,
                    table.c.originator_id == mark.originator_id,
                )
            )
    except SQLAlchemyError:
        log.warning("could not delete the stale %s snapshot", name)


def _engine(ledger: IncomeLedger) -> Engine:
    engine = event_store.engine(ledger.recorder)
    assert engine is not None, "the ledger is open"
    return engine
