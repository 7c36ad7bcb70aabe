"""A payment's trace: where the payer's money is, whatever the provider did with it."""

from __future__ import annotations

from domain.payment import Channel, ClearingItem
from projections.audit_trace import trace_payment
from tests.domain.helpers import CT_REF, receive


def test_fees_and_a_payout_are_no_part_of_where_the_payers_money_is() -> None:
    """The payout debits `refunds:` with the refund it deducted: that settles the refund, it
    does not take it back, so the trace still shows the money refunded."""
    payment = receive(amount_pence=10_000, reference=CT_REF, channel=Channel.GOVUK_PAY)
    payment.refund(amount_pence=2_500, fund_code="CT", reference=CT_REF, actor="o", reason="r")
    payment.charge_fee(100, kind=ClearingItem.CARD_FEE, actor="o", reason="r")
    payment.settle(None, payout="B1", actor="o", reason="r")
    events = list(enumerate(payment.collect_events(), start=1))
    assert [type(event).__name__ for _, event in events[-2:]] == ["FeeCharged", "Settled"]
    trace = trace_payment(events)
    assert {(w.place, w.fund_code): w.amount_pence for w in trace.whereabouts} == {
        ("allocated", "CT"): 7_500,
        ("refunded", None): 2_500,
    }
