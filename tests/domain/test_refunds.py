"""Refunds above the approval limit: a domain rule, cumulative per payment, with a second
person's approval of exactly what was requested."""

from __future__ import annotations

import pytest

from domain.errors import (
    InvalidEffectiveDate,
    RefundExceedsRemaining,
    RefundRequestAlreadyDecided,
    RefundRequestNotFound,
    RefundRequestStale,
    SecondPersonRequired,
)
from domain.payment import AllocationRequest, Payment
from domain.postings import postings_for
from tests.domain.helpers import CT_REF, NOW, SUN_REF, chart, receive

FUNDS = chart()
LIMIT_PENCE = 5_000


def refund(payment: Payment, amount_pence: int, actor: str = "officer:a", **more) -> str | None:
    return payment.refund(
        amount_pence=amount_pence,
        actor=actor,
        reason="overpaid",
        approval_limit_pence=LIMIT_PENCE,
        **more,
    )


def allocate_all(payment: Payment, fund_code: str, reference: str) -> None:
    amount = payment.unallocated_pence
    payment.allocate(
        [(FUNDS.fund(fund_code), AllocationRequest(fund_code, reference, amount))],
        actor="officer:a",
        reason="remittance advice",
    )


def test_a_refund_above_the_limit_waits_for_a_second_person() -> None:
    payment = receive(reference=CT_REF)
    request_id = refund(payment, 6_000)
    assert request_id is not None and payment.refunded_pence == 0
    assert isinstance(payment.pending_events[-1], Payment.RefundRequested)
    assert postings_for(payment.pending_events[-1]) == ()
    with pytest.raises(SecondPersonRequired):
        payment.approve_refund(request_id, actor="officer:a")
    payment.approve_refund(request_id, actor="supervisor:b")
    refunded = payment.pending_events[-1]
    assert isinstance(refunded, Payment.Refunded)
    assert refunded.requested_by == "officer:a" and refunded.actor == "supervisor:b"
    assert payment.refunded_pence == 6_000 and not payment.pending_refunds


def test_the_limit_is_cumulative_so_splitting_a_refund_does_not_avoid_it() -> None:
    payment = receive(reference=CT_REF)
    assert refund(payment, 3_000) is None
    assert refund(payment, 2_000) is None  # 5,000 in all: at the limit, not above it
    assert refund(payment, 1) is not None
    assert payment.refunded_pence == 5_000 and payment.pending_refund_pence == 1


def test_waiting_requests_count_towards_the_limit() -> None:
    payment = receive(reference=CT_REF)
    assert refund(payment, 6_000) is not None
    assert refund(payment, 1) is not None
    assert payment.refunded_pence == 0 and payment.pending_refund_pence == 6_001


def test_refunds_reported_by_the_channel_are_never_blocked_but_count() -> None:
    payment = receive(reference=CT_REF)
    payment.refund_up_to(8_000, actor="integration:govuk_pay", reason="refunded on GOV.UK Pay")
    assert payment.refunded_pence == 8_000 and not payment.pending_refunds
    assert refund(payment, 1) is not None


def test_money_promised_to_a_waiting_request_cannot_be_refunded_again() -> None:
    payment = receive()
    refund(payment, 6_000)
    with pytest.raises(RefundExceedsRemaining, match="£60.00 of it waits for approval"):
        payment.refund(amount_pence=4_001, actor="officer:c", reason="again")
    payment.refund(amount_pence=4_000, actor="officer:c", reason="the rest")


def test_an_approved_refund_comes_from_where_it_was_requested() -> None:
    payment = receive()
    request_id = refund(payment, 6_000)
    assert payment.pending_refunds[request_id].fund_code is None  # the unallocated part
    payment.allocate(
        [(FUNDS.fund("CT"), AllocationRequest("CT", CT_REF, 3_000))],
        actor="officer:a",
        reason="part of it identified",
    )
    payment.approve_refund(request_id, actor="supervisor:b")
    assert payment.unallocated_pence == 1_000
    assert payment.line("CT", CT_REF).amount_pence == 3_000


def test_a_request_whose_money_has_moved_is_refused_as_stale() -> None:
    payment = receive()
    request_id = refund(payment, 6_000)
    allocate_all(payment, "SUN", SUN_REF)
    with pytest.raises(RefundRequestStale, match="Decline this request and request") as error:
        payment.approve_refund(request_id, actor="supervisor:b")
    assert "from the unallocated part, which holds only £0.00" in str(error.value)
    assert payment.line("SUN", SUN_REF).amount_pence == 10_000 and payment.refunded_pence == 0
    payment.decline_refund(request_id, actor="supervisor:b", reason="stale: money allocated")
    assert refund(payment, 6_000, fund_code="SUN", reference=SUN_REF) is not None


def test_a_request_is_decided_once_and_a_late_decision_is_told_who_decided() -> None:
    payment = receive(reference=CT_REF)
    request_id = refund(payment, 6_000)
    payment.approve_refund(request_id, actor="supervisor:b")
    with pytest.raises(RefundRequestAlreadyDecided, match="approved by supervisor:b"):
        payment.approve_refund(request_id, actor="supervisor:c")
    with pytest.raises(RefundRequestAlreadyDecided):
        payment.decline_refund(request_id, actor="supervisor:c", reason="too late")
    declined = refund(payment, 1)
    payment.decline_refund(declined, actor="supervisor:c", reason="not owed")
    with pytest.raises(RefundRequestAlreadyDecided, match="declined by supervisor:c"):
        payment.approve_refund(declined, actor="supervisor:b")
    with pytest.raises(RefundRequestNotFound):
        payment.approve_refund("no-such-request", actor="supervisor:b")


def test_a_repeated_refund_command_gives_back_the_same_request() -> None:
    payment = receive(reference=CT_REF)
    first = refund(payment, 6_000, idempotency_key="k1", fingerprint="f")
    again = refund(payment, 6_000, idempotency_key="k1", fingerprint="f")
    assert first == again and len(payment.pending_refunds) == 1


def test_a_refund_waiting_for_approval_takes_effect_when_approved() -> None:
    payment = receive(reference=CT_REF)
    with pytest.raises(InvalidEffectiveDate, match="takes effect when approved"):
        refund(payment, 6_000, effective_at=NOW)
    assert not payment.pending_refunds
