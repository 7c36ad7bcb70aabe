"""GOV.UK Pay webhook messages: authenticate, parse into a plain command, apply to the ledger.

The HTTP route only hands over the raw body and the `Pay-Signature` header; everything that
decides what a message means for the money lives here.

What the ledger does with each message (delivered at least once, in any order):
- Money is recorded when it is taken: `card_payment_captured`, `card_payment_refunded` (a
  refund implies a capture), or `card_payment_succeeded` without delayed capture (GOV.UK Pay
  queues the capture at once). A `card_payment_succeeded` with `delayed_capture: true` is
  only an authorisation: acknowledged, nothing recorded until the capture message.
- The amount recorded is what the payer paid: `total_amount` (`amount` plus any
  `corporate_card_surcharge`), allocated together to the payment's fund and reference, so a
  full refund of `refund_summary.amount_submitted` can always be paid back. The surcharge
  stays visible apart in the payment's provider details.
- `card_payment_failed` for a payment recorded before its capture (at authorisation) reverses
  it as `cancelled`; for a payment known to be captured the money is kept and the
  contradiction noted on the payment and logged as an error.
- Each message is applied whole, in one save of the payment's events, or not at all. A signed
  message the ledger can never apply (a refund beyond what was paid) is refused, logged as an
  error and answered 2xx so that GOV.UK Pay stops retrying it.
- The card money sits in the clearing account until a payout on the bank statement pays it in
  (application.reconciliation). The `fee` Pay reports with a payment is charged once, as an
  expense out of clearing; a payment cancelled before capture is closed in clearing at once
  (nothing will ever be paid out for it).
- Disputes (`dispute_created`, `dispute_evidence_submitted`, `dispute_won`, `dispute_lost`,
  resource: the dispute, naming its `payment_id`) follow the payment: created shows the money
  at risk, won moves nothing, lost reverses the payment (a chargeback) and charges the
  dispute's `fee`. Each is applied once whatever the order or number of deliveries; a
  decided dispute never reopens.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from application.ledger import CommandContext, IncomeLedger, RecordPayment
from application.periods import late_receipt
from domain.cards import contains_card_number, mask_card_numbers
from domain.errors import ConcurrentUpdate, InvalidRequest, PaymentNotFound, RuleViolation
from domain.funds import Match, SuspenseReason
from domain.limits import (
    MAX_EXTERNAL_ID_LENGTH,
    MAX_FUND_CODE_LENGTH,
    MAX_REFERENCE_LENGTH,
    require_business_datetime,
)
from domain.money import MAX_AMOUNT_PENCE
from domain.payment import Channel, ClearingItem, DisputeStatus, Payment, ReversalKind
from domain.references import normalise_reference

log = logging.getLogger(__name__)
GOVUK_PAY_ACTOR = "integration:govuk-pay"
CAPTURED = "card_payment_captured"
SUCCEEDED = "card_payment_succeeded"
REFUNDED = "card_payment_refunded"
FAILED = "card_payment_failed"
DISPUTE_EVENTS = {
    "dispute_created": DisputeStatus.OPEN,
    "dispute_evidence_submitted": DisputeStatus.EVIDENCE_SUBMITTED,
    "dispute_won": DisputeStatus.WON,
    "dispute_lost": DisputeStatus.LOST,
}
HANDLED_EVENTS = frozenset({CAPTURED, SUCCEEDED, REFUNDED, FAILED, *DISPUTE_EVENTS})
MAX_DETAIL_TEXT_LENGTH = 100
CONCURRENT_ATTEMPTS = 3
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# ---- authentication -------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningSecret:
    """One webhook signing secret, labelled with the Pay service it belongs to (for logs)."""

    service: str
    secret: str = field(repr=False)


def parse_signing_secrets(text: str) -> tuple[SigningSecret, ...]:
    """LEDGER_GOVUK_PAY_WEBHOOK_SECRETS: a JSON object of service name to a secret or a list
    of secrets (`{"parking": ["webhook_live_a", "webhook_live_b"]}`), or a plain comma list of
    secrets. Several secrets per service allow rotation. (The comma list has no service
    labels: a secret may itself end in `=`.)"""
    text = text.strip()
    if text.startswith(("{", "[")):
        return _secrets_from_json(text)
    return tuple(SigningSecret("", e.strip()) for e in text.split(",") if e.strip())


def _secrets_from_json(text: str) -> tuple[SigningSecret, ...]:
    try:
        services = json.loads(text)
    except ValueError:
        raise ValueError("it looks like JSON but is not valid JSON") from None
    if not isinstance(services, dict):
        raise ValueError('write JSON as {"service": ["secret", ...]}')
    secrets = []
    for service, value in services.items():
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            raise ValueError(f"service {service!r} needs a secret or a list of secrets")
        secrets.extend(SigningSecret(service, secret) for secret in values)
    return tuple(secrets)


def matching_secret(
    secrets: Iterable[SigningSecret], raw: bytes, signature: str | None
) -> SigningSecret | None:
    """The secret whose HMAC-SHA256 of the raw body is the `Pay-Signature` (lower-case hex),
    or None. Compared as bytes: a header may hold any character, and comparing text with
    non-ASCII characters fails rather than answering no."""
    if not signature:
        return None
    given = signature.strip().lower().encode("utf-8", "replace")
    found = None
    for secret in secrets:
        expected = hmac.new(secret.secret.encode(), raw, hashlib.sha256).hexdigest().encode()
        if hmac.compare_digest(given, expected) and found is None:
            found = secret
    return found


# ---- parsing --------------------------------------------------------------------------------


# A Pay message nests a few levels; deeper bodies are refused before json.loads recurses
# into them (near the interpreter's recursion limit a garbage collection running there
# fails its finalizers, as "unraisable" errors).
MAX_MESSAGE_DEPTH = 64


def nested_too_deeply(raw: bytes, most: int = MAX_MESSAGE_DEPTH) -> bool:
    """Whether a JSON body opens more than `most` arrays and objects inside one another
    (brackets inside strings do not count); without recursion."""
    if raw.count(b"[") + raw.count(b"{") <= most:
        return False
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > most:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def parse_message(raw: bytes) -> dict[str, Any]:
    """The message as a JSON object, or InvalidRequest saying why it is not one."""
    try:
        if nested_too_deeply(raw):
            raise RecursionError
        message = json.loads(raw)
    except RecursionError:
        raise InvalidRequest("the webhook body is nested too deeply to be a Pay message") from None
    except ValueError:  # not JSON, not UTF-8, or a number too long to read
        raise InvalidRequest("the webhook body is not JSON") from None
    if not isinstance(message, dict):
        raise InvalidRequest("the webhook body is not a JSON object")
    return message


@dataclass(frozen=True)
class PayMessage:
    """What one GOV.UK Pay payment message says, in the ledger's terms."""

    event_type: str
    message_id: str | None
    payment_id: str
    paid_pence: int
    reference: str
    hold_in_suspense: Match | None
    created_at: datetime
    fund_hint: str | None
    delayed_capture: bool
    failure: str | None
    refund_submitted_pence: int | None
    provider_details: dict[str, Any]

    @property
    def money_taken(self) -> bool:
        """The message shows the money taken, or about to be with no further decision."""
        if self.event_type in (CAPTURED, REFUNDED):
            return True
        return self.event_type == SUCCEEDED and not self.delayed_capture


