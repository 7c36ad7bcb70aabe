"""When the database fails under the projector, its log says what the database did: a
statement that ran past statement_timeout, a lock wait that ran out, a deadlock, or a lost
connection. A deadlock is not "lost the database" (the database answered), and an operator
who reads so looks for the wrong cause. Either way the runner retries and catches up.

The failures are real: another session holds the read model's audit trail (on SQLite, the
file's write lock) while the projector's connection has a short timeout, or deadlocks it."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

from application.ledger import CommandContext, RecordPayment
from projections.runner import wait_for_position
from projections.schema import LIVE
from tests.api.test_database_conflicts import deadlocked
from tests.domain.helpers import CT_REF

WAIT_S = 20


def record_receipts(ledger, count: int = 2) -> int:
    for n in range(count):
        ledger.record_payment(
            RecordPayment("cash", 100 + n, CT_REF), CommandContext("officer:test")
        )
    return ledger.max_position()


def with_setting(projection, sql: str) -> None:
    """Run `sql` on each of the projector's connections as it is made (after the engine's own
    settings), and make them afresh."""

    @event.listens_for(projection.engine, "connect")
    def _set(dbapi_connection, _) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(sql)
        cursor.close()
        dbapi_connection.commit()  # psycopg2 began a transaction; the setting outlives it

    projection.engine.dispose()


@contextmanager
def read_model_held(database_url: str) -> Iterator[None]:
    """Another session holds the read model's audit trail (PostgreSQL) or the database
    file's write lock (SQLite) until the block ends."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        holder = sqlite3.connect(url.database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    else:
        holder = psycopg2.connect(url.set(drivername="postgresql").render_as_string(False))
        holder.cursor().execute(f'LOCK TABLE "{LIVE.audit_trail.name}" IN ACCESS EXCLUSIVE MODE')
    try:
        yield
    finally:
        holder.rollback()
        holder.close()


def warnings_of(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "projections.runner" and r.levelno == logging.WARNING
    ]


def wait_for_warning(caplog, phrase: str) -> list[str]:
    deadline = time.monotonic() + WAIT_S
    while not any(phrase in m for m in warnings_of(caplog)):
        assert time.monotonic() < deadline, f"no warning saying {phrase!r}: {warnings_of(caplog)}"
        time.sleep(0.05)
    return warnings_of(caplog)


# What the projector's connection is given, and what its WARNING must then say.
LIMITS = {
    "statement_timeout": ("SET statement_timeout = '300ms'", "ran past statement_timeout"),
    "lock_timeout": ("SET lock_timeout = '200ms'", "waited too long for another transaction"),
    "sqlite_busy_timeout": ("PRAGMA busy_timeout = 200", "waited too long for another transaction"),
}


@pytest.mark.parametrize("limit", ["statement_timeout", "lock_timeout"])
def test_a_limit_the_database_enforces_is_logged_as_such_then_the_projector_catches_up(
    ledger, projection, fast_runner, database_url, caplog, limit
) -> None:
    if database_url.startswith("sqlite"):
        if limit == "statement_timeout":
            pytest.skip("SQLite has no statement timeout; its lock waits are the busy timeout")
        limit = "sqlite_busy_timeout"
    setting, phrase = LIMITS[limit]
    with_setting(projection, setting)
    last = record_receipts(ledger)
    caplog.set_level(logging.WARNING, logger="projections.runner")
    with read_model_held(database_url):
        fast_runner.start_thread()
        messages = wait_for_warning(caplog, phrase)
    assert wait_for_position(projection.engine, last, timeout_s=WAIT_S)
    assert not any("lost the database" in m for m in messages), messages


def test_a_deadlock_is_logged_as_a_clash_not_a_lost_database(
    ledger, projection, fast_runner, database_url, caplog
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer at a time: no deadlock")
    last = record_receipts(ledger)
    caplog.set_level(logging.WARNING, logger="projections.runner")
    # The projector holds its tracking row, then waits for the audit trail; the other
    # session holds the audit trail, then asks for the tracking table.
    table = LIVE.audit_trail.name
    with deadlocked(database_url, ledger, 1, table=table, mode="ACCESS EXCLUSIVE") as failures:
        fast_runner.start_thread()
        messages = wait_for_warning(caplog, "to settle a clash with another one")
    assert failures == []
    assert wait_for_position(projection.engine, last, timeout_s=WAIT_S)
    assert any("deadlock detected" in m for m in messages), messages
    assert not any("lost the database" in m for m in messages), messages
