from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.allocation_lines import AllocationLine
from domain.errors import (
    AllocationExceedsUnallocated,
    AllocationNotFound,
    CardNumberRejected,
    IdempotencyKeyReused,
    InvalidEffectiveDate,
    InvalidReference,
    InvalidRequest,
    NothingToReverse,
    PaymentAlreadyReversed,
    ReasonRequired,
    RefundExceedsRemaining,
    TransferExceedsAllocation,
)
from domain.payment import (
    AllocationRequest,
    Channel,
    Payment,
    PaymentStatus,
    ReversalKind,
    allocated_line,
)
from domain.postings import postings_for
from tests.domain.helpers import (
    CT_REF,
    CT_REF_2,
    HRA_REF,
    NOW,
    SUN_REF,
    chart,
    receive,
    references_unfolded,
)

FUNDS = chart()
CT = FUNDS.fund("CT")
SUN = FUNDS.fund("SUN")
HRA = FUNDS.fund("HRA")


WIDE = "１２３４５６７８"  # noqa: RUF001 - full-width digits, on purpose


def _recorded_full_width(monkeypatch) -> tuple[Payment, object]:
    """£100 to CT WIDE (a full-width 12345678) as the ledger recorded it before 2026-12-01
    (unfolded, the fund's pattern \\d taking full-width digits), and its chart."""
    from dataclasses import replace as changed

    from domain.funds import FundChart
    from domain.references import ReferenceRule
    from domain.sample_chart import COUNCIL_TAX

    funds = FundChart.open(actor="test")
    funds.add_fund(changed(COUNCIL_TAX, reference_rule=ReferenceRule(8, 8, r"\d{8}")), actor="test")
    with references_unfolded(monkeypatch):
        return receive(reference=WIDE, fund_hint="CT", funds=funds), funds


def allocate(payment: Payment, *lines, key=None, fingerprint=None) -> None:
    payment.allocate(
        [(FUNDS.fund(code), AllocationRequest(code, ref, amount)) for code, ref, amount in lines],
        actor="officer:test",
        reason="remittance advice",
        idempotency_key=key,
        fingerprint=fingerprint,
    )


def test_a_matched_receipt_is_allocated_at_once() -> None:
    payment = receive(reference=CT_REF)
    assert payment.status is PaymentStatus.ALLOCATED
    assert [type(e).__name__ for e in payment.pending_events] == ["Received", "Allocated"]
    assert payment.pending_events[1].actor == "system:auto-allocation"


def test_an_unmatched_receipt_waits_in_suspense_with_its_reason() -> None:
    payment = receive(reference="12345678")
    assert payment.status is PaymentStatus.SUSPENSE
    assert payment.suspense_reason == "invalid_check_digit"
    assert payment.unallocated_pence == 10_000


def test_a_receipt_splits_across_funds_and_tracks_its_status() -> None:
    payment = receive()
    allocate(payment, ("CT", CT_REF, 3_000), ("SUN", SUN_REF, 1_200))
    assert payment.status is PaymentStatus.PART_ALLOCATED
    assert payment.unallocated_pence == 5_800
    assert payment.line("SUN", SUN_REF).vat_pence == 200
    allocate(payment, ("CT", CT_REF, 5_800))
    assert payment.status is PaymentStatus.ALLOCATED
    assert payment.line("CT", CT_REF).amount_pence == 8_800


def test_allocations_never_exceed_the_unallocated_amount() -> None:
    payment = receive()
    with pytest.raises(
        AllocationExceedsUnallocated, match="allocating £100.01 but only £100.00 of this payment"
    ):
        allocate(payment, ("CT", CT_REF, 6_000), ("CT", CT_REF_2, 4_001))
    assert len(payment.pending_events) == 1


def test_manual_allocations_need_a_valid_reference() -> None:
    with pytest.raises(InvalidReference, match="expected 8 characters"):
        allocate(receive(), ("CT", "12345678", 100))


