"""The command line refuses input outside the shared limits, exit 2 with what to fix."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_cli import cli  # noqa: F401  (the fixture)


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00"])
def test_a_receipt_outside_the_business_range_exits_2(cli, moment) -> None:  # noqa: F811
    result = cli(
        "payments",
        "record",
        "--channel",
        "cash",
        "--amount",
        "1",
        "--received-at",
        moment,
        code=2,
    )
    assert "2000-01-01" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ("replay", "--as-at", "0001-01-01"),
        ("replay", "--as-at", "9999-12-31T23:59:59Z"),
        ("audit", "export", "--from", "0001-01-01", "--to", "2026-01-01", "--out", "x"),
    ],
)
def test_query_dates_outside_2000_to_2100_exit_2(cli, args) -> None:  # noqa: F811
    assert "2000-01-01" in cli(*args, code=2).output


@pytest.mark.parametrize("amount", ["12,50", "1,23", "12,5", ",5"])
def test_a_decimal_comma_is_refused_not_read_as_thousands(cli, amount) -> None:  # noqa: F811
    result = cli("payments", "record", "--channel", "cash", "--amount", amount, code=2)
    assert "comma" in result.output


def test_thousands_separators_are_accepted(cli) -> None:  # noqa: F811
    result = cli("payments", "record", "--channel", "cash", "--amount", "1,234.56", "--json")
    assert json.loads(result.stdout)["payment"]["amount_pence"] == 123_456
