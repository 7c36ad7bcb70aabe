"""Alembic revisions of the ledger's schema; run them with `income-ledger db upgrade`."""
