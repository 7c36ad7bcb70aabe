"""Period close against real storage: closed periods refuse money, on both backends."""

from __future__ import annotations

import random
import threading
from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from application.ledger import CommandContext, RecordPayment
from application.periods import close_period, closed_periods, late_receipt, require_open_periods
from domain.errors import ConcurrentUpdate, PeriodClosed, PeriodNotEnded
from domain.periods import UK, uk_date
from projections.replay import replay_balances
from tests.domain.helpers import CT_REF, CT_REF_2

SUPERVISOR = CommandContext("supervisor:sue")
NOW = datetime.now(UTC)
TODAY = uk_date(NOW)


def noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def receipt(ledger, officer, day: date, amount_pence: int = 10_000, reference: str = CT_REF):
    return ledger.record_payment(
        RecordPayment("cheque", amount_pence, reference, received_at=noon(day)), officer
    )


def test_a_closed_month_refuses_every_kind_of_movement_dated_in_it(ledger, officer) -> None:
    march = date(2025, 3, 10)
    paid = receipt(ledger, officer, march, reference="NOT-A-REF")
    close = close_period(ledger, "month", march, SUPERVISOR, "March signed off")
    assert close["period"] == "2025-03" and close["closed_by"] == "supervisor:sue"
    before = ledger.max_position()
    with pytest.raises(PeriodClosed, match="month 2025-03.*relates_to_period=2025-03"):
        receipt(ledger, officer, date(2025, 3, 31))
    in_march = noon(date(2025, 3, 20))
    with pytest.raises(PeriodClosed, match="an allocation dated 2025-03-20"):
        ledger.allocate(paid.payment_id, [("CT", CT_REF, 100)], officer, effective=in_march)
    with pytest.raises(PeriodClosed, match="a refund"):
        ledger.refund(paid.payment_id, 100, officer, "overpaid", effective=in_march)
    with pytest.raises(PeriodClosed, match="a reversal"):
        ledger.reverse(paid.payment_id, "returned_cheque", officer, "bounced", effective=in_march)
    assert ledger.max_position() == before  # nothing partial stored
    # The same movements dated in the open period go through.
    ledger.allocate(paid.payment_id, [("CT", CT_REF, 100)], officer)
    ledger.transfer(paid.payment_id, ("CT", CT_REF), ("CT", CT_REF_2), 50, officer, "wrong")
    receipt(ledger, officer, date(2025, 4, 1))
    assert [c["period"] for c in closed_periods(ledger)] == ["2025-03"]


def test_today_cannot_be_closed(ledger) -> None:
    with pytest.raises(PeriodNotEnded):
        close_period(ledger, "day", TODAY, SUPERVISOR, "too early")


def test_a_late_channel_receipt_is_recorded_now_with_its_own_date_kept(ledger, officer) -> None:
    day = date(2025, 6, 2)
    close_period(ledger, "day", day, SUPERVISOR, "cashed up")
    command = late_receipt(
        ledger, RecordPayment("allpay", 2_500, CT_REF, received_at=noon(day), external_id="x1")
    )
    outcome = ledger.record_payment(command, officer)
    payment = outcome.payment
    assert uk_date(datetime.fromisoformat(payment["received_at"])) == TODAY
    assert payment["provider_details"] == {
        "originally_received_at": noon(day).isoformat(),
        "relates_to_period": "2025-06-02",
    }


def test_replay_as_at_a_closed_day_gives_the_figures_as_closed(ledger, officer) -> None:
    day = date(2025, 7, 1)
    receipt(ledger, officer, day, 1_000)
    close_period(ledger, "day", day, SUPERVISOR, "closed")
    closed_at = datetime.fromisoformat(closed_periods(ledger)[0]["closed_at"])
    with pytest.raises(PeriodClosed):
        receipt(ledger, officer, day, 2_000, CT_REF_2)
    receipt(ledger, officer, day + timedelta(days=1), 4_000)
    as_at = noon(day) + timedelta(hours=11)
    now = replay_balances(ledger.read_events(), as_at=as_at)
    as_closed = replay_balances(ledger.read_events(), as_at=as_at, known_at=closed_at)
    assert now.funds == as_closed.funds == {"CT": 1_000}


def test_a_close_racing_movements_lets_none_into_the_closed_day(ledger, officer) -> None:
    """Movements dated in a day race its close: each is either before the close (a figure of
    the day) or refused; none is recorded after it."""
    day = date(2025, 8, 4)
    results: list = []
    start = threading.Barrier(5)

    def move(n: int) -> None:
        start.wait()
        for k in range(5):
            try:
                results.append(receipt(ledger, officer, day, 100, reference=f"R{n}-{k}").position)
            except (PeriodClosed, ConcurrentUpdate):
                results.append(None)

    def close() -> None:
        start.wait()
        results.append(("close", close_period(ledger, "day", day, SUPERVISOR, "race")["position"]))

    threads = [threading.Thread(target=move, args=(n,)) for n in range(4)]
    threads.append(threading.Thread(target=close))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    close_position = next(r[1] for r in results if isinstance(r, tuple))
    recorded = [r for r in results if isinstance(r, int)]
    assert all(position < close_position for position in recorded)


