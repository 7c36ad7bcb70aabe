"""Replay as a pure function of events: hand-worked dates, bitemporal cases, and a property
against an independent model of where the money is. No database."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import InvalidRequest, LedgerError
from domain.funds import FundChart
from domain.payment import AllocationRequest, Channel, Payment, ReversalKind
from projections.replay import replay_balances
from tests.domain.helpers import CT_REF, HRA_REF, SUN_REF, chart

ACTOR = "officer:test"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def received(funds: FundChart, amount: int, reference: str, when: datetime) -> Payment:
    match = funds.match(reference, None)
    return Payment.receive(
        channel=Channel.CHEQUE,
        amount_pence=amount,
        received_at=when,
        reference=reference,
        fund_hint=None,
        external_id=None,
        match=match,
        fund=funds.funds[match.fund_code] if match.fund_code else None,
        actor=ACTOR,
    )


def recorded(events: list, when: datetime) -> list:
    """The same events as if the ledger had recorded them at `when`."""
    return [dataclasses.replace(event, timestamp=when) for event in events]


@pytest.fixture
def story() -> list[tuple[int, object]]:
    """Payment A: £100 council tax on 31 March, £40 moved to rents on 1 April (recorded at
    the time). Payment B: £120 cheque without a reference, taken on 30 March but keyed on
    2 April; £60 allocated to sundry debtors (20% VAT) on 2 April, £20 refunded on 3 April."""
    funds = chart()
    a = received(funds, 10_000, CT_REF, at("2026-03-31T10:00:00"))
    a_events = recorded(a.collect_events(), at("2026-03-31T10:05:00"))
    a.transfer(
        from_fund_code="CT",
        from_reference=CT_REF,
        to_fund=funds.fund("HRA"),
        to_reference=HRA_REF,
        amount_pence=4_000,
        actor=ACTOR,
        reason="paid the wrong account",
        effective_at=at("2026-04-01T12:00:00"),
    )
    a_events += recorded(a.collect_events(), at("2026-04-01T12:05:00"))
    b = received(funds, 12_000, "", at("2026-03-30T12:00:00"))
    b_events = recorded(b.collect_events(), at("2026-04-02T09:00:00"))
    b.allocate(
        [(funds.fund("SUN"), AllocationRequest("SUN", SUN_REF, 6_000))],
        actor=ACTOR,
        reason="remittance advice",
        effective_at=at("2026-04-02T10:00:00"),
    )
    b.refund(
        amount_pence=2_000, actor=ACTOR, reason="overpaid", effective_at=at("2026-04-03T10:00:00")
    )
    b_events += recorded(b.collect_events(), at("2026-04-03T11:00:00"))
    return list(enumerate([*a_events, *b_events], start=1))


END_OF = {
    "29 March": at("2026-03-29T22:59:59"),  # UK summer time began on 29 March 2026
    "31 March": at("2026-03-31T22:59:59"),
    "1 April": at("2026-04-01T22:59:59"),
    "2 April": at("2026-04-02T22:59:59"),
    "3 April": at("2026-04-03T22:59:59"),
}


@pytest.mark.parametrize(
    ("day", "funds", "suspense"),
    [
        ("29 March", {}, 0),
        ("31 March", {"CT": 10_000}, 12_000),
        ("1 April", {"CT": 6_000, "HRA": 4_000}, 12_000),
        ("2 April", {"CT": 6_000, "HRA": 4_000, "SUN": 6_000}, 6_000),
        ("3 April", {"CT": 6_000, "HRA": 4_000, "SUN": 6_000}, 4_000),
    ],
)
def test_balances_as_at_the_end_of_each_day(story, day, funds, suspense) -> None:
    result = replay_balances(story, as_at=END_OF[day])
    assert result.funds == funds
    assert result.suspense_pence == suspense
    assert result.trial_balance_pence == 0
    assert result.events_read == len(story) and result.last_position == len(story)


def test_vat_is_part_of_the_fund_balance_and_shown_apart(story) -> None:
    result = replay_balances(story, as_at=END_OF["3 April"])
    assert result.vat_pence_by_fund["SUN"] == 1_000  # 20% VAT within £60 gross
    assert result.accounts[f"income:SUN:{SUN_REF}"] == -5_000
    assert result.accounts["vat:output"] == -1_000
    assert result.accounts["refunds:cheque"] == -2_000
    assert result.accounts["cash:cheque"] == 22_000


def test_a_receipt_keyed_later_counts_only_once_it_was_known(story) -> None:
    """Taken on 30 March, keyed on 2 April: as at 31 March it is in suspense only for
    what we knew after 2 April."""
    as_known_on_1_april = replay_balances(
        story, as_at=END_OF["31 March"], known_at=at("2026-04-01T17:00:00")
    )
    as_known_on_5_april = replay_balances(
        story, as_at=END_OF["31 March"], known_at=at("2026-04-05T17:00:00")
    )
    assert as_known_on_1_april.suspense_pence == 0
    assert as_known_on_1_april.funds == {"CT": 10_000}
    assert as_known_on_5_april.suspense_pence == 12_000
    assert as_known_on_5_april.funds == {"CT": 10_000}
    assert as_known_on_1_april.events_counted < as_known_on_5_april.events_counted


def test_known_at_before_a_movement_was_recorded_leaves_it_out(story) -> None:
    """The transfer took effect on 1 April at 12:00 and was recorded at 12:05."""
    before = replay_balances(story, as_at=END_OF["1 April"], known_at=at("2026-04-01T12:04:59"))
    after = replay_balances(story, as_at=END_OF["1 April"], known_at=at("2026-04-01T12:05:00"))
    assert before.funds == {"CT": 10_000}
    assert after.funds == {"CT": 6_000, "HRA": 4_000}


def test_one_fund(story) -> None:
    result = replay_balances(story, as_at=END_OF["3 April"], fund_code="sun")
    assert result.fund_code == "SUN"
    assert result.funds == {"SUN": 6_000}
    assert result.vat_pence_by_fund == {"SUN": 1_000}
    assert result.accounts == {f"income:SUN:{SUN_REF}": -5_000, "vat:output": -1_000}
    assert result.suspense_pence == 4_000  # suspense belongs to no fund: the whole ledger's
    assert replay_balances(story, as_at=END_OF["3 April"], fund_code="NNDR").funds == {"NNDR": 0}


def test_times_must_carry_a_zone(story) -> None:
    with pytest.raises(InvalidRequest, match="time zone"):
        replay_balances(story, as_at=datetime(2026, 3, 31))
    with pytest.raises(InvalidRequest, match="known_at"):
        replay_balances(story, as_at=END_OF["3 April"], known_at=datetime(2026, 4, 5))


def test_plain_values_for_json(story) -> None:
    result = replay_balances(story, as_at=END_OF["2 April"], known_at=at("2026-04-05T00:00:00"))
    assert result.to_dict() == {
        "as_at": "2026-04-02T22:59:59+00:00",
        "known_at": "2026-04-05T00:00:00+00:00",
        "fund_code": None,
        "funds": {"CT": 6_000, "HRA": 4_000, "SUN": 6_000},
        "vat_pence_by_fund": {"SUN": 1_000},
        "suspense_pence": 6_000,
        "events_counted": 5,
        "events_read": 6,
        "last_position": 6,
    }


# ---- against an independent model ---------------------------------------------------------

OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["allocate", "transfer", "refund", "reverse"]),
        st.integers(0, 2),  # which payment
        st.integers(1, 30_000),  # pence
        st.integers(0, 24 * 5),  # hours after the payment's previous movement
        st.sampled_from([("CT", CT_REF), ("SUN", SUN_REF), ("HRA", HRA_REF)]),
    ),
    max_size=20,
)


def _where(payment: Payment) -> tuple[dict[str, int], dict[str, int], int]:
    """Gross and VAT per fund, and suspense, read from the aggregate's state (no postings)."""
    gross: dict[str, int] = defaultdict(int)
    vat: dict[str, int] = defaultdict(int)
    for line in payment.lines.values():
        gross[line.fund_code] += line.amount_pence
        vat[line.fund_code] += line.vat_pence
    return gross, vat, payment.unallocated_pence


