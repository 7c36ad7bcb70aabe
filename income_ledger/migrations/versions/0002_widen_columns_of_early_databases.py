"""Widen text columns that databases from before the limits contract made narrower.

Databases initialised before domain/limits.py (commit 128e257) have narrower columns:
`request_idempotency.scope_key` 300 and, in the read model, references 40, external ids and
correlation ids 200, accounts 120. On PostgreSQL a value the ledger now accepts could then be
refused (the release notes asked for a manual ALTER TABLE). This widens every such column to
its 0.1.0 width. Widening a varchar rewrites nothing on PostgreSQL, so it is quick on big
tables; databases already at those widths are left as they are. SQLite does not enforce
widths, so there is nothing to do there.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from income_ledger.migrations import baseline_0_1_0

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # One catalogue query for every table (reflecting them one by one is slow on PostgreSQL,
    # and `db init` runs this on every new database).
    widths = {
        (table, column): width
        for table, column, width in bind.execute(
            sa.text(
                "SELECT table_name, column_name, character_maximum_length "
                "FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND character_maximum_length IS NOT NULL"
            )
        )
    }
    for table in baseline_0_1_0.metadata.sorted_tables:
        for column in table.columns:
            found = widths.get((table.name, column.name))
            wanted = getattr(column.type, "length", None)
            if found is not None and wanted is not None and found < wanted:
                op.alter_column(
                    table.name, column.name, type_=column.type, existing_type=sa.String(found)
                )


def downgrade() -> None:
    raise NotImplementedError("the ledger's revisions go forward only: restore the backup")