def test_transfers_move_money_and_keep_both_halves() -> None:
    payment = receive(reference=SUN_REF)
    payment.transfer(
        from_fund_code="SUN",
        from_reference=SUN_REF,
        to_fund=HRA,
        to_reference=HRA_REF,
        amount_pence=4_000,
        actor="o",
        reason="wrong account",
    )
    event = payment.pending_events[-1]
    assert isinstance(event, Payment.Transferred)
    assert payment.line("SUN", SUN_REF).amount_pence == 6_000
    assert payment.line("HRA", HRA_REF).amount_pence == 4_000
    assert payment.line("HRA", HRA_REF).vat_pence == 0
    assert payment.line("SUN", SUN_REF).vat_pence == 1_000
    with pytest.raises(TransferExceedsAllocation):
        payment.transfer(
            from_fund_code="HRA",
            from_reference=HRA_REF,
            to_fund=CT,
            to_reference=CT_REF,
            amount_pence=4_001,
            actor="o",
            reason="x",
        )
    with pytest.raises(AllocationNotFound, match="its allocations are"):
        payment.transfer(
            from_fund_code="CT",
            from_reference=CT_REF,
            to_fund=HRA,
            to_reference=HRA_REF,
            amount_pence=1,
            actor="o",
            reason="x",
        )


def test_vat_never_drifts_over_many_partial_moves() -> None:
    payment = receive(amount_pence=10_001, reference=SUN_REF)
    for _ in range(7):
        payment.transfer(
            from_fund_code="SUN",
            from_reference=SUN_REF,
            to_fund=CT,
            to_reference=CT_REF,
            amount_pence=3,
            actor="o",
            reason="r",
        )
        payment.refund(amount_pence=1, fund_code="SUN", reference=SUN_REF, actor="o", reason="r")
    vat_posted = sum(
        p.amount_pence
        for e in payment.pending_events
        for p in postings_for(e)
        if p.account == "vat:output"
    )
    line = payment.line("SUN", SUN_REF)
    assert -vat_posted == line.vat_pence == round(line.amount_pence / 6)


def test_refunds_never_exceed_what_remains_and_need_a_reason() -> None:
    payment = receive(reference=CT_REF)
    with pytest.raises(ReasonRequired):
        payment.refund(amount_pence=100, actor="o", reason=" ")
    with pytest.raises(RefundExceedsRemaining, match="only £100.00 remains"):
        payment.refund(amount_pence=10_001, actor="o", reason="overpaid")
    payment.refund(amount_pence=10_000, actor="o", reason="overpaid")
    assert payment.status is PaymentStatus.REFUNDED
    with pytest.raises(NothingToReverse):
        payment.reverse(kind=ReversalKind.CHARGEBACK, actor="o", reason="dispute")


def test_a_split_payment_must_say_which_allocation_is_refunded() -> None:
    payment = receive()
    allocate(payment, ("CT", CT_REF, 5_000), ("CT", CT_REF_2, 5_000))
    with pytest.raises(InvalidRequest, match="say which fund and reference"):
        payment.refund(amount_pence=1, actor="o", reason="r")
    payment.refund(amount_pence=1, fund_code="CT", reference=CT_REF_2, actor="o", reason="r")
    assert payment.line("CT", CT_REF_2).amount_pence == 4_999


def test_refund_of_an_overpayment_comes_from_the_unallocated_part() -> None:
    payment = receive()
    allocate(payment, ("CT", CT_REF, 6_000))
    payment.refund(amount_pence=4_000, actor="o", reason="overpaid")
    assert payment.unallocated_pence == 0 and payment.status is PaymentStatus.ALLOCATED


def test_a_reversal_takes_back_everything_that_remains_and_freezes_the_payment() -> None:
    payment = receive(channel=Channel.CHEQUE)
    allocate(payment, ("SUN", SUN_REF, 6_000))
    payment.refund(amount_pence=1_000, fund_code="SUN", reference=SUN_REF, actor="o", reason="r")
    payment.reverse(kind=ReversalKind.RETURNED_CHEQUE, actor="o", reason="returned unpaid")
    event = payment.pending_events[-1]
    assert event.amount_pence == 9_000 and event.suspense_pence == 4_000
    assert payment.status is PaymentStatus.REVERSED
    assert payment.remaining_pence == 0
    payment.check_invariant()
    with pytest.raises(PaymentAlreadyReversed):
        payment.refund(amount_pence=1, actor="o", reason="r")
    with pytest.raises(PaymentAlreadyReversed):
        payment.reverse(kind=ReversalKind.CHARGEBACK, actor="o", reason="again")


def test_a_repeated_command_records_nothing_and_an_altered_one_is_refused() -> None:
    payment = receive()
    allocate(payment, ("CT", CT_REF, 100), key="k1", fingerprint="f1")
    allocate(payment, ("CT", CT_REF, 100), key="k1", fingerprint="f1")
    assert payment.line("CT", CT_REF).amount_pence == 100
    with pytest.raises(IdempotencyKeyReused):
        allocate(payment, ("CT", CT_REF, 200), key="k1", fingerprint="f2")


