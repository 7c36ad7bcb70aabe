"""Payer details (names, emails, addresses) live apart from the money.

They sit in their own table, keyed by payment id, so that they can be erased on request
without touching the immutable events that carry the amounts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Column, DateTime, String, Table, delete, insert, select
from sqlalchemy.orm import Session

from application.tables import metadata
from domain.cards import reject_card_numbers
from domain.limits import MAX_PAYER_FIELD_LENGTH, require_length

payer_details_table = Table(
    "payer_details",
    metadata,
    Column("payment_id", String(36), primary_key=True),
    Column("name", String(MAX_PAYER_FIELD_LENGTH)),
    Column("email", String(MAX_PAYER_FIELD_LENGTH)),
    Column("phone", String(MAX_PAYER_FIELD_LENGTH)),
    Column("address", String(MAX_PAYER_FIELD_LENGTH)),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class PayerDetails:
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    address: str | None = None

    def __post_init__(self) -> None:
        for field, value in asdict(self).items():
            require_length(f"payer {field}", value, MAX_PAYER_FIELD_LENGTH)
            reject_card_numbers(f"payer {field}", value)

    def is_empty(self) -> bool:
        return not any(asdict(self).values())


def save_payer_details(
    session: Session, payment_id: UUID, details: PayerDetails, recorded_at: datetime
) -> None:
    session.execute(
        insert(payer_details_table).values(payer_details_row(payment_id, details, recorded_at))
    )


def payer_details_row(
    payment_id: UUID, details: PayerDetails, recorded_at: datetime
) -> dict[str, Any]:
    return {"payment_id": str(payment_id), "recorded_at": recorded_at, **asdict(details)}


def load_payer_details(session: Session, payment_id: UUID) -> PayerDetails | None:
    row = session.execute(
        select(payer_details_table).where(payer_details_table.c.payment_id == str(payment_id))
    ).first()
    if row is None:
        return None
    return PayerDetails(name=row.name, email=row.email, phone=row.phone, address=row.address)


def erase_payer_details(session: Session, payment_id: UUID) -> bool:
    result = session.execute(
        delete(payer_details_table).where(payer_details_table.c.payment_id == str(payment_id))
    )
    return bool(result.rowcount)
