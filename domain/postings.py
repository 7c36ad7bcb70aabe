"""The one function that turns a domain event into double-entry postings.

Projections, replays and audits all call `postings_for`; nobody derives money movements a
second way. Amounts are signed pence, debit positive and credit negative, so every event's
postings sum to zero and so does the whole ledger.

Accounts:
- `cash:<channel>`      debit when money arrives through a channel
- `suspense`            credit while received money is unallocated
- `income:<FUND>:<ref>` credit of the net (VAT-exclusive) income allocated to a payer account
- `vat:output`          credit of output VAT, with the fund it belongs to
- `refunds:<channel>`   credit of money paid back to payers
- `reversals:<channel>` credit of money that never arrived or was taken back
- `over_short:<channel>` a till's approved cash-up difference: credit when more was counted
                        than recorded (over), debit when less (short); the channel's cash
                        account takes the other side, so it holds what was counted
- `clearing:<channel>`  debit, instead of `cash:<channel>`, of card money a provider holds
                        until it pays it out (GOV.UK Pay); credited by its fees and payouts
- `card_fees:<channel>` debit of the provider's fee for taking a card payment (an expense)
- `dispute_fees:<channel>` debit of the provider's fee for a dispute the council lost
- `bank`                debit of a provider's payout as the bank statement shows it
An undone reversal (ReversalUndone) and an undone payout (SettlementUndone) post what the
reversal or payout posted, the other way round: the history keeps both.
A payout pays in payments net of the fees, refunds and lost disputes settled with them: it
credits clearing with the payments less fees, and debits `refunds:` and `reversals:` with the
refunds and lost disputes it deducted (money paid back out of it, no longer owed).

Every posting also says what kind of movement it is part of (`Movement`), so that a reader
adds up receipts, refunds or transfers by account and movement alone, never from the
event's own amounts: a payout's debit of `refunds:` is a PAYOUT, not another refund.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from enum import StrEnum
from operator import attrgetter
from typing import Any, NamedTuple

from domain.cashups import CashUp
from domain.errors import UnbalancedPostings
from domain.funds import FundChart
from domain.gl_exports import GeneralLedgerExports
from domain.import_rules import ImportRulebook
from domain.imports import FileContentClaim, ImportBatch
from domain.offices import OfficeRegister
from domain.payment import AUTO_ALLOCATION_ACTOR, ClearingItem, Payment
from domain.periods import PeriodCalendar

_AMOUNT = attrgetter("amount_pence")
SUSPENSE = "suspense"
VAT_OUTPUT = "vat:output"
BANK = "bank"


class Movement(StrEnum):
    """What a posting's money is doing: every posting of an event names one."""

    RECEIPT = "receipt"  # money arriving through a channel, into suspense
    # Money allocated with its receipt (the reference named the fund): the day's takings
    # count the receipt as that fund's, not suspense's.
    ALLOCATION_ON_ARRIVAL = "allocation_on_arrival"
    ALLOCATION = "allocation"  # suspense allocated later
    TRANSFER_OUT = "transfer_out"  # the source side of a transfer
    TRANSFER_IN = "transfer_in"  # its destination side
    REFUND = "refund"
    REVERSAL = "reversal"
    OVER_SHORT = "over_short"  # an approved cash-up difference
    FEE = "fee"  # a card provider's fee, out of clearing
    PAYOUT = "payout"  # a provider's payout: clearing to bank, settling refunds and reversals


class Posting(NamedTuple):
    """One movement of money on one account. A named tuple, not a dataclass: every replay,
    rebuild and audit makes one per posting, and a tuple is made in a third of the time."""

    account: str
    amount_pence: int
    movement: Movement
    fund_code: str | None = None
    reference: str | None = None
    # Set where one event moves money of several channels (a cash-up); otherwise the
    # event's (or its payment's) channel applies.
    channel: str | None = None


def cash_account(channel: str) -> str:
    return f"cash:{channel}"


def income_account(fund_code: str, reference: str) -> str:
    return f"income:{fund_code}:{reference}"


def refunds_account(channel: str) -> str:
    return f"refunds:{channel}"


def reversals_account(channel: str) -> str:
    return f"reversals:{channel}"


