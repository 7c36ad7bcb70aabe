"""GOV.UK Pay webhook messages: authenticate, parse into a plain command, apply to the ledger.

The HTTP route only hands over the raw body and the `Pay-Signature` header; everything that
decides what a message means for the money lives here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from application.ledger import CommandContext, IncomeLedger, RecordPayment
from domain.errors import InvalidRequest
from domain.limits import require_business_datetime

log = logging.getLogger(__name__)
GOVUK_PAY_ACTOR = "integration:govuk-pay"
RECEIPT_EVENTS = frozenset({"card_payment_succeeded", "card_payment_captured"})
REFUND_EVENTS = frozenset({"card_payment_refunded"})


def signature_matches(secrets: Iterable[str], raw: bytes, signature: str | None) -> bool:
    """True when `signature` is the hex HMAC-SHA256 of the raw body under one of the secrets."""
    if not signature:
        return False
    given = signature.strip().lower()
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        matched |= hmac.compare_digest(given, expected)
    return matched


def parse_message(raw: bytes) -> dict[str, Any]:
    """The message as a JSON object, or InvalidRequest saying why it is not one."""
    try:
        message = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidRequest("the webhook body is not JSON") from None
    if not isinstance(message, dict):
        raise InvalidRequest("the webhook body is not a JSON object")
    return message


@dataclass(frozen=True)
class PayMessage:
    """What one GOV.UK Pay payment message says, in the ledger's terms."""

    event_type: str
    payment_id: str
    amount_pence: int
    reference: str
    created_at: datetime | None
    fund_hint: str | None
    refund_submitted_pence: int | None


def to_command(message: Mapping[str, Any], ledger_codes: Mapping[str, str]) -> PayMessage | None:
    """The plain command a message carries, or None for an event type the ledger ignores."""
    event_type = message.get("event_type")
    if event_type not in RECEIPT_EVENTS | REFUND_EVENTS:
        return None
    resource = message.get("resource")
    if not isinstance(resource, dict) or not resource.get("payment_id"):
        raise InvalidRequest("a payment message needs resource.payment_id")
    amount = resource.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidRequest("resource.amount must be a whole number of pence")
    metadata = resource.get("metadata") if isinstance(resource.get("metadata"), dict) else {}
    fund_hint = metadata.get("fund_code") or ledger_codes.get(str(metadata.get("ledger_code", "")))
    submitted = None
    if event_type in REFUND_EVENTS:
        summary = resource.get("refund_summary") or {}
        value = summary.get("amount_submitted") if isinstance(summary, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            submitted = value
    return PayMessage(
        event_type=str(event_type),
        payment_id=str(resource["payment_id"]),
        amount_pence=amount,
        reference=str(resource.get("reference", "")),
        created_at=_when(resource.get("created_date") or message.get("created_date")),
        fund_hint=str(fund_hint) if fund_hint else None,
        refund_submitted_pence=submitted,
    )


def apply_message(ledger: IncomeLedger, command: PayMessage) -> dict[str, Any]:
    """Record what the message says, once however often and in whatever order it arrives."""
    ctx = CommandContext(GOVUK_PAY_ACTOR, idempotency_key=f"govuk-pay:{command.payment_id}")
    outcome = ledger.record_payment(
        RecordPayment(
            channel="govuk_pay",
            amount_pence=command.amount_pence,
            reference=command.reference,
            received_at=command.created_at,
            fund_code=command.fund_hint,
            external_id=command.payment_id,
        ),
        ctx,
    )
    status, position = ("recorded" if outcome.recorded else "duplicate"), outcome.position
    if command.refund_submitted_pence is not None:
        submitted = command.refund_submitted_pence
        refund_ctx = CommandContext(
            GOVUK_PAY_ACTOR, idempotency_key=f"govuk-pay-refund:{command.payment_id}:{submitted}"
        )
        refunded = ledger.settle_external_refunds(
            outcome.payment_id, submitted, refund_ctx, "refunded on GOV.UK Pay"
        )
        if refunded.recorded:
            status, position = "refund_recorded", refunded.position
    return {"status": status, "payment_id": str(outcome.payment_id), "position": position}


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"created_date {value!r} is not an ISO 8601 time") from None
    return require_business_datetime(moment, "created_date")
