"""The daily cash-up of a till (domain.cashups): submit a count, approve or return it.

What was recorded for a till's day is read from the event store, not the read model, so a
cash-up compares with every receipt recorded up to the moment it is submitted (and again when
it is approved: a receipt recorded in between makes the approval refused as stale). The
receipts are found by one scan of the stored `Payment.Received` events, which grows with the
ledger's history (see the README's "End of day, month and year").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from application.ledger import fingerprint
from application.offices import office_register
from domain.cashups import (
    CashUp,
    CashUpStatus,
    Cheque,
    Count,
    cashup_id,
    compare,
    difference_words,
)
from domain.errors import CashUpNotFound, CashUpStale, ConcurrentUpdate, InvalidRequest
from domain.limits import uk_today
from domain.money import pounds_text
from domain.offices import Till, parse_code
from domain.payment import Payment
from domain.periods import uk_date

if TYPE_CHECKING:
    from application.ledger import CommandContext, IncomeLedger

MAX_LISTED = 500


@dataclass(frozen=True)
class SubmitCashUp:
    office_code: str
    till_code: str
    business_date: date
    pieces: Mapping[int, int]  # denomination in pence -> notes or coins counted
    cheques: Sequence[Cheque] = ()
    bag_number: str = ""
    reason: str = ""


def recorded_pence(
    ledger: IncomeLedger, office_code: str, till_code: str, day: date
) -> dict[str, int]:
    """Receipts recorded for a till on a UK business day, by channel."""
    totals: dict[str, int] = defaultdict(int)
    for event in ledger.events_of(Payment.Received):
        if (
            event.office_code == office_code
            and event.till_code == till_code
            and uk_date(event.received_at) == day
        ):
            totals[event.channel] += event.amount_pence
    return dict(totals)


def require_in_use(till: Till, office_code: str, day: date, recorded: dict[str, int]) -> None:
    """A till counts only a day it was in use: one added later took nothing that day (a
    mistyped date or till), unless receipts were recorded for it then."""
    if till.added_on is not None and day < till.added_on and not recorded:
        raise InvalidRequest(
            f"the cash-up date {day.isoformat()} is before till {till.code} of office "
            f"{office_code} was added ({till.added_on.isoformat()}), and no receipt was "
            "recorded for it that day: check the date and the till"
        )


def submit_cashup(
    ledger: IncomeLedger, command: SubmitCashUp, ctx: CommandContext, today: date | None = None
) -> dict[str, Any]:
    """Submit a till's count for a day (again, once returned); a repeat records nothing."""
    office = office_register(ledger).office(command.office_code)
    till = office.require_open_till(parse_code(command.till_code, "till"))
    count = Count(
        office.code,
        till.code,
        command.business_date,
        dict(command.pieces),
        tuple(command.cheques),
        command.bag_number,
    ).checked(today or uk_today())
    recorded = recorded_pence(ledger, office.code, till.code, count.business_date)
    require_in_use(till, office.code, count.business_date, recorded)
    results = compare(count, recorded, office.channels)
    cashup = _stored(ledger, cashup_id(office.code, till.code, count.business_date))
    if cashup is None:
        cashup = CashUp.start(office.code, till.code, count.business_date, ctx.actor)
    cashup.submit(
        count,
        results,
        actor=ctx.actor,
        reason=command.reason,
        idempotency_key=ctx.idempotency_key,
        fingerprint=fingerprint(
            "cashup_submit",
            pieces=sorted(count.pieces.items()),
            cheques=[cheque.to_dict() for cheque in count.cheques],
            bag_number=count.bag_number,
            reason=command.reason.strip(),
        ),
    )
    return _saved(ledger, cashup)


def approve_cashup(ledger: IncomeLedger, cashup: UUID, ctx: CommandContext) -> dict[str, Any]:
    """A second person approves: final, and the differences go to over/short."""
    found = _require(ledger, cashup)
    if found.status is CashUpStatus.SUBMITTED:
        _require_current(ledger, found)
    found.approve(
        actor=ctx.actor,
        idempotency_key=ctx.idempotency_key,
        fingerprint=fingerprint("cashup_approve", cashup=str(cashup)),
    )
    return _saved(ledger, found)


def return_cashup(
    ledger: IncomeLedger, cashup: UUID, ctx: CommandContext, reason: str
) -> dict[str, Any]:
    """A second person returns it, saying why; it can then be counted and submitted again."""
    found = _require(ledger, cashup)
    found.send_back(
        actor=ctx.actor,
        reason=reason,
        idempotency_key=ctx.idempotency_key,
        fingerprint=fingerprint("cashup_return", cashup=str(cashup), reason=reason),
    )
    return _saved(ledger, found)


def get_cashup(ledger: IncomeLedger, cashup: UUID) -> dict[str, Any]:
    return _require(ledger, cashup).view()


def cashups(
    ledger: IncomeLedger, status: str | None = None, limit: int = MAX_LISTED
) -> list[dict[str, Any]]:
    """Cash-ups, newest day first; `status` (submitted: the approval queue) filters them."""
    ids = [UUID(str(n.originator_id)) for n in ledger.notifications(CashUp.Started)]
    views = [_require(ledger, each).view() for each in ids]
    chosen = [view for view in views if status is None or view["status"] == status]
    chosen.sort(key=lambda view: (view["business_date"], view["submitted_at"]), reverse=True)
    return chosen[:limit]


def _require_current(ledger: IncomeLedger, cashup: CashUp) -> None:
    """Refuse to approve a count compared with receipts that have changed since."""
    now = recorded_pence(ledger, cashup.office_code, cashup.till_code, cashup.business_date)
    changed = [r for r in cashup.results if now.get(r.channel, 0) != r.recorded_pence]
    if changed:
        detail = "; ".join(
            f"{r.channel}: recorded {pounds_text(r.recorded_pence)} when submitted, "
            f"{pounds_text(now.get(r.channel, 0))} "
            f"now (the count is {difference_words(r.counted_pence - now.get(r.channel, 0))})"
            for r in changed
        )
        raise CashUpStale(
            f"receipts were recorded for this till's day after it was submitted ({detail}): "
            "return it so that it is submitted again against the receipts as they are now"
        )


def _stored(ledger: IncomeLedger, cashup: UUID) -> CashUp | None:
    try:
        found = ledger.repository.get(cashup)
    except AggregateNotFoundError:
        return None
    return found if isinstance(found, CashUp) else None


def _require(ledger: IncomeLedger, cashup: UUID) -> CashUp:
    found = _stored(ledger, cashup)
    if found is None or found.submission is None:
        raise CashUpNotFound(f"no cash-up with id {cashup}")
    return found


def _saved(ledger: IncomeLedger, cashup: CashUp) -> dict[str, Any]:
    try:
        position = ledger.save_checked(cashup)  # type: ignore[arg-type]
    except IntegrityError:
        raise ConcurrentUpdate(
            "someone else changed this cash-up at the same moment; nothing was saved. Look at "
            "it again and retry"
        ) from None
    return cashup.view() | {"recorded": position is not None, "position": position}
