"""Schema migrations (issue #13): a database made by release 0.1.0, with its data, is adopted
by `db upgrade` and still verifies; the revisions build exactly the tables the code defines;
an early database's narrow columns are widened; a newer database is refused, unchanged."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, inspect, text
from typer.testing import CliRunner

from application.ledger import CommandContext, IncomeLedger, RecordPayment
from domain.limits import MAX_CORRELATION_ID_LENGTH, MAX_REFERENCE_LENGTH
from income_ledger.bootstrap import build_ledger, eventsourcing_env, init_database
from income_ledger.cli import app as cli_app
from income_ledger.schema_versions import (
    EVENTS_TABLE,
    DatabaseNotInitialised,
    compare_type,
    head_revision,
    schema_version,
    target_metadata,
    upgrade_database,
)
from tests.domain.helpers import references_unfolded

FIXTURES = Path(__file__).parent / "fixtures"
ADD_A_REVISION = (
    "the tables the code defines differ from what the migrations build: add a revision in "
    "income_ledger/migrations/versions (docs/operations.md, 'Writing a revision'; "
    "`alembic revision --autogenerate -m ...` drafts one). Differences: {}"
)


def load_release_0_1_0(database_url: str) -> None:
    """The fixture: release 0.1.0's schema with a few days of a council's income in it."""
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    dump = (FIXTURES / f"schema_0_1_0_{backend}.sql").read_text()
    if backend == "sqlite":
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as connection:
            connection.executescript(dump)
        return
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(dump)
    finally:
        engine.dispose()


def schema_differences(database_url: str, metadata: MetaData | None = None) -> list[object]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": compare_type})
            return list(compare_metadata(context, metadata or target_metadata()))
    finally:
        engine.dispose()


def cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli_app, list(args))
    assert result.exit_code == code, result.output
    return " ".join(result.output.split())  # as one line, however the terminal wrapped it


def test_a_release_0_1_0_database_with_its_data_is_adopted_and_still_verifies(
    database_url, monkeypatch
) -> None:
    load_release_0_1_0(database_url)
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)
    assert "run `income-ledger db upgrade`" in cli("db", "current", code=1)
    assert "run `income-ledger db upgrade`" in cli("funds", "list", code=2)

    upgraded = cli("db", "upgrade")
    assert "0001: Release 0.1.0" in upgraded and f"schema at {head_revision()}" in upgraded
    assert schema_differences(database_url) == []
    assert "nothing to do" in cli("db", "upgrade")
    assert json.loads(cli("db", "current", "--json"))["up_to_date"]
    assert json.loads(cli("projections", "verify", "--json"))["ok"]
    assert json.loads(cli("audit", "verify", "--json"))["ok"]
    # ...and it keeps working: the old history and new receipts side by side.
    cli("payments", "record", "--channel", "cash", "--amount", "3.00", "--reference", "12345679")
    cli("project", "--once")
    assert json.loads(cli("projections", "verify", "--json"))["ok"]
    assert json.loads(cli("audit", "verify", "--json"))["ok"]


def test_the_migrations_build_exactly_the_tables_the_code_defines(settings) -> None:
    init_database(settings)
    differences = schema_differences(settings.database_url)
    assert differences == [], ADD_A_REVISION.format(differences)


def test_the_event_store_table_is_the_one_eventsourcing_sqlalchemy_makes(settings) -> None:
    """Alembic owns `ledger_events`; this holds its definition to the library's, so a new
    eventsourcing-sqlalchemy that changes the table is noticed (and needs a revision)."""
    ledger = IncomeLedger(env=eventsourcing_env(settings) | {"CREATE_TABLE": "y"})
    ledger.close()
    events_only = MetaData()
    target_metadata().tables[EVENTS_TABLE].to_metadata(events_only)
    differences = [
        d for d in schema_differences(settings.database_url, events_only) if d[0] != "remove_table"
    ]
    assert differences == []


def test_an_early_database_gets_its_narrow_columns_widened(settings) -> None:
    if not settings.is_postgres:
        pytest.skip("SQLite does not enforce VARCHAR widths")
    init_database(settings)
    engine = create_engine(settings.database_url)
    with engine.begin() as connection:  # as `db init` made them before domain/limits.py
        for table, column, width in [
            ("request_idempotency", "scope_key", 300),
            ("payments", "reference", 40),
            ("audit_trail", "correlation_id", 200),
        ]:
            connection.execute(
                text(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE varchar({width})")
            )
        connection.execute(text("DROP TABLE alembic_version"))
    assert upgrade_database(settings.database_url) == (None, head_revision())
    columns = {
        (table, c["name"]): getattr(c["type"], "length", None)
        for table in ("request_idempotency", "payments", "audit_trail")
        for c in inspect(engine).get_columns(table)
    }
    engine.dispose()
    assert columns["request_idempotency", "scope_key"] == MAX_CORRELATION_ID_LENGTH
    assert columns["payments", "reference"] == MAX_REFERENCE_LENGTH
    assert columns["audit_trail", "correlation_id"] == MAX_CORRELATION_ID_LENGTH
    assert schema_differences(settings.database_url) == []


def test_a_database_upgraded_by_a_newer_release_is_refused_and_left_alone(settings) -> None:
    init_database(settings)
    engine = create_engine(settings.database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    version = schema_version(settings.database_url)
    assert not version.known and not version.up_to_date
    for attempt in (
        lambda: upgrade_database(settings.database_url),
        lambda: build_ledger(settings),
    ):
        with pytest.raises(DatabaseNotInitialised, match="newer release"):
            attempt()
    assert schema_version(settings.database_url).current == "9999"


def test_an_empty_database_says_db_init(settings) -> None:
    version = schema_version(settings.database_url)
    assert (version.current, version.has_tables) == (None, False)
    assert "`income-ledger db init`" in version.describe()
    init_database(settings)
    with build_ledger(settings) as ledger:
        ledger.record_payment(RecordPayment("cash", 100, "X"), CommandContext("test:migrations"))


def test_references_recorded_unfolded_are_listed_by_the_upgrade_that_adds_their_table(
    settings, monkeypatch
) -> None:
    """Revision 0003 finds the references a 0.1.0 ledger recorded with full-width digits or a
    zero-width space in the read model it already holds; the result is what a rebuild makes."""
    from domain.sample_chart import SAMPLE_FUNDS
    from income_ledger.bootstrap import build_projection

    init_database(settings)
    recorded = ["１２３４５６７９", "1234\u200b5679"]  # noqa: RUF001 - full-width, on purpose
    ctx = CommandContext("test:migrations")
    with build_ledger(settings) as ledger:
        ledger.add_funds(SAMPLE_FUNDS, ctx)
        ledger.amend_fund(
            "CT",
            {"reference_rule": {"min_length": 8, "max_length": 9, "pattern": "[\\d\u200b]{8,9}"}},
            ctx,
            "references as 0.1.0 took them",
        )
        with references_unfolded(monkeypatch):
            for reference in [*recorded, "12345679"]:
                ledger.record_payment(RecordPayment("cash", 100, reference), ctx)
        projection = build_projection(settings, ledger)
        projection.catch_up()
        projection.engine.dispose()
    engine = create_engine(settings.database_url)
    with engine.begin() as connection:  # the read model as 0002 had it
        connection.execute(text("DROP TABLE reference_forms"))
        connection.execute(text("UPDATE alembic_version SET version_num = '0002'"))
    assert upgrade_database(settings.database_url) == ("0002", head_revision())
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM reference_forms")).all()
    engine.dispose()
    assert sorted(rows) == sorted(("12345679", reference) for reference in recorded)
    assert schema_differences(settings.database_url) == []
    monkeypatch.setenv("LEDGER_DATABASE_URL", settings.database_url)
    assert json.loads(cli("projections", "verify", "--json"))["ok"]