@dataclass(frozen=True)
class DisputeMessage:
    """What one GOV.UK Pay dispute message says: a payer's card dispute of a payment."""

    event_type: str
    message_id: str | None
    dispute_id: str
    payment_id: str
    amount_pence: int
    fee_pence: int
    reason: str
    created_at: datetime

    @property
    def status(self) -> DisputeStatus:
        return DISPUTE_EVENTS[self.event_type]


def event_type_of(message: Mapping[str, Any]) -> str | None:
    """The message's event type if the ledger acts on it, else None (acknowledged, ignored)."""
    event_type = message.get("event_type")
    return event_type if isinstance(event_type, str) and event_type in HANDLED_EVENTS else None


def to_command(
    message: Mapping[str, Any], ledger_codes: Mapping[str, str]
) -> PayMessage | DisputeMessage | None:
    """The plain command a message carries, or None for an event type the ledger ignores."""
    event_type = event_type_of(message)
    if event_type is None:
        return None
    resource = message.get("resource")
    if not isinstance(resource, dict):
        raise InvalidRequest("a payment message needs a resource object")
    if event_type in DISPUTE_EVENTS:
        return _dispute_command(message, resource, event_type)
    payment_id = _payment_id(resource)
    amount = _pence(resource, "amount", required=True)
    surcharge = _pence(resource, "corporate_card_surcharge") or 0
    total = _pence(resource, "total_amount")
    paid = total if total is not None else amount + surcharge
    reference, hold = _usable_reference(_text(resource, "reference") or "")
    fund_hint, hint_hold = _fund_hint(resource, ledger_codes)
    return PayMessage(
        event_type=event_type,
        message_id=_text(message, "webhook_message_id"),
        payment_id=payment_id,
        paid_pence=paid,
        reference=reference,
        hold_in_suspense=hold or hint_hold,
        created_at=_moment(resource, "created_date", required=True),
        fund_hint=fund_hint,
        delayed_capture=resource.get("delayed_capture") is True,
        failure=_failure(resource) if event_type == FAILED else None,
        refund_submitted_pence=_refund_submitted(resource) if event_type == REFUNDED else None,
        provider_details=_provider_details(resource, amount, surcharge, paid, event_type),
    )


