"""A payment (receipt) and everything that later happens to its money.

Every penny of a receipt is, at every moment, in exactly one place: allocated to a fund and
reference, unallocated (suspense), refunded or reversed. Each command checks its rule and then
records one event; the events carry every amount their postings need, so the postings are a
pure function of the event alone (see domain.postings).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from domain.allocation_lines import (
    AllocatedLine,
    AllocationLine,
    ReversedPart,
    VatPart,
    describe_source,
    line_key,
    vat_parts_from,
)
from domain.cards import reject_card_numbers, reject_control_characters, require_text
from domain.errors import (
    AllocationExceedsUnallocated,
    AllocationNotFound,
    InvalidEffectiveDate,
    InvalidRequest,
    NothingToReverse,
    PartialRefundNotPermitted,
    PaymentAlreadyReversed,
    RefundExceedsRemaining,
    TransferExceedsAllocation,
    UnknownChannel,
)
from domain.funds import Fund, Match, ledger_uuid5
from domain.idempotent import CommandKey, idempotent, running_command
from domain.limits import (
    MAX_EXTERNAL_ID_LENGTH,
    MAX_FUND_CODE_LENGTH,
    MAX_REFERENCE_LENGTH,
    UK,
    require_business_datetime,
    require_length,
)
from domain.money import pounds_text, require_positive_pence, vat_from_gross
from domain.references import capitals, normalise_reference
from domain.refund_approval import PendingRefund, RefundApproval

MAX_ALLOCATION_LINES = 50
AUTO_ALLOCATION_ACTOR = "system:auto-allocation"


E = TypeVar("E", bound=StrEnum)


def parse_choice(choices: type[E], value: str, what: str, error: type[InvalidRequest]) -> E:
    try:
        return choices(value.strip().lower())
    except ValueError:
        allowed = ", ".join(choice.value for choice in choices)
        raise error(f"unknown {what} {value!r}; use one of {allowed}") from None


class Channel(StrEnum):
    CASH = "cash"
    CHEQUE = "cheque"
    CARD = "card"
    GOVUK_PAY = "govuk_pay"
    TELEPHONE = "telephone"
    ALLPAY = "allpay"
    PAYPOINT = "paypoint"
    BANK_TRANSFER = "bank_transfer"
    DIRECT_DEBIT = "direct_debit"

    @classmethod
    def parse(cls, value: str) -> Channel:
        # A channel given as stored (nearly every one) by one look-up, not the Enum's call.
        return _CHANNELS.get(value) or parse_choice(cls, value, "channel", UnknownChannel)


_CHANNELS = {channel.value: channel for channel in Channel}


# Channels whose money a card provider holds until it pays it out, net of its fees, refunds
# and lost disputes: their receipts debit a clearing account, not the bank (domain.postings).
CLEARING_CHANNELS = frozenset({Channel.GOVUK_PAY})


def clearing_account_for(channel: str) -> str:
    return f"clearing:{channel}"


class ClearingItem(StrEnum):
    """What a card provider's payout nets together, each on the day it settles."""

    PAYMENT = "payment"
    CARD_FEE = "card_fee"
    REFUND = "refund"
    REVERSAL = "reversal"
    DISPUTE_FEE = "dispute_fee"


@dataclass(frozen=True)
class SettledItem:
    """What a payout paid in of one clearing item (ClearingItem) settled on one UK day.

    Events store it as a plain dict (`to_dict`), the form every stored event already has.
    """

    kind: str
    day: str  # ISO date, as stored
    amount_pence: int

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "day": self.day, "amount_pence": self.amount_pence}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SettledItem:
        return cls(data["kind"], data["day"], data["amount_pence"])


class DisputeStatus(StrEnum):
    OPEN = "open"
    EVIDENCE_SUBMITTED = "evidence_submitted"
    WON = "won"
    LOST = "lost"


@dataclass(frozen=True)
class Dispute:
    """A payer's card dispute (chargeback) of a payment: money at risk until decided."""

    dispute_id: str
    amount_pence: int
    status: DisputeStatus
    opened_at: datetime

    @property
    def open(self) -> bool:
        return self.status in (DisputeStatus.OPEN, DisputeStatus.EVIDENCE_SUBMITTED)


class ReversalKind(StrEnum):
    RETURNED_CHEQUE = "returned_cheque"
    DIRECT_DEBIT_RETURN = "direct_debit_return"
    CHARGEBACK = "chargeback"
    # A card payment recorded at authorisation whose capture the service then cancelled:
    # the money was never taken.
    CANCELLED = "cancelled"
    # A whole imported file was taken back (imported twice under another name, the wrong
    # day's file): its receipts' remaining money is reversed together.
    IMPORT_REVERSED = "import_reversed"
    # A bank statement line recorded as its own receipt before the channel's file of the
    # same money (Allpay, a direct-debit run, a card payout) arrived: counted twice, so the
    # statement's receipt is reversed when the line is linked to the channel's receipts.
    COUNTED_TWICE = "counted_twice"

    @classmethod
    def parse(cls, value: str) -> ReversalKind:
        return parse_choice(cls, value, "reversal kind", InvalidRequest)


class PaymentStatus(StrEnum):
    SUSPENSE = "suspense"
    PART_ALLOCATED = "part_allocated"
    ALLOCATED = "allocated"
    REFUNDED = "refunded"
    REVERSED = "reversed"


def payment_status(
    allocated_pence: int, unallocated_pence: int, reversed_pence: int
) -> PaymentStatus:
    """Where a payment's money stands, from its running totals (used by the read model too)."""
    if reversed_pence:
        return PaymentStatus.REVERSED
    if allocated_pence + unallocated_pence == 0:
        return PaymentStatus.REFUNDED
    if allocated_pence == 0:
        return PaymentStatus.SUSPENSE
    if unallocated_pence:
        return PaymentStatus.PART_ALLOCATED
    return PaymentStatus.ALLOCATED


