"""`payments record --received-at` takes a bare UK date, as `replay --as-at` does: an officer
keying yesterday's post knows the day, not the minute (found in the day-close walkthrough)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from domain.errors import InvalidEffectiveDate, InvalidRequest
from income_ledger.cli.helpers import parse_received_at
from tests.cli.test_cli import cli  # noqa: F401  (the fixture)

NOW = datetime(2026, 12, 1, 15, 22, tzinfo=UTC)


def test_a_past_date_is_noon_uk_time_that_day() -> None:
    assert parse_received_at("2026-11-30", "--received-at", now=NOW) == datetime(
        2026, 11, 30, 12, tzinfo=UTC
    )
    summer = parse_received_at(" 2026-07-01 ", "--received-at", now=NOW)
    assert summer == datetime(2026, 7, 1, 11, tzinfo=UTC)  # 12:00 BST


def test_today_is_now_and_tomorrow_is_refused() -> None:
    assert parse_received_at("2026-12-01", "--received-at", now=NOW) == NOW
    with pytest.raises(InvalidRequest, match="after today's UK date"):
        parse_received_at("2026-12-02", "--received-at", now=NOW)


def test_a_moment_with_a_zone_is_as_before_and_nonsense_shows_both_forms() -> None:
    at = parse_received_at("2026-11-30T10:15:00Z", "--received-at", now=NOW)
    assert at == datetime(2026, 11, 30, 10, 15, tzinfo=UTC)
    with pytest.raises(InvalidRequest, match="2026-03-31T10:00:00Z, or a UK date like"):
        parse_received_at("30/11/2026", "--received-at", now=NOW)
    with pytest.raises(InvalidEffectiveDate):
        parse_received_at("1999-12-31", "--received-at", now=NOW)


def test_payments_record_takes_a_bare_date(cli) -> None:  # noqa: F811
    result = cli(
        "payments",
        "record",
        "--channel",
        "cash",
        "--amount",
        "1",
        "--received-at",
        "2026-11-30",
        "--json",
    )
    payment = json.loads(result.stdout)["payment"]
    assert payment["received_at"] == "2026-11-30T12:00:00+00:00"