def over_short_account(channel: str) -> str:
    return f"over_short:{channel}"


def fees_account(kind: str, channel: str) -> str:
    return f"{kind}s:{channel}"


def postings_for(event: Any) -> tuple[Posting, ...]:
    """The postings of one event; raises UnbalancedPostings if they do not sum to zero."""
    postings = tuple(_postings(event))
    total = sum(map(_AMOUNT, postings))
    if total != 0:
        raise UnbalancedPostings(
            f"{type(event).__qualname__} {event.originator_id} v{event.originator_version} "
            f"posts {total} pence out of balance"
        )
    return postings


def effective_at(event: Any) -> datetime:
    """When the event's money movement takes effect (its business time, not recording time)."""
    if isinstance(event, Payment.Received):
        return event.received_at
    return getattr(event, "effective_at", event.timestamp)


_WITHOUT_MONEY = (
    Payment.Noted,
    Payment.ProviderReported,
    Payment.PayerDetailsErased,
    Payment.DisputeOpened,
    Payment.DisputeMoved,
    Payment.RefundRequested,
    Payment.RefundDeclined,
    FundChart.Opened,
    FundChart.FundAdded,
    FundChart.FundAmended,
    FundChart.FundDisabled,
    FundChart.FundEnabled,
    # A file's record: its receipts' own events move the money.
    ImportBatch.Imported,
    ImportBatch.Reversed,
    ImportBatch.LineLinked,
    ImportBatch.LinkUndone,
    ImportBatch.LineChecked,
    ImportBatch.LineCheckUndone,
    # The file's content taken by its import, so a copy saved otherwise is imported once.
    FileContentClaim.ContentClaimed,
    PeriodCalendar.Opened,
    PeriodCalendar.PeriodClosed,
    GeneralLedgerExports.Opened,
    GeneralLedgerExports.DayExported,
    OfficeRegister.Opened,
    OfficeRegister.OfficeAdded,
    OfficeRegister.OfficeRenamed,
    OfficeRegister.ChannelsChanged,
    OfficeRegister.OfficeClosed,
    OfficeRegister.TillAdded,
    OfficeRegister.TillClosed,
    # A count is only a claim until a second person approves it.
    CashUp.Started,
    CashUp.Submitted,
    CashUp.Returned,
    # The council's import rules: the receipts they decide move the money.
    ImportRulebook.Opened,
    ImportRulebook.RuleAdded,
    ImportRulebook.RuleDisabled,
    ImportRulebook.RuleEnabled,
    ImportRulebook.RuleMoved,
    ImportRulebook.RuleAmended,
)


def allocated_on_arrival(event: Payment.Allocated) -> bool:
    """Whether an allocation was made with its receipt, from the reference it came with."""
    return event.actor == AUTO_ALLOCATION_ACTOR and event.originator_version == 2


def _postings(event: Any) -> Iterable[Posting]:
    # A receipt's two events (most of every log) by their rules directly, without walking
    # the chain of classes through a generator: a bulk batch checks every new event's
    # postings, and every replay, rebuild and audit reads them (#9).
    rule = _BY_TYPE.get(type(event))
    return _by_class(event) if rule is None else rule(event)


