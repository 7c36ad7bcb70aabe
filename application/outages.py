"""A database that cannot be reached, and what the caller can know about what was saved.

A lost connection before the commit means nothing was saved: the database rolls back a
transaction whose connection goes away. A lost connection during the commit is different:
the database may have committed just before the connection broke, and nobody on this side
can tell. Saying "nothing was saved" then would be a guess, and once it was wrong (a 500 that
claimed so had recorded the payment).
"""

from __future__ import annotations

import eventsourcing.persistence as es
import psycopg2
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
    """The database failed under a command; `saved_unknown` when it failed while committing."""

    def __init__(self, saved_unknown: bool) -> None:
        super().__init__(
            "the database connection failed while committing"
            if saved_unknown
            else "the database could not be reached; nothing was saved"
        )
        self.saved_unknown = saved_unknown
