"""Card-provider money (GOV.UK Pay): clearing, fees, payouts and disputes, without a database."""

from __future__ import annotations

from collections import defaultdict

import pytest

from domain.errors import InvalidRequest, NothingToReverse
from domain.gl_export import PostingRow, journal_lines
from domain.payment import Channel, ClearingItem, DisputeStatus, ReversalKind
from domain.postings import postings_for
from tests.domain.helpers import CT_REF, NOW, receive


def balances(events) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for event in events:
        for posting in postings_for(event):
            totals[posting.account] += posting.amount_pence
    return {account: pence for account, pence in totals.items() if pence}


def card_payment(amount_pence: int = 10_000):
    return receive(amount_pence=amount_pence, reference=CT_REF, channel=Channel.GOVUK_PAY)


def test_a_fee_is_an_expense_out_of_clearing() -> None:
    payment = card_payment()
    payment.charge_fee(17, kind=ClearingItem.CARD_FEE, actor="o", reason="card fee")
    fee = payment.pending_events[-1]
    assert {p.account: p.amount_pence for p in postings_for(fee)} == {
        "card_fees:govuk_pay": 17,
        "clearing:govuk_pay": -17,
    }
    assert payment.fees_pence == 17


def test_a_payout_moves_the_net_to_the_bank_and_closes_what_it_deducted() -> None:
    payment = card_payment()
    payment.charge_fee(20, kind=ClearingItem.CARD_FEE, actor="o", reason="card fee")
    payment.refund(amount_pence=3_000, actor="o", reason="overpaid")
    payment.settle(None, payout="statement line 1", actor="o", reason="payout")
    totals = balances(payment.pending_events)
    assert totals["bank"] == 10_000 - 20 - 3_000
    assert "clearing:govuk_pay" not in totals and "refunds:govuk_pay" not in totals
    assert totals["card_fees:govuk_pay"] == 20
    assert payment.clearing == {}


def test_a_payout_of_one_day_leaves_the_other_days_in_clearing() -> None:
    payment = card_payment()
    payment.settle({"1999-01-01"}, payout="line 1", actor="o", reason="payout")
    assert not [e for e in payment.pending_events if type(e).__name__ == "Settled"]
    payment.settle({payment.settles_on}, payout="line 1", actor="o", reason="payout")
    assert balances(payment.pending_events)["bank"] == 10_000


def test_other_channels_have_no_fees_payouts_or_disputes() -> None:
    payment = receive(reference=CT_REF, channel=Channel.CHEQUE)
    with pytest.raises(InvalidRequest):
        payment.charge_fee(10, kind=ClearingItem.CARD_FEE, actor="o", reason="fee")
    with pytest.raises(InvalidRequest):
        payment.open_dispute("d1", 100, actor="o", reason="fraud", at=NOW)


def test_a_lost_dispute_is_a_reversal_plus_a_fee_and_a_won_one_moves_nothing() -> None:
    lost, won = card_payment(), card_payment(5_000)
    for payment in (lost, won):
        payment.open_dispute("d1", payment.amount_pence, actor="o", reason="fraudulent", at=NOW)
        payment.open_dispute("d1", payment.amount_pence, actor="o", reason="again", at=NOW)
        assert payment.disputed_pence == payment.amount_pence
    assert won.move_dispute("d1", DisputeStatus.WON, actor="o", reason="won")
    assert not won.move_dispute("d1", DisputeStatus.LOST, actor="o", reason="late")
    assert lost.move_dispute("d1", DisputeStatus.LOST, actor="o", reason="lost")
    lost.reverse(kind=ReversalKind.CHARGEBACK, actor="o", reason="dispute lost")
    lost.charge_fee(1_500, kind=ClearingItem.DISPUTE_FEE, actor="o", reason="dispute fee")
    assert won.disputed_pence == lost.disputed_pence == 0
    assert balances(won.pending_events) == {
        "clearing:govuk_pay": 5_000,
        f"income:CT:{CT_REF}": -5_000,
    }
    totals = balances(lost.pending_events)
    assert totals == {
        "clearing:govuk_pay": 10_000 - 1_500,
        "reversals:govuk_pay": -10_000,
        "dispute_fees:govuk_pay": 1_500,
    }
    lost.settle(None, payout="line 9", actor="o", reason="payout")
    assert balances(lost.pending_events) == {"bank": -1_500, "dispute_fees:govuk_pay": 1_500}


