"""An install whose read model was created with the old, narrower columns gets the widths of
domain.limits from one `projections rebuild` (what docs/read-model.md tells it to do)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from domain.limits import MAX_CORRELATION_ID_LENGTH, MAX_EXTERNAL_ID_LENGTH, MAX_REFERENCE_LENGTH
from income_ledger.cli import app as cli_app

OLD_WIDTHS = [  # as created before domain/limits.py
    ("payments", "external_id", 200),
    ("payments", "reference", 40),
    ("audit_trail", "correlation_id", 200),
]
NEW_WIDTHS = {
    ("payments", "external_id"): MAX_EXTERNAL_ID_LENGTH,
    ("payments", "reference"): MAX_REFERENCE_LENGTH,
    ("audit_trail", "correlation_id"): MAX_CORRELATION_ID_LENGTH,
}


def _widths(database_url: str) -> dict[tuple[str, str], int]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT table_name, column_name, character_maximum_length "
                    "FROM information_schema.columns WHERE table_schema = current_schema()"
                )
            ).all()
    finally:
        engine.dispose()
    return {
        (table, column): width for table, column, width in rows if (table, column) in NEW_WIDTHS
    }


def _narrow(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            for table, column, width in OLD_WIDTHS:
                connection.execute(
                    text(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE varchar({width})")
                )
    finally:
        engine.dispose()


def test_a_rebuild_gives_an_old_read_model_the_new_widths(database_url, monkeypatch) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite does not enforce VARCHAR widths")
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(cli_app, list(args))
        assert result.exit_code == 0, result.output
        return result.stdout

    cli("db", "init")
    cli("funds", "add", "--sample")
    cli("payments", "record", "--channel", "cash", "--amount", "1", "--external-id", "e1")
    cli("project", "--once")
    _narrow(database_url)
    assert set(_widths(database_url).values()) == {40, 200}

    cli("projections", "rebuild")
    assert _widths(database_url) == NEW_WIDTHS
    long_id = "e" * MAX_EXTERNAL_ID_LENGTH
    cli("payments", "record", "--channel", "cash", "--amount", "1", "--external-id", long_id)
    cli("project", "--once")
    report = json.loads(cli("projections", "verify", "--json"))
    assert report["ok"] and report["behind_events"] == 0 and not report["stuck"], report
