"""Fund-group limits: which funds a user may see and move money in.

A council gives a service's officers (parking, housing) keys limited to their fund groups:
they see those funds' balances, statements and payments only, and every command they give
must leave money only in those funds or in suspense. Money in suspense has no fund yet, so
everyone who handles suspense sees it; allocating it is limited like any other move.
Whole-ledger reports (trial balance, replay, GL export, audit) need an unlimited key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from domain.errors import OutsideFundGroups
from domain.funds import FundChart
from domain.payment import Payment


@dataclass(frozen=True)
class FundAccess:
    """The fund groups a user may work in; None means every fund (no limit)."""

    groups: frozenset[str] | None = None

    @property
    def limited(self) -> bool:
        return self.groups is not None

    def describe(self) -> str:
        if self.groups is None:
            return "every fund"
        return "fund groups " + ", ".join(sorted(self.groups))

    def visible_fund_codes(self, chart: FundChart) -> frozenset[str] | None:
        """The funds this user may see, or None for all of them."""
        if self.groups is None:
            return None
        return frozenset(code for code, fund in chart.funds.items() if fund.group in self.groups)

    def require_funds(self, chart: FundChart, codes: Iterable[str]) -> None:
        """Refuse when any of these funds lies outside the user's groups."""
        visible = self.visible_fund_codes(chart)
        if visible is None:
            return
        outside = sorted({code.upper() for code in codes} - visible)
        if outside:
            raise OutsideFundGroups(
                f"your key is limited to {self.describe()}; fund {', '.join(outside)} is "
                "outside them: ask a colleague whose key covers it"
            )

    def sees_payment(self, chart: FundChart, payment: Payment) -> bool:
        visible = self.visible_fund_codes(chart)
        return visible is None or payment_fund_codes(payment) <= visible

    def require_payment(self, chart: FundChart, payment: Payment) -> None:
        """Refuse a payment that holds (or held) money in a fund outside the user's groups."""
        self.require_funds(chart, payment_fund_codes(payment))

    def require_whole_ledger(self, what: str) -> None:
        if self.groups is not None:
            raise OutsideFundGroups(
                f"{what} covers every fund, and your key is limited to {self.describe()}: "
                "use a key without fund-group limits"
            )


EVERY_FUND = FundAccess()


def payment_fund_codes(payment: Payment) -> set[str]:
    """Every fund a payment has had money in, including lines since emptied."""
    return {line.fund_code for line in payment.lines.values()}
