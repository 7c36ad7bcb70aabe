"""The schema of release 0.1.0, frozen: what revision 0001 builds and what later revisions
start from. Never edit it; change the schema with a new revision (docs/operations.md).

It is written out here, not imported from the code that uses the tables, because that code
will change and this must not.
"""

from __future__ import annotations

import sqlalchemy as sa

# Row ids: BIGSERIAL on PostgreSQL, SQLite's INTEGER PRIMARY KEY (its rowid) there.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)

metadata = sa.MetaData()

# The event store, as eventsourcing-sqlalchemy 1.0 creates it for the application `Ledger`.
sa.Table(
    "ledger_events",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("originator_id", sa.Uuid().with_variant(sa.BINARY(16), "sqlite"), nullable=False),
    sa.Column("originator_version", ID, nullable=False),
    sa.Column("topic", sa.Text(), nullable=False),
    sa.Column("state", sa.LargeBinary(), nullable=False),
    sa.Index("ledger_events_aggregate_idx", "originator_id", "originator_version", unique=True),
)
sa.Table(
    "request_idempotency",
    metadata,
    sa.Column("scope_key", sa.String(401), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("method", sa.String(10), nullable=False),
    sa.Column("path", sa.String(300), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=False),
    sa.Column("response_body", sa.Text(), nullable=False),
    sa.Column("position", sa.BigInteger()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Table(
    "payer_details",
    metadata,
    sa.Column("payment_id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200)),
    sa.Column("email", sa.String(200)),
    sa.Column("phone", sa.String(200)),
    sa.Column("address", sa.String(200)),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Table(
    "postings",
    metadata,
    sa.Column("posting_id", ID, primary_key=True),
    sa.Column("position", sa.BigInteger(), nullable=False),
    sa.Column("event_id", sa.String(80), nullable=False),
    sa.Column("payment_id", sa.String(36)),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("account", sa.String(279), nullable=False),
    sa.Column("fund_code", sa.String(16)),
    sa.Column("reference", sa.String(255)),
    sa.Column("channel", sa.String(20)),
    sa.Column("amount_pence", sa.BigInteger(), nullable=False),
    sa.Column("effective_at", TIME, nullable=False),
    sa.Column("effective_date", sa.Date(), nullable=False),
    sa.Column("recorded_at", TIME, nullable=False),
    sa.Index("ix_postings_account", "account"),
    sa.Index("ix_postings_effective_date", "effective_date"),
    sa.Index("ix_postings_fund_code_reference", "fund_code", "reference"),
    sa.Index("ix_postings_payment_id", "payment_id"),
    sa.Index("ix_postings_position", "position"),
)
sa.Table(
    "account_balances",
    metadata,
    sa.Column("account", sa.String(279), primary_key=True),
    sa.Column("fund_code", sa.String(16)),
    sa.Column("reference", sa.String(255)),
    sa.Column("balance_pence", sa.BigInteger(), nullable=False),
    sa.Column("postings_count", sa.BigInteger(), nullable=False),
    sa.Index("ix_account_balances_fund_code_reference", "fund_code", "reference"),
)
sa.Table(
    "fund_balances",
    metadata,
    sa.Column("fund_code", sa.String(16), primary_key=True),
    sa.Column("balance_pence", sa.BigInteger(), nullable=False),
    sa.Column("net_pence", sa.BigInteger(), nullable=False),
    sa.Column("vat_pence", sa.BigInteger(), nullable=False),
    sa.Column("allocated_pence", sa.BigInteger(), nullable=False),
    sa.Column("transfers_in_pence", sa.BigInteger(), nullable=False),
    sa.Column("transfers_out_pence", sa.BigInteger(), nullable=False),
    sa.Column("refunds_pence", sa.BigInteger(), nullable=False),
    sa.Column("reversals_pence", sa.BigInteger(), nullable=False),
)
sa.Table(
    "channel_totals",
    metadata,
    sa.Column("channel", sa.String(20), primary_key=True),
    sa.Column("receipts_count", sa.BigInteger(), nullable=False),
    sa.Column("received_pence", sa.BigInteger(), nullable=False),
    sa.Column("refunds_pence", sa.BigInteger(), nullable=False),
    sa.Column("reversals_pence", sa.BigInteger(), nullable=False),
    sa.Column("net_pence", sa.BigInteger(), nullable=False),
)
sa.Table(
    "payments",
    metadata,
    sa.Column("payment_id", sa.String(36), primary_key=True),
    sa.Column("channel", sa.String(20), nullable=False),
    sa.Column("amount_pence", sa.BigInteger(), nullable=False),
    sa.Column("reference", sa.String(255), nullable=False),
    sa.Column("fund_hint", sa.String(16)),
    sa.Column("fund_code", sa.String(16)),
    sa.Column("external_id", sa.String(255)),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("allocated_pence", sa.BigInteger(), nullable=False),
    sa.Column("unallocated_pence", sa.BigInteger(), nullable=False),
    sa.Column("refunded_pence", sa.BigInteger(), nullable=False),
    sa.Column("reversed_pence", sa.BigInteger(), nullable=False),
    sa.Column("suspense_reason", sa.String(40)),
    sa.Column("received_at", TIME, nullable=False),
    sa.Column("received_date", sa.Date(), nullable=False),
    sa.Column("recorded_at", TIME, nullable=False),
    sa.Column("recorded_by", sa.String(200), nullable=False),
    sa.Column("updated_at", TIME, nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("position", sa.BigInteger(), nullable=False),
    sa.Index("ix_payments_channel", "channel"),
    sa.Index("ix_payments_fund_code", "fund_code"),
    sa.Index("ix_payments_received_date", "received_date"),
    sa.Index("ix_payments_reference", "reference"),
    sa.Index("ix_payments_status", "status"),
)
sa.Table(
    "payment_allocations",
    metadata,
    sa.Column("payment_id", sa.String(36), primary_key=True),
    sa.Column("fund_code", sa.String(16), primary_key=True),
    sa.Column("reference", sa.String(255), primary_key=True),
    sa.Column("amount_pence", sa.BigInteger(), nullable=False),
    sa.Column("vat_pence", sa.BigInteger(), nullable=False),
    sa.Index("ix_payment_allocations_fund_code_reference", "fund_code", "reference"),
)
sa.Table(
    "suspense_items",
    metadata,
    sa.Column("payment_id", sa.String(36), primary_key=True),
    sa.Column("channel", sa.String(20), nullable=False),
    sa.Column("reference", sa.String(255), nullable=False),
    sa.Column("amount_pence", sa.BigInteger(), nullable=False),
    sa.Column("reason", sa.String(40)),
    sa.Column("received_at", TIME, nullable=False),
    sa.Column("received_date", sa.Date(), nullable=False),
    sa.Index("ix_suspense_items_received_date", "received_date"),
)
sa.Table(
    "daily_takings",
    metadata,
    sa.Column("business_date", sa.Date(), primary_key=True),
    sa.Column("channel", sa.String(20), primary_key=True),
    sa.Column("fund_code", sa.String(16), primary_key=True),
    sa.Column("receipts_count", sa.BigInteger(), nullable=False),
    sa.Column("received_pence", sa.BigInteger(), nullable=False),
    sa.Column("vat_pence", sa.BigInteger(), nullable=False),
    sa.Column("refunds_count", sa.BigInteger(), nullable=False),
    sa.Column("refunds_pence", sa.BigInteger(), nullable=False),
    sa.Column("reversals_count", sa.BigInteger(), nullable=False),
    sa.Column("reversals_pence", sa.BigInteger(), nullable=False),
    sa.Column("net_pence", sa.BigInteger(), nullable=False),
)
sa.Table(
    "audit_trail",
    metadata,
    sa.Column("position", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("event_id", sa.String(80), nullable=False),
    sa.Column("recorded_at", TIME, nullable=False),
    sa.Column("effective_at", TIME, nullable=False),
    sa.Column("actor", sa.String(200)),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("payment_id", sa.String(36)),
    sa.Column("fund_code", sa.String(16)),
    sa.Column("reference", sa.String(255)),
    sa.Column("amount_pence", sa.BigInteger()),
    sa.Column("reason", sa.Text()),
    sa.Column("correlation_id", sa.String(401)),
    sa.Index("ix_audit_trail_actor", "actor"),
    sa.Index("ix_audit_trail_payment_id", "payment_id"),
    sa.Index("ix_audit_trail_recorded_at", "recorded_at"),
)
sa.Table(
    "import_batches",
    metadata,
    sa.Column("batch_id", sa.String(36), primary_key=True),
    sa.Column("file_name", sa.String(255), nullable=False),
    sa.Column("file_format", sa.String(20), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("line_count", sa.BigInteger(), nullable=False),
    sa.Column("control_total_pence", sa.BigInteger(), nullable=False),
    sa.Column("control_count", sa.BigInteger(), nullable=False),
    sa.Column("receipts_count", sa.BigInteger(), nullable=False),
    sa.Column("receipts_pence", sa.BigInteger(), nullable=False),
    sa.Column("returned_cheques_count", sa.BigInteger(), nullable=False),
    sa.Column("imported_at", TIME, nullable=False),
    sa.Column("imported_date", sa.Date(), nullable=False),
    sa.Column("imported_by", sa.String(200), nullable=False),
    sa.Column("reversed_at", TIME),
    sa.Column("reversed_by", sa.String(200)),
    sa.Column("reversal_reason", sa.Text()),
    sa.Column("reversed_pence", sa.BigInteger(), nullable=False),
    sa.Column("position", sa.BigInteger(), nullable=False),
    sa.Index("ix_import_batches_imported_date", "imported_date"),
)
sa.Table(
    "projection_tracking",
    metadata,
    sa.Column("projection_name", sa.String(64), primary_key=True),
    sa.Column("position", sa.BigInteger(), nullable=False),
    sa.Column("updated_at", TIME),
)
sa.Table(
    "projection_status",
    metadata,
    sa.Column("projection_name", sa.String(64), primary_key=True),
    sa.Column("error_position", sa.BigInteger()),
    sa.Column("error", sa.Text()),
    sa.Column("failing_since", TIME),
    sa.Column("last_attempt_at", TIME),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("errors_total", sa.BigInteger(), nullable=False),
    sa.Column("runner", sa.String(200)),
)
sa.Table(
    "audit_chain",
    metadata,
    sa.Column("position", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("event_id", sa.String(80), nullable=False),
    sa.Column("recorded_at", TIME, nullable=False),
    sa.Column("link_sha256", sa.String(64), nullable=False),
)
sa.Table(
    "audit_seals",
    metadata,
    sa.Column("business_date", sa.Date(), primary_key=True),
    sa.Column("first_position", sa.BigInteger(), nullable=False),
    sa.Column("last_position", sa.BigInteger(), nullable=False),
    sa.Column("events_count", sa.BigInteger(), nullable=False),
    sa.Column("link_sha256", sa.String(64), nullable=False),
    sa.Column("updated_at", TIME, nullable=False),
)