def _dispute_command(
    message: Mapping[str, Any], resource: Mapping[str, Any], event_type: str
) -> DisputeMessage:
    dispute_id = _text(resource, "dispute_id", MAX_EXTERNAL_ID_LENGTH) or _text(
        message, "resource_id", MAX_EXTERNAL_ID_LENGTH
    )
    if not dispute_id or not dispute_id.strip() or _CONTROL.search(dispute_id):
        raise InvalidRequest("a dispute message needs resource.dispute_id, printable text")
    amount = _pence(resource, "amount", required=True)
    if not amount:
        raise InvalidRequest("resource.amount of a dispute must be more than zero")
    reason = _text(resource, "reason", MAX_DETAIL_TEXT_LENGTH) or "no reason given"
    return DisputeMessage(
        event_type=event_type,
        message_id=_text(message, "webhook_message_id"),
        dispute_id=dispute_id,
        payment_id=_payment_id(resource),
        amount_pence=amount,
        fee_pence=_pence(resource, "fee") or 0,
        reason=_CONTROL.sub(" ", reason),
        created_at=_moment(resource, "created_date", required=True),
    )


def _text(mapping: Mapping[str, Any], key: str, limit: int | None = None) -> str | None:
    value = mapping.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidRequest(f"{key} must be text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"{key} holds characters that are not valid Unicode text") from None
    if limit is not None and len(value) > limit:
        raise InvalidRequest(f"{key} is longer than {limit} characters")
    return value


def _payment_id(resource: Mapping[str, Any]) -> str:
    payment_id = _text(resource, "payment_id", MAX_EXTERNAL_ID_LENGTH)
    if not payment_id or not payment_id.strip() or _CONTROL.search(payment_id):
        raise InvalidRequest("a payment message needs resource.payment_id, printable text")
    return payment_id


def _pence(resource: Mapping[str, Any], key: str, *, required: bool = False) -> int | None:
    value = resource.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AMOUNT_PENCE:
        raise InvalidRequest(f"resource.{key} must be a whole number of pence, 0 or more")
    return value


def _moment(mapping: Mapping[str, Any], key: str, *, required: bool = False) -> datetime:
    value = _text(mapping, key, 40)
    if value is None and required:
        raise InvalidRequest(f"resource.{key} is required: when the payment was made")
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"resource.{key} {value!r} is not an ISO 8601 time") from None
    return require_business_datetime(moment, f"resource.{key}")


def _day(mapping: Mapping[str, Any], key: str) -> str | None:
    value = _text(mapping, key, 40)
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise InvalidRequest(f"{key} {value!r} is not a date like 2024-11-04") from None


