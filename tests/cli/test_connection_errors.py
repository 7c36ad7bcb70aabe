"""A database that cannot be reached gets a message saying what to do, not a stack trace."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from income_ledger.cli import app
from tests.api.test_database_conflicts import deadlocked
from tests.api.test_database_timeouts import everything_locked, with_limit


def run(monkeypatch, url: str, *args: str):
    monkeypatch.setenv("LEDGER_DATABASE_URL", url)
    return CliRunner().invoke(app, list(args))


def test_db_init_on_a_missing_postgresql_database_says_how_to_create_it(
    postgres_admin_url, monkeypatch
) -> None:
    name = f"missing_{uuid.uuid4().hex[:8]}"
    url = make_url(postgres_admin_url).set(database=name)
    result = run(monkeypatch, url.render_as_string(hide_password=False), "db", "init")
    assert result.exit_code == 2, result.output
    assert "does not exist" in result.output
    assert f"createdb -h {url.host} -p {url.port or 5432}" in result.output
    assert name in result.output and "unexpected" not in result.output


@pytest.mark.parametrize("command", [["db", "init"], ["projections", "status"]])
def test_a_postgresql_server_that_is_down_is_named_with_how_to_start_it(
    monkeypatch, command
) -> None:
    result = run(monkeypatch, "postgresql://ledger@127.0.0.1:1/ledger", *command)
    assert result.exit_code == 2, result.output
    assert "cannot reach PostgreSQL at 127.0.0.1:1" in result.output
    assert "is the server running" in result.output and "unexpected" not in result.output


def test_a_sqlite_database_in_a_missing_folder_says_so(monkeypatch, tmp_path) -> None:
    result = run(monkeypatch, f"sqlite:///{tmp_path}/no/such/folder/ledger.db", "db", "init")
    assert result.exit_code == 2, result.output
    assert "does the folder" in result.output and "unexpected" not in result.output


@pytest.mark.parametrize("limit", ["statement_timeout", "lock_timeout"])
def test_a_statement_the_database_gives_up_is_named_not_called_unreachable(
    ledger, database_url, monkeypatch, limit
) -> None:
    if database_url.startswith("sqlite") and limit == "statement_timeout":
        pytest.skip("SQLite has no statement timeout: its busy timeout is the lock_timeout case")
    record = ["payments", "record", "--channel", "cash", "--amount", "12.50"]
    with everything_locked(database_url):
        result = run(monkeypatch, with_limit(database_url, limit), *record)
    assert result.exit_code == 2, result.output
    said = "statement_timeout" if limit == "statement_timeout" else "stayed locked"
    assert said in result.output, result.output
    assert "cannot reach" not in result.output and "unexpected" not in result.output
    assert not [e for _, e in ledger.read_events() if type(e).__name__ == "Received"]


def test_a_deadlock_is_named_not_called_unreachable(ledger, database_url, monkeypatch) -> None:
    """The CLI does not run a command again by itself: it says nothing was saved, and to run it again."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer at a time: no deadlock, its waits are database_busy")
    # The payer's details go in first, in the same transaction: a table the command holds.
    record = ["payments", "record", "--channel", "cash", "--amount", "12.50", "--payer-name", "A"]
    with deadlocked(database_url, ledger, rounds=1) as failures:
        result = run(monkeypatch, database_url, *record)
    assert not failures, failures
    assert result.exit_code == 2, result.output
    assert "clash with another process" in result.output, result.output
    assert "nothing was saved" in result.output and "Run the same command again" in result.output
    assert "cannot reach" not in result.output and "unexpected" not in result.output
    assert not [e for _, e in ledger.read_events() if type(e).__name__ == "Received"]
