"""The cash-up rules and its postings, with no database."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.cashups import (
    DENOMINATIONS_PENCE,
    CashUp,
    Cheque,
    Count,
    compare,
    denomination_name,
)
from domain.errors import (
    CashUpAlreadyApproved,
    CashUpAwaitingDecision,
    CashUpNotAwaitingDecision,
    InvalidRequest,
    OfficeAlreadyExists,
    ReasonRequired,
    SecondPersonRequired,
)
from domain.gl_export import PostingRow, journal_lines
from domain.offices import OfficeRegister
from domain.postings import postings_for

DAY = date(2026, 3, 31)
TODAY = date(2026, 4, 1)
CHANNELS = ("cash", "cheque", "card")

pieces = st.dictionaries(
    st.sampled_from(DENOMINATIONS_PENCE), st.integers(min_value=0, max_value=5_000), max_size=12
)
cheques = st.lists(
    st.integers(min_value=1, max_value=10_000_000).map(lambda p: Cheque(p, "A Payer", "0001")),
    max_size=5,
)
recorded = st.fixed_dictionaries(
    {"cash": st.integers(0, 10**9), "cheque": st.integers(0, 10**9), "card": st.integers(0, 10**9)}
)


def submitted(count: Count, recorded_pence: dict[str, int], actor: str = "officer:a") -> CashUp:
    cashup = CashUp.start("CIVIC", "T1", count.business_date, actor)
    cashup.submit(count, compare(count, recorded_pence, CHANNELS), actor=actor, reason="counted")
    return cashup


@given(pieces, cheques, recorded)
def test_over_short_is_counted_minus_recorded_and_approval_postings_balance(
    pieces, cheques, recorded
) -> None:
    count = Count("CIVIC", "T1", DAY, pieces, tuple(cheques), "BAG-9").checked(TODAY)
    cashup = submitted(count, recorded)
    cash_counted = sum(pence * n for pence, n in pieces.items())
    cheques_counted = sum(c.amount_pence for c in cheques)
    by_channel = {line.channel: line for line in cashup.results}
    assert set(by_channel) == {"cash", "cheque"}  # card is not counted at the till
    assert by_channel["cash"].difference_pence == cash_counted - recorded["cash"]
    assert by_channel["cheque"].difference_pence == cheques_counted - recorded["cheque"]
    cashup.approve(actor="supervisor:b")
    postings = postings_for(cashup.pending_events[-1])  # raises when out of balance
    assert sum(p.amount_pence for p in postings) == 0
    for channel, line in by_channel.items():
        moved = {p.account: p.amount_pence for p in postings if p.channel == channel}
        expected = (
            {}
            if not line.difference_pence
            else {
                f"cash:{channel}": line.difference_pence,
                f"over_short:{channel}": -line.difference_pence,
            }
        )
        assert moved == expected
    rows = [PostingRow(p.account, None, p.channel, p.amount_pence, DAY) for p in postings]
    lines = journal_lines(DAY, rows, {}, {"over_short": "4999"})
    assert sum(line.amount_pence for line in lines) == 0
    assert {line.gl_code for line in lines if line.account_role == "over_short"} <= {"4999"}


def test_nothing_moves_before_approval_and_a_balanced_till_moves_nothing() -> None:
    count = Count("CIVIC", "T1", DAY, {1000: 3}, (), "BAG-1").checked(TODAY)
    cashup = submitted(count, {"cash": 3000})
    assert all(postings_for(event) == () for event in cashup.pending_events)
    cashup.approve(actor="supervisor:b")
    assert postings_for(cashup.pending_events[-1]) == ()


def test_a_difference_needs_a_reason_and_the_submitter_cannot_decide() -> None:
    count = Count("CIVIC", "T1", DAY, {2000: 1}, (), "BAG-1").checked(TODAY)
    cashup = CashUp.start("CIVIC", "T1", DAY, "officer:a")
    results = compare(count, {"cash": 2050}, CHANNELS)
    with pytest.raises(ReasonRequired, match="cash short by £0.50"):
        cashup.submit(count, results, actor="officer:a")
    cashup.submit(count, results, actor="officer:a", reason="50p missing")
    with pytest.raises(CashUpAwaitingDecision):
        cashup.submit(count, results, actor="officer:a", reason="another")
    with pytest.raises(SecondPersonRequired):
        cashup.approve(actor="officer:a")
    with pytest.raises(SecondPersonRequired):
        cashup.send_back(actor="officer:a", reason="no")
    cashup.send_back(actor="supervisor:b", reason="recount")
    with pytest.raises(CashUpNotAwaitingDecision):
        cashup.approve(actor="supervisor:b")
    cashup.submit(count, results, actor="officer:c", reason="still 50p missing")
    cashup.approve(actor="supervisor:b")
    with pytest.raises(CashUpAlreadyApproved):
        cashup.submit(count, results, actor="officer:c", reason="again")
    with pytest.raises(CashUpAlreadyApproved):
        cashup.send_back(actor="supervisor:d", reason="late")


@pytest.mark.parametrize(
    ("count", "message"),
    [
        (Count("C", "T", DAY, {3: 1}, (), "B"), "3p is not a UK note or coin"),
        # The command line reads --count 3=1 as £3: named as typed, with what a count takes.
        (
            Count("C", "T", DAY, {300: 1}, (), "B"),
            "£3 is not a UK note or coin: count notes of £50, £20, £10, £5 and coins of "
            "£2, £1, 50p, 20p, 10p, 5p, 2p, 1p",
        ),
        (Count("C", "T", DAY, {250: 1}, (), "B"), "£2.50 is not a UK note or coin"),
        (Count("C", "T", DAY, {500: -1}, (), "B"), "count of £5"),
        (Count("C", "T", DAY, {}, (), " "), "bag number is required"),
        (Count("C", "T", date(2026, 4, 2), {}, (), "B"), "in the future"),
        (Count("C", "T", DAY, {}, (Cheque(0, "x"),), "B"), "cheque 1: the amount"),
        (Count("C", "T", DAY, {}, (Cheque(5, " "),), "B"), "cheque 1: the drawer"),
    ],
)
def test_a_count_that_cannot_be_a_tills_day_is_refused(count: Count, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        count.checked(TODAY)


def test_an_office_that_takes_no_cheques_lists_none() -> None:
    count = Count("C", "T", DAY, {}, (Cheque(5, "x"),), "B").checked(TODAY)
    with pytest.raises(InvalidRequest, match="does not take cheques"):
        compare(count, {}, ("cash",))


def test_denominations_are_named_as_printed() -> None:
    assert [denomination_name(p) for p in (5000, 200, 50, 1)] == ["£50", "£2", "50p", "1p"]


def test_offices_are_events_and_their_configuration_moves_no_money() -> None:
    register = OfficeRegister.open(actor="s")
    register.add_office("civic", "Civic Centre", ["card", "cash"], actor="s")
    register.add_till("CIVIC", "t1", actor="s")
    with pytest.raises(OfficeAlreadyExists):
        register.add_office("CIVIC", "Again", ["cash"], actor="s")
    with pytest.raises(InvalidRequest, match="not govuk_pay"):
        register.add_office("WEB", "Web", ["govuk_pay"], actor="s")
    assert register.office("civic").channels == ("cash", "card")
    assert register.counter("civic", "T1", "cash") == ("CIVIC", "T1")
    assert all(postings_for(event) == () for event in register.pending_events)