def _usable_reference(reference: str) -> tuple[str, Match | None]:
    """The reference as the ledger can keep it, and a suspense reason when it had to change.

    GOV.UK Pay allows 255 characters of free text; the payment is never refused for it.
    """
    problems = []
    printable = _CONTROL.sub(" ", reference)
    if printable != reference:
        problems.append("held control characters (removed)")
    # Looked for as typed (spaces kept, so a grouped number stands alone) and once more after
    # the spaces are gone.
    cleaned = normalise_reference(mask_card_numbers(printable))
    if contains_card_number(cleaned):
        cleaned = mask_card_numbers(cleaned)
    if cleaned != normalise_reference(printable):
        problems.append("held a card number (masked)")
    if len(cleaned) > MAX_REFERENCE_LENGTH:
        cleaned = cleaned[:MAX_REFERENCE_LENGTH]
        problems.append(f"was longer than {MAX_REFERENCE_LENGTH} characters (cut)")
    if not problems:
        return cleaned, None
    detail = "the GOV.UK Pay reference " + " and ".join(problems)
    return cleaned, Match(None, SuspenseReason.UNUSABLE_REFERENCE, detail)


def _fund_hint(
    resource: Mapping[str, Any], ledger_codes: Mapping[str, str]
) -> tuple[str | None, Match | None]:
    """The fund named by metadata `fund_code`, or mapped from `ledger_code` (keys in any
    case, as services spell them `Fund_Code` or `LEDGER_CODE`)."""
    metadata = resource.get("metadata")
    if not isinstance(metadata, dict):
        return None, None
    keys = {str(key).strip().lower(): value for key, value in metadata.items()}
    codes = {code.strip().upper(): fund for code, fund in ledger_codes.items()}
    hint = keys.get("fund_code")
    if hint is None and keys.get("ledger_code") is not None:
        hint = codes.get(str(keys["ledger_code"]).strip().upper())
    if hint is None:
        return None, None
    hint = str(hint).strip()
    if not hint:
        return None, None
    if len(hint) > MAX_FUND_CODE_LENGTH or _CONTROL.search(hint) or not hint.isprintable():
        detail = "metadata fund_code is not a fund code"
        return None, Match(None, SuspenseReason.UNKNOWN_FUND, detail)
    return hint, None


def _failure(resource: Mapping[str, Any]) -> str:
    state = resource.get("state") if isinstance(resource.get("state"), dict) else {}
    words = [
        _text(state, "status", MAX_DETAIL_TEXT_LENGTH),
        _text(state, "message", MAX_DETAIL_TEXT_LENGTH),
        _text(state, "code", MAX_DETAIL_TEXT_LENGTH),
    ]
    said = ", ".join(w for w in words if w)
    return f"GOV.UK Pay reported the payment failed ({said or 'no reason given'})"


def _refund_submitted(resource: Mapping[str, Any]) -> int | None:
    summary = resource.get("refund_summary")
    if not isinstance(summary, dict):
        return None
    submitted = _pence(summary, "amount_submitted")
    return submitted or None


def _provider_details(
    resource: Mapping[str, Any], amount: int, surcharge: int, paid: int, event_type: str
) -> dict[str, Any]:
    """What bank reconciliation needs later, as GOV.UK Pay reports it."""
    settlement = resource.get("settlement_summary")
    settlement = settlement if isinstance(settlement, dict) else {}
    capture_submit = settlement.get("capture_submit_time")
    details: dict[str, Any] = {
        "provider": "govuk_pay",
        "amount_pence": amount,
        "corporate_card_surcharge_pence": surcharge,
        "total_amount_pence": paid,
        "fee_pence": _pence(resource, "fee"),
        "net_amount_pence": _pence(resource, "net_amount"),
        "capture_submit_time": (
            _moment(settlement, "capture_submit_time").isoformat() if capture_submit else None
        ),
        "captured_date": _day(settlement, "captured_date"),
        "settled_date": _day(settlement, "settled_date"),
        "payment_provider": _text(resource, "payment_provider", MAX_DETAIL_TEXT_LENGTH),
    }
    if event_type in (CAPTURED, REFUNDED) or details["captured_date"]:
        details["captured"] = True
    return details


