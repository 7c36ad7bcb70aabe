"""What a command reads inside its own transaction may include its own uncommitted events.
The chart of funds and the period calendar that every request shares must not keep such a
read when the transaction then rolls back, or the process would show a fund (or a close)
that never existed and never read the real event that later takes its version. Both
backends; the HTTP test with a real deadlock is tests/api/test_database_conflicts.py."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from application.idempotency import StoredResponse
from application.ledger import CommandContext
from application.periods import close_period, closed_periods
from domain.errors import InvalidRequest
from domain.sample_chart import SAMPLE_FUNDS

SUPERVISOR = CommandContext("supervisor:sue")
TEMPLATE = SAMPLE_FUNDS[0]


class Refused(InvalidRequest):
    """A command refused after it saved and read back: its transaction rolls back."""


def fund(code: str):
    return dataclasses.replace(TEMPLATE, code=code, name=f"Fund {code}", vat_rates=())


def codes(ledger) -> set[str]:
    return {f["code"] for f in ledger.funds()}


def test_a_fund_read_back_in_a_rolled_back_command_is_not_kept(ledger) -> None:
    assert "GHOST" not in codes(ledger)  # the process holds the chart before the command

    def add_then_fail() -> StoredResponse:
        ledger.add_fund(fund("GHOST"), SUPERVISOR)
        assert ledger.fund("GHOST")["code"] == "GHOST"  # its own write, not yet committed
        ledger.funds(covering=ledger.max_position())
        raise Refused("refused after the read")

    with pytest.raises(Refused):
        ledger.run_once(None, add_then_fail)
    assert "GHOST" not in codes(ledger)
    assert "GHOST" not in {f["code"] for f in ledger.funds(covering=ledger.max_position())}
    # The next chart event takes the version the rolled back one had: it is read.
    ledger.add_fund(fund("REAL"), SUPERVISOR)
    assert "REAL" in codes(ledger) and "GHOST" not in codes(ledger)
    assert ledger.fund("REAL")["code"] == "REAL"


def test_a_close_read_back_in_a_rolled_back_command_is_not_kept(ledger) -> None:
    assert closed_periods(ledger) == []

    def close_then_fail() -> StoredResponse:
        close_period(ledger, "month", date(2025, 3, 10), SUPERVISOR, "March")
        assert [c["period"] for c in closed_periods(ledger)] == ["2025-03"]
        raise Refused("refused after the read")

    with pytest.raises(Refused):
        ledger.run_once(None, close_then_fail)
    assert closed_periods(ledger) == []
    close_period(ledger, "month", date(2025, 4, 10), SUPERVISOR, "April")
    assert [c["period"] for c in closed_periods(ledger)] == ["2025-04"]
