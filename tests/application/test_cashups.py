"""Offices, tills and the daily cash-up against real storage, on both backends."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import UUID

import pytest

from application.cashups import (
    SubmitCashUp,
    approve_cashup,
    cashups,
    get_cashup,
    recorded_pence,
    return_cashup,
    submit_cashup,
)
from application.ledger import CommandContext, RecordPayment
from application.offices import add_office, add_till, change_offices, offices
from application.periods import close_period
from domain.cashups import Cheque
from domain.errors import (
    CashUpAlreadyApproved,
    CashUpAwaitingDecision,
    CashUpStale,
    ChannelNotTaken,
    IdempotencyKeyReused,
    InvalidEffectiveDate,
    InvalidRequest,
    OfficeNotOpen,
    PeriodClosed,
    ReasonRequired,
    SecondPersonRequired,
    TillCashedUp,
    TillNotFound,
)
from domain.periods import uk_date
from projections.replay import replay_balances
from tests.domain.helpers import CT_REF

OFFICER = CommandContext("officer:olu")
SUPERVISOR = CommandContext("supervisor:sue")
YESTERDAY = uk_date(datetime.now(UTC)) - timedelta(days=1)


def noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


@pytest.fixture
def office(ledger):
    add_office(ledger, "civic", "Civic Centre", ["cash", "cheque", "card"], SUPERVISOR)
    add_till(ledger, "CIVIC", "t1", SUPERVISOR)
    return "CIVIC"


def take(ledger, channel: str, amount_pence: int, day: date = YESTERDAY, till: str = "T1"):
    return ledger.record_payment(
        RecordPayment(
            channel,
            amount_pence,
            CT_REF,
            received_at=noon(day),
            office_code="CIVIC",
            till_code=till,
        ),
        OFFICER,
    )


def count(day: date = YESTERDAY, reason: str = "", cheques=(), **pieces: int) -> SubmitCashUp:
    """A count of notes and coins given as p<pence>=<how many>, and cheques."""
    return SubmitCashUp(
        "CIVIC", "T1", day, {int(k[1:]): v for k, v in pieces.items()}, cheques, "BAG-1", reason
    )


CHEQUE = (Cheque(2500, "A Payer", "000123"),)


def test_offices_and_tills_are_configured_data(ledger, office) -> None:
    add_till(ledger, "CIVIC", "T2", SUPERVISOR, name="Front desk")
    change_offices(ledger, lambda r: r.rename_office("CIVIC", "Civic Hall", actor="s"))
    change_offices(ledger, lambda r: r.close_till("CIVIC", "T2", actor="s", reason="removed"))
    [civic] = offices(ledger)
    assert civic["name"] == "Civic Hall" and civic["channels"] == ["cash", "cheque", "card"]
    assert [(t["code"], t["open"]) for t in civic["tills"]] == [("T1", True), ("T2", False)]
    with pytest.raises(OfficeNotOpen):
        take(ledger, "cash", 100, till="T2")
    with pytest.raises(TillNotFound):
        take(ledger, "cash", 100, till="T9")
    with pytest.raises(ChannelNotTaken):
        take(ledger, "govuk_pay", 100)


def test_a_receipt_keeps_its_office_and_till(ledger, office) -> None:
    outcome = take(ledger, "cash", 1234)
    assert (outcome.payment["office_code"], outcome.payment["till_code"]) == ("CIVIC", "T1")
    plain = ledger.record_payment(RecordPayment("cash", 500, CT_REF), OFFICER)
    assert plain.payment["office_code"] is None
    with pytest.raises(InvalidRequest, match="both its office and its till"):
        ledger.record_payment(RecordPayment("cash", 5, CT_REF, office_code="CIVIC"), OFFICER)


def test_submit_compare_and_approve_moves_the_difference_to_over_short(ledger, office) -> None:
    take(ledger, "cash", 7000)
    take(ledger, "cheque", 2500)
    take(ledger, "cash", 999, day=YESTERDAY - timedelta(days=1))  # another day
    take(ledger, "card", 4000)  # not counted
    assert recorded_pence(ledger, "CIVIC", "T1", YESTERDAY) == {
        "cash": 7000,
        "cheque": 2500,
        "card": 4000,
    }
    with pytest.raises(ReasonRequired, match="cash short by £0.50"):
        submit_cashup(ledger, count(cheques=CHEQUE, p5000=1, p1000=1, p50=19), OFFICER)
    submitted = submit_cashup(
        ledger, count(reason="coin missing", cheques=CHEQUE, p5000=1, p1000=1, p50=19), OFFICER
    )
    assert submitted["status"] == "submitted" and submitted["recorded"]
    assert submitted["lines"] == [
        {"channel": "cash", "counted_pence": 6950, "recorded_pence": 7000, "difference_pence": -50},
        {"channel": "cheque", "counted_pence": 2500, "recorded_pence": 2500, "difference_pence": 0},
    ]
    assert [c["cashup_id"] for c in cashups(ledger, "submitted")] == [submitted["cashup_id"]]
    cashup = submitted["cashup_id"]
    with pytest.raises(SecondPersonRequired):
        approve_cashup(ledger, UUID(cashup), OFFICER)
    approved = approve_cashup(ledger, UUID(cashup), SUPERVISOR)
    assert approved["status"] == "approved" and approved["decided_by"] == SUPERVISOR.actor
    balances = replay_balances(ledger.read_events(), as_at=datetime.now(UTC))
    assert balances.accounts["over_short:cash"] == 50
    assert balances.accounts["cash:cash"] == 7000 + 999 - 50
    assert balances.trial_balance_pence == 0
    with pytest.raises(CashUpAlreadyApproved):
        submit_cashup(ledger, count(reason="again", p5000=1, p1000=1, p50=19), OFFICER)
    assert get_cashup(ledger, UUID(cashup))["status"] == "approved"


def test_returned_cash_ups_are_submitted_again_and_submits_are_idempotent(ledger, office) -> None:
    take(ledger, "cash", 2000)
    keyed = CommandContext(OFFICER.actor, idempotency_key="k1")
    first = submit_cashup(ledger, count(p1000=1, reason="lost"), keyed)
    again = submit_cashup(ledger, count(p1000=1, reason="lost"), keyed)
    assert again["recorded"] is False and again["version"] == first["version"]
    assert submit_cashup(ledger, count(p1000=1, reason="lost"), OFFICER)["recorded"] is False
    with pytest.raises(IdempotencyKeyReused):
        submit_cashup(ledger, count(p1000=2), keyed)
    with pytest.raises(CashUpAwaitingDecision):
        submit_cashup(ledger, count(p1000=2), OFFICER)
    cashup = UUID(first["cashup_id"])
    with pytest.raises(ReasonRequired):
        return_cashup(ledger, cashup, SUPERVISOR, " ")
    returned = return_cashup(ledger, cashup, SUPERVISOR, "count it again")
    assert returned["status"] == "returned"
    resubmitted = submit_cashup(ledger, count(p1000=2), OFFICER)
    assert resubmitted["status"] == "submitted" and resubmitted["lines"][0]["difference_pence"] == 0
    assert [step["action"] for step in resubmitted["history"]] == [
        "submitted",
        "returned",
        "submitted",
    ]


def test_an_approval_after_new_receipts_is_refused_as_stale(ledger, office) -> None:
    take(ledger, "cash", 1000)
    submitted = submit_cashup(ledger, count(p1000=1), OFFICER)
    take(ledger, "cash", 500)
    with pytest.raises(CashUpStale, match="return it"):
        approve_cashup(ledger, UUID(submitted["cashup_id"]), SUPERVISOR)


def test_an_approved_till_day_takes_no_more_receipts(ledger, office) -> None:
    take(ledger, "cash", 1000)
    submitted = submit_cashup(ledger, count(p1000=1), OFFICER)
    approve_cashup(ledger, UUID(submitted["cashup_id"]), SUPERVISOR)
    before = ledger.max_position()
    with pytest.raises(TillCashedUp, match=f"till T1 at CIVIC was cashed up for {YESTERDAY}"):
        take(ledger, "cash", 500)
    assert ledger.max_position() == before
    # Another till, another day, and money taken away from the counters still go in.
    add_till(ledger, "CIVIC", "T2", SUPERVISOR)
    assert take(ledger, "cash", 500, till="T2").recorded
    assert take(ledger, "cash", 500, day=YESTERDAY - timedelta(days=1)).recorded
    assert ledger.record_payment(RecordPayment("cash", 500, CT_REF), OFFICER).recorded
    # A date outside the business range is refused as such before any till is looked up.
    with pytest.raises(InvalidEffectiveDate):
        take(ledger, "cash", 500, day=date(1, 1, 1))


def test_a_closed_day_refuses_a_cash_up(ledger, office) -> None:
    take(ledger, "cash", 1000)  # the till, added today, was in use yesterday
    close_period(ledger, "day", YESTERDAY, SUPERVISOR, "banked")
    before = ledger.max_position()
    with pytest.raises(PeriodClosed, match="a cash-up dated"):
        submit_cashup(ledger, count(p1000=1, reason="x"), OFFICER)
    assert ledger.max_position() == before  # nothing partial stored
    with pytest.raises(InvalidRequest, match="in the future"):
        submit_cashup(ledger, count(day=YESTERDAY + timedelta(days=2), p1000=1), OFFICER)


def test_a_day_before_the_till_was_added_is_refused_unless_it_took_money(ledger, office) -> None:
    """A cash-up for 31 March on a till added today was accepted: a till counts only a day
    it was in use (it may have receipts recorded for days before it was added)."""
    before = ledger.max_position()
    long_ago = date(YESTERDAY.year - 1, 3, 31)
    with pytest.raises(
        InvalidRequest,
        match=rf"is before till T1 of office CIVIC was added \({YESTERDAY + timedelta(days=1)}\)",
    ):
        submit_cashup(ledger, count(day=long_ago, p1000=1), OFFICER)
    assert ledger.max_position() == before  # nothing stored
    assert take(ledger, "cash", 1000, day=long_ago).recorded
    assert submit_cashup(ledger, count(day=long_ago, p1000=1), OFFICER)["status"] == "submitted"


def test_a_day_cannot_close_while_a_cash_up_of_it_waits_for_a_decision(ledger, office) -> None:
    # Found in the day-close walkthrough: a day closed while its till's cash-up waited for
    # approval left that cash-up stuck for ever (its approval, dated the day counted, is
    # refused as period_closed, and a new count for a closed day too).
    take(ledger, "cash", 1000)
    submitted = submit_cashup(ledger, count(p500=1, reason="£5 short"), OFFICER)
    before = ledger.max_position()
    with pytest.raises(
        CashUpAwaitingDecision,
        match=f"the day {YESTERDAY} cannot be closed while a cash-up of it waits for a "
        f"decision: CIVIC T1 on {YESTERDAY} \\(cash-up {submitted['cashup_id']}\\)",
    ):
        close_period(ledger, "day", YESTERDAY, SUPERVISOR, "banked")
    assert ledger.max_position() == before  # nothing closed
    approve_cashup(ledger, UUID(submitted["cashup_id"]), SUPERVISOR)
    assert close_period(ledger, "day", YESTERDAY, SUPERVISOR, "banked")["period"] == str(YESTERDAY)
