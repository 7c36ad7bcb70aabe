"""Request and response bodies. Money is integer pence in fields named *_pence."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from domain.limits import (
    MAX_EXTERNAL_ID_LENGTH,
    MAX_FUND_CODE_LENGTH,
    MAX_FUND_FIELD_LENGTHS,
    MAX_FUND_REFERENCE_LENGTH,
    MAX_PAYER_FIELD_LENGTH,
    MAX_REFERENCE_LENGTH,
    MAX_REFERENCE_PATTERN_LENGTH,
    MAX_TEXT_LENGTH,
)
from domain.money import MAX_AMOUNT_PENCE
from domain.payment import Channel, ReversalKind
from domain.references import MAX_MASK_LENGTH

Pence = Annotated[
    int,
    Field(
        gt=0,
        le=MAX_AMOUNT_PENCE,
        strict=True,
        description="an amount in pence (GBP), more than zero",
    ),
]
# Every max_length comes from domain.limits, the one definition the domain checks and the
# read model's columns are built from.
FundCode = Annotated[
    str,
    Field(min_length=1, max_length=MAX_FUND_CODE_LENGTH, pattern=r"^[A-Za-z][A-Za-z0-9_]*$"),
]
Reference = Annotated[str, Field(min_length=1, max_length=MAX_REFERENCE_LENGTH)]
Reason = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_LENGTH)]
PayerField = Annotated[str | None, Field(max_length=MAX_PAYER_FIELD_LENGTH)]
_FUND = MAX_FUND_FIELD_LENGTHS


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Payer(Strict):
    """Personal data: kept apart from the money so it can be erased."""

    name: PayerField = None
    email: PayerField = None
    phone: PayerField = None
    address: PayerField = None


class RecordPaymentIn(Strict):
    channel: Channel
    amount_pence: Pence
    reference: str = Field("", max_length=MAX_REFERENCE_LENGTH, description="the payer's reference")
    fund_code: FundCode | None = Field(None, description="a fund hint, e.g. CT")
    received_at: AwareDatetime | None = Field(None, description="when received; default now")
    relates_to_period: str | None = Field(
        None,
        min_length=1,
        max_length=10,
        description="a late receipt for a closed period, recorded now: that period's label "
        "(2026-03-31, 2026-03 or 2025-26), kept in its details",
    )
    external_id: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_EXTERNAL_ID_LENGTH,
        description="the channel's id; repeats are recorded once",
    )
    payer: Payer | None = None
    office_code: str | None = Field(
        None,
        min_length=1,
        max_length=16,
        description="the cash office that took it (with till_code)",
    )
    till_code: str | None = Field(None, min_length=1, max_length=16, description="its till")


class AllocationLineIn(Strict):
    fund_code: FundCode
    reference: Reference
    amount_pence: Pence


class AllocateIn(Strict):
    lines: list[AllocationLineIn] = Field(min_length=1, max_length=50)
    reason: Reason = "allocated"


class AccountIn(Strict):
    fund_code: FundCode
    reference: Reference


class TransferIn(Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: AccountIn = Field(alias="from")
    to: AccountIn
    amount_pence: Pence
    reason: Reason


class RefundIn(Strict):
    amount_pence: Pence
    reason: Reason
    fund_code: FundCode | None = Field(None, description="the allocation refunded, when split")
    reference: Reference | None = None


class DeclineIn(Strict):
    reason: Reason


class ReversalIn(Strict):
    kind: ReversalKind
    reason: Reason


class NoteIn(Strict):
    text: Reason


class ReferenceRuleIn(Strict):
    mask: str | None = Field(
        None,
        max_length=MAX_MASK_LENGTH,
        description="input mask instead of a pattern: 9 a digit, A a capital letter, X either, "
        "\\ makes the next character literal; sets the pattern and lengths",
    )
    min_length: int | None = Field(None, ge=1, le=MAX_FUND_REFERENCE_LENGTH)
    max_length: int | None = Field(None, ge=1, le=MAX_FUND_REFERENCE_LENGTH)
    pattern: str | None = Field(None, min_length=1, max_length=MAX_REFERENCE_PATTERN_LENGTH)
    check_digit: dict[str, Any] | None = Field(
        None,
        description="modulus (2-97), weights (from the rightmost character leftwards), "
        "subtract_from_modulus, ten_as (X|0), letters (alphabet_position|none), "
        "check_characters (the character for each check value from 0; needed above modulus "
        '11), prefix_substitutions ([["BJ", "05"], ...], weighed in place of the prefix)',
    )


class FundIn(Strict):
    code: FundCode
    name: str = Field(min_length=1, max_length=_FUND["name"])
    vat_code: str = Field("OS", max_length=_FUND["vat_code"])
    vat_rate_basis_points: int = Field(0, ge=0, le=10_000)
    cost_centre: str = Field(min_length=1, max_length=_FUND["cost_centre"])
    ledger_code: str = Field(min_length=1, max_length=_FUND["ledger_code"])
    group: str | None = Field(
        None,
        max_length=16,
        description="the fund's group (PARKING, REVENUES): users can be limited to groups",
    )
    reference_rule: ReferenceRuleIn


class FundPatch(Strict):
    name: str | None = Field(None, min_length=1, max_length=_FUND["name"])
    vat_code: str | None = Field(None, max_length=_FUND["vat_code"])
    vat_rate_basis_points: int | None = Field(None, ge=0, le=10_000)
    vat_rate_effective_from: AwareDatetime | None = Field(
        None, description="when the new VAT rate starts to apply (default: now)"
    )
    cost_centre: str | None = Field(None, min_length=1, max_length=_FUND["cost_centre"])
    ledger_code: str | None = Field(None, min_length=1, max_length=_FUND["ledger_code"])
    group: str | None = Field(
        None,
        max_length=16,
        description="the fund's group (PARKING, REVENUES): users can be limited to groups",
    )
    reference_rule: ReferenceRuleIn | None = None
    enabled: bool | None = None
    reason: Reason


class AllocationOut(BaseModel):
    fund_code: str
    reference: str
    amount_pence: int
    vat_pence: int


class PendingRefundOut(BaseModel):
    request_id: str
    amount_pence: int
    fund_code: str | None
    reference: str | None
    reason: str
    requested_by: str
    requested_at: str


class DisputeOut(BaseModel):
    dispute_id: str
    amount_pence: int
    status: Literal["open", "evidence_submitted", "won", "lost"]
    opened_at: str


class CardProviderOut(BaseModel):
    clearing_account: str = Field(description="where the money waits for the payout")
    settles_on: str = Field(description="UK day the provider pays the payment out")
    unsettled_pence: int = Field(
        description="what no payout has paid in yet: the payment less fees, refunds and lost "
        "disputes"
    )
    fees_pence: int = Field(description="card and dispute fees the provider kept")
    disputed_pence: int = Field(description="money at risk in disputes not yet decided")
    disputes: list[DisputeOut]


class PaymentOut(BaseModel):
    payment_id: str
    channel: str
    amount_pence: int
    reference: str
    fund_hint: str | None
    external_id: str | None
    provider_details: dict[str, Any] | None = Field(
        None,
        description="what the payment provider reported (GOV.UK Pay: total, surcharge, fee, "
        "net amount, capture and settlement dates), for bank reconciliation",
    )
    office_code: str | None = Field(None, description="the cash office that took it, if any")
    till_code: str | None = None
    received_at: str
    recorded_at: str
    recorded_by: str
    status: Literal["suspense", "part_allocated", "allocated", "refunded", "reversed"]
    suspense_reason: str | None
    import_rule: dict[str, Any] | None = Field(
        None,
        description="the import rule that decided where an imported receipt went: rule_id, "
        "rule_version, rulebook_version, rule_name and the file's reference",
    )
    allocated_pence: int
    unallocated_pence: int
    refunded_pence: int
    reversed_pence: int
    allocations: list[AllocationOut]
    pending_refunds: list[PendingRefundOut]
    card_provider: CardProviderOut | None = Field(
        None, description="GOV.UK Pay payments: clearing, fees and disputes; else null"
    )
    version: int


class CommandOut(BaseModel):
    recorded: bool = Field(description="false when the request repeated an earlier one")
    position: int | None = Field(description="event position to pass as min_position")
    payment: PaymentOut


class HistoryEntry(BaseModel):
    version: int
    action: str
    recorded_at: str
    effective_at: str
    actor: str | None
    reason: str | None
    idempotency_key: str | None
    details: dict[str, Any]
    postings: list[dict[str, Any]]


class PaymentDetailOut(PaymentOut):
    payer: dict[str, str] | None
    history: list[HistoryEntry]


class VatRateOut(BaseModel):
    effective_from: str | None = Field(description="when this rate starts (null: from the start)")
    vat_rate_basis_points: int


class FundOut(BaseModel):
    code: str
    name: str
    vat_code: str
    vat_rate_basis_points: int = Field(description="the rate from the latest-dated change on")
    cost_centre: str
    ledger_code: str
    reference_rule: dict[str, Any]
    enabled: bool
    group: str = Field("", description="the fund's group; empty: none")
    vat_rates: list[VatRateOut] = Field(
        default_factory=list,
        description="every rate the fund has had: a movement takes the one in force at its "
        "effective date",
    )


class FundCommandOut(BaseModel):
    position: int | None
    fund: FundOut


class PaymentRowOut(BaseModel):
    payment_id: str
    channel: str
    amount_pence: int
    reference: str
    fund_code: str | None
    status: str
    allocated_pence: int
    unallocated_pence: int
    refunded_pence: int
    reversed_pence: int
    suspense_reason: str | None
    received_at: str
    received_date: date
    external_id: str | None


class Page(BaseModel):
    limit: int
    offset: int
    total: int


class PaymentsPage(Page):
    items: list[PaymentRowOut]


class FundBalanceOut(BaseModel):
    fund_code: str
    name: str | None
    balance_pence: int = Field(description="income held, VAT included")
    net_pence: int
    vat_pence: int
    allocated_pence: int
    transfers_in_pence: int
    transfers_out_pence: int
    refunds_pence: int
    reversals_pence: int


class FundBalancesOut(BaseModel):
    position: int
    funds: list[FundBalanceOut]
    total_pence: int


class StatementLine(BaseModel):
    position: int
    payment_id: str | None
    action: str
    effective_at: str
    recorded_at: str
    amount_pence: int = Field(description="credit to the account is positive")
    vat_pence: int
    balance_pence: int


class AccountOut(BaseModel):
    fund_code: str
    reference: str
    balance_pence: int
    vat_pence: int
    position: int
    statement: list[StatementLine]
    limit: int
    offset: int
    total: int


class SuspenseItemOut(BaseModel):
    payment_id: str
    channel: str
    reference: str
    amount_pence: int
    reason: str | None
    received_at: str
    received_date: date
    age_days: int


class SuspenseOut(Page):
    position: int
    total_pence: int
    items: list[SuspenseItemOut]


class TakingsRow(BaseModel):
    channel: str
    fund_code: str
    receipts_count: int
    received_pence: int
    vat_pence: int
    refunds_count: int
    refunds_pence: int
    reversals_count: int
    reversals_pence: int
    net_pence: int


class DailyTakingsOut(BaseModel):
    business_date: date
    position: int
    rows: list[TakingsRow]
    by_channel: dict[str, int] = Field(
        description="net pence per channel, as recorded: before any cash-up over/short"
    )
    total_net_pence: int
    over_short_by_channel: dict[str, int] = Field(
        default_factory=dict,
        description="pence per channel of the day's approved cash-ups found over (positive) "
        "or short (negative); empty for a user limited to fund groups",
    )
    total_over_short_pence: int = 0
    counted_by_channel: dict[str, int] = Field(
        default_factory=dict,
        description="net plus over/short per channel: what was counted, to match the banking "
        "and the GL export (cash line less refunds and reversals)",
    )
    total_counted_pence: int = 0


class AuditRow(BaseModel):
    position: int
    event_id: str
    recorded_at: str
    effective_at: str
    actor: str | None
    action: str
    payment_id: str | None
    fund_code: str | None
    reference: str | None
    amount_pence: int | None
    reason: str | None
    correlation_id: str | None


class AuditPage(BaseModel):
    items: list[AuditRow]
    next_after_position: int | None = Field(description="pass as after_position for the next page")


class WebhookOut(BaseModel):
    status: Literal[
        "recorded",
        "refund_recorded",
        "details_recorded",
        "cancelled",
        "noted",
        "duplicate",
        "authorised",
        "ignored",
        "refused",
        "dispute_open",
        "dispute_evidence_submitted",
        "dispute_won",
        "dispute_lost",
    ] = Field(
        description="recorded: the payment (and any refund) is recorded; refund_recorded: a "
        "refund is recorded; details_recorded: only the provider's details (capture, fees) "
        "were new; cancelled: a payment recorded at authorisation was reversed as cancelled; "
        "noted: a failure reported after capture was noted, the money kept; duplicate: "
        "nothing new; authorised: authorised only, recorded when captured; ignored: nothing "
        "for the ledger (other event types, zero amounts, failures of unrecorded payments); "
        "refused: a signed message the ledger can never apply (logged as an error; answered "
        "2xx so that GOV.UK Pay stops retrying it); dispute_open, "
        "dispute_evidence_submitted, dispute_won, dispute_lost: a dispute of the payment "
        "reached that state (lost: the payment is reversed as a chargeback and the dispute "
        "fee charged)"
    )
    payment_id: str | None = None
    position: int | None = None
    detail: str | None = None


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unreachable", "timeout", "busy"] = Field(
        description="timeout, busy: the database answered but gave the check up (its "
        "statement_timeout, or a lock held by another process)"
    )
    event_position: int | None
    read_model_position: int | None


class StuckProjectionOut(BaseModel):
    projection: str
    position: int = Field(description="the last event it applied")
    error_position: int | None = Field(description="the event it cannot apply")
    error: str | None
    failing_since: str | None
    attempts: int
    runner: str | None = Field(description="the process that reported it")


class ReadyOut(BaseModel):
    status: Literal["ready", "not_ready"]
    database: Literal["ok", "unreachable", "timeout", "busy"]
    event_position: int | None = None
    read_model_position: int | None = None
    lag_events: int | None = Field(
        None,
        description="events not yet in the read model: counted up to 10,000; past that the "
        "difference of positions, an upper bound (lag_events_exact false)",
    )
    lag_events_exact: bool | None = None
    lag_seconds: float | None = Field(
        None, description="age of the oldest event not yet in the read model"
    )
    stuck: list[StuckProjectionOut] = []
    projection_errors_total: int | None = None
    reasons: list[str] = Field(description="why it is not ready (empty when ready)")


class PayerErasureIn(Strict):
    reason: Reason = Field(description="why, e.g. the data subject's erasure request")
