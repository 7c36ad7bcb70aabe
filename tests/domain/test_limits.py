"""The business range of dates: one rule for receipts, movements and queries."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from domain.errors import InvalidEffectiveDate
from domain.limits import (
    CLOCK_SKEW,
    parse_query_date,
    parse_query_moment,
    require_business_datetime,
    require_query_datetime,
)
from domain.payment import Channel, Payment
from tests.domain.helpers import NOW, chart, receive

EDGES_OF_TIME = [
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),  # before year 1 in UTC
    datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-1))),  # after 9999 in UTC
]


@pytest.mark.parametrize("moment", EDGES_OF_TIME)
def test_a_receipt_outside_the_business_range_is_refused_saying_the_range(moment) -> None:
    funds = chart()
    with pytest.raises(InvalidEffectiveDate, match="2000-01-01"):
        Payment.receive(
            channel=Channel.CASH,
            amount_pence=1,
            received_at=moment,
            reference="",
            fund_hint=None,
            external_id=None,
            match=funds.match("", None),
            fund=None,
            actor="o",
        )


def test_a_movement_cannot_be_dated_in_the_future_beyond_the_clock_skew() -> None:
    payment = receive()
    far = datetime.now(UTC) + timedelta(days=365 * 70)
    with pytest.raises(InvalidEffectiveDate, match="future"):
        payment.refund(amount_pence=1, actor="o", reason="r", effective_at=far)
    assert payment.refunded_pence == 0 and payment.last_effective_at < far
    soon = datetime.now(UTC) + CLOCK_SKEW / 2
    payment.refund(amount_pence=1, actor="o", reason="r", effective_at=soon)
    assert payment.refunded_pence == 1


def test_the_business_rule_is_aware_utc_from_2000_to_now() -> None:
    plus_one = timezone(timedelta(hours=1))
    assert require_business_datetime(
        datetime(2026, 3, 31, 1, 0, tzinfo=plus_one), "x", now=NOW
    ) == datetime(2026, 3, 31, 0, 0, tzinfo=UTC)
    assert require_business_datetime(NOW + CLOCK_SKEW, "x", now=NOW) == NOW + CLOCK_SKEW
    with pytest.raises(InvalidEffectiveDate, match="time zone"):
        require_business_datetime(datetime(2026, 3, 31), "x", now=NOW)
    with pytest.raises(InvalidEffectiveDate, match="future"):
        require_business_datetime(NOW + CLOCK_SKEW + timedelta(seconds=1), "x", now=NOW)


@pytest.mark.parametrize("moment", EDGES_OF_TIME)
def test_query_moments_stay_in_2000_to_2100(moment) -> None:
    with pytest.raises(InvalidEffectiveDate, match="2000-01-01 to 2100-01-01"):
        require_query_datetime(moment, "from")
    assert require_query_datetime(datetime(2099, 1, 1, tzinfo=UTC), "to").year == 2099


def test_a_bare_date_is_the_start_or_end_of_that_uk_business_day() -> None:
    # 31 March 2026 is in British Summer Time: the UK day starts at 23:00 UTC the day before.
    assert parse_query_moment("2026-03-31", "from", end_of_day=False) == datetime(
        2026, 3, 30, 23, 0, tzinfo=UTC
    )
    assert parse_query_moment("2026-03-31", "to", end_of_day=True) == datetime(
        2026, 3, 31, 22, 59, 59, 999_999, tzinfo=UTC
    )
    assert parse_query_moment("2026-01-05T10:00:00Z", "to", end_of_day=True) == datetime(
        2026, 1, 5, 10, tzinfo=UTC
    )
    for text in ("0001-01-01", "9999-12-31", "9999-12-31T23:59:59-01:00", "tomorrow"):
        with pytest.raises(InvalidEffectiveDate):
            parse_query_moment(text, "from", end_of_day=False)
    with pytest.raises(InvalidEffectiveDate, match="time zone"):
        parse_query_moment("2026-03-31T10:00:00", "from", end_of_day=False)
    assert parse_query_date("2026-03-31", "date") == date(2026, 3, 31)
    with pytest.raises(InvalidEffectiveDate, match="2000-01-01"):
        parse_query_date("0001-01-01", "date")
