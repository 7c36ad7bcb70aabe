"""The exceptions report's books kept with the position they are valid at (issue #10).

One row per kind of books (application.books_snapshot): a new process loads it and folds
only the events recorded since, instead of the whole event store. Nothing in it is the
book of record: an empty table only makes the next process fold afresh.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Created where missing: a database that lost its revision stamp is upgraded from 0001.
    sa.Table(
        "books_snapshot",
        sa.MetaData(),
        sa.Column("name", sa.String(50), primary_key=True),
        sa.Column("format", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("originator_id", sa.String(36), nullable=False),
        sa.Column("originator_version", sa.BigInteger(), nullable=False),
        sa.Column("books", sa.LargeBinary(), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
    ).create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    raise NotImplementedError("the ledger's revisions go forward only: restore the backup")
