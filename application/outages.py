"""A database that cannot be reached, and what the caller can know about what was saved.

A lost connection before the commit means nothing was saved: the database rolls back a
transaction whose connection goes away. A lost connection during the commit is different:
the database may have committed just before the connection broke, and nobody on this side
can tell. Saying "nothing was saved" then would be a guess, and once it was wrong (a 500 that
claimed so had recorded the payment).
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


class DatabaseUnavailable(Exception):
    """The database failed under a command; `saved_unknown` when it failed while committing.

    `delay` when it did not fail but gave the command up (see `Delay`): it answered, and
    rolled the transaction back, so nothing was saved."""

    def __init__(self, saved_unknown: bool, delay: Delay | None = None) -> None:
        if delay is not None:
            saved_unknown = False
            message = f"the database gave the command up ({delay.value}); nothing was saved"
        elif saved_unknown:
            message = "the database connection failed while committing"
        else:
            message = "the database could not be reached; nothing was saved"
        super().__init__(message)
        self.saved_unknown, self.delay = saved_unknown, delay

    @classmethod
    def of(cls, error: BaseException, committing: bool) -> DatabaseUnavailable:
        """The failure `error`, raised before the commit, or during it when `committing`."""
        return cls(saved_unknown=committing, delay=delay_of(error))

    @property
    def conflict(self) -> bool:
        """True when the database rolled the command back to settle a clash with another
        transaction (a deadlock, a serialization failure): nothing was saved, and the same
        command again very likely succeeds."""
        return self.delay is Delay.CONFLICT


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
    for cause in _causes(error):
        if isinstance(cause, psycopg2.errors.QueryCanceled):
            return Delay.CANCELLED
        if isinstance(cause, psycopg2.errors.LockNotAvailable):
            return Delay.BUSY
        if isinstance(cause, _ROLLED_BACK_FOR_A_CLASH):
            return Delay.CONFLICT
        if isinstance(cause, sqlite3.OperationalError) and str(cause).startswith(_SQLITE_BUSY):
            return Delay.BUSY
    return None


def _causes(error: BaseException) -> Iterator[BaseException]:
    current: BaseException | None = error
    for _ in range(10):  # a bounded walk: a chain may loop
        if current is None:
            return
        yield current
        current = current.__cause__ or current.__context__