@dataclass(frozen=True)
class AllocationRequest:
    fund_code: str
    reference: str
    amount_pence: int


def uk_day(moment: datetime) -> str:
    return moment.astimezone(UK).date().isoformat()


def settlement_day(provider_details: dict[str, Any], received_at: datetime) -> str:
    """The UK day a card provider pays a payment out, as it reported it (see Payment)."""
    for key in ("settled_date", "captured_date"):
        if provider_details.get(key):
            return str(provider_details[key])
    return uk_day(received_at)


def payment_id_for(channel: Channel, external_id: str | None, idempotency_key: str | None) -> UUID:
    """Payment ids are derived from what identifies the money, so duplicates collide.

    The same (channel, external id) delivered twice maps to the same id, and the event store's
    uniqueness on (id, version) makes a concurrent duplicate fail instead of recording twice.
    """
    if external_id:
        return ledger_uuid5(f"payment/{channel.value}/{external_id}")
    if idempotency_key:
        return ledger_uuid5(f"payment/idempotency/{idempotency_key}")
    return uuid4()


def allocated_line(
    held: AllocationLine | None, fund: Fund, reference: str, amount_pence: int, moment: datetime
) -> AllocatedLine:
    """What allocating `amount_pence` to a fund and reference adds to what it `held` (None:
    nothing yet): the fund's VAT rate in force at `moment`, the VAT worked out on the total."""
    rate = fund.vat_rate_at(moment)
    if held is None:
        # A new line's total is this money (what `adding` works out on an empty line, without
        # making the line and its parts: every new receipt allocates one, #9).
        vat = vat_from_gross(amount_pence, rate)
    else:
        vat = held.adding(rate, amount_pence).vat_pence
    return AllocatedLine(fund.code, reference, amount_pence, rate, vat)


def _rule_fields(match: Match) -> dict[str, Any]:
    """Receipts no import rule decided keep their events as before."""
    return {"import_rule": match.import_rule} if match.import_rule else {}


def _counter_fields(counter: tuple[str, str] | None) -> dict[str, str]:
    """Receipts taken elsewhere than at a counter keep their events as before."""
    if counter is None:
        return {}
    return {"office_code": counter[0], "till_code": counter[1]}


