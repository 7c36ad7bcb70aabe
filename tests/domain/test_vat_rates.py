"""VAT follows the rate in force at each movement's effective date, and a line that holds
money at several rates never drifts: its VAT is always the sum of its movements' VAT."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.funds import FundChart
from domain.money import vat_from_gross
from domain.payment import AllocationRequest, Payment
from domain.postings import VAT_OUTPUT, postings_for
from tests.domain.helpers import CT_REF, NOW, SUN_REF, chart, receive

SUN_REF_2 = "INV7654324"
START = NOW - timedelta(minutes=30)  # helpers.receive dates the receipt an hour before NOW


def allocate(payment: Payment, funds: FundChart, code: str, reference: str, amount: int, at):
    payment.allocate(
        [(funds.fund(code), AllocationRequest(code, reference, amount))],
        actor="officer:a",
        reason="advice",
        effective_at=at,
    )


def test_a_new_allocation_to_an_existing_line_takes_the_rate_in_force() -> None:
    funds = chart()
    payment = receive(amount_pence=24_000)
    allocate(payment, funds, "SUN", SUN_REF, 12_000, START)
    funds.amend_fund(
        "SUN", {"vat_rate_basis_points": 0}, "sup", "zero-rated", vat_rate_effective_from=NOW
    )
    allocate(payment, funds, "SUN", SUN_REF, 6_000, NOW)
    line = payment.line("SUN", SUN_REF)
    assert line.amount_pence == 18_000 and line.vat_pence == 2_000
    assert [(p.vat_rate_basis_points, p.amount_pence) for p in line.parts] == [
        (2000, 12_000),
        (0, 6_000),
    ]


def test_a_rate_change_applies_from_its_effective_date_not_from_when_it_was_made() -> None:
    funds = chart()
    funds.amend_fund(
        "SUN",
        {"vat_rate_basis_points": 0},
        "sup",
        "zero-rated from next month",
        vat_rate_effective_from=NOW + timedelta(days=1),
    )
    sun = funds.fund("SUN")
    assert sun.vat_rate_at(NOW) == 2000 and sun.vat_rate_at(NOW + timedelta(days=1)) == 0
    payment = receive(amount_pence=12_000)
    allocate(payment, funds, "SUN", SUN_REF, 12_000, NOW)
    assert payment.line("SUN", SUN_REF).vat_pence == 2_000


def test_a_move_out_of_a_mixed_line_takes_the_newest_money_first() -> None:
    funds = chart()
    payment = receive(amount_pence=24_000)
    allocate(payment, funds, "SUN", SUN_REF, 12_000, START)
    funds.amend_fund("SUN", {"vat_rate_basis_points": 0}, "sup", "0%", vat_rate_effective_from=NOW)
    allocate(payment, funds, "SUN", SUN_REF, 6_000, NOW)
    payment.refund(
        amount_pence=7_200, actor="o", reason="overpaid", fund_code="SUN", reference=SUN_REF
    )
    refunded = payment.pending_events[-1]
    assert refunded.vat_pence == 200  # 6,000 at 0% and 1,200 at 20%
    assert refunded.vat_parts == [
        {"vat_rate_basis_points": 0, "amount_pence": 6_000, "vat_pence": 0},
        {"vat_rate_basis_points": 2000, "amount_pence": 1_200, "vat_pence": 200},
    ]
    assert payment.line("SUN", SUN_REF).vat_pence == 1_800


def test_events_stored_before_lines_had_parts_mean_the_same() -> None:
    """Old Refunded and Transferred events carry no parts: a line then had one rate only."""
    funds = chart()
    payment = receive(amount_pence=10_000)
    allocate(payment, funds, "SUN", SUN_REF, 10_000, START)
    payment.refund(amount_pence=1_001, actor="o", reason="r")
    payment.transfer(
        from_fund_code="SUN",
        from_reference=SUN_REF,
        to_fund=funds.fund("SUN"),
        to_reference=SUN_REF_2,
        amount_pence=3_333,
        actor="o",
        reason="wrong invoice",
    )
    events = payment.collect_events()
    old = [
        dataclasses.replace(e, vat_parts=None)
        if isinstance(e, Payment.Refunded)
        else dataclasses.replace(e, from_vat_parts=None)
        if isinstance(e, Payment.Transferred)
        else e
        for e in events
    ]
    replayed = None
    for event in old:
        replayed = event.mutate(replayed)
    assert replayed.lines == payment.lines


def test_an_amendment_stored_without_an_effective_date_applies_from_its_time() -> None:
    funds = chart()
    funds.amend_fund("SUN", {"vat_rate_basis_points": 500}, "sup", "reduced")
    amended = funds.pending_events[-1]
    assert amended.vat_rate_effective_from is None
    sun = funds.fund("SUN")
    assert sun.vat_rate_at(amended.timestamp - timedelta(seconds=1)) == 2000
    assert sun.vat_rate_at(amended.timestamp) == 500


RATES = st.sampled_from([2000, 500, 0, 1750, 10_000])
LINES = st.sampled_from([("SUN", SUN_REF), ("SUN", SUN_REF_2), ("CT", CT_REF)])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("rate"), RATES),
        st.tuples(st.just("allocate"), LINES, st.integers(1, 5_000)),
        st.tuples(st.just("transfer"), LINES, LINES, st.integers(1, 5_000)),
        st.tuples(st.just("refund"), LINES, st.integers(1, 5_000)),
    ),
    max_size=25,
)


def _vat_moved(events) -> dict[tuple[str, str], int]:
    """Each line's VAT as its movements' postings say it (credit to vat:output)."""
    moved: dict[tuple[str, str], int] = defaultdict(int)
    for event in events:
        for posting in postings_for(event):
            if posting.account == VAT_OUTPUT:
                moved[(posting.fund_code, posting.reference)] -= posting.amount_pence
    return moved


@settings(max_examples=150, deadline=None)
@given(OPERATIONS)
def test_a_lines_vat_is_the_sum_of_its_movements_vat_across_rate_changes(operations) -> None:
    funds = chart()
    payment = receive(amount_pence=60_000)
    moment = START
    for operation in operations:
        moment += timedelta(hours=1)
        kind = operation[0]
        if kind == "rate":
            funds.amend_fund(
                "SUN",
                {"vat_rate_basis_points": operation[1]},
                "s",
                "r",
                vat_rate_effective_from=moment,
            )
            continue
        held = {(x.fund_code, x.reference): x.amount_pence for x in payment.lines_with_money()}
        if kind == "allocate":
            (code, reference), amount = operation[1], operation[2]
            if amount <= payment.unallocated_pence:
                allocate(payment, funds, code, reference, amount, moment)
                [line] = payment.pending_events[-1].lines
                assert line["vat_rate_basis_points"] == funds.fund(code).vat_rate_at(moment)
        elif kind == "transfer":
            source, target, amount = operation[1:]
            if source != target and 0 < amount <= held.get(source, 0):
                payment.transfer(
                    from_fund_code=source[0],
                    from_reference=source[1],
                    to_fund=funds.fund(target[0]),
                    to_reference=target[1],
                    amount_pence=amount,
                    actor="o",
                    reason="moved",
                    effective_at=moment,
                )
        elif kind == "refund":
            (code, reference), amount = operation[1], operation[2]
            if 0 < amount <= held.get((code, reference), 0):
                payment.refund(
                    amount_pence=amount,
                    actor="o",
                    reason="r",
                    fund_code=code,
                    reference=reference,
                    effective_at=moment,
                )
        moved = _vat_moved(payment.pending_events)
        for line in payment.lines.values():
            assert line.vat_pence == moved[(line.fund_code, line.reference)]
            assert 0 <= line.vat_pence <= line.amount_pence
            for part in line.parts:
                assert part.vat_pence == vat_from_gross(
                    part.amount_pence, part.vat_rate_basis_points
                )
    replayed = None
    for event in payment.collect_events():
        replayed = event.mutate(replayed)
    assert replayed.lines == payment.lines