def test_card_numbers_never_enter_the_ledger() -> None:
    with pytest.raises(CardNumberRejected):
        receive(reference="4111 1111 1111 1111")
    payment = receive()
    with pytest.raises(CardNumberRejected):
        payment.note("card was 4111-1111-1111-1111", actor="o")
    payment.note("card ending 1111, first six 411111", actor="o")


def test_times_must_be_aware_and_not_before_the_receipt() -> None:
    payment = receive()
    with pytest.raises(InvalidEffectiveDate, match="before the payment was received"):
        payment.refund(amount_pence=1, actor="o", reason="r", effective_at=NOW - timedelta(days=1))
    with pytest.raises(InvalidEffectiveDate, match="time zone"):
        payment.refund(amount_pence=1, actor="o", reason="r", effective_at=NOW.replace(tzinfo=None))


def test_receipts_cannot_be_dated_in_the_future() -> None:
    funds = chart()
    with pytest.raises(InvalidEffectiveDate, match="future"):
        Payment.receive(
            channel=Channel.CASH,
            amount_pence=1,
            received_at=NOW + timedelta(hours=1),
            reference="",
            fund_hint=None,
            external_id=None,
            match=funds.match("", None),
            fund=None,
            actor="o",
            now=NOW,
        )


def test_the_same_external_payment_always_gets_the_same_id() -> None:
    first = receive(external_id="pay_123", channel=Channel.GOVUK_PAY)
    again = receive(external_id="pay_123", channel=Channel.GOVUK_PAY)
    other_channel = receive(external_id="pay_123", channel=Channel.CARD)
    assert first.id == again.id != other_channel.id


def test_refunds_reported_as_a_running_total_are_applied_once() -> None:
    payment = receive()
    allocate(payment, ("CT", CT_REF, 6_000), ("SUN", SUN_REF, 3_000))
    payment.refund_up_to(2_000, actor="integration:govuk_pay", reason="refund on GOV.UK Pay")
    assert payment.refunded_pence == 2_000 and payment.unallocated_pence == 0
    assert payment.line("CT", CT_REF).amount_pence == 5_000
    payment.refund_up_to(2_000, actor="i", reason="repeat")
    payment.refund_up_to(1_500, actor="i", reason="late, smaller total")
    assert payment.refunded_pence == 2_000
    with pytest.raises(RefundExceedsRemaining):
        payment.refund_up_to(10_001, actor="i", reason="too much")


def test_a_movement_cannot_take_effect_before_the_one_it_follows() -> None:
    payment = receive()
    payment.allocate(
        [(FUNDS.fund("CT"), AllocationRequest("CT", CT_REF, 5_000))],
        actor="o",
        reason="r",
        effective_at=NOW + timedelta(days=9),
    )
    with pytest.raises(InvalidEffectiveDate, match="previous movement"):
        payment.refund(
            amount_pence=1,
            fund_code="CT",
            reference=CT_REF,
            actor="o",
            reason="r",
            effective_at=NOW + timedelta(days=4),
        )
    payment.refund(
        amount_pence=1,
        fund_code="CT",
        reference=CT_REF,
        actor="o",
        reason="r",
        effective_at=NOW + timedelta(days=9),
    )


def test_provider_details_are_kept_and_a_repeated_report_records_nothing() -> None:
    payment = receive(5_000, CT_REF, channel=Channel.GOVUK_PAY)
    assert payment.provider_details is None
    payment.record_provider_details({"fee_pence": 17, "settled_date": None}, actor="pay")
    payment.record_provider_details({"fee_pence": 17}, actor="pay")
    payment.record_provider_details({"fee_pence": 17, "captured_date": "2024-11-04"}, actor="pay")
    reported = [e for e in payment.pending_events if isinstance(e, Payment.ProviderReported)]
    assert [e.details for e in reported] == [{"fee_pence": 17}, {"captured_date": "2024-11-04"}]
    assert all(postings_for(event) == () for event in reported)
    assert payment.provider_details == {"fee_pence": 17, "captured_date": "2024-11-04"}


def test_a_receipt_stored_before_provider_details_existed_still_loads() -> None:
    received = receive(5_000, CT_REF).pending_events[0]
    del received.__dict__["provider_details"]  # as an old stored event reads back
    assert received.mutate(None).provider_details is None


