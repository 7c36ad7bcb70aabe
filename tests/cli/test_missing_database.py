"""A command run where there is no ledger says so and leaves no empty ledger.db behind."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from income_ledger.bootstrap import build_ledger
from income_ledger.cli import app as cli_app
from income_ledger.schema_versions import DatabaseNotInitialised
from income_ledger.settings import Settings


def test_a_missing_sqlite_file_is_named_and_not_created(tmp_path) -> None:
    # Found in the day-close walkthrough: `audit export` run from the wrong directory said
    # "no ledger tables yet" and left an empty ledger.db there, which the next command
    # then took for a ledger.
    missing = tmp_path / "ledger.db"
    settings = Settings(database_url=f"sqlite:///{missing}")
    with pytest.raises(DatabaseNotInitialised, match=f"there is no file {missing}"):
        build_ledger(settings)
    assert not missing.exists()


def test_db_current_where_there_is_no_ledger_says_so_and_creates_none(
    tmp_path, monkeypatch
) -> None:
    # Found in the day-close walkthrough: `db current` run where there was no ledger left an
    # empty ledger.db behind, as the other commands did before a6a74d0.
    missing = tmp_path / "ledger.db"
    monkeypatch.setenv("LEDGER_DATABASE_URL", f"sqlite:///{missing}")
    for asked in (["db", "current"], ["db", "current", "--json"]):
        result = CliRunner().invoke(cli_app, asked)
        assert result.exit_code != 0
        assert "there is no file" in " ".join(result.output.split())
        assert "Traceback" not in result.output
        assert not missing.exists()