def _by_class(event: Any) -> Iterable[Posting]:
    if isinstance(event, Payment.Received):
        yield from _received(event)
    elif isinstance(event, Payment.Allocated):
        yield from _allocated(event)
    elif isinstance(event, Payment.Transferred):
        yield from _income(
            Movement.TRANSFER_OUT,
            event.from_fund_code,
            event.from_reference,
            event.amount_pence,
            event.from_vat_pence,
        )
        yield from _income(
            Movement.TRANSFER_IN,
            event.to_fund_code,
            event.to_reference,
            -event.amount_pence,
            -event.to_vat_pence,
        )
    elif isinstance(event, Payment.Refunded):
        if event.fund_code is None:
            yield Posting(SUSPENSE, event.amount_pence, Movement.REFUND)
        else:
            yield from _income(
                Movement.REFUND,
                event.fund_code,
                event.reference,
                event.amount_pence,
                event.vat_pence,
            )
        yield Posting(refunds_account(event.channel), -event.amount_pence, Movement.REFUND)
    elif isinstance(event, Payment.Reversed):
        for part in event.reversed_parts:
            yield from _income(
                Movement.REVERSAL, part.fund_code, part.reference, part.amount_pence, part.vat_pence
            )
        if event.suspense_pence:
            yield Posting(SUSPENSE, event.suspense_pence, Movement.REVERSAL)
        yield Posting(reversals_account(event.channel), -event.amount_pence, Movement.REVERSAL)
    elif isinstance(event, Payment.ReversalUndone):
        # The reversal's own postings, the other way round: a negative reversal.
        yield Posting(SUSPENSE, -event.suspense_pence, Movement.REVERSAL)
        yield Posting(reversals_account(event.channel), event.amount_pence, Movement.REVERSAL)
    elif isinstance(event, CashUp.Approved):
        for line in event.channel_results:
            difference = line.difference_pence
            if difference:
                channel = line.channel
                yield Posting(
                    cash_account(channel), difference, Movement.OVER_SHORT, channel=channel
                )
                yield Posting(
                    over_short_account(channel), -difference, Movement.OVER_SHORT, channel=channel
                )
    elif isinstance(event, Payment.FeeCharged):
        yield Posting(fees_account(event.kind, event.channel), event.amount_pence, Movement.FEE)
        yield Posting(event.clearing_account, -event.amount_pence, Movement.FEE)
    elif isinstance(event, Payment.Settled):
        yield from _settled(event)
    elif isinstance(event, Payment.SettlementUndone):
        for posting in _settled(event):
            yield posting._replace(amount_pence=-posting.amount_pence)
    elif isinstance(event, _WITHOUT_MONEY):
        return
    else:
        raise TypeError(f"no posting rule for {type(event).__qualname__}")


def _received(event: Payment.Received) -> tuple[Posting, Posting]:
    debit = event.clearing_account or cash_account(event.channel)
    return (
        Posting(debit, event.amount_pence, Movement.RECEIPT),
        Posting(SUSPENSE, -event.amount_pence, Movement.RECEIPT),
    )


def _allocated(event: Payment.Allocated) -> list[Posting]:
    movement = (
        Movement.ALLOCATION_ON_ARRIVAL if allocated_on_arrival(event) else Movement.ALLOCATION
    )
    postings = []
    for line in event.allocated_lines:
        postings.append(Posting(SUSPENSE, line.amount_pence, movement))
        postings += _income(
            movement, line.fund_code, line.reference, -line.amount_pence, -line.vat_pence
        )
    return postings


def _income(
    movement: Movement, fund_code: str, reference: str, gross_pence: int, vat_pence: int
) -> list[Posting]:
    """A VAT-inclusive movement of a fund's income: the net to the payer account, VAT apart."""
    net = Posting(
        income_account(fund_code, reference),
        gross_pence - vat_pence,
        movement,
        fund_code,
        reference,
    )
    if vat_pence:
        return [net, Posting(VAT_OUTPUT, vat_pence, movement, fund_code, reference)]
    return [net]


def _settled(event: Payment.Settled | Payment.SettlementUndone) -> Iterable[Posting]:
    """A payout's share of one payment: the net to the bank, out of clearing; the refunds and
    lost disputes it deducted close their own accounts."""
    sums: dict[str, int] = defaultdict(int)
    for item in event.settled_items:
        sums[item.kind] += item.amount_pence
    paid_back = {
        refunds_account(event.channel): -sums.pop(ClearingItem.REFUND, 0),
        reversals_account(event.channel): -sums.pop(ClearingItem.REVERSAL, 0),
    }
    moves = {BANK: sum(sums.values()) - sum(paid_back.values()), **paid_back}
    moves[event.clearing_account] = -sum(sums.values())
    for account, pence in moves.items():
        if pence:
            yield Posting(account, pence, Movement.PAYOUT)


# The rules `_postings` applies by the event's own class, before the chain of `_by_class`
# (which holds the same rules, for subclasses).
_BY_TYPE: dict[type, Callable[[Any], Iterable[Posting]]] = {
    Payment.Received: _received,
    Payment.Allocated: _allocated,
}
