import pytest

from domain.errors import UnbalancedPostings
from domain.payment import Channel, ReversalKind
from domain.postings import postings_for
from tests.domain.helpers import CT_REF, HRA_REF, SUN_REF, chart, receive


def accounts(event) -> dict[str, int]:
    return {p.account: p.amount_pence for p in postings_for(event)}


def test_receipt_debits_cash_of_its_channel_and_credits_suspense() -> None:
    payment = receive(channel=Channel.TELEPHONE, reference="zzz")
    assert accounts(payment.pending_events[0]) == {"cash:telephone": 10_000, "suspense": -10_000}


def test_a_card_providers_receipt_debits_clearing_until_it_pays_out() -> None:
    payment = receive(channel=Channel.GOVUK_PAY, reference="zzz")
    assert accounts(payment.pending_events[0]) == {
        "clearing:govuk_pay": 10_000,
        "suspense": -10_000,
    }


def test_allocation_credits_net_income_and_output_vat() -> None:
    payment = receive(reference=SUN_REF)
    assert accounts(payment.pending_events[1]) == {
        "suspense": 10_000,
        f"income:SUN:{SUN_REF}": -8_333,
        "vat:output": -1_667,
    }


def test_transfer_refund_and_reversal_post_to_named_accounts() -> None:
    funds = chart()
    payment = receive(reference=CT_REF, channel=Channel.CHEQUE)
    payment.transfer(
        from_fund_code="CT",
        from_reference=CT_REF,
        to_fund=funds.fund("HRA"),
        to_reference=HRA_REF,
        amount_pence=1_000,
        actor="o",
        reason="r",
    )
    payment.refund(amount_pence=500, fund_code="CT", reference=CT_REF, actor="o", reason="r")
    payment.reverse(kind=ReversalKind.RETURNED_CHEQUE, actor="o", reason="r")
    transfer, refund, reversal = payment.pending_events[2:]
    assert accounts(transfer) == {f"income:CT:{CT_REF}": 1_000, f"income:HRA:{HRA_REF}": -1_000}
    assert accounts(refund) == {f"income:CT:{CT_REF}": 500, "refunds:cheque": -500}
    assert accounts(reversal) == {
        f"income:CT:{CT_REF}": 8_500,
        f"income:HRA:{HRA_REF}": 1_000,
        "reversals:cheque": -9_500,
    }


def test_events_without_money_post_nothing() -> None:
    payment = receive()
    payment.note("called the payer", actor="o")
    assert postings_for(payment.pending_events[-1]) == ()
    assert all(postings_for(e) == () for e in chart().collect_events())


def test_an_event_without_a_posting_rule_is_refused() -> None:
    with pytest.raises(TypeError, match="no posting rule"):
        postings_for(object())


def test_unbalanced_postings_raise(monkeypatch) -> None:
    import domain.postings as postings

    payment = receive(reference="zzz")
    monkeypatch.setattr(
        postings,
        "_postings",
        lambda event: [postings.Posting("cash:x", 1, postings.Movement.RECEIPT)],
    )
    with pytest.raises(UnbalancedPostings, match="out of balance"):
        postings.postings_for(payment.pending_events[0])
