"""The read model's `reference_forms`: references recorded before they were folded.

Since 2026-12-01 a reference typed with full-width digits or a zero-width space is kept in
its ASCII form; one recorded before is kept as it was recorded (events are never changed).
`reference_forms` lists each such reference under the form it is typed in now, so that a
lookup finds the account whichever way it was recorded and typed. This creates the table
and lists the references the read model already holds: only non-ASCII ones can differ, so
the few rows found that way are the only ones folded here.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from domain.limits import MAX_REFERENCE_LENGTH
from domain.references import normalise_reference

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Where the read model keeps a recorded reference that a person looks up.
_HOLDERS = ("payments", "payment_allocations", "account_balances")


def upgrade() -> None:
    bind = op.get_bind()
    if sa.inspect(bind).has_table("reference_forms"):  # made by this release, stamp lost
        return
    op.create_table(
        "reference_forms",
        sa.Column("reference", sa.String(MAX_REFERENCE_LENGTH), primary_key=True),
        sa.Column("recorded_reference", sa.String(MAX_REFERENCE_LENGTH), primary_key=True),
    )
    # A character outside printable ASCII: a regular expression on PostgreSQL, GLOB's class on
    # SQLite. One pass over each table, once.
    postgres = bind.dialect.name == "postgresql"
    outside = "reference ~ '[^ -~]'" if postgres else "reference GLOB '*[^ -~]*'"
    recorded: set[str] = set()
    for table in _HOLDERS:
        query = f"SELECT DISTINCT reference FROM {table} WHERE {outside}"
        recorded.update(row[0] for row in bind.execute(sa.text(query)))
    rows = [
        {"reference": typed, "recorded_reference": reference}
        for reference in sorted(recorded)
        if (typed := normalise_reference(reference)) != reference
    ]
    if rows:
        op.bulk_insert(
            sa.table("reference_forms", sa.column("reference"), sa.column("recorded_reference")),
            rows,
        )


def downgrade() -> None:
    raise NotImplementedError("the ledger's revisions go forward only: restore the backup")
