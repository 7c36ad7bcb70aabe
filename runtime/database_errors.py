"""What a database failure was: a lost connection, or a database that answered but gave the
statement up (a timeout, a lock wait, a clash with another transaction).

Pure classification of the drivers' and libraries' exceptions, for application (what to
tell a caller) and projections (what to log) alike.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from enum import Enum

import eventsourcing.persistence as es
import psycopg2
import psycopg2.errors
import sqlalchemy.exc

# What a lost, refused or broken database connection looks like from here: eventsourcing
# wraps SQLAlchemy's errors (which wrap the driver's) when they reach the outermost
# transaction; inside a nested one, or outside eventsourcing, they arrive unwrapped.
DATABASE_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    es.OperationalError,
    es.InterfaceError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
)


class Delay(Enum):
    """A database that answered, but gave the statement up (for taking too long, or to
    settle a clash with another transaction) and rolled its transaction back: not an
    outage, and retrying blindly is not always the cure."""

    # PostgreSQL cancelled the statement (SQLSTATE 57014): it ran past `statement_timeout`
    # (or an administrator cancelled it). Retry, or ask for less.
    CANCELLED = "database_timeout"
    # The statement waited too long for another transaction's lock: SQLite's busy timeout
    # ("database is locked") or PostgreSQL's `lock_timeout` (SQLSTATE 55P03). Retry shortly.
    BUSY = "database_busy"
    # PostgreSQL rolled the transaction back whole to settle a clash with another one running
    # at the same moment: a deadlock (SQLSTATE 40P01), or a serialization failure (40001)
    # under REPEATABLE READ or SERIALIZABLE. Nothing of it was saved, and the clash is over
    # once it is rolled back: the same command again, now, very likely succeeds.
    CONFLICT = "database_conflict"


# Not all of TransactionRollbackError (SQLSTATE class 40): 40003 "statement completion
# unknown" is not a promise that nothing was saved.
_ROLLED_BACK_FOR_A_CLASH = (psycopg2.errors.DeadlockDetected, psycopg2.errors.SerializationFailure)
_SQLITE_BUSY = ("database is locked", "database is busy", "database table is locked")


def delay_of(error: BaseException) -> Delay | None:
    """The database's own timeout behind `error` (however wrapped), or None."""
    for cause in causes(error):
        if isinstance(cause, psycopg2.errors.QueryCanceled):
            return Delay.CANCELLED
        if isinstance(cause, psycopg2.errors.LockNotAvailable):
            return Delay.BUSY
        if isinstance(cause, _ROLLED_BACK_FOR_A_CLASH):
            return Delay.CONFLICT
        if isinstance(cause, sqlite3.OperationalError) and str(cause).startswith(_SQLITE_BUSY):
            return Delay.BUSY
    return None


def causes(error: BaseException) -> Iterator[BaseException]:
    """`error`, then what it was raised from or during, and so on (at most ten)."""
    current: BaseException | None = error
    for _ in range(10):  # a bounded walk: a chain may loop
        if current is None:
            return
        yield current
        current = current.__cause__ or current.__context__
