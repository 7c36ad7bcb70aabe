"""A command run where there is no ledger says so and leaves no empty ledger.db behind."""

from __future__ import annotations

import pytest

from income_ledger.bootstrap import build_ledger
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
