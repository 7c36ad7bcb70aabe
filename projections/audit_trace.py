"""The whole story of one receipt, from its events: who did what, why, and where its money is.

Every figure comes from `domain.postings.postings_for` over the payment's own events, so the
"where is each penny now" at the end is the sum of the postings listed above it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.payment import Payment
from domain.postings import SUSPENSE, VAT_OUTPUT, Movement, Posting, effective_at, postings_for

# Fields every event has, shown in their own columns rather than among the details.
_COMMON_FIELDS = {
    "originator_id",
    "originator_version",
    "originator_topic",
    "timestamp",
    "actor",
    "reason",
    "idempotency_key",
    "fingerprint",
}


@dataclass(frozen=True)
class TracedEvent:
    position: int
    version: int
    action: str
    recorded_at: datetime
    effective_at: datetime
    actor: str | None
    reason: str | None
    correlation_id: str | None
    details: dict[str, Any]
    postings: tuple[Posting, ...]
    chain: str | None = None  # "ok", "altered" or None when not yet chained


@dataclass(frozen=True)
class Whereabouts:
    """Where part of the receipt is now: allocated to a fund and reference, in suspense,
    refunded or reversed."""

    place: str  # allocated | suspense | refunded | reversed
    amount_pence: int
    fund_code: str | None = None
    reference: str | None = None
    vat_pence: int = 0


@dataclass(frozen=True)
class PaymentTrace:
    payment_id: str
    channel: str
    amount_pence: int
    reference: str
    received_at: datetime
    events: tuple[TracedEvent, ...]
    whereabouts: tuple[Whereabouts, ...]

    @property
    def accounted_pence(self) -> int:
        return sum(w.amount_pence for w in self.whereabouts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "payment_id": self.payment_id,
            "channel": self.channel,
            "amount_pence": self.amount_pence,
            "reference": self.reference,
            "received_at": self.received_at.isoformat(),
            "events": [
                {
                    "position": e.position,
                    "version": e.version,
                    "action": e.action,
                    "recorded_at": e.recorded_at.isoformat(),
                    "effective_at": e.effective_at.isoformat(),
                    "actor": e.actor,
                    "reason": e.reason,
                    "correlation_id": e.correlation_id,
                    "details": e.details,
                    "postings": [p._asdict() for p in e.postings],
                    "chain": e.chain,
                }
                for e in self.events
            ],
            "now": [vars(w) for w in self.whereabouts],
            "accounted_pence": self.accounted_pence,
        }


_TREASURY = frozenset({Movement.FEE, Movement.PAYOUT})


def trace_payment(
    events: Sequence[tuple[int, Any]], chain: dict[int, str | None] | None = None
) -> PaymentTrace:
    """The trace of one payment from its (position, event) pairs in version order.

    `chain` maps positions to their chain status (see `projections.chain.check_rows`).
    Raises ValueError if the events are not one payment's, and AssertionError if its
    postings do not account for every penny received (a defect, never a user error).
    """
    if not events or not isinstance(events[0][1], Payment.Received):
        raise ValueError("a payment's events start with Received")
    received: Payment.Received = events[0][1]
    if any(event.originator_id != received.originator_id for _, event in events):
        raise ValueError("the events belong to more than one payment")
    traced = tuple(
        _traced(position, event, (chain or {}).get(position)) for position, event in events
    )
    # A provider's fees and payouts move the council's own money between clearing, fees and
    # bank: none of it is the payer's, so it is no part of where the payer's money is.
    whereabouts = _whereabouts(
        [p for e in traced for p in e.postings if p.movement not in _TREASURY]
    )
    accounted = sum(w.amount_pence for w in whereabouts)
    assert accounted == received.amount_pence, (received.originator_id, accounted)
    return PaymentTrace(
        payment_id=str(received.originator_id),
        channel=received.channel,
        amount_pence=received.amount_pence,
        reference=received.reference,
        received_at=received.received_at,
        events=traced,
        whereabouts=tuple(whereabouts),
    )


def _traced(position: int, event: Any, chain: str | None) -> TracedEvent:
    details = {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in vars(event).items()
        if key not in _COMMON_FIELDS
    }
    return TracedEvent(
        position=position,
        version=event.originator_version,
        action=type(event).__name__,
        recorded_at=event.timestamp,
        effective_at=effective_at(event),
        actor=getattr(event, "actor", None),
        reason=getattr(event, "reason", None) or getattr(event, "text", None),
        correlation_id=getattr(event, "idempotency_key", None),
        details=details,
        postings=postings_for(event),
        chain=chain,
    )


def _whereabouts(postings: Sequence[Posting]) -> list[Whereabouts]:
    """Credit balances of the payment's own postings, grouped by where the money sits.

    The debit side (`cash:<channel>`) is the receipt itself; every credit is a place.
    """
    allocated: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    elsewhere: dict[str, int] = defaultdict(int)
    for posting in postings:
        if posting.fund_code is not None and posting.reference is not None:
            line = allocated[(posting.fund_code, posting.reference)]
            line[0] -= posting.amount_pence
            if posting.account == VAT_OUTPUT:
                line[1] -= posting.amount_pence
        elif posting.account == SUSPENSE:
            elsewhere["suspense"] -= posting.amount_pence
        elif posting.account.startswith("refunds:"):
            elsewhere["refunded"] -= posting.amount_pence
        elif posting.account.startswith("reversals:"):
            elsewhere["reversed"] -= posting.amount_pence
    places = [
        Whereabouts("allocated", gross, fund, reference, vat)
        for (fund, reference), (gross, vat) in sorted(allocated.items())
        if gross or vat
    ]
    places += [
        Whereabouts(place, elsewhere[place])
        for place in ("suspense", "refunded", "reversed")
        if elsewhere[place]
    ]
    return places