# ---- applying -------------------------------------------------------------------------------


def apply_message(ledger: IncomeLedger, command: PayMessage | DisputeMessage) -> dict[str, Any]:
    """Apply one message whole or not at all; see the module's docstring for what it does.

    Pay may deliver the same message several times at once: a delivery that loses the race
    to save reads the winner's events and applies the message again (usually: nothing new).
    """
    for _ in range(CONCURRENT_ATTEMPTS - 1):
        try:
            return _apply_once(ledger, command)
        except ConcurrentUpdate:
            continue
    return _apply_once(ledger, command)


def _apply_once(ledger: IncomeLedger, command: PayMessage | DisputeMessage) -> dict[str, Any]:
    payment = ledger.recorded_payment(Channel.GOVUK_PAY, command.payment_id)
    try:
        if isinstance(command, DisputeMessage):
            return _apply_dispute(ledger, payment, command)
        if command.event_type == FAILED:
            return _apply_failure(ledger, payment, command)
        if payment is None and not command.money_taken:
            log.info("GOV.UK Pay payment %s authorised; recorded when captured", command.payment_id)
            return _answer("authorised", None, None, "recorded when GOV.UK Pay captures it")
        if payment is None and command.paid_pence == 0:
            log.info(
                "GOV.UK Pay payment %s of 0 pence (message %s) acknowledged: no money moved",
                command.payment_id,
                command.message_id,
            )
            return _answer("ignored", None, None, "a payment of 0 pence moves no money")
        return _apply_receipt(ledger, payment, command)
    except RuleViolation as error:
        log.error(
            "GOV.UK Pay message %s (%s, payment %s) can never apply and was refused: %s",
            command.message_id,
            command.event_type,
            command.payment_id,
            error.message,
        )
        payment_id = str(payment.id) if payment is not None else None
        return _answer("refused", payment_id, None, error.message)


def _apply_receipt(
    ledger: IncomeLedger, payment: Payment | None, command: PayMessage
) -> dict[str, Any]:
    is_new = payment is None
    if payment is None:
        # Money taken on a day since closed is recorded now, the day Pay gave kept.
        record = late_receipt(ledger, _record(command))
        payment = ledger.prepare_payment(record, CommandContext(GOVUK_PAY_ACTOR))
    elif command.money_taken:
        _warn_if_amount_differs(payment, command)
        payment.record_provider_details(command.provider_details, actor=GOVUK_PAY_ACTOR)
    refunds_before = payment.refunded_pence
    _charge_card_fee(payment, command)
    if command.refund_submitted_pence is not None:
        payment.refund_up_to(
            command.refund_submitted_pence, actor=GOVUK_PAY_ACTOR, reason="refunded on GOV.UK Pay"
        )
    outcome = ledger.save_payment(payment)
    if payment.refunded_pence > refunds_before:
        status = "refund_recorded"
    elif is_new:
        status = "recorded"
    else:
        status = "details_recorded" if outcome.recorded else "duplicate"
    return _answer(status, str(payment.id), outcome.position)


def _charge_card_fee(payment: Payment, command: PayMessage) -> None:
    """Pay reports its fee with the captured payment; it is charged once, however often
    the payment is reported."""
    fee = command.provider_details.get("fee_pence")
    if command.money_taken and fee and ClearingItem.CARD_FEE not in payment.fees:
        if payment.clearing_account is None:  # recorded before the ledger kept clearing
            return
        payment.charge_fee(
            fee, kind=ClearingItem.CARD_FEE, actor=GOVUK_PAY_ACTOR, reason="GOV.UK Pay fee"
        )


def _warn_if_amount_differs(payment: Payment, command: PayMessage) -> None:
    """Money already recorded never changes; a later message saying another amount is a
    discrepancy for a person to look at, not something to apply."""
    if payment.amount_pence != command.paid_pence:
        log.error(
            "GOV.UK Pay message %s says payment %s is %d pence; the ledger recorded %d pence. "
            "Check the payment with GOV.UK Pay",
            command.message_id,
            command.payment_id,
            command.paid_pence,
            payment.amount_pence,
        )