def test_card_money_maps_to_control_codes_in_the_gl_journal() -> None:
    payment = card_payment()
    payment.charge_fee(20, kind=ClearingItem.CARD_FEE, actor="o", reason="card fee")
    payment.settle(None, payout="line 1", actor="o", reason="payout")
    day = NOW.date()
    rows = [
        PostingRow(p.account, p.fund_code, "govuk_pay", p.amount_pence, day)
        for event in payment.pending_events
        for p in postings_for(event)
    ]
    lines = journal_lines(day, rows, {"CT": ("R1010", "F1000")}, {"clearing:govuk_pay": "1150"})
    by_role = {(line.account_role, line.gl_code, line.channel): line.amount_pence for line in lines}
    assert by_role == {
        ("income", "R1010", ""): -10_000,
        ("card_fees", "CARD-FEES", "govuk_pay"): 20,
        ("bank", "BANK", ""): 9_980,
    }
    assert sum(line.amount_pence for line in lines) == 0


def test_an_undone_payout_puts_what_it_settled_back_in_clearing() -> None:
    payment = card_payment()
    payment.charge_fee(20, kind=ClearingItem.CARD_FEE, actor="o", reason="card fee")
    payment.refund(amount_pence=3_000, actor="o", reason="overpaid")
    held = dict(payment.clearing)
    before = balances(payment.pending_events)
    payment.settle(None, payout="s.xml line 1", actor="o", reason="payout")
    payment.undo_settlement("s.xml line 2", None, actor="o", reason="not that line")
    assert type(payment.pending_events[-1]).__name__ == "Settled"  # nothing to undo
    payment.undo_settlement("s.xml line 1", None, actor="o", reason="wrong payout")
    undone = payment.pending_events[-1]
    assert type(undone).__name__ == "SettlementUndone"
    assert balances(payment.pending_events) == before and payment.clearing == held
    payment.settle(None, payout="r.xml line 4", actor="o", reason="the right payout")
    assert balances(payment.pending_events)["bank"] == 10_000 - 20 - 3_000


def test_a_reversal_of_suspense_money_is_undone_back_into_suspense() -> None:
    payment = receive(amount_pence=700, reference="NOSUCH", channel=Channel.BANK_TRANSFER)
    before = balances(payment.pending_events)
    payment.reverse(kind=ReversalKind.COUNTED_TWICE, actor="o", reason="counted twice")
    with pytest.raises(NothingToReverse, match="not reversed as chargeback"):
        payment.undo_reversal(kind=ReversalKind.CHARGEBACK, actor="o", reason="x")
    payment.undo_reversal(kind=ReversalKind.COUNTED_TWICE, actor="o", reason="wrong link")
    undone = payment.pending_events[-1]
    assert {p.account: p.amount_pence for p in postings_for(undone)} == {
        "suspense": -700,
        "reversals:bank_transfer": 700,
    }
    assert balances(payment.pending_events) == before
    assert (payment.status.value, payment.unallocated_pence, payment.reversed_pence) == (
        "suspense",
        700,
        0,
    )
    payment.check_invariant()
    with pytest.raises(NothingToReverse):
        payment.undo_reversal(kind=ReversalKind.COUNTED_TWICE, actor="o", reason="again")


def test_an_allocated_or_card_payments_reversal_is_not_undone() -> None:
    allocated = receive(amount_pence=700, reference=CT_REF, channel=Channel.BANK_TRANSFER)
    allocated.reverse(kind=ReversalKind.COUNTED_TWICE, actor="o", reason="counted twice")
    with pytest.raises(InvalidRequest, match="only a reversal of money in suspense"):
        allocated.undo_reversal(kind=ReversalKind.COUNTED_TWICE, actor="o", reason="x")
    card = card_payment()
    card.reverse(kind=ReversalKind.CHARGEBACK, actor="o", reason="lost")
    with pytest.raises(InvalidRequest, match="only a reversal of money in suspense"):
        card.undo_reversal(kind=ReversalKind.CHARGEBACK, actor="o", reason="x")