@settings(max_examples=60, deadline=None)
@given(OPERATIONS, st.lists(st.integers(-24, 24 * 30), min_size=1, max_size=6))
def test_replay_agrees_with_a_model_of_the_payments(operations, cuts_hours) -> None:
    """Whatever happens and whenever, replay as at any moment equals the sum of the changes
    in the payments' own state that took effect by then."""
    funds = chart()
    start = at("2026-03-30T09:00:00")
    payments = [received(funds, 20_000 + i, "", start + timedelta(days=i)) for i in range(3)]
    latest = [p.received_at for p in payments]
    changes: list[tuple[datetime, str, str, int]] = [
        (p.received_at, "suspense", "", p.amount_pence) for p in payments
    ]
    events = [e for p in payments for e in p.collect_events()]
    for kind, index, pence, hours, (fund, reference) in operations:
        payment = payments[index]
        when = latest[index] + timedelta(hours=hours)
        before = _where(payment)
        try:
            if kind == "allocate":
                payment.allocate(
                    [(funds.fund(fund), AllocationRequest(fund, reference, pence))],
                    actor=ACTOR,
                    reason="advice",
                    effective_at=when,
                )
            elif kind == "transfer":
                source = max(payment.lines_with_money(), key=lambda line: line.amount_pence)
                payment.transfer(
                    from_fund_code=source.fund_code,
                    from_reference=source.reference,
                    to_fund=funds.fund(fund),
                    to_reference=reference,
                    amount_pence=pence,
                    actor=ACTOR,
                    reason="moved",
                    effective_at=when,
                )
            elif kind == "refund":
                payment.refund(
                    amount_pence=pence, actor=ACTOR, reason="overpaid", effective_at=when
                )
            else:
                payment.reverse(
                    kind=ReversalKind.CHARGEBACK, actor=ACTOR, reason="lost", effective_at=when
                )
        except (LedgerError, ValueError):
            continue
        after = _where(payment)
        for code in set(before[0]) | set(after[0]):
            changes.append((when, "fund", code, after[0][code] - before[0][code]))
            changes.append((when, "vat", code, after[1][code] - before[1][code]))
        changes.append((when, "suspense", "", after[2] - before[2]))
        latest[index] = when
        events += payment.collect_events()
    positioned = list(enumerate(events, start=1))
    for hours in cuts_hours:
        cut = start + timedelta(hours=hours)
        expected: dict[tuple[str, str], int] = defaultdict(int)
        for when, what, code, delta in changes:
            if when <= cut:
                expected[(what, code)] += delta
        result = replay_balances(positioned, as_at=cut)
        assert {k: v for k, v in result.funds.items() if v} == {
            code: v for (what, code), v in expected.items() if what == "fund" and v
        }
        assert {k: v for k, v in result.vat_pence_by_fund.items() if v} == {
            code: v for (what, code), v in expected.items() if what == "vat" and v
        }
        assert result.suspense_pence == expected[("suspense", "")]
        assert result.trial_balance_pence == 0