def test_a_card_payment_cancelled_before_capture_is_reversed_as_cancelled() -> None:
    payment = receive(12_000, CT_REF, channel=Channel.GOVUK_PAY)
    payment.reverse(kind=ReversalKind.parse("cancelled"), actor="pay", reason="P0040")
    assert payment.status is PaymentStatus.REVERSED and payment.reversal_kind == "cancelled"
    payment.check_invariant()


def test_an_allocation_recorded_before_full_width_folding_replays_and_is_found(
    monkeypatch,
) -> None:
    """A fund whose pattern is \\d took full-width digits as they came, before 2026-12-01.
    Folding them now must not change what the stored events mean: a replay keeps the
    reference as recorded, and the officer who types it as it was still finds the line."""
    recorded, _ = _recorded_full_width(monkeypatch)
    events = recorded.collect_events()
    replayed = None
    for event in events:
        replayed = event.mutate(replayed)
    assert [line.reference for line in replayed.lines_with_money()] == [WIDE]
    assert replayed.line("CT", WIDE).amount_pence == 10_000
    assert replayed.line("ct", WIDE.replace("５", " ５")).amount_pence == 10_000  # noqa: RUF001
    assert replayed.line("CT", "12345678").amount_pence == 10_000  # typed in ASCII now
    assert replayed.line("CT", "1234\u200b5678").amount_pence == 10_000


def test_money_left_under_a_reference_recorded_unfolded_is_reached_typed_in_ascii(
    monkeypatch,
) -> None:
    """One account (docs/read-model.md, `reference_forms`) may hold a line recorded
    full-width before 2026-12-01 and an ASCII line made since. When the ASCII line is
    emptied, the money still on the old line is reached as the officer types the reference."""
    payment, funds = _recorded_full_width(monkeypatch)
    moves = [("CT", "12345678", SUN, SUN_REF), ("SUN", SUN_REF, funds.fund("CT"), "12345678")]
    moves.append(("CT", "12345678", SUN, SUN_REF))  # empties the ASCII line the second made
    for from_fund, from_reference, to_fund, to_reference in moves:
        payment.transfer(
            from_fund_code=from_fund,
            from_reference=from_reference,
            to_fund=to_fund,
            to_reference=to_reference,
            amount_pence=4_000,
            actor="officer",
            reason="paid the wrong account",
        )
    assert [(x.reference, x.amount_pence) for x in payment.lines_with_money()] == [
        (WIDE, 6_000),
        (SUN_REF, 4_000),
    ]
    assert payment.line("CT", "12345678").amount_pence == 6_000


@pytest.mark.parametrize("typed", ["12345678", "１２３４５６７８"])  # noqa: RUF001 - full-width
def test_a_transfer_from_a_reference_recorded_unfolded_to_its_own_folded_form_is_refused(
    monkeypatch, typed
) -> None:
    """A reference recorded full-width before 2026-12-01 and the same reference typed now
    are one account (`reference_forms`): moving money between them is no transfer at all,
    and would show a movement of nothing on the account page."""
    payment, funds = _recorded_full_width(monkeypatch)
    with pytest.raises(InvalidRequest, match="different fund or reference"):
        payment.transfer(
            from_fund_code="CT",
            from_reference=WIDE,
            to_fund=funds.fund("CT"),
            to_reference=typed,
            amount_pence=4_000,
            actor="officer",
            reason="paid the wrong account",
        )
    assert [(x.reference, x.amount_pence) for x in payment.lines_with_money()] == [(WIDE, 10_000)]


@settings(max_examples=200, deadline=None)
@given(
    amount_pence=st.integers(1, 10**9),
    rate_basis_points=st.integers(0, 10_000),
    fund=st.sampled_from([CT, SUN, HRA]),
)
def test_a_new_lines_allocation_is_what_adding_to_an_empty_line_makes(
    amount_pence: int, rate_basis_points: int, fund
) -> None:
    """`allocated_line` works out a receipt's first line without making the empty line
    (#9): the same line, VAT included, as adding the money to an empty line gives."""
    fund = replace(fund, vat_rate_basis_points=rate_basis_points, vat_rates=())
    empty = AllocationLine(fund.code, "REF1")
    first = allocated_line(None, fund, "REF1", amount_pence, NOW)
    assert first == allocated_line(empty, fund, "REF1", amount_pence, NOW)
    part = empty.adding(rate_basis_points, amount_pence)
    assert (first.amount_pence, first.vat_rate_basis_points, first.vat_pence) == (
        part.amount_pence,
        part.vat_rate_basis_points,
        part.vat_pence,
    )