@hypothesis_settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    day=st.dates(min_value=date(2024, 1, 1), max_value=date(2026, 6, 30)),
    kind=st.sampled_from(["receipt", "allocation"]),
)
def test_money_dated_in_a_closed_period_is_always_refused(ledger, officer, day, kind) -> None:
    """With the financial year 2024-25 and the month of May 2025 closed, a movement is refused
    exactly when its UK date falls in one of them."""
    if not closed_periods(ledger):
        close_period(ledger, "year", date(2024, 4, 1), SUPERVISOR, "year end")
        close_period(ledger, "month", date(2025, 5, 1), SUPERVISOR, "month end")
    closed = date(2024, 4, 1) <= day <= date(2025, 3, 31) or (day.year, day.month) == (2025, 5)
    moment = noon(day)
    try:
        if kind == "receipt":
            receipt(ledger, officer, day, 100, reference="UNKNOWN")
        else:
            paid = receipt(ledger, officer, date(2023, 12, 31), 100, reference="UNKNOWN")
            ledger.allocate(paid.payment_id, [("CT", CT_REF, 100)], officer, effective=moment)
    except PeriodClosed:
        assert closed
    else:
        assert not closed


def test_a_year_closed_month_by_month_keeps_the_figures_as_closed(ledger, officer) -> None:
    """A financial year of random receipts and allocations, each month closed after its
    movements; movements tried later for a closed month are refused, and replay as at each
    month end gives the same balances now as it did when the month closed (trial balance 0)."""
    rng = random.Random(11)
    months = [date(2024, 4 + n, 1) if n < 9 else date(2025, n - 8, 1) for n in range(12)]
    closed_at = {}
    for month in months:
        for _ in range(rng.randint(1, 3)):
            day = month + timedelta(days=rng.randint(0, 27))
            paid = receipt(ledger, officer, day, rng.randint(1, 90_000), rng.choice(REFERENCES))
            if paid.payment["unallocated_pence"] and rng.random() < 0.5:
                ledger.allocate(
                    paid.payment_id,
                    [("CT", CT_REF, paid.payment["unallocated_pence"])],
                    officer,
                    effective=noon(day),
                )
        close = close_period(ledger, "month", month, SUPERVISOR, "month end")
        closed_at[month] = datetime.fromisoformat(close["closed_at"])
        late = month + timedelta(days=rng.randint(0, 27))
        with pytest.raises(PeriodClosed):
            receipt(ledger, officer, late, 100, "UNKNOWN")
    for month in months:
        end = uk_month_end(month)
        now = replay_balances(ledger.read_events(), as_at=end)
        then = replay_balances(ledger.read_events(), as_at=end, known_at=closed_at[month])
        assert (now.funds, now.suspense_pence, now.accounts) == (
            then.funds,
            then.suspense_pence,
            then.accounts,
        )
        assert now.trial_balance_pence == 0


REFERENCES = [CT_REF, CT_REF_2, "UNKNOWN"]


def uk_month_end(month: date) -> datetime:
    following = (month + timedelta(days=32)).replace(day=1)
    return datetime.combine(following, datetime.min.time(), tzinfo=UK).astimezone(UTC) - timedelta(
        microseconds=1
    )


def test_a_close_waits_for_a_movement_that_already_checked_the_calendar(ledger, officer) -> None:
    """The race made deterministic: a receipt has checked that its day is open and not yet
    committed; the close of that day waits for it, so the receipt is part of the closed day
    (without the period gate, the close committed first and the receipt went in after it)."""
    day = date(2025, 8, 11)
    payment = ledger.prepare_payment(
        RecordPayment("cash", 100, CT_REF, received_at=noon(day)), officer
    )
    closed: list[dict] = []
    closing = threading.Thread(
        target=lambda: closed.append(close_period(ledger, "day", day, SUPERVISOR, "race"))
    )
    with ledger._transaction() as session:
        require_open_periods(ledger, session, [payment])
        closing.start()
        closing.join(timeout=0.5)
        assert closing.is_alive(), "the close went ahead while a movement was checking"
        recordings = ledger.save(payment)
    closing.join(timeout=10)
    assert closed[0]["position"] > recordings[-1].notification.id


def test_money_a_microsecond_before_todays_uk_midnight_is_in_yesterday(ledger, officer) -> None:
    """Whether a movement needs the period gate is decided against today's UK midnight as
    an instant: a receipt a microsecond before it is yesterday's (refused once yesterday is
    closed), one at midnight is today's (recorded), both through a batch."""
    midnight = datetime.combine(datetime.now(UK).date(), time(0), tzinfo=UK).astimezone(UTC)
    yesterday = uk_date(midnight - timedelta(microseconds=1))
    close_period(ledger, "day", yesterday, SUPERVISOR, "cashed up")
    before = ledger.max_position()

    def at(moment: datetime) -> RecordPayment:
        return RecordPayment(
            "cheque", 10_000, CT_REF, received_at=moment, external_id=f"gate-{moment}"
        )

    with pytest.raises(PeriodClosed, match=f"day {yesterday}"):
        ledger.record_payments([at(midnight - timedelta(microseconds=1))], officer)
    assert ledger.max_position() == before
    (outcome,) = ledger.record_payments([at(midnight)], officer)
    assert outcome.recorded
