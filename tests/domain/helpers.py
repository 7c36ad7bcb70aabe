"""Builders for domain tests: no database, just aggregates."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def references_unfolded(monkeypatch) -> Iterator[None]:
    """References kept as release 0.1.0 recorded them (before 2026-12-01): spaces and case
    folded, full-width characters and zero-width spaces kept as they came."""
    from domain.references import legacy_normalise_reference

    with monkeypatch.context() as before:
        before.setattr("domain.payment.normalise_reference", legacy_normalise_reference)
        before.setattr("domain.funds.normalise_reference", legacy_normalise_reference)
        before.setattr("application.receipt_maker.normalise_reference", legacy_normalise_reference)
        yield