def _record(command: PayMessage) -> RecordPayment:
    return RecordPayment(
        channel=Channel.GOVUK_PAY.value,
        amount_pence=command.paid_pence,
        reference=command.reference,
        received_at=command.created_at,
        fund_code=command.fund_hint,
        external_id=command.payment_id,
        external_id_from_provider=True,
        provider_details=command.provider_details,
        hold_in_suspense=command.hold_in_suspense,
    )


def _apply_failure(
    ledger: IncomeLedger, payment: Payment | None, command: PayMessage
) -> dict[str, Any]:
    if payment is None:
        log.info("GOV.UK Pay payment %s failed; nothing was recorded for it", command.payment_id)
        return _answer("ignored", None, None, "the payment failed; nothing was recorded for it")
    assert command.failure is not None
    if payment.reversed_pence:
        return _answer("duplicate", str(payment.id), None)
    if (payment.provider_details or {}).get("captured"):
        log.error(
            "GOV.UK Pay reported payment %s failed after it was captured; the money is kept: "
            "check the payment with GOV.UK Pay",
            command.payment_id,
        )
        payment.note(
            f"{command.failure} after it was captured; the money is kept until checked",
            actor=GOVUK_PAY_ACTOR,
            idempotency_key="govuk-pay:failed-after-capture",
            fingerprint="failed-after-capture",
        )
        outcome = ledger.save_payment(payment)
        return _answer(
            "noted" if outcome.recorded else "duplicate", str(payment.id), outcome.position
        )
    payment.reverse(kind=ReversalKind.CANCELLED, actor=GOVUK_PAY_ACTOR, reason=command.failure)
    if payment.clearing_account is not None:
        # Never captured, so never paid out: its clearing closes now, at nothing to the bank.
        payment.settle(
            None,
            payout="none: cancelled before capture",
            actor=GOVUK_PAY_ACTOR,
            reason=command.failure,
        )
    outcome = ledger.save_payment(payment)
    return _answer("cancelled", str(payment.id), outcome.position)


def _apply_dispute(
    ledger: IncomeLedger, payment: Payment | None, command: DisputeMessage
) -> dict[str, Any]:
    if payment is None:
        raise PaymentNotFound(
            f"GOV.UK Pay dispute {command.dispute_id} is of payment {command.payment_id}, which "
            "the ledger has not recorded: record the payment, then ask GOV.UK Pay to resend"
        )
    payment.open_dispute(
        command.dispute_id,
        command.amount_pence,
        actor=GOVUK_PAY_ACTOR,
        reason=f"disputed by the payer's card issuer: {command.reason}",
        at=command.created_at,
    )
    moved = command.status is not DisputeStatus.OPEN and payment.move_dispute(
        command.dispute_id,
        command.status,
        actor=GOVUK_PAY_ACTOR,
        reason=f"GOV.UK Pay reported {command.event_type}",
    )
    if moved and command.status is DisputeStatus.LOST:
        _lose_dispute(payment, command)
    outcome = ledger.save_payment(payment)
    status = f"dispute_{command.status.value}" if outcome.recorded else "duplicate"
    return _answer(status, str(payment.id), outcome.position)


def _lose_dispute(payment: Payment, command: DisputeMessage) -> None:
    """A lost dispute: the payer's bank took the money back (a chargeback of what remains),
    and the provider charges its dispute fee."""
    reason = f"dispute {command.dispute_id} lost: {command.reason}"
    if payment.remaining_pence and not payment.reversed_pence:
        payment.reverse(kind=ReversalKind.CHARGEBACK, actor=GOVUK_PAY_ACTOR, reason=reason)
    if command.fee_pence:
        payment.charge_fee(
            command.fee_pence, kind=ClearingItem.DISPUTE_FEE, actor=GOVUK_PAY_ACTOR, reason=reason
        )


def _answer(
    status: str, payment_id: str | None, position: int | None, detail: str | None = None
) -> dict[str, Any]:
    return {"status": status, "payment_id": payment_id, "position": position, "detail": detail}