class Payment(RefundApproval, Aggregate):
    """One receipt of money and its later allocations, transfers, refunds and reversals."""

    record_name = "payment"

    class Event(Aggregate.Event):
        actor: str
        idempotency_key: str | None
        fingerprint: str | None

        def apply(self, payment: Payment) -> None:
            if self.idempotency_key:
                payment.commands[self.idempotency_key] = self.fingerprint or ""
            moment = getattr(self, "effective_at", None)
            if moment is not None and moment > payment.last_effective_at:
                payment.last_effective_at = moment

    class Received(Aggregate.Created):
        channel: str
        amount_pence: int
        received_at: datetime
        reference: str
        fund_hint: str | None
        external_id: str | None
        suspense_reason: str | None
        match_detail: str
        actor: str
        idempotency_key: str | None
        fingerprint: str | None
        # What the payment provider reported (amounts, fees, capture and settlement dates),
        # kept for bank reconciliation; None on receipts recorded before it was kept.
        provider_details: dict[str, Any] | None = None
        # The cash office and till that took it at a counter (for its cash-up); None for
        # other receipts, and on receipts recorded before offices were kept.
        office_code: str | None = None
        till_code: str | None = None
        # The account holding the money until the provider pays it out (None: the money is
        # in the channel's cash account at once; so are receipts recorded before clearing).
        clearing_account: str | None = None
        # The import rule (id, version) that decided where the money went; None when the
        # receipt was matched by its reference alone, and on receipts from before rules.
        import_rule: dict[str, Any] | None = None

    class Allocated(Event):
        # Stored as plain dicts (AllocatedLine.to_dict); read them as `allocated_lines`.
        lines: list[dict[str, Any]]
        reason: str
        effective_at: datetime
        # The import rule that made this allocation, when one did (see Received).
        import_rule: dict[str, Any] | None = None

        @property
        def allocated_lines(self) -> tuple[AllocatedLine, ...]:
            return tuple(AllocatedLine.from_dict(line) for line in self.lines)

        def apply(self, payment: Payment) -> None:
            super().apply(payment)
            for line in self.allocated_lines:
                payment.add_to_line(line.fund_code, line.reference, line.part)
                payment.unallocated_pence -= line.amount_pence

    class Transferred(Event):
        from_fund_code: str
        from_reference: str
        to_fund_code: str
        to_reference: str
        amount_pence: int
        from_vat_pence: int
        to_vat_pence: int
        to_vat_rate_basis_points: int
        reason: str
        effective_at: datetime
        # The money taken from the source line at each VAT rate (None in events stored when
        # a line could hold one rate only).
        from_vat_parts: list[dict[str, int]] | None = None

        def apply(self, payment: Payment) -> None:
            super().apply(payment)
            payment.take_from_line(
                self.from_fund_code,
                self.from_reference,
                self.amount_pence,
                self.from_vat_pence,
                vat_parts_from(self.from_vat_parts),
            )
            part = VatPart(self.to_vat_rate_basis_points, self.amount_pence, self.to_vat_pence)
            payment.add_to_line(self.to_fund_code, self.to_reference, part)

    class Refunded(Event):
        channel: str
        fund_code: str | None
        reference: str | None
        amount_pence: int
        vat_pence: int
        reason: str
        effective_at: datetime
        request_id: str | None = None
        requested_by: str | None = None
        # The money taken from the line at each VAT rate (None in events stored when a line
        # could hold one rate only, and for refunds from the unallocated part).
        vat_parts: list[dict[str, int]] | None = None

        def apply(self, payment: Payment) -> None:
            super().apply(payment)
            if self.fund_code is None:
                payment.unallocated_pence -= self.amount_pence
            else:
                assert self.reference is not None
                payment.take_from_line(
                    self.fund_code,
                    self.reference,
                    self.amount_pence,
                    self.vat_pence,
                    vat_parts_from(self.vat_parts),
                )
            payment.refunded_pence += self.amount_pence
            payment.add_clearing_moves(self)
            if self.request_id is not None:
                payment.pending_refunds.pop(self.request_id, None)
                payment.decided_refunds[self.request_id] = f"approved by {self.actor}"

    class RefundRequested(Event):
        request_id: str
        fund_code: str | None
        reference: str | None
        amount_pence: int
        reason: str

        def apply(self, payment: Payment) -> None:
            super().apply(payment)
            payment.pending_refunds[self.request_id] = PendingRefund(
                self.request_id,
                self.fund_code,
                self.reference,
                self.amount_pence,
                self.reason,
                self.actor,
                self.timestamp,
            )
            if self.idempotency_key:
                payment.refund_requests_by_key[self.idempotency_key] = self.request_id

    class RefundDeclined(Event):
        request_id: str
        reason: str

        def apply(self, payment: Payment) -> None:
            super().apply(payment)
            payment.pending_refunds.pop(self.request_id, None)
            payment.decided_refunds[self.request_id] = f"declined by {self.actor}"

    class Reversed(Event):
        kind: str
        channel: str
        amount_pence: int
        # Stored as plain dicts (ReversedPart.to_dict); read them as `reversed_parts`.
        parts: list[dict[str, Any]]
        suspense_pence: int
        reason: str
        effective_at: datetime

        @property
        def reversed_parts(self) -> tuple[ReversedPart, ...]:
            return tuple(ReversedPart.from_dict(part) for part in self.parts)

        def apply(self, payment: Payment) -> None:
            super().apply(payment)
            for part in self.reversed_parts:
                payment.take_from_line(
                    part.fund_code,
                    part.reference,
                    part.amount_pence,
                    part.vat_pence,
                    part.vat_parts,
                )
            payment.unallocated_pence -= self.suspense_pence
            payment.reversed_pence += self.amount_pence
            payment.reversed_suspense_pence += self.suspense_pence
            payment.reversal_kind = self.kind
            payment.add_clearing_moves(self)

    class ReversalUndone(Event):
        """A reversal made in error is undone: the money it took from suspense is back
        there (a bank statement line reversed as counted twice whose link was wrong)."""

        kind: str  # the ReversalKind undone
        channel: str
        amount_pence: int
        suspense_pence: int
        reason: str
        effective_at: datetime

        def apply(self, payment: Payment) -> None:
            super().apply(payment)
            payment.unallocated_pence += self.suspense_pence
            payment.reversed_pence -= self.amount_pence
            payment.reversed_suspense_pence -= self.suspense_pence
            payment.reversal_kind = None

    class Noted(Event):
        text: str

    class ProviderReported(Event):
        """The payment provider reported more about the payment (capture, fees, settlement);
        no money moves."""

        details: dict[str, Any]

        def apply(self, payment: Payment) -> None:
            super().apply(payment)
            payment.provider_details = {**(payment.provider_details or {}), **self.details}

    class PayerDetailsErased(Event):
        reason: str

    class FeeCharged(Event):
        """The card provider kept a fee out of what it pays out (card or dispute fee)."""

        kind: str
        channel: str
        clearing_account: str
        amount_pence: int
        settles_on: str
        reason: str
        effective_at: datetime

        def apply(self, payment: Payment) -> None:
            super().apply(payment)
            payment.fees[self.kind] = payment.fees.get(self.kind, 0) + self.amount_pence
            payment.add_clearing_moves(self)

    class Settled(Event):
        """A payout on the bank statement paid in this payment's clearing items: the money
        moves from the clearing account to the bank."""

        channel: str
        clearing_account: str
        payout: str
        # Stored as plain dicts (SettledItem.to_dict); read them as `settled_items`.
        items: list[dict[str, Any]]
        reason: str
        effective_at: datetime

        @property
        def settled_items(self) -> tuple[SettledItem, ...]:
            return tuple(SettledItem.from_dict(item) for item in self.items)

        def apply(self, payment: Payment) -> None:
            super().apply(payment)
            payment.add_clearing_moves(self)
            payment.payouts[self.payout] = payment.payouts.get(self.payout, ()) + self.settled_items

    class SettlementUndone(Event):
        """A payout's settlement undone (its bank statement line's link was wrong, or the
        statement was reversed): the items it paid in are back in the clearing account,
        waiting for their payout."""

        channel: str
        clearing_account: str
        payout: str
        # Stored as plain dicts (SettledItem.to_dict): the Settled event's items.
        items: list[dict[str, Any]]
        reason: str
        effective_at: datetime

        @property
        def settled_items(self) -> tuple[SettledItem, ...]:
            return tuple(SettledItem.from_dict(item) for item in self.items)

        def apply(self, payment: Payment) -> None:
            super().apply(payment)
            payment.add_clearing_moves(self)
            undone = set(self.settled_items)
            left = tuple(i for i in payment.payouts[self.payout] if i not in undone)
            payment.payouts[self.payout] = left

    class DisputeOpened(Event):
        dispute_id: str
        amount_pence: int
        reason: str
        effective_at: datetime

        def apply(self, payment: Payment) -> None:
            super().apply(payment)
            payment.disputes[self.dispute_id] = Dispute(
                self.dispute_id, self.amount_pence, DisputeStatus.OPEN, self.effective_at
            )

    class DisputeMoved(Event):
        """Evidence submitted, won or lost; a lost dispute's money moves in the Reversed and
        FeeCharged events recorded with it."""

        dispute_id: str
        status: str
        reason: str

        def apply(self, payment: Payment) -> None:
            super().apply(payment)
            dispute = payment.disputes[self.dispute_id]
            payment.disputes[self.dispute_id] = replace(dispute, status=DisputeStatus(self.status))

    def __init__(
        self,
        channel: str,
        amount_pence: int,
        received_at: datetime,
        reference: str,
        fund_hint: str | None,
        external_id: str | None,
        suspense_reason: str | None,
        match_detail: str,
        actor: str,
        idempotency_key: str | None,
        fingerprint: str | None,
        provider_details: dict[str, Any] | None = None,
        office_code: str | None = None,
        till_code: str | None = None,
        clearing_account: str | None = None,
        import_rule: dict[str, Any] | None = None,
    ) -> None:
        self.channel = channel
        self.import_rule = import_rule
        self.provider_details = provider_details
        self.office_code = office_code
        self.till_code = till_code
        self.clearing_account = clearing_account
        # The UK day the provider pays the payment out, as it was known when received.
        self.settles_on = settlement_day(provider_details or {}, received_at)
        # What the provider has yet to pay out, by ClearingItem and settlement day.
        self.clearing: dict[tuple[str, str], int] = {}
        self.fees: dict[str, int] = {}
        self.disputes: dict[str, Dispute] = {}
        self.amount_pence = amount_pence
        self.received_at = received_at
        # Money moves forward in business time: a movement cannot take effect before the one
        # it follows (a refund dated before the allocation it draws on would make past
        # balances negative).
        self.last_effective_at = received_at
        self.reference = reference
        self.fund_hint = fund_hint
        self.external_id = external_id
        self.suspense_reason = suspense_reason
        self.recorded_by = actor
        self.lines: dict[str, AllocationLine] = {}
        self.unallocated_pence = amount_pence
        self.refunded_pence = 0
        self.reversed_pence = 0
        # How much of the reversed money was taken from suspense (what an undo puts back).
        self.reversed_suspense_pence = 0
        self.reversal_kind: str | None = None
        # What each payout still standing settled (Settled), by the payout's name.
        self.payouts: dict[str, tuple[SettledItem, ...]] = {}
        self.pending_refunds: dict[str, PendingRefund] = {}
        # Who settled each request, so that a late second approval is told, not "not found".
        self.decided_refunds: dict[str, str] = {}
        self.refund_requests_by_key: dict[str, str] = {}
        self.commands: dict[str, str] = {}
        if idempotency_key:
            self.commands[idempotency_key] = fingerprint or ""
        if clearing_account is not None:
            self.clearing[(ClearingItem.PAYMENT.value, self.settles_on)] = amount_pence

    # ---- creation -------------------------------------------------------------------------

    @classmethod
    def receive(cls, **arguments: Any) -> Payment:
        """Record a receipt; when `match` names a fund, allocate it there at once (the
        arguments are `receipt_fields`')."""
        received, allocated = cls.receipt_fields(**arguments)
        payment = cls._create(cls.Received, **received)
        if allocated is not None:
            payment.record(cls.Allocated, **allocated)
        return payment

    @classmethod
    def receipt_events(cls, **arguments: Any) -> list[Payment.Event]:
        """The events `receive` records, made without building the payment: the same checks,
        ids, versions and fields (timestamps aside), for a bulk import that only stores them
        (application.imports; tests/application/test_fast_import.py holds them equal)."""
        return cls.events_of_fields(*cls.receipt_fields(**arguments))

    @classmethod
    def events_of_fields(
        cls, received: dict[str, Any], allocated: dict[str, Any] | None
    ) -> list[Payment.Event]:
        """The events of a receipt from its checked fields (`receipt_fields`' two dicts; the
        id is taken out of `received`)."""
        payment_id = received.pop("id")
        events: list[Payment.Event] = [
            cls.Received(
                originator_topic=get_topic(cls),
                originator_id=payment_id,
                originator_version=cls.INITIAL_VERSION,
                timestamp=cls.Received.create_timestamp(),
                **received,
            )
        ]
        if allocated is not None:
            key = running_command()  # what `record` stamps on the event
            events.append(
                cls.Allocated(
                    originator_id=payment_id,
                    originator_version=cls.INITIAL_VERSION + 1,
                    timestamp=cls.Allocated.create_timestamp(),
                    idempotency_key=key.idempotency_key,
                    fingerprint=key.fingerprint,
                    **allocated,
                )
            )
        return events

    @staticmethod
    def receipt_fields(
        *,
        channel: Channel,
        amount_pence: int,
        received_at: datetime,
        reference: str,
        fund_hint: str | None,
        external_id: str | None,
        match: Match,
        fund: Fund | None,
        actor: str,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
        now: datetime | None = None,
        external_id_from_provider: bool = False,
        provider_details: dict[str, Any] | None = None,
        counter: tuple[str, str] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """A new receipt's checked fields: its Received event's (with its `id`) and, when
        `match` names a fund, its Allocated event's (None: the money waits in suspense).

        A payment provider's own id for the money (`external_id_from_provider`) is an
        identifier, not text a person typed: a numeric one may pass the card-number check by
        chance (about one in ten of 13-19 digits), so only people's external ids are checked.
        `counter` is the (office, till) that took it, already checked against the offices.
        """
        now = now or datetime.now(UTC)
        require_positive_pence(amount_pence)
        received_at = require_business_datetime(received_at, "received_at", now=now)
        reference = normalise_reference(reference)
        require_length("reference", reference, MAX_REFERENCE_LENGTH)
        require_length("external_id", external_id, MAX_EXTERNAL_ID_LENGTH)
        require_length("fund hint (fund code)", fund_hint, MAX_FUND_CODE_LENGTH)
        reject_card_numbers("reference", reference)
        if external_id_from_provider:
            reject_control_characters("external_id", external_id)
        else:
            reject_card_numbers("external_id", external_id)
        received = {
            "id": payment_id_for(channel, external_id, idempotency_key),
            "channel": channel.value,
            "amount_pence": amount_pence,
            "received_at": received_at,
            "reference": reference,
            "fund_hint": capitals(fund_hint) if fund_hint else None,
            "external_id": external_id,
            "suspense_reason": match.suspense_reason.value if match.suspense_reason else None,
            "match_detail": match.detail,
            "actor": actor,
            "idempotency_key": idempotency_key,
            "fingerprint": fingerprint,
            "provider_details": provider_details,
            **_counter_fields(counter),
            "clearing_account": clearing_account_for(channel)
            if channel in CLEARING_CHANNELS
            else None,
            **_rule_fields(match),
        }
        if fund is None:
            return received, None
        first = allocated_line(None, fund, reference, amount_pence, received_at)
        return received, {
            "lines": [first.to_dict()],
            "reason": match.detail,
            "effective_at": received_at,
            "actor": AUTO_ALLOCATION_ACTOR,
            **_rule_fields(match),
        }

    # ---- commands -------------------------------------------------------------------------

    @idempotent()
    def allocate(
        self,
        requests: list[tuple[Fund, AllocationRequest]],
        *,
        actor: str,
        reason: str,
        effective_at: datetime | None = None,
    ) -> None:
        """Split unallocated money across funds and references."""
        self._require_not_reversed()
        reason = require_text("reason", reason or "allocated", required=True)
        if not requests:
            raise InvalidRequest("give at least one allocation line")
        if len(requests) > MAX_ALLOCATION_LINES:
            raise InvalidRequest(f"at most {MAX_ALLOCATION_LINES} allocation lines at once")
        merged: dict[str, tuple[Fund, str, int]] = {}
        for fund, request in requests:
            amount = require_positive_pence(request.amount_pence)
            reference = normalise_reference(request.reference)
            fund.require_valid_reference(reference)
            key = line_key(fund.code, reference)
            previous = merged.get(key, (fund, reference, 0))[2]
            merged[key] = (fund, reference, previous + amount)
        total = sum(amount for _, _, amount in merged.values())
        if total > self.unallocated_pence:
            raise AllocationExceedsUnallocated(
                f"allocating {pounds_text(total)} but only {pounds_text(self.unallocated_pence)} of this "
                "payment is unallocated"
            )
        effective = self._effective(effective_at)
        lines = [
            self._allocation_delta(fund, reference, amount, effective).to_dict()
            for fund, reference, amount in merged.values()
        ]
        self.record(
            self.Allocated,
            lines=lines,
            reason=reason,
            effective_at=effective,
            actor=actor,
        )

    @idempotent()
    def transfer(
        self,
        *,
        from_fund_code: str,
        from_reference: str,
        to_fund: Fund,
        to_reference: str,
        amount_pence: int,
        actor: str,
        reason: str,
        effective_at: datetime | None = None,
    ) -> None:
        """Move allocated money to another fund or reference; both halves are recorded."""
        self._require_not_reversed()
        reason = require_text("reason", reason, required=True)
        require_positive_pence(amount_pence)
        source = self.line(from_fund_code, from_reference)
        to_reference = normalise_reference(to_reference)
        to_fund.require_valid_reference(to_reference)
        # A line recorded full-width before references were folded is the same account as
        # its folded form (reference_forms): compare the folded forms.
        if source.fund_code == to_fund.code and (
            normalise_reference(source.reference) == to_reference
        ):
            raise InvalidRequest("a transfer needs a different fund or reference to move to")
        if amount_pence > source.amount_pence:
            raise TransferExceedsAllocation(
                f"transferring {pounds_text(amount_pence)} but only {pounds_text(source.amount_pence)} is "
                f"allocated to {source.fund_code} {source.reference}"
            )
        effective = self._effective(effective_at)
        taken = source.taking(amount_pence)
        target = self._allocation_delta(to_fund, to_reference, amount_pence, effective)
        self.record(
            self.Transferred,
            from_fund_code=source.fund_code,
            from_reference=source.reference,
            to_fund_code=to_fund.code,
            to_reference=to_reference,
            amount_pence=amount_pence,
            from_vat_pence=sum(part.vat_pence for part in taken),
            to_vat_pence=target.vat_pence,
            to_vat_rate_basis_points=target.vat_rate_basis_points,
            from_vat_parts=[part.to_dict() for part in taken],
            reason=reason,
            effective_at=effective,
            actor=actor,
        )

    @idempotent(lambda payment, key: payment.refund_requests_by_key.get(key or ""))
    def refund(
        self,
        *,
        amount_pence: int,
        actor: str,
        reason: str,
        fund_code: str | None = None,
        reference: str | None = None,
        approval_limit_pence: int | None = None,
        partial_allowed: bool = True,
        effective_at: datetime | None = None,
    ) -> str | None:
        """Pay money back from one allocation, or from the unallocated part. Without
        `partial_allowed` (a role the council keeps from partial refunds) it must be all of it.

        The approval limit is cumulative per payment: what was already refunded (by people
        or reported by the channel), plus the requests still waiting, plus this refund. Above
        it no money moves: the refund becomes a request that a second person approves, so
        splitting one refund into several small ones does not avoid the approval. None means
        no limit. Returns the request's id when the refund waits for approval, else None.
        """
        self._require_not_reversed()
        reason = require_text("reason", reason, required=True)
        require_positive_pence(amount_pence)
        source = self._refund_source(fund_code, reference)
        self._require_unreserved(amount_pence, source)
        held = self._held(source)
        if not partial_allowed and amount_pence < held:
            raise PartialRefundNotPermitted(
                f"refunding {pounds_text(amount_pence)} of the {pounds_text(held)} on "
                f"{describe_source(source)}: "
                "your role may refund all of it only; a partial refund needs a role the "
                "council allows (LEDGER_PARTIAL_REFUND_ROLES)"
            )
        if not self._needs_approval(amount_pence, approval_limit_pence):
            self._pay_back(
                amount_pence,
                source,
                actor=actor,
                reason=reason,
                effective_at=effective_at,
            )
            return None
        if effective_at is not None:
            raise InvalidEffectiveDate(
                "this refund needs a second person's approval and takes effect when approved: "
                "leave out effective_at"
            )
        return self._request_refund(amount_pence, source, actor=actor, reason=reason)

    def refund_up_to(
        self,
        total_refunded_pence: int,
        *,
        actor: str,
        reason: str,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
    ) -> None:
        """Refund until the payment's refunds reach a total reported by its channel.

        Channels such as GOV.UK Pay report a running total, so a repeated or late report
        refunds nothing more. Money comes from the unallocated part first, then from the
        largest allocations. The approval limit does not apply: the money has already gone
        back at the provider, and the ledger must record what happened. It counts towards the
        payment's cumulative total for later refunds by people all the same.
        """
        missing = total_refunded_pence - self.refunded_pence
        if missing <= 0 or self.reversed_pence:
            return
        if missing > self.remaining_pence:
            raise RefundExceedsRemaining(
                f"the channel reports {pounds_text(total_refunded_pence)} refunded but only "
                f"{pounds_text(self.refunded_pence + self.remaining_pence)} can be"
            )
        sources: list[tuple[AllocationLine | None, int]] = []
        if self.unallocated_pence:
            sources.append((None, self.unallocated_pence))
        for line in sorted(self.lines_with_money(), key=lambda x: (-x.amount_pence, x.key)):
            sources.append((line, line.amount_pence))
        reason = require_text("reason", reason, required=True)
        # Not a repeatable command (the running total makes a repeat refund nothing), but
        # its refunds carry the key all the same.
        with self.running(CommandKey(idempotency_key, fingerprint)):
            for source, available in sources:
                amount = min(missing, available)
                self._pay_back(amount, source, actor=actor, reason=reason, effective_at=None)
                missing -= amount
                if missing == 0:
                    return

    def _pay_back(
        self,
        amount_pence: int,
        source: AllocationLine | None,
        *,
        actor: str,
        reason: str,
        effective_at: datetime | None,
        request: PendingRefund | None = None,
    ) -> None:
        """Record a refund from a source already chosen and checked."""
        assert 0 < amount_pence <= self._held(source), (amount_pence, self._held(source))
        taken = source.taking(amount_pence) if source is not None else None
        self.record(
            self.Refunded,
            channel=self.channel,
            fund_code=source.fund_code if source else None,
            reference=source.reference if source else None,
            amount_pence=amount_pence,
            vat_pence=sum(part.vat_pence for part in taken or ()),
            vat_parts=[part.to_dict() for part in taken] if taken is not None else None,
            reason=reason,
            effective_at=self._effective(effective_at),
            actor=actor,
            request_id=request.request_id if request else None,
            requested_by=request.requested_by if request else None,
        )

    @idempotent()
    def reverse(
        self,
        *,
        kind: ReversalKind,
        actor: str,
        reason: str,
        effective_at: datetime | None = None,
    ) -> None:
        """The money never really arrived or was taken back: reverse all that remains."""
        self._require_not_reversed()
        reason = require_text("reason", reason, required=True)
        parts = [
            ReversedPart(
                line.fund_code, line.reference, line.amount_pence, line.vat_pence
            ).to_dict()
            for line in self.lines_with_money()
        ]
        total = self.remaining_pence
        if total == 0:
            raise NothingToReverse("nothing remains of this payment to reverse: it was refunded")
        self.record(
            self.Reversed,
            kind=kind.value,
            channel=self.channel,
            amount_pence=total,
            parts=parts,
            suspense_pence=self.unallocated_pence,
            reason=reason,
            effective_at=self._effective(effective_at),
            actor=actor,
        )

    def undo_reversal(self, *, kind: ReversalKind, actor: str, reason: str) -> None:
        """Undo a reversal of `kind` made in error: its money goes back to suspense. Only a
        reversal wholly of suspense money, of a payment no card provider holds, is undone
        this way (anything else is a new receipt's or a refund's business)."""
        reason = require_text("reason", reason, required=True)
        if self.reversal_kind != kind.value:
            raise NothingToReverse(
                f"this payment is not reversed as {kind.value}: there is no such reversal to undo"
            )
        if self.clearing_account is not None or self.reversed_suspense_pence != (
            self.reversed_pence
        ):
            raise InvalidRequest(
                "only a reversal of money in suspense, of a payment no card provider holds, "
                "can be undone"
            )
        self.record(
            self.ReversalUndone,
            kind=kind.value,
            channel=self.channel,
            amount_pence=self.reversed_pence,
            suspense_pence=self.reversed_suspense_pence,
            reason=reason,
            effective_at=self._effective(None),
            actor=actor,
        )

    @idempotent()
    def note(
        self,
        text: str,
        *,
        actor: str,
    ) -> None:
        text = require_text("note", text, required=True)
        self.record(
            self.Noted,
            text=text,
            actor=actor,
        )

    def record_provider_details(self, details: dict[str, Any], *, actor: str) -> None:
        """Keep what the provider newly reports; a repeated report records nothing."""
        known = self.provider_details or {}
        new = {k: v for k, v in details.items() if v is not None and known.get(k) != v}
        if new:
            self.record(
                self.ProviderReported,
                details=new,
                actor=actor,
            )

    # ---- card providers: fees, payouts, disputes -------------------------------------------

    def charge_fee(
        self,
        amount_pence: int,
        *,
        kind: ClearingItem,
        actor: str,
        reason: str,
    ) -> None:
        """The provider keeps a fee out of its payout: an expense, out of the clearing account.
        A card fee settles with the payment; a dispute fee on the day it is charged."""
        account = self._require_clearing()
        require_positive_pence(amount_pence)
        effective = self._effective(None)
        day = self.settles_on if kind is ClearingItem.CARD_FEE else uk_day(effective)
        self.record(
            self.FeeCharged,
            kind=kind.value,
            channel=self.channel,
            clearing_account=account,
            amount_pence=amount_pence,
            settles_on=day,
            reason=require_text("reason", reason, required=True),
            effective_at=effective,
            actor=actor,
        )

    def settle(
        self,
        days: Collection[str] | None,
        *,
        payout: str,
        actor: str,
        reason: str,
    ) -> bool:
        """A payout paid in what the provider still held for this payment on these
        settlement days (None: on every day): from the clearing account to the bank.
        Returns whether it held anything there (False: nothing is recorded)."""
        account = self._require_clearing()
        items = [
            SettledItem(kind, day, pence).to_dict()
            for (kind, day), pence in sorted(self.clearing.items())
            if pence and (days is None or day in days)
        ]
        if not items:
            return False
        self.record(
            self.Settled,
            channel=self.channel,
            clearing_account=account,
            payout=require_text("payout", payout, required=True),
            items=items,
            reason=require_text("reason", reason, required=True),
            effective_at=self._effective(None),
            actor=actor,
        )
        return True

    def undo_settlement(self, payout: str, day: str | None, *, actor: str, reason: str) -> None:
        """The payout named `payout` did not pay this payment in after all: what it settled
        (of settlement day `day`; None: of every day) is back in the clearing account. A
        payout that settled nothing here records nothing."""
        account = self._require_clearing()
        items = [i for i in self.payouts.get(payout, ()) if day is None or i.day == day]
        if not items:
            return
        self.record(
            self.SettlementUndone,
            channel=self.channel,
            clearing_account=account,
            payout=payout,
            items=[item.to_dict() for item in items],
            reason=require_text("reason", reason, required=True),
            effective_at=self._effective(None),
            actor=actor,
        )

    def open_dispute(
        self, dispute_id: str, amount_pence: int, *, actor: str, reason: str, at: datetime
    ) -> None:
        """A payer disputed the payment with their card issuer: shown as money at risk; no
        money moves until the dispute is lost. Opening a known dispute again does nothing."""
        if dispute_id in self.disputes:
            return
        self._require_clearing()
        require_length("dispute_id", dispute_id, MAX_EXTERNAL_ID_LENGTH)
        require_positive_pence(amount_pence)
        self.record(
            self.DisputeOpened,
            dispute_id=dispute_id,
            amount_pence=amount_pence,
            reason=require_text("reason", reason, required=True),
            effective_at=require_business_datetime(at, "dispute created_date"),
            actor=actor,
        )

    def move_dispute(
        self, dispute_id: str, status: DisputeStatus, *, actor: str, reason: str
    ) -> bool:
        """Record a dispute's progress; False when it changes nothing (already there, or
        already decided: a decided dispute never reopens)."""
        dispute = self.disputes[dispute_id]
        if dispute.status is status or not dispute.open:
            return False
        if status is DisputeStatus.EVIDENCE_SUBMITTED and dispute.status is not DisputeStatus.OPEN:
            return False
        self.record(
            self.DisputeMoved,
            dispute_id=dispute_id,
            status=status.value,
            reason=require_text("reason", reason, required=True),
            actor=actor,
        )
        return True

    @property
    def fees_pence(self) -> int:
        return sum(self.fees.values())

    @property
    def disputed_pence(self) -> int:
        """Money at risk in disputes not yet decided."""
        return sum(d.amount_pence for d in self.disputes.values() if d.open)

    def add_clearing_moves(self, event: Any) -> None:
        if self.clearing_account is None:
            return
        for kind, day, pence in clearing_moves(event):
            key = (kind, day)
            self.clearing[key] = self.clearing.get(key, 0) + pence
            if self.clearing[key] == 0:
                del self.clearing[key]

    def _require_clearing(self) -> str:
        if self.clearing_account is None:
            raise InvalidRequest(
                f"a {self.channel} payment is not held by a card provider: it has no fees, "
                "payouts or card disputes"
            )
        return self.clearing_account

    def record_payer_details_erased(self, *, actor: str, reason: str) -> None:
        reason = require_text("reason", reason, required=True)
        self.record(
            self.PayerDetailsErased,
            reason=reason,
            actor=actor,
        )

    # ---- queries --------------------------------------------------------------------------

    @property
    def allocated_pence(self) -> int:
        return sum(line.amount_pence for line in self.lines.values())

    @property
    def remaining_pence(self) -> int:
        return self.allocated_pence + self.unallocated_pence

    @property
    def status(self) -> PaymentStatus:
        return payment_status(self.allocated_pence, self.unallocated_pence, self.reversed_pence)

    def lines_with_money(self) -> list[AllocationLine]:
        return [line for line in self.lines.values() if line.amount_pence]

    def line(self, fund_code: str, reference: str) -> AllocationLine:
        typed = normalise_reference(reference)
        line = self.lines.get(line_key(fund_code.upper(), typed))
        # Recorded before references were folded (full-width, zero-width): also when the
        # line typed so exists but is empty, since one account may hold both forms.
        if line is None or not line.amount_pence:
            line = next(
                (
                    x
                    for x in self.lines.values()
                    if x.fund_code == fund_code.upper()
                    and not x.reference.isascii()
                    and normalise_reference(x.reference) == typed
                    and x.amount_pence
                ),
                line,
            )
        if line is None or line.amount_pence == 0:
            held = ", ".join(f"{x.fund_code} {x.reference}" for x in self.lines_with_money())
            raise AllocationNotFound(
                f"this payment has no money allocated to {fund_code} {reference}; "
                f"its allocations are: {held or 'none'}"
            )
        return line

    def check_invariant(self) -> None:
        """Every penny received is allocated, unallocated, refunded or reversed; none negative."""
        accounted = (
            self.allocated_pence
            + self.unallocated_pence
            + self.refunded_pence
            + self.reversed_pence
        )
        assert accounted == self.amount_pence, (self.id, accounted, self.amount_pence)
        assert self.unallocated_pence >= 0
        for line in self.lines.values():
            assert all(p.amount_pence >= 0 and p.vat_pence >= 0 for p in line.parts), line

    # ---- helpers --------------------------------------------------------------------------

    def add_to_line(self, fund_code: str, reference: str, part: VatPart) -> None:
        key = line_key(fund_code, reference)
        line = self.lines.get(key) or AllocationLine(fund_code, reference)
        self.lines[key] = line.plus(part)

    def take_from_line(
        self,
        fund_code: str,
        reference: str,
        amount_pence: int,
        vat_pence: int,
        vat_parts: tuple[VatPart, ...] | None,
    ) -> None:
        """Apply a move out of a line exactly as its event recorded it."""
        line = self.lines[line_key(fund_code, reference)]
        if vat_parts is not None:
            taken = vat_parts
        elif len(line.parts) == 1:  # stored before lines had parts: one rate only
            rate = line.parts[0].vat_rate_basis_points
            taken = (VatPart(rate, amount_pence, vat_pence),)
        else:
            taken = line.taking(amount_pence)
        self.lines[line.key] = line.minus(taken)

    def _allocation_delta(
        self, fund: Fund, reference: str, amount_pence: int, moment: datetime
    ) -> AllocatedLine:
        """An allocation line for an event: the fund's VAT rate in force at `moment`."""
        held = self.lines.get(line_key(fund.code, reference))
        return allocated_line(held, fund, reference, amount_pence, moment)

    def _refund_source(self, fund_code: str | None, reference: str | None) -> AllocationLine | None:
        """The allocation a refund comes from; None means the unallocated part."""
        if fund_code is not None or reference is not None:
            return self.line(fund_code or "", reference or "")
        held = self.lines_with_money()
        if self.unallocated_pence or not held:
            return None
        if len(held) == 1:
            return held[0]
        raise InvalidRequest(
            "this payment is split across several allocations: say which fund and reference "
            "the refund comes from"
        )

    def _require_not_reversed(self) -> None:
        if self.reversed_pence:
            raise PaymentAlreadyReversed(
                f"this payment was reversed ({self.reversal_kind}); its money can no longer move"
            )

    def _effective(self, effective_at: datetime | None) -> datetime:
        if effective_at is None:
            return max(datetime.now(UTC), self.last_effective_at)
        effective_at = require_business_datetime(effective_at, "effective_at")
        if effective_at < self.received_at:
            raise InvalidEffectiveDate(
                "effective_at is before the payment was received "
                f"({self.received_at.isoformat()}); money cannot move before it arrives"
            )
        if effective_at < self.last_effective_at:
            raise InvalidEffectiveDate(
                "effective_at is before this payment's previous movement "
                f"({self.last_effective_at.isoformat()}); date it on or after that"
            )
        return effective_at


def clearing_moves(event: Any) -> list[tuple[str, str, int]]:
    """How an event of a payment held by a card provider changes what the provider has yet
    to pay out: (ClearingItem, UK settlement day, signed pence). Payments add; fees,
    refunds and lost disputes (deducted from a payout) and payouts take away."""
    if isinstance(event, Payment.Received):
        if event.clearing_account is None:
            return []
        day = settlement_day(event.provider_details or {}, event.received_at)
        return [(ClearingItem.PAYMENT.value, day, event.amount_pence)]
    if isinstance(event, Payment.Refunded):
        return [(ClearingItem.REFUND.value, uk_day(event.effective_at), -event.amount_pence)]
    if isinstance(event, Payment.Reversed):
        return [(ClearingItem.REVERSAL.value, uk_day(event.effective_at), -event.amount_pence)]
    if isinstance(event, Payment.FeeCharged):
        return [(event.kind, event.settles_on, -event.amount_pence)]
    if isinstance(event, Payment.Settled):
        return [(item.kind, item.day, -item.amount_pence) for item in event.settled_items]
    if isinstance(event, Payment.SettlementUndone):
        return [(item.kind, item.day, item.amount_pence) for item in event.settled_items]
    return []
