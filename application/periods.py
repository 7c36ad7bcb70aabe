"""Period close: closing days, months and financial years, and keeping money out of them.

Every save of money movements (`IncomeLedger._save`) calls `require_open_periods` inside its
transaction, after taking the period gate in shared mode; a close takes the gate exclusively.
So a close and a movement cannot interleave: either the movement commits first (and the close
covers it, as a figure of the period it closes) or the close commits first and the movement
re-reads the calendar and is refused. The gate is a PostgreSQL transaction-level advisory
lock, and on SQLite the database's one write lock, taken at the start of the transaction.

Receipts that a channel reports late (the GOV.UK Pay webhook, a day's file) must never be lost
because their day closed: `late_receipt` records them effective now, keeping the date the
channel gave in the receipt's details.
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from eventsourcing.application import AggregateNotFoundError
from sqlalchemy import text
from sqlalchemy.orm import Session

from application import event_store
from domain.cashups import CashUp
from domain.errors import CashUpAwaitingDecision, InvalidRequest
from domain.limits import require_query_date, uk_day_start
from domain.payment import Payment
from domain.periods import RECEIPT, Period, PeriodCalendar, PeriodKind, uk_date
from domain.postings import effective_at

if TYPE_CHECKING:
    from application.ledger import CommandContext, IncomeLedger, RecordPayment

# An arbitrary constant naming the period gate among PostgreSQL advisory locks (the read-model
# runner uses another).
PERIOD_GATE_KEY = 7_411_290_113
# When a money movement takes effect, and what it is ("a receipt").
Movement = tuple[datetime, str]
MOVEMENTS = {
    Payment.Received: RECEIPT,
    Payment.Allocated: "an allocation",
    Payment.Transferred: "a transfer",
    Payment.Refunded: "a refund",
    Payment.Reversed: "a reversal",
    CashUp.Submitted: "a cash-up",
    CashUp.Approved: "a cash-up",
    Payment.FeeCharged: "a card provider's fee",
    Payment.Settled: "a card provider's payout",
    Payment.ReversalUndone: "an undone reversal",
    Payment.SettlementUndone: "an undone payout",
}

_cached: weakref.WeakKeyDictionary[Any, PeriodCalendar] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def take_period_gate(ledger: IncomeLedger, session: Session, *, exclusive: bool) -> None:
    """Order this transaction against period closes (see the module's docstring)."""
    if session.get_bind().dialect.name == "postgresql":
        function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        session.execute(text(f"SELECT {function}(:key)"), {"key": PERIOD_GATE_KEY})
        return
    # SQLite: an UPDATE that changes nothing still takes the write lock until the commit, and
    # the reads that follow see every transaction committed before it.
    table = event_store.events_table_name(ledger.recorder)
    session.execute(text(f"UPDATE {table} SET originator_version = originator_version WHERE 0"))


def calendar(ledger: IncomeLedger) -> PeriodCalendar:
    """The period calendar as now stored, for reading only; asks the event store only for
    closes after the copy this process keeps."""
    with _cache_lock:
        cached = _cached.get(ledger)
    if cached is None:
        fresh = _stored_calendar(ledger)
    else:
        newer = list(ledger.events.get(cached.id, gt=cached.version))
        if not newer:
            return cached
        fresh = copy.deepcopy(cached)
        for event in newer:
            event.mutate(fresh)
    if not fresh.pending_events:

        def keep() -> None:
            with _cache_lock:
                held = _cached.get(ledger)
                if held is None or fresh.version > held.version:
                    _cached[ledger] = fresh

        # Read inside a transaction that closed a period, the close is kept only once
        # committed (event_store.when_committed).
        event_store.when_committed(ledger.recorder, keep)
    return fresh


def needs_period_gate(aggregates: Iterable[Any]) -> bool:
    """True when some pending money movement (or cash-up) takes effect before today.

    Only an ended period can be closed, so money taking effect today or later (nearly every
    receipt: dated now) needs neither the gate nor the calendar. The one window left is the
    clocks of two processes disagreeing about the date at midnight by their skew.
    """
    return _before_today(movements(_pending_events(aggregates)))


def _before_today(moves: Sequence[Movement]) -> bool:
    # A moment falls on an earlier UK day exactly when it comes before today's UK midnight:
    # one comparison per event, not a time zone conversion each (a batch has thousands).
    today_starts = uk_day_start(uk_date(datetime.now(UTC)))
    return any(at < today_starts for at, _ in moves)


def _pending_events(aggregates: Iterable[Any]) -> list[Any]:
    return [event for aggregate in aggregates for event in aggregate.pending_events]


def movements(events: Iterable[Any]) -> list[Movement]:
    """When each money movement (or cash-up) among the events takes effect, and what it is:
    all the period gate needs of them (so events encoded elsewhere need not travel)."""
    return [
        (effective_at(event), MOVEMENTS[type(event)])
        for event in events
        if type(event) in MOVEMENTS
    ]


def require_open_periods(ledger: IncomeLedger, session: Session, aggregates: Iterable[Any]) -> None:
    """Refuse the save when any pending money movement (or cash-up) takes effect in a closed
    period."""
    require_open_for(ledger, session, _pending_events(aggregates))


def require_open_for(ledger: IncomeLedger, session: Session, events: Iterable[Any]) -> None:
    """Refuse to store these new events when a money movement among them (or a cash-up)
    takes effect in a closed period."""
    require_open_at(ledger, session, movements(events))


def require_open_at(ledger: IncomeLedger, session: Session, moves: Sequence[Movement]) -> None:
    """Refuse to store money movements (`movements` of the events) when one takes effect in
    a closed period."""
    if not _before_today(moves):
        return
    take_period_gate(ledger, session, exclusive=False)
    current = calendar(ledger)
    if not current.closes:
        return
    for at, what in moves:
        current.require_open(at, what)


def close_period(
    ledger: IncomeLedger,
    kind: str,
    day: date,
    ctx: CommandContext,
    reason: str,
    today: date | None = None,
) -> dict[str, Any]:
    """Close the day, month or financial year holding `day`; returns the close."""
    period = Period.containing(PeriodKind.parse(kind), require_query_date(day, "date"))
    with ledger.unit_of_work() as session:
        take_period_gate(ledger, session, exclusive=True)
        _require_no_cashup_waiting(ledger, period)
        stored = _stored_calendar(ledger)
        stored.close(
            period,
            actor=ctx.actor,
            reason=reason,
            today=today or uk_date(datetime.now(UTC)),
        )
        recordings = ledger.save(stored)
    return stored.closes[-1].to_dict() | {"position": recordings[-1].notification.id}


def _require_no_cashup_waiting(ledger: IncomeLedger, period: Period) -> None:
    """A cash-up waiting for a decision would be stuck for ever in a closed day: its
    approval takes effect on the day counted, and a new count of a closed day is refused.
    Read under the exclusive gate, which a submission also takes (it is dated that day)."""
    from application.cashups import cashups  # cashups -> ledger -> periods: import here

    waiting = [
        view
        for view in cashups(ledger, "submitted")
        if period.holds(date.fromisoformat(view["business_date"]))
    ]
    if waiting:
        named = "; ".join(
            f"{view['office_code']} {view['till_code']} on {view['business_date']} "
            f"(cash-up {view['cashup_id']})"
            for view in waiting[:10]
        )
        raise CashUpAwaitingDecision(
            f"the {period.name} cannot be closed while a cash-up of it waits for a decision: "
            f"{named}. Approve or return it first (cashup list --status submitted)"
        )


def closed_periods(ledger: IncomeLedger) -> list[dict[str, Any]]:
    """Every close, oldest first."""
    return [close.to_dict() for close in calendar(ledger).closes]


def late_receipt(
    ledger: IncomeLedger, command: RecordPayment, current: PeriodCalendar | None = None
) -> RecordPayment:
    """A channel's receipt dated in a closed period, moved to now with its date kept in its
    details, so that money reported late is recorded rather than refused. A file's lines
    pass the `current` calendar, read once for the whole file."""
    if command.received_at is None:
        return command
    close = (current or calendar(ledger)).close_of(uk_date(command.received_at))
    if close is None:
        return command
    details = dict(command.provider_details or {})
    details["originally_received_at"] = command.received_at.isoformat()
    details["relates_to_period"] = close.period.label
    return replace(command, received_at=datetime.now(UTC), provider_details=details)


def relating_to(
    ledger: IncomeLedger, command: RecordPayment, relates_to_period: str | None
) -> RecordPayment:
    """A receipt recorded in the open period for a closed one (a late item): the closed
    period's label is kept in its details, so it can be traced to the period it belongs to."""
    if relates_to_period is None:
        return command
    label = relates_to_period.strip()
    if not any(close.period.label == label for close in calendar(ledger).closes):
        raise InvalidRequest(
            f"relates_to_period {label!r} is not a closed period; `income-ledger periods list` "
            "(GET /periods/closes) shows them, like 2026-03-31, 2026-03 or 2025-26"
        )
    details = dict(command.provider_details or {}) | {"relates_to_period": label}
    return replace(command, provider_details=details)


def _stored_calendar(ledger: IncomeLedger) -> PeriodCalendar:
    try:
        found = ledger.repository.get(PeriodCalendar.create_id())
    except AggregateNotFoundError:
        return PeriodCalendar.open(actor="system")
    assert isinstance(found, PeriodCalendar)
    return found
