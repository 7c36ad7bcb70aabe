"""Read-model tables: plain SQL, named for the people who read them (docs/read-model.md).

`read_model(suffix)` builds the same tables under other names (`postings_rebuild`, ...) so a
rebuild or a verification can fill fresh tables beside the live ones and swap them in.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

from domain.imports import MAX_FILE_NAME_LENGTH
from domain.limits import (
    MAX_ACTOR_LENGTH,
    MAX_CORRELATION_ID_LENGTH,
    MAX_EXTERNAL_ID_LENGTH,
    MAX_FUND_CODE_LENGTH,
    MAX_REFERENCE_LENGTH,
)
from domain.postings import income_account

PROJECTION_NAME = "ledger_read_model"


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are stored and read back as aware UTC on every backend.

    SQLite keeps no time zone, so values are normalised to UTC before they are written and
    marked UTC when they are read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the read model; times must be aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


Money = BigInteger  # pence
# Text columns take their widths from domain.limits, so whatever the ledger accepts fits here;
# the longest account name is a fund's income account for the longest reference.
ACCOUNT_LENGTH = len(income_account("F" * MAX_FUND_CODE_LENGTH, "R" * MAX_REFERENCE_LENGTH))
SUSPENSE_FUND = "SUSPENSE"  # the fund_code of money not allocated to any fund


@dataclass(frozen=True)
class ReadModel:
    metadata: MetaData
    postings: Table
    account_balances: Table
    fund_balances: Table
    channel_totals: Table
    payments: Table
    payment_allocations: Table
    suspense_items: Table
    daily_takings: Table
    audit_trail: Table
    import_batches: Table
    reference_forms: Table

    @property
    def tables(self) -> list[Table]:
        return [
            self.postings,
            self.account_balances,
            self.fund_balances,
            self.channel_totals,
            self.payments,
            self.payment_allocations,
            self.suspense_items,
            self.daily_takings,
            self.audit_trail,
            self.import_batches,
            self.reference_forms,
        ]


def read_model(suffix: str = "", index_tag: str | None = None) -> ReadModel:
    """The read-model tables; index names carry a tag so that swapped tables never clash."""
    metadata = MetaData()
    tag = index_tag if index_tag is not None else ""

    def ix(table: str, *columns: str) -> Index:
        return Index(f"ix_{table}{suffix}_{'_'.join(columns)}{tag}", *columns)

    postings = Table(
        f"postings{suffix}",
        metadata,
        Column(
            "posting_id",
            BigInteger().with_variant(Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("position", BigInteger, nullable=False),
        Column("event_id", String(80), nullable=False),
        Column("payment_id", String(36)),
        Column("action", String(40), nullable=False),
        Column("account", String(ACCOUNT_LENGTH), nullable=False),
        Column("fund_code", String(MAX_FUND_CODE_LENGTH)),
        Column("reference", String(MAX_REFERENCE_LENGTH)),
        Column("channel", String(20)),
        Column("amount_pence", Money, nullable=False),
        Column("effective_at", UTCDateTime(), nullable=False),
        Column("effective_date", Date, nullable=False),
        Column("recorded_at", UTCDateTime(), nullable=False),
        ix("postings", "position"),
        ix("postings", "account"),
        ix("postings", "fund_code", "reference"),
        ix("postings", "effective_date"),
        ix("postings", "payment_id"),
    )
    account_balances = Table(
        f"account_balances{suffix}",
        metadata,
        Column("account", String(ACCOUNT_LENGTH), primary_key=True),
        Column("fund_code", String(MAX_FUND_CODE_LENGTH)),
        Column("reference", String(MAX_REFERENCE_LENGTH)),
        Column("balance_pence", Money, nullable=False),
        Column("postings_count", BigInteger, nullable=False),
        ix("account_balances", "fund_code", "reference"),
    )
    fund_balances = Table(
        f"fund_balances{suffix}",
        metadata,
        Column("fund_code", String(MAX_FUND_CODE_LENGTH), primary_key=True),
        Column("balance_pence", Money, nullable=False),
        Column("net_pence", Money, nullable=False),
        Column("vat_pence", Money, nullable=False),
        Column("allocated_pence", Money, nullable=False),
        Column("transfers_in_pence", Money, nullable=False),
        Column("transfers_out_pence", Money, nullable=False),
        Column("refunds_pence", Money, nullable=False),
        Column("reversals_pence", Money, nullable=False),
    )
    channel_totals = Table(
        f"channel_totals{suffix}",
        metadata,
        Column("channel", String(20), primary_key=True),
        Column("receipts_count", BigInteger, nullable=False),
        Column("received_pence", Money, nullable=False),
        Column("refunds_pence", Money, nullable=False),
        Column("reversals_pence", Money, nullable=False),
        Column("net_pence", Money, nullable=False),
    )
    payments = Table(
        f"payments{suffix}",
        metadata,
        Column("payment_id", String(36), primary_key=True),
        Column("channel", String(20), nullable=False),
        Column("amount_pence", Money, nullable=False),
        Column("reference", String(MAX_REFERENCE_LENGTH), nullable=False),
        Column("fund_hint", String(MAX_FUND_CODE_LENGTH)),
        Column("fund_code", String(MAX_FUND_CODE_LENGTH)),
        Column("external_id", String(MAX_EXTERNAL_ID_LENGTH)),
        Column("status", String(20), nullable=False),
        Column("allocated_pence", Money, nullable=False),
        Column("unallocated_pence", Money, nullable=False),
        Column("refunded_pence", Money, nullable=False),
        Column("reversed_pence", Money, nullable=False),
        Column("suspense_reason", String(40)),
        Column("received_at", UTCDateTime(), nullable=False),
        Column("received_date", Date, nullable=False),
        Column("recorded_at", UTCDateTime(), nullable=False),
        Column("recorded_by", String(MAX_ACTOR_LENGTH), nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
        Column("version", Integer, nullable=False),
        Column("position", BigInteger, nullable=False),
        ix("payments", "reference"),
        ix("payments", "fund_code"),
        ix("payments", "channel"),
        ix("payments", "received_date"),
        ix("payments", "status"),
    )
    payment_allocations = Table(
        f"payment_allocations{suffix}",
        metadata,
        Column("payment_id", String(36), primary_key=True),
        Column("fund_code", String(MAX_FUND_CODE_LENGTH), primary_key=True),
        Column("reference", String(MAX_REFERENCE_LENGTH), primary_key=True),
        Column("amount_pence", Money, nullable=False),
        Column("vat_pence", Money, nullable=False),
        ix("payment_allocations", "fund_code", "reference"),
    )
    suspense_items = Table(
        f"suspense_items{suffix}",
        metadata,
        Column("payment_id", String(36), primary_key=True),
        Column("channel", String(20), nullable=False),
        Column("reference", String(MAX_REFERENCE_LENGTH), nullable=False),
        Column("amount_pence", Money, nullable=False),
        Column("reason", String(40)),
        Column("received_at", UTCDateTime(), nullable=False),
        Column("received_date", Date, nullable=False),
        ix("suspense_items", "received_date"),
    )
    daily_takings = Table(
        f"daily_takings{suffix}",
        metadata,
        Column("business_date", Date, primary_key=True),
        Column("channel", String(20), primary_key=True),
        Column("fund_code", String(MAX_FUND_CODE_LENGTH), primary_key=True),
        Column("receipts_count", BigInteger, nullable=False),
        Column("received_pence", Money, nullable=False),
        Column("vat_pence", Money, nullable=False),
        Column("refunds_count", BigInteger, nullable=False),
        Column("refunds_pence", Money, nullable=False),
        Column("reversals_count", BigInteger, nullable=False),
        Column("reversals_pence", Money, nullable=False),
        Column("net_pence", Money, nullable=False),
    )
    audit_trail = Table(
        f"audit_trail{suffix}",
        metadata,
        Column("position", BigInteger, primary_key=True, autoincrement=False),
        Column("event_id", String(80), nullable=False),
        Column("recorded_at", UTCDateTime(), nullable=False),
        Column("effective_at", UTCDateTime(), nullable=False),
        Column("actor", String(MAX_ACTOR_LENGTH)),
        Column("action", String(40), nullable=False),
        Column("payment_id", String(36)),
        Column("fund_code", String(MAX_FUND_CODE_LENGTH)),
        Column("reference", String(MAX_REFERENCE_LENGTH)),
        Column("amount_pence", Money),
        Column("reason", Text),
        Column("correlation_id", String(MAX_CORRELATION_ID_LENGTH)),
        ix("audit_trail", "recorded_at"),
        ix("audit_trail", "actor"),
        ix("audit_trail", "payment_id"),
    )
    import_batches = Table(
        f"import_batches{suffix}",
        metadata,
        Column("batch_id", String(36), primary_key=True),
        Column("file_name", String(MAX_FILE_NAME_LENGTH), nullable=False),
        Column("file_format", String(20), nullable=False),
        Column("sha256", String(64), nullable=False),
        Column("line_count", BigInteger, nullable=False),
        Column("control_total_pence", Money, nullable=False),
        Column("control_count", BigInteger, nullable=False),
        Column("receipts_count", BigInteger, nullable=False),
        Column("receipts_pence", Money, nullable=False),
        Column("returned_cheques_count", BigInteger, nullable=False),
        Column("imported_at", UTCDateTime(), nullable=False),
        Column("imported_date", Date, nullable=False),
        Column("imported_by", String(MAX_ACTOR_LENGTH), nullable=False),
        Column("reversed_at", UTCDateTime()),
        Column("reversed_by", String(MAX_ACTOR_LENGTH)),
        Column("reversal_reason", Text),
        Column("reversed_pence", Money, nullable=False),
        Column("position", BigInteger, nullable=False),
        ix("import_batches", "imported_date"),
    )
    # A reference recorded before references were folded (full-width digits, a zero-width
    # space: before 2026-12-01) under the form it is typed in now, so a lookup finds it
    # whichever way either was written. Only such references have a row: few or none.
    reference_forms = Table(
        f"reference_forms{suffix}",
        metadata,
        Column("reference", String(MAX_REFERENCE_LENGTH), primary_key=True),
        Column("recorded_reference", String(MAX_REFERENCE_LENGTH), primary_key=True),
    )
    return ReadModel(
        metadata,
        postings,
        account_balances,
        fund_balances,
        channel_totals,
        payments,
        payment_allocations,
        suspense_items,
        daily_takings,
        audit_trail,
        import_batches,
        reference_forms,
    )


tracking_metadata = MetaData()
projection_tracking = Table(
    "projection_tracking",
    tracking_metadata,
    Column("projection_name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime()),
)

LIVE = read_model()


def new_index_tag() -> str:
    return "_" + secrets.token_hex(3)
