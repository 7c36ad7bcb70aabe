"""`income-ledger db init|upgrade|current`: the database schema and its version (issue #13).

`db upgrade` applies the Alembic revisions the database lacks, under the schema lock;
`db init` is the same, named for a new install ("upgrade from nothing"); `db current` says
where the database is and exits 1 when it needs an upgrade.
"""

from __future__ import annotations

from typing import Annotated

import typer

from income_ledger.bootstrap import refuse_missing_sqlite_file, safe_url
from income_ledger.cli import helpers
from income_ledger.schema_versions import revisions_between, schema_version, upgrade_database
from income_ledger.settings import Settings

EXIT_NEEDS_UPGRADE = 1
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def register(db_app: typer.Typer) -> None:
    db_app.command("init")(helpers.handle_errors(db_init))
    db_app.command("upgrade")(helpers.handle_errors(db_upgrade))
    db_app.command("current")(helpers.handle_errors(db_current))


def db_init() -> None:
    """Create the ledger's tables, or bring an existing database up to date (the same as
    `db upgrade`; safe to run again; concurrent runs are serialised)."""
    _upgrade()


def db_upgrade() -> None:
    """Apply the schema revisions this release needs: a database made by release 0.1.0 is
    adopted as it is. Take a backup first (docs/operations.md, Upgrade)."""
    _upgrade()


def _upgrade() -> None:
    settings = Settings()
    before, after = upgrade_database(settings.database_url)
    where = safe_url(settings)
    if before == after:
        helpers.out.print(
            f"database ready at {where}: schema at {after}, nothing to do", soft_wrap=True
        )
        return
    helpers.out.print(
        f"database ready at {where}: schema at {after}, applied:",
        highlight=False,
        soft_wrap=True,
    )
    for line in revisions_between(before, after):
        helpers.out.print(f"  {line}", highlight=False, soft_wrap=True)


def db_current(as_json: JsonOption = False) -> None:
    """Which schema revision the database is at, and whether this release needs an upgrade
    (exit 1 then)."""
    settings = Settings()
    refuse_missing_sqlite_file(settings)  # asking must not make an empty ledger.db
    version = schema_version(settings.database_url)
    if as_json:
        helpers.print_json(version.to_dict())
    else:
        helpers.out.print(
            f"{safe_url(settings)}: {version.describe()}", highlight=False, soft_wrap=True
        )
    if not version.up_to_date:
        raise typer.Exit(EXIT_NEEDS_UPGRADE)
