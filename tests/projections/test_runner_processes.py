"""Real runner processes: killed with SIGKILL mid-work, several at once, connections cut."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine, text

from application.ledger import CommandContext, RecordPayment
from income_ledger.bootstrap import event_source
from projections.maintenance import verify
from projections.runner import ProjectionRunner, wait_for_position
from tests.domain.helpers import CT_REF, SUN_REF


def runner_process(database_url: str, *args: str) -> subprocess.Popen:
    env = os.environ | {"LEDGER_DATABASE_URL": database_url}
    return subprocess.Popen(
        [sys.executable, "-m", "income_ledger.cli", "project", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def record_many(ledger, count: int, prefix: str) -> None:
    ctx = CommandContext("integration:test")
    references = [CT_REF, SUN_REF, "JUNK"]
    for start in range(0, count, 250):
        ledger.record_payments(
            [
                RecordPayment("allpay", 100 + n, references[n % 3], external_id=f"{prefix}-{n}")
                for n in range(start, min(start + 250, count))
            ],
            ctx,
        )


def wait_for_progress(projection, beyond: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while projection.position() <= beyond:
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the runner applied nothing within 60 s"
        time.sleep(0.02)


def test_a_runner_killed_at_any_point_resumes_to_an_identical_read_model(
    ledger, projection, settings
) -> None:
    # Enough for over a hundred pages of 7, so that each kill lands mid catch-up.
    record_many(ledger, 600, "kill")
    positions = [0]
    for delay in (0.0, 0.05, 0.1, 0.2):
        process = runner_process(settings.database_url, "--page-size", "7")
        # Kill only once this runner has applied something (a loaded machine can take seconds
        # to start a process), then at a varying moment in the middle of its catch-up.
        wait_for_progress(projection, positions[-1], process)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        positions.append(projection.position())
        record_many(ledger, 100, f"more-{delay}")
    assert positions == sorted(positions) and positions[-1] > 0, positions
    finisher = runner_process(settings.database_url, "--once")
    assert finisher.wait(timeout=120) == 0, finisher.stderr.read()
    assert projection.position() == ledger.max_position()
    report = verify(projection.engine, event_source(ledger))
    assert report.ok, report.differences


def wait_until_following(process: subprocess.Popen) -> None:
    """Until `project` says it is projecting: its SIGTERM handler is in place from then on (a
    signal sent while a loaded machine is still importing would kill it uncleanly)."""
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("projecting"):
            return
    raise AssertionError(f"the runner exited with {process.wait()} before it started")


def test_several_runners_at_once_never_double_apply(ledger, projection, settings) -> None:
    runners = [runner_process(settings.database_url, "--page-size", "11") for _ in range(3)]
    for process in runners:
        wait_until_following(process)
    try:
        for batch in range(4):
            record_many(ledger, 150, f"multi-{batch}")
            time.sleep(0.3)
        assert wait_for_position(projection.engine, ledger.max_position(), timeout_s=120)
    finally:
        for process in runners:
            process.send_signal(signal.SIGTERM)
        for process in runners:
            process.wait(timeout=30)
    assert all(process.returncode == 0 for process in runners), [
        process.stderr.read() for process in runners
    ]
    report = verify(projection.engine, event_source(ledger))
    assert report.ok, report.differences


def test_a_runner_reconnects_after_the_database_drops_it(
    ledger, projection, settings, officer
) -> None:
    if not settings.is_postgres:
        pytest.skip("connections can only be cut from outside on PostgreSQL")
    runner = ProjectionRunner(projection, idle_wait_s=0.2, retry_s=0.2)
    thread = runner.start_thread()
    try:
        first = ledger.record_payment(RecordPayment("cash", 1, CT_REF), officer)
        assert wait_for_position(projection.engine, first.position, timeout_s=10)
        killer = create_engine(settings.database_url, isolation_level="AUTOCOMMIT")
        with killer.connect() as connection:
            cut = connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar()
        killer.dispose()
        assert cut >= 1
        second = ledger.record_payment(RecordPayment("cash", 2, CT_REF), officer)
        assert wait_for_position(projection.engine, second.position, timeout_s=30)
        # The cut LISTEN connection fails on the runner's next wait; it must reconnect. A
        # loaded machine has been seen to take over 10 s to get there.
        deadline = time.monotonic() + 30
        while runner.errors == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runner.errors >= 1
        third = ledger.record_payment(RecordPayment("cash", 3, CT_REF), officer)
        assert wait_for_position(projection.engine, third.position, timeout_s=30)
        assert thread.is_alive()
    finally:
        runner.stop()
        thread.join(timeout=10)
