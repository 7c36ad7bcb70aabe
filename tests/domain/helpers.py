"""Builders for domain tests: no database, just aggregates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.funds import FundChart
from domain.payment import Channel, Payment
from domain.sample_chart import SAMPLE_FUNDS

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
CT_REF = "12345679"
CT_REF_2 = "23456787"
SUN_REF = "INV1234560"
HRA_REF = "1234569"


def chart() -> FundChart:
    chart = FundChart.open(actor="test")
    for fund in SAMPLE_FUNDS:
        chart.add_fund(fund, actor="test")
    return chart


def receive(
    amount_pence: int = 10_000,
    reference: str = "nonsense",
    fund_hint: str | None = None,
    channel: Channel = Channel.CHEQUE,
    funds: FundChart | None = None,
    external_id: str | None = None,
) -> Payment:
    funds = funds or chart()
    match = funds.match(reference, fund_hint)
    fund = funds.funds[match.fund_code] if match.fund_code else None
    return Payment.receive(
        channel=channel,
        amount_pence=amount_pence,
        received_at=NOW - timedelta(hours=1),
        reference=reference,
        fund_hint=fund_hint,
        external_id=external_id,
        match=match,
        fund=fund,
        actor="officer:test",
        now=NOW,
    )
