"""Refunds above the approval limit: one person requests, a second approves or declines.

The workflow of a Payment, kept apart from its other commands. Its events stay
Payment.RefundRequested and Payment.RefundDeclined (in domain.payment: stored events name
their class by that topic).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import uuid4

from domain.allocation_lines import AllocationLine, describe_source, line_key
from domain.cards import require_text
from domain.errors import (
    RefundExceedsRemaining,
    RefundRequestAlreadyDecided,
    RefundRequestNotFound,
    RefundRequestStale,
    SecondPersonRequired,
)
from domain.idempotent import IdempotentCommands, idempotent
from domain.money import pounds_text


@dataclass(frozen=True)
class PendingRefund:
    """A refund above the approval limit, waiting for a second person."""

    request_id: str
    fund_code: str | None
    reference: str | None
    amount_pence: int
    reason: str
    requested_by: str
    requested_at: datetime


class RefundApproval(IdempotentCommands):
    """The refund approval commands and rules of a Payment (its state: `pending_refunds`,
    `decided_refunds`, `refunded_pence`; its money moves through `_pay_back`)."""

    pending_refunds: dict[str, PendingRefund]
    decided_refunds: dict[str, str]
    refunded_pence: int
    unallocated_pence: int
    lines: dict[str, AllocationLine]
    # Provided by Payment, which this is mixed into.
    RefundRequested: type
    RefundDeclined: type
    _pay_back: Any
    _require_not_reversed: Any

    @idempotent()
    def approve_refund(self, request_id: str, *, actor: str) -> None:
        """A second person approves a requested refund; the money moves now, from where it
        was requested (never from somewhere else the money has gone since)."""
        pending = self._pending(request_id)
        if actor == pending.requested_by:
            raise SecondPersonRequired(
                "a refund above the limit needs a second person: the person who asked for it "
                "cannot approve it"
            )
        self._require_not_reversed()
        self._pay_back(
            pending.amount_pence,
            self._requested_source(pending),
            actor=actor,
            reason=pending.reason,
            effective_at=None,
            request=pending,
        )

    @idempotent()
    def decline_refund(self, request_id: str, *, actor: str, reason: str) -> None:
        self._pending(request_id)
        reason = require_text("reason", reason, required=True)
        self.record(self.RefundDeclined, request_id=request_id, reason=reason, actor=actor)

    def _request_refund(
        self, amount_pence: int, source: AllocationLine | None, *, actor: str, reason: str
    ) -> str:
        """Record a refund that waits for a second person; returns the request's id."""
        request_id = str(uuid4())
        self.record(
            self.RefundRequested,
            request_id=request_id,
            fund_code=source.fund_code if source else None,
            reference=source.reference if source else None,
            amount_pence=amount_pence,
            reason=reason,
            actor=actor,
        )
        return request_id

    @property
    def pending_refund_pence(self) -> int:
        return sum(p.amount_pence for p in self.pending_refunds.values())

    def _needs_approval(self, amount_pence: int, approval_limit_pence: int | None) -> bool:
        if approval_limit_pence is None:
            return False
        cumulative = self.refunded_pence + self.pending_refund_pence + amount_pence
        return cumulative > approval_limit_pence

    def _pending(self, request_id: str) -> PendingRefund:
        pending = self.pending_refunds.get(request_id)
        if pending is not None:
            return pending
        if request_id in self.decided_refunds:
            raise RefundRequestAlreadyDecided(
                f"refund request {request_id} was already {self.decided_refunds[request_id]}; "
                "nothing more to do"
            )
        raise RefundRequestNotFound(f"no refund request {request_id!r} is waiting on this payment")

    def _require_unreserved(self, amount_pence: int, source: AllocationLine | None) -> None:
        """A refund may not take money that waiting requests were promised."""
        held = self._held(source)
        where = (source.fund_code, source.reference) if source else (None, None)
        reserved = sum(
            p.amount_pence
            for p in self.pending_refunds.values()
            if (p.fund_code, p.reference) == where
        )
        if amount_pence > held - reserved:
            waiting = f" ({pounds_text(reserved)} of it waits for approval)" if reserved else ""
            raise RefundExceedsRemaining(
                f"refunding {pounds_text(amount_pence)} but only {pounds_text(held)} remains on "
                f"{describe_source(source)}{waiting}"
            )

    def _requested_source(self, pending: PendingRefund) -> AllocationLine | None:
        """Where an approved refund comes from: exactly where it was requested, if the money
        is still there."""
        source = None
        if pending.fund_code is not None:
            assert pending.reference is not None
            key = line_key(pending.fund_code, pending.reference)
            source = self.lines.get(key) or AllocationLine(pending.fund_code, pending.reference)
        held = self._held(source)
        if pending.amount_pence > held:
            raise RefundRequestStale(
                f"refund request {pending.request_id} is for {pounds_text(pending.amount_pence)} from "
                f"{describe_source(source)}, which holds only {pounds_text(held)} now: the money was "
                "allocated, transferred, refunded or reversed after the request. Decline this "
                "request and request the refund again from where the money is now"
            )
        return source

    def _held(self, source: AllocationLine | None) -> int:
        return source.amount_pence if source is not None else self.unallocated_pence
