"""An event the projection cannot apply is loud: logged with its position, reported by
`projections status`, /health/ready, /metrics and `projections verify`, retried with backoff,
and applied once the cause is fixed. A lost connection is still just a reconnect."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from eventsourcing.persistence import StoredEvent
from fastapi.testclient import TestClient
from sqlalchemy import delete, insert, text
from typer.testing import CliRunner

from api.app import create_app
from api.auth import ApiKeys
from application.ledger import CommandContext, RecordPayment
from domain.limits import MAX_EXTERNAL_ID_LENGTH
from income_ledger.cli import app as cli_app
from income_ledger.server import build_services
from projections.runner import wait_for_position
from projections.schema import LIVE
from projections.status import projection_health
from tests.conftest import leave_a_gap, stored_events
from tests.domain.helpers import CT_REF

TOKEN = "reporting-token-0123456789"
KEYS = ApiKeys.parse(f"reports:reporting:{TOKEN}")


@contextlib.contextmanager
def api_client(ledger, settings, ready_max_lag_seconds: float) -> Iterator[TestClient]:
    services = build_services(settings, ledger, KEYS)
    services.config = dataclasses.replace(
        services.config, ready_max_lag_seconds=ready_max_lag_seconds
    )
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        yield client
    services.read_engine.dispose()


@pytest.fixture
def client(ledger, settings) -> Iterator[TestClient]:
    with api_client(ledger, settings, ready_max_lag_seconds=30.0) as client:
        yield client


def record(ledger, amount_pence: int) -> int:
    """Record a receipt (and its allocation); returns the position of its first event."""
    before = ledger.max_position()
    ledger.record_payment(
        RecordPayment("cash", amount_pence, CT_REF), CommandContext("officer:test")
    )
    (first,) = ledger.recorder.select_notifications(start=before, limit=1, inclusive_of_start=False)
    return first.id


def wait_until(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def stuck_position(projection) -> int | None:
    with projection.engine.connect() as connection:
        health = projection_health(connection)
    return health.error_position if health.stuck else None


def gauge(metrics_text: str, name: str) -> float:
    line = next(x for x in metrics_text.splitlines() if x.startswith(name + " "))
    return float(line.split()[1])


def block_audit_position(engine, position: int, tag: str = "forged:1") -> None:
    """Put a row at the audit position an event will take: applying that event then breaks
    the primary key, a real IntegrityError from the database on both backends."""
    with engine.begin() as connection:
        connection.execute(
            insert(LIVE.audit_trail).values(
                position=position,
                event_id=tag,
                recorded_at=datetime.now(UTC),
                effective_at=datetime.now(UTC),
                action="Forged",
            )
        )


def unblock_audit_position(engine, tag: str = "forged:1") -> None:
    with engine.begin() as connection:
        connection.execute(delete(LIVE.audit_trail).where(LIVE.audit_trail.c.event_id == tag))


def cli_status(settings, monkeypatch) -> tuple[int, dict]:
    monkeypatch.setenv("LEDGER_DATABASE_URL", settings.database_url)
    result = CliRunner().invoke(cli_app, ["projections", "status", "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_an_event_the_projection_cannot_apply_is_loud_and_retried_until_fixed(
    ledger, projection, fast_runner, client, settings, monkeypatch, caplog
) -> None:
    record(ledger, 100)
    projection.catch_up()
    first = projection.position()
    bad = record(ledger, 200)
    record(ledger, 300)
    after = ledger.max_position()
    block_audit_position(projection.engine, bad)
    caplog.set_level(logging.WARNING, logger="projections.runner")
    thread = fast_runner.start_thread()
    wait_until(lambda: stuck_position(projection) == bad)

    assert projection.position() == first  # the events before the bad one went in
    wait_until(lambda: fast_runner.errors >= 3)  # retried, not given up
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"cannot apply the event at position {bad}" in m for m in messages), messages
    assert not any("reconnecting" in m for m in messages), messages
    assert any("IntegrityError" in m for m in messages), messages

    code, status = cli_status(settings, monkeypatch)
    assert code == 1
    assert status["stuck"][0]["error_position"] == bad
    assert "IntegrityError" in status["stuck"][0]["error"]
    assert status["stuck"][0]["attempts"] >= 2

    ready = client.get("/health/ready")
    assert ready.status_code == 503, ready.text
    assert ready.json()["stuck"][0]["error_position"] == bad
    assert f"position {bad}" in ready.json()["reasons"][0]
    assert client.get("/health").status_code == 200  # alive, though not ready
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert gauge(metrics, "ledger_projections_stuck") == 1
    assert gauge(metrics, "ledger_projection_errors") >= 2
    assert gauge(metrics, "ledger_projection_lag_events") == after - first

    # The cause is fixed: the runner applies the event and carries on.
    unblock_audit_position(projection.engine)
    assert wait_for_position(projection.engine, after, timeout_s=20)
    assert thread.is_alive()
    assert stuck_position(projection) is None
    assert cli_status(settings, monkeypatch)[0] == 0
    assert client.get("/health/ready").status_code == 200
    record(ledger, 400)
    assert wait_for_position(projection.engine, ledger.max_position(), timeout_s=20)


def test_an_over_long_value_in_the_event_store_is_a_stuck_projection_not_a_reconnect(
    ledger, projection, fast_runner, settings, caplog
) -> None:
    if not settings.is_postgres:
        pytest.skip("SQLite does not enforce VARCHAR lengths")
    good = record(ledger, 100)
    (stored,) = ledger.recorder.select_notifications(start=good, limit=1)
    assert stored.topic.endswith("Payment.Received")
    state = json.loads(stored.state)
    # Longer than payments.external_id holds: only a hand-made event can carry it.
    state["external_id"] = "x" * (MAX_EXTERNAL_ID_LENGTH + 50)
    ledger.recorder.insert_events(
        [
            StoredEvent(
                originator_id=uuid.uuid4(),
                originator_version=1,
                topic=stored.topic,
                state=json.dumps(state).encode(),
            )
        ]
    )
    bad = ledger.max_position()
    caplog.set_level(logging.WARNING, logger="projections.runner")
    thread = fast_runner.start_thread()
    wait_until(lambda: stuck_position(projection) == bad)
    with projection.engine.connect() as connection:
        health = projection_health(connection)
    assert "StringDataRightTruncation" in health.error or "DataError" in health.error
    assert not any("reconnecting" in r.getMessage() for r in caplog.records)

    with projection.engine.begin() as connection:
        connection.execute(
            text(
                "ALTER TABLE payments ALTER COLUMN external_id TYPE "
                f"varchar({MAX_EXTERNAL_ID_LENGTH + 50})"
            )
        )
    assert wait_for_position(projection.engine, bad, timeout_s=20)
    assert thread.is_alive() and stuck_position(projection) is None


def test_verify_does_not_pass_a_stuck_read_model(
    ledger, projection, fast_runner, settings, monkeypatch
) -> None:
    record(ledger, 100)
    projection.catch_up()
    bad = record(ledger, 200)
    block_audit_position(projection.engine, bad)
    fast_runner.start_thread()
    wait_until(lambda: stuck_position(projection) == bad)
    monkeypatch.setenv("LEDGER_DATABASE_URL", settings.database_url)
    result = CliRunner().invoke(cli_app, ["projections", "verify", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert not report["ok"] and report["behind_events"] == ledger.max_position() - bad + 1
    assert report["stuck"][0]["error_position"] == bad


def test_readiness_fails_when_no_projector_keeps_up(ledger, projection, settings) -> None:
    projection.catch_up()
    with api_client(ledger, settings, ready_max_lag_seconds=0.5) as client:
        assert client.get("/health/ready").status_code == 200
        record(ledger, 100)
        time.sleep(0.6)
        behind = client.get("/health/ready")
        assert behind.status_code == 503, behind.text
        assert behind.json()["lag_events"] >= 1 and behind.json()["lag_seconds"] >= 0.5
        assert "is a projector running" in behind.json()["reasons"][0]
        assert client.get("/health").status_code == 200
        projection.catch_up()
        caught_up = client.get("/health/ready")
        assert caught_up.status_code == 200 and caught_up.json()["lag_seconds"] == 0


def test_a_receipt_dated_year_one_stops_the_projection_loudly_not_the_thread(
    ledger, projection, fast_runner, caplog
) -> None:
    """Not a database error: the UK date of year 1 overflows in Python (issue #14.2). The
    runner thread (as in `serve` on SQLite) stays alive, says where it is stuck, and goes on
    once the bad row is dealt with."""
    good = record(ledger, 100)
    (stored,) = ledger.recorder.select_notifications(start=good, limit=1)
    state = json.loads(stored.state)
    state["received_at"]["_data_"] = "0001-01-01T00:00:00+00:00"
    bad_id = uuid.uuid4()
    ledger.recorder.insert_events(
        [StoredEvent(bad_id, 1, stored.topic, json.dumps(state).encode())]
    )
    bad = ledger.max_position()
    caplog.set_level(logging.WARNING, logger="projections.runner")
    thread = fast_runner.start_thread()
    wait_until(lambda: stuck_position(projection) == bad)
    assert thread.is_alive()
    assert any("OverflowError" in r.getMessage() for r in caplog.records)

    with projection.engine.begin() as connection:  # an operator removes the forged row
        connection.execute(text("DELETE FROM ledger_events WHERE id = :id"), {"id": bad})
    record(ledger, 200)
    assert wait_for_position(projection.engine, ledger.max_position(), timeout_s=20)
    assert thread.is_alive() and stuck_position(projection) is None


def test_project_once_reports_an_event_it_cannot_apply_as_stuck(
    ledger, projection, settings, monkeypatch
) -> None:
    """`project --once` used to exit 70 "unexpected IntegrityError" and record nothing, so
    `projections status` and `verify` went on saying all was well."""
    record(ledger, 100)
    projection.catch_up()
    first = projection.position()
    bad = record(ledger, 200)
    block_audit_position(projection.engine, bad, "forged:once")
    monkeypatch.setenv("LEDGER_DATABASE_URL", settings.database_url)
    once = CliRunner().invoke(cli_app, ["project", "--once"])
    assert once.exit_code == 1, once.output
    assert f"cannot apply the event at position {bad}" in once.output
    assert "IntegrityError" in once.output and "Traceback" not in once.output
    assert stuck_position(projection) == bad
    assert projection.position() == first
    assert cli_status(settings, monkeypatch)[0] == 1
    verify = CliRunner().invoke(cli_app, ["projections", "verify", "--json"])
    assert verify.exit_code == 1, verify.output

    unblock_audit_position(projection.engine, "forged:once")
    again = CliRunner().invoke(cli_app, ["project", "--once"])
    assert again.exit_code == 0, again.output
    assert stuck_position(projection) is None
    assert projection.position() == ledger.max_position()


def behind_a_gap(ledger, projection, settings) -> int:
    """The read model caught up, then a gap in the positions (on PostgreSQL) and a receipt
    and its allocation after it: the events it is behind, counted (2)."""
    record(ledger, 100)
    projection.catch_up()
    read_position = projection.position()
    leave_a_gap(ledger)
    record(ledger, 200)
    waiting = stored_events(ledger, after=read_position)
    assert waiting == 2  # the receipt and its allocation
    if settings.is_postgres:
        assert ledger.max_position() - read_position > waiting  # the gap this test is about
    return waiting


def test_the_lag_counts_events_not_positions(ledger, projection, client, settings, monkeypatch):
    """A write refused by a clash leaves a gap in PostgreSQL's positions for good: the read
    model is as many events behind as are stored after it, not the difference of positions."""
    waiting = behind_a_gap(ledger, projection, settings)

    code, status = cli_status(settings, monkeypatch)
    assert code == 0 and status["lag_events"] == waiting
    assert client.get("/health/ready").json()["lag_events"] == waiting
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert gauge(metrics, "ledger_projection_lag_events") == waiting
    projection.catch_up()
    assert cli_status(settings, monkeypatch)[1]["lag_events"] == 0
    assert client.get("/health/ready").json()["lag_events"] == 0


def test_verify_counts_the_events_the_read_model_is_behind_not_positions(
    ledger, projection, settings, monkeypatch
):
    waiting = behind_a_gap(ledger, projection, settings)
    monkeypatch.setenv("LEDGER_DATABASE_URL", settings.database_url)
    as_json = CliRunner().invoke(cli_app, ["projections", "verify", "--json"])
    report = json.loads(as_json.stdout)
    assert report["behind_events"] == waiting and report["behind_events_exact"], report
    as_text = CliRunner().invoke(cli_app, ["projections", "verify"])
    said = " ".join(as_text.output.split())
    assert f"the read model is {waiting} events behind the event store" in said, said


def test_a_long_lag_is_counted_only_up_to_a_limit(
    ledger, projection, client, settings, monkeypatch
):
    """Probes run every few seconds: counting every event behind the read model is a scan
    of the whole backlog (a million events: a parallel scan of the table, ~0.1 s, per probe).
    Events are counted up to a limit; past it the lag is the difference of positions, an
    upper bound (gaps), and says so."""
    import application.ledger

    monkeypatch.setattr(application.ledger, "LAG_COUNT_LIMIT", 3, raising=False)
    record(ledger, 100)
    projection.catch_up()
    read_position = projection.position()
    record(ledger, 200)
    assert stored_events(ledger, after=read_position) == 2  # under the limit: counted
    code, status = cli_status(settings, monkeypatch)
    assert (status["lag_events"], status["lag_events_exact"]) == (2, True)
    ready = client.get("/health/ready").json()
    assert (ready["lag_events"], ready["lag_events_exact"]) == (2, True)

    leave_a_gap(ledger)
    record(ledger, 300)
    record(ledger, 400)
    behind = ledger.max_position() - read_position
    assert behind >= stored_events(ledger, after=read_position) == 6
    code, status = cli_status(settings, monkeypatch)
    assert code == 0 and (status["lag_events"], status["lag_events_exact"]) == (behind, False)
    ready = client.get("/health/ready").json()
    assert (ready["lag_events"], ready["lag_events_exact"]) == (behind, False)
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert gauge(metrics, "ledger_projection_lag_events") == behind
    projection.catch_up()
    ready = client.get("/health/ready").json()
    assert (ready["lag_events"], ready["lag_events_exact"]) == (0, True)
