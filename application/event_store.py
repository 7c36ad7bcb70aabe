"""The one place in the application that knows how eventsourcing-sqlalchemy keeps events.

A command's own rows (idempotency, payer details, period gates) commit in the same SQLAlchemy
transaction as its events, and a few queries read the events table directly. Every use case
asks this module for the session, the engine and the events table, so that a change in the
persistence module's internals is met here alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import sqlalchemy
import sqlalchemy.event
from eventsourcing.persistence import Recorder, StoredEvent
from eventsourcing_sqlalchemy.datastore import transactions
from eventsourcing_sqlalchemy.recorders import SQLAlchemyAggregateRecorder
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy_utils.types.uuid import UUIDType


def _sqlalchemy(recorder: Recorder) -> SQLAlchemyAggregateRecorder:
    if not isinstance(recorder, SQLAlchemyAggregateRecorder):
        raise TypeError(f"the event store must be eventsourcing-sqlalchemy's, not {recorder!r}")
    return recorder


@contextmanager
def transaction(recorder: Recorder, commit: bool = True) -> Iterator[Session]:
    """The session the event recorder writes in; nested uses join the outer transaction."""
    with _sqlalchemy(recorder).transaction(commit=commit) as session:
        yield session


def when_committed(recorder: Recorder, keep: Callable[[], None]) -> None:
    """Run `keep`, which puts what was just read into a cache the whole process shares, once
    that read is known to be committed: at once outside a write transaction (or in a
    read-only one); after the COMMIT inside a write transaction, whose reads see its own
    uncommitted events; never when it rolls back (a deadlock, a refused insert, an outage),
    or the cache would hold events that never happened, and miss the real ones that later
    take their versions."""
    session = _writing(recorder)
    if session is None:
        keep()
        return
    session.info.setdefault(_ON_COMMIT, []).append(keep)


def when_rolled_back(recorder: Recorder, forget: Callable[[], None]) -> None:
    """Run `forget` if the write transaction this runs in ends without committing (nothing
    outside one): for what a cache took in from the transaction's own writes."""
    session = _writing(recorder)
    if session is not None:
        session.info.setdefault(_ON_ROLLBACK, []).append(forget)


def _writing(recorder: Recorder) -> Session | None:
    _sqlalchemy(recorder)
    current = transactions.get(None)
    return current.session if current is not None and current.commit else None


_ON_COMMIT = "income_ledger.on_commit"
_ON_ROLLBACK = "income_ledger.on_rollback"


@sqlalchemy.event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    session.info.pop(_ON_ROLLBACK, None)
    for keep in session.info.pop(_ON_COMMIT, ()):
        keep()


@sqlalchemy.event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    # Whatever is still waiting here did not commit: a rollback, a failed COMMIT, a close.
    if transaction.parent is None:
        session.info.pop(_ON_COMMIT, None)
        for forget in session.info.pop(_ON_ROLLBACK, ()):
            forget()


def engine(recorder: Recorder) -> Engine | None:
    """The event store's engine (None once it has been disposed of)."""
    return _sqlalchemy(recorder).datastore.engine


def events_table_name(recorder: Recorder) -> str:
    return _sqlalchemy(recorder).events_table_name


def events_record_class(recorder: Recorder) -> Any:
    """The ORM class of the events table (its columns: originator_id, originator_version...)."""
    return _sqlalchemy(recorder).events_record_cls


def originator_id_value(recorder: Recorder, dialect: Any) -> Callable[[Any], Any]:
    """How SQLAlchemy stores an originator id in this database (the ORM's own value).

    On SQLite a UUID id of a binary UUID column is stored as its 16 bytes: given as such,
    not through SQLAlchemy's processor (the type's checks, then the driver's Binary wrapper
    around the same bytes), which cost 0.7 us an id, a fiftieth of a bulk batch's time
    (#9). Any other id, column or database goes through it."""
    column_type = events_record_class(recorder).__table__.c.originator_id.type
    process = column_type.bind_processor(dialect) or (lambda value: value)
    if not (dialect.name == "sqlite" and isinstance(column_type, UUIDType) and column_type.binary):
        return process

    def value(originator_id: Any) -> Any:
        return originator_id.bytes if type(originator_id) is UUID else process(originator_id)

    return value


def originators_stored(
    recorder: Recorder, session: Session, ids: Sequence[Any], chunk: int
) -> Iterator[Any]:
    """Those of `ids` whose aggregate has its first event stored, as the ORM reads them, on
    SQLite: by the driver's own statement (its `?` marks), `chunk` ids at a time, each id
    given as the ORM stores it.

    SQLAlchemy compiling the same query (an IN list of bound ids, each through the column
    type's processor) took 0.7 s of CPU for an import's 100,000 new receipts on SQLite, a
    fifth of the importing process's serial work; the driver and the index, 0.1 s."""
    record_class = events_record_class(recorder)
    table = f"{record_class.__table__.fullname}"
    connection = session.connection()
    dialect = connection.dialect
    value = originator_id_value(recorder, dialect)
    column_type = record_class.__table__.c.originator_id.type
    result = column_type.result_processor(dialect, None) or (lambda stored: stored)
    for start in range(0, len(ids), chunk):
        part = [value(originator_id) for originator_id in ids[start : start + chunk]]
        marks = ", ".join("?" * len(part))
        rows = connection.exec_driver_sql(
            f"SELECT originator_id FROM {table} "
            f"WHERE originator_version = 1 AND originator_id IN ({marks})",
            tuple(part),
        )
        for (stored,) in rows:
            yield result(stored)


def leave_to_parent(recorder: Recorder) -> None:
    """In a process forked from one using the event store (application.forked): forget the
    parent's pooled connections without closing them (they are the parent's), and refuse
    any new one, so that nothing here can use or disturb the parent's database session."""
    database = engine(recorder)
    if database is None:
        return
    database.dispose(close=False)
    sqlalchemy.event.listen(database, "do_connect", _refuse_connection)


def _refuse_connection(*_: Any) -> None:
    raise RuntimeError("a forked worker process must not use the database (application.forked)")


def first_events(recorder: Recorder, ids: Sequence[UUID], chunk: int) -> Iterator[StoredEvent]:
    """The first stored event (its creation) of each aggregate of `ids` that has one,
    `chunk` ids to a query: a batch's receipts at once, not one query each (eventsourcing's
    select_events reads one aggregate). Plain rows, not ORM objects: a third of the time
    for 20,000 receipts."""
    table = events_record_class(recorder).__table__
    columns = (table.c.originator_id, table.c.topic, table.c.state)
    with transaction(recorder, commit=False) as session:
        for start in range(0, len(ids), chunk):
            rows = session.execute(
                sqlalchemy.select(*columns).where(
                    table.c.originator_version == 1,
                    table.c.originator_id.in_(ids[start : start + chunk]),
                )
            )
            for originator_id, topic, state in rows:
                yield StoredEvent(
                    originator_id=originator_id,
                    originator_version=1,
                    topic=topic,
                    state=bytes(state) if isinstance(state, memoryview) else state,
                )
