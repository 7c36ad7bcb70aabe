"""Nothing waits silently for the runner lock: a waiter says who holds it and gives up at its
--timeout; verify needs no lock; a rebuild's swap waits a bounded time and keeps GRANTs."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from application.ledger import CommandContext, RecordPayment
from income_ledger.bootstrap import event_source
from income_ledger.cli import app as cli_app
from projections.maintenance import SwapTimedOut, rebuild, verify
from projections.runner import LockTimeout, RunnerLock
from tests.domain.helpers import CT_REF


@pytest.fixture
def held_lock(projection):
    """The runner lock held by 'another runner' (a second session or file handle)."""
    lock = RunnerLock(projection.engine, "test holder")
    assert lock.try_acquire()
    yield lock
    lock.release()


def cli(settings, monkeypatch, *args: str):
    monkeypatch.setenv("LEDGER_DATABASE_URL", settings.database_url)
    return CliRunner().invoke(cli_app, list(args))


def test_a_waiter_says_who_holds_the_lock_and_gives_up_at_its_timeout(
    ledger, projection, held_lock, settings
) -> None:
    ledger.record_payment(RecordPayment("cash", 100, CT_REF), CommandContext("officer:test"))
    holder = RunnerLock(projection.engine).holder()
    assert f"pid {os.getpid()}" in holder and "test holder" in holder
    with pytest.raises(LockTimeout, match=f"pid {os.getpid()}"):
        RunnerLock(projection.engine).acquire(poll_s=0.05, timeout_s=0.2)

    # A real CLI process: its logging is configured, so the wait is visible as it happens.
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "income_ledger.cli", "project", "--once", "--timeout", "1"],
        env=os.environ | {"LEDGER_DATABASE_URL": settings.database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert time.monotonic() - started < 30
    assert "waiting for the projection runner lock, held by" in result.stderr
    assert f"pid {os.getpid()}" in result.stderr
    assert "gave up after 1 s" in result.stderr


def test_rebuild_and_demo_give_up_at_their_timeout_and_verify_needs_no_lock(
    ledger, projection, held_lock, settings, monkeypatch
) -> None:
    ledger.record_payment(RecordPayment("cash", 100, CT_REF), CommandContext("officer:test"))
    rebuilt = cli(settings, monkeypatch, "projections", "rebuild", "--timeout", "0.3")
    assert rebuilt.exit_code == 2 and "held by" in rebuilt.output, rebuilt.output
    # verify would have waited for ever before: now it runs while another runner works.
    projection.catch_up()
    verified = cli(settings, monkeypatch, "projections", "verify")
    assert verified.exit_code == 0, verified.output
    demo = cli(
        settings, monkeypatch, "demo", "--days", "1", "--receipts-per-day", "2", "--timeout", "0.3"
    )
    assert demo.exit_code == 2 and "the demo data is stored" in demo.output, demo.output


def test_verify_runs_beside_a_runner_that_keeps_writing(ledger, projection) -> None:
    ctx = CommandContext("officer:test")
    ledger.record_payments([RecordPayment("cash", 100 + n, CT_REF) for n in range(100)], ctx)
    stop = threading.Event()

    def keep_writing() -> None:
        while not stop.is_set():
            ledger.record_payment(RecordPayment("cash", 5, CT_REF), ctx)
            projection.catch_up()

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        reports = [verify(projection.engine, event_source(ledger), page_size=25) for _ in range(2)]
    finally:
        stop.set()
        writer.join(timeout=30)
    assert all(report.ok for report in reports), [r.differences for r in reports]


@pytest.fixture
def reader_role(settings):
    if not settings.is_postgres:
        pytest.skip("GRANTs are PostgreSQL's")
    role = f"ledger_reader_{uuid.uuid4().hex[:8]}"
    admin = create_engine(settings.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE ROLE {role} NOLOGIN"))
    yield role
    with admin.connect() as connection:
        connection.execute(text(f"DROP OWNED BY {role}"))
        connection.execute(text(f"DROP ROLE {role}"))
    admin.dispose()


def test_a_rebuild_keeps_the_grants_on_the_read_model(ledger, projection, reader_role) -> None:
    ledger.record_payment(RecordPayment("cash", 100, CT_REF), CommandContext("officer:test"))
    projection.catch_up()
    with projection.engine.begin() as connection:
        connection.execute(text(f"GRANT SELECT ON fund_balances, postings TO {reader_role}"))
        connection.execute(
            text(f"GRANT SELECT ON daily_takings TO {reader_role} WITH GRANT OPTION")
        )
    rebuild(projection.engine, event_source(ledger))
    with projection.engine.connect() as connection:
        for table in ("fund_balances", "postings", "daily_takings"):
            assert connection.execute(
                text("SELECT has_table_privilege(:role, :table, 'SELECT')"),
                {"role": reader_role, "table": table},
            ).scalar(), table
        assert connection.execute(
            text("SELECT has_table_privilege(:role, 'daily_takings', 'SELECT WITH GRANT OPTION')"),
            {"role": reader_role},
        ).scalar()
        assert not connection.execute(
            text("SELECT has_table_privilege(:role, 'payments', 'SELECT')"), {"role": reader_role}
        ).scalar()


def test_the_swap_waits_for_readers_at_most_its_lock_timeout(ledger, projection, settings) -> None:
    if not settings.is_postgres:
        pytest.skip("a reader blocks DROP TABLE only on PostgreSQL")
    ledger.record_payment(RecordPayment("cash", 100, CT_REF), CommandContext("officer:test"))
    projection.catch_up()
    reader = create_engine(settings.database_url)
    try:
        with reader.connect() as connection, connection.begin():
            connection.execute(text("SELECT count(*) FROM fund_balances"))  # a long report
            started = time.monotonic()
            with pytest.raises(SwapTimedOut, match="nothing changed"):
                rebuild(projection.engine, event_source(ledger), swap_lock_timeout_s=0.5)
            assert time.monotonic() - started < 15
    finally:
        reader.dispose()
    assert verify(projection.engine, event_source(ledger)).ok
    assert rebuild(projection.engine, event_source(ledger)) == ledger.max_position()
