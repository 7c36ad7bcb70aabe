"""Release 0.1.0: every table, created where missing.

A database made by release 0.1.0 (or earlier, by `db init`) has no revision but has these
tables: upgrading it creates only the ones it lacks, then stamps it. An empty database gets
them all.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

from income_ledger.migrations import baseline_0_1_0

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    baseline_0_1_0.metadata.create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    raise NotImplementedError("the ledger's revisions go forward only: restore the backup")
