"""Period close in the domain: which days a close covers, and what it refuses."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import (
    CardNumberRejected,
    InvalidRequest,
    PeriodAlreadyClosed,
    PeriodClosed,
    PeriodNotEnded,
    ReasonRequired,
)
from domain.periods import Period, PeriodCalendar, PeriodKind, uk_date

TODAY = date(2026, 5, 10)


def calendar() -> PeriodCalendar:
    return PeriodCalendar.open(actor="system")


def test_a_financial_year_runs_from_1_april_to_31_march() -> None:
    year = Period.containing(PeriodKind.YEAR, date(2026, 3, 31))
    assert (year.first_day, year.last_day, year.label) == (
        date(2025, 4, 1),
        date(2026, 3, 31),
        "2025-26",
    )
    assert Period.containing(PeriodKind.YEAR, date(2026, 4, 1)).label == "2026-27"


def test_a_month_is_a_calendar_month() -> None:
    february = Period.containing(PeriodKind.MONTH, date(2028, 2, 14))
    assert (february.first_day, february.last_day, february.label) == (
        date(2028, 2, 1),
        date(2028, 2, 29),
        "2028-02",
    )


def test_closing_a_month_closes_its_days_and_refuses_money_dated_in_them() -> None:
    periods = calendar()
    periods.close(
        Period.containing(PeriodKind.MONTH, date(2026, 3, 5)),
        actor="sup",
        reason="month end",
        today=TODAY,
    )
    # 31 March 23:30 in London (BST starts 29 March) is 22:30 UTC: still March.
    with pytest.raises(PeriodClosed, match="month 2026-03.*relates_to_period=2026-03"):
        periods.require_open(datetime(2026, 3, 31, 22, 30, tzinfo=UTC), "a receipt")
    periods.require_open(datetime(2026, 3, 31, 23, 30, tzinfo=UTC), "a receipt")  # 1 April
    # The way to say it on the command line too; and a movement that keeps no period is told
    # to say it in its reason, not given a field it does not have.
    with pytest.raises(PeriodClosed, match="--relates-to-period 2026-03"):
        periods.require_open(datetime(2026, 3, 20, 12, tzinfo=UTC), "a receipt")
    with pytest.raises(PeriodClosed, match="saying in its reason that it relates to 2026-03") as e:
        periods.require_open(datetime(2026, 3, 20, 12, tzinfo=UTC), "an allocation")
    assert "relates_to_period" not in e.value.message
    with pytest.raises(PeriodAlreadyClosed):
        periods.close(
            Period.containing(PeriodKind.DAY, date(2026, 3, 9)),
            actor="sup",
            reason="again",
            today=TODAY,
        )


def test_only_an_ended_period_can_be_closed_and_a_reason_is_required() -> None:
    periods = calendar()
    with pytest.raises(PeriodNotEnded, match="month 2026-05"):
        periods.close(
            Period.containing(PeriodKind.MONTH, TODAY), actor="sup", reason="x", today=TODAY
        )
    with pytest.raises(ReasonRequired):
        periods.close(
            Period.containing(PeriodKind.DAY, date(2026, 5, 1)),
            actor="sup",
            reason=" ",
            today=TODAY,
        )


@pytest.mark.parametrize(
    ("reason", "error", "says"),
    [
        ("a" * 501, InvalidRequest, "reason is 501 characters long; the limit is 500"),
        ("card 4111 1111 1111 1111 paid twice", CardNumberRejected, "card number"),
        ("signed\x00off", InvalidRequest, "reason"),
    ],
)
def test_a_close_reason_is_held_to_every_reason_s_rules(reason, error, says) -> None:
    # A close is final, so a reason accepted wrongly stays for ever: the command line once
    # closed a day with a reason of 600 characters (the HTTP API refused it).
    periods = calendar()
    day = Period.containing(PeriodKind.DAY, date(2026, 5, 1))
    with pytest.raises(error, match=says):
        periods.close(day, actor="sup", reason=reason, today=TODAY)
    assert periods.closes == []
    periods.close(day, actor="sup", reason=" " + "a" * 500 + " ", today=TODAY)
    assert periods.closes[0].reason == "a" * 500


def test_the_widest_close_names_a_closed_day() -> None:
    periods = calendar()
    periods.close(
        Period.containing(PeriodKind.DAY, date(2025, 6, 3)), actor="a", reason="d", today=TODAY
    )
    periods.close(
        Period.containing(PeriodKind.YEAR, date(2025, 6, 3)), actor="b", reason="y", today=TODAY
    )
    close = periods.close_of(date(2025, 6, 3))
    assert close is not None and close.period.name == "financial year 2025-26"


@given(
    kind=st.sampled_from(list(PeriodKind)),
    day=st.dates(min_value=date(2000, 1, 1), max_value=date(2026, 3, 31)),
    probe=st.dates(min_value=date(1999, 1, 1), max_value=date(2027, 12, 31)),
)
def test_a_close_covers_exactly_the_days_of_its_period(kind, day, probe) -> None:
    periods = calendar()
    period = Period.containing(kind, day)
    periods.close(period, actor="sup", reason="close", today=TODAY)
    assert period.holds(day)
    assert (periods.close_of(probe) is not None) == (period.first_day <= probe <= period.last_day)


@given(
    moments=st.lists(
        st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
        ),
        min_size=1,
        max_size=20,
    )
)
def test_the_earliest_moment_falls_on_the_earliest_uk_day(moments: list[datetime]) -> None:
    """Time in the UK never steps back across midnight (the clocks change at 01:00 and
    02:00), so an import's earliest UK day is the UK day of its earliest moment: one
    conversion instead of one a line (application.imports.import_file's link_from)."""
    assert uk_date(min(moments)) == min(uk_date(moment) for moment in moments)
