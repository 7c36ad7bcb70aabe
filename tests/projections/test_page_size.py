"""A rebuild is the same whatever the page size: no row depends on which page it came from."""

from __future__ import annotations

import dataclasses
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.ledger import CommandContext, RecordPayment
from domain.sample_chart import TRADE_WASTE
from projections.maintenance import compare_models
from projections.runner import Projection
from projections.schema import new_index_tag, read_model
from tests.domain.helpers import SUN_REF
from tests.projections.conftest import random_workload

# SUN and TRW (20%) from the sample chart, and two more VAT funds at other rates.
EXTRA_VAT_FUNDS = (
    dataclasses.replace(TRADE_WASTE, code="TRWA", vat_rate_basis_points=500, ledger_code="R6011"),
    dataclasses.replace(TRADE_WASTE, code="TRWB", vat_rate_basis_points=1750, ledger_code="R6012"),
)
VAT_ACCOUNTS = [("SUN", SUN_REF), ("TRW", "TW123456"), ("TRWA", "TW654321"), ("TRWB", "TW111111")]
_receipts = itertools.count()


def build(projection: Projection, page_size: int, carry: bool = False):
    """A fresh copy of the read model built from position zero in pages of `page_size`
    (`carry`: as a rebuild builds it, Projection's carry)."""
    tag = new_index_tag()
    model = read_model(f"_p{tag}", tag)
    model.metadata.create_all(projection.engine)
    name = f"page_size_test{tag}"
    builder = Projection(
        projection.engine,
        projection.source,
        model=model,
        name=name,
        page_size=page_size,
        carry=carry,
    )
    builder.catch_up()
    builder.flush()
    return model


def test_two_vat_receipts_give_one_vat_row_whatever_the_page_size(ledger, projection) -> None:
    """The case from the issue: 120p to SUN and to TRW, pages of 1 and of 5000."""
    ctx = CommandContext("officer:test")
    ledger.record_payment(RecordPayment("cash", 120, SUN_REF, fund_code="SUN"), ctx)
    ledger.record_payment(RecordPayment("cash", 120, "TW123456", fund_code="TRW"), ctx)
    small, large = build(projection, 1), build(projection, 5000)
    try:
        assert compare_models(projection.engine, small, large) == []
    finally:
        small.metadata.drop_all(projection.engine)
        large.metadata.drop_all(projection.engine)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    receipts=st.lists(
        st.tuples(st.sampled_from(VAT_ACCOUNTS), st.integers(1, 100_000)), min_size=1, max_size=8
    ),
    page_sizes=st.tuples(st.integers(1, 5000), st.integers(1, 5000)),
)
def test_a_rebuild_is_identical_whatever_the_page_size(
    ledger, projection, receipts, page_sizes
) -> None:
    ctx = CommandContext("officer:test")
    if ledger.chart().funds.get("TRWA") is None:
        for fund in EXTRA_VAT_FUNDS:
            ledger.add_fund(fund, ctx)
    for (fund, reference), amount in receipts:
        ledger.record_payment(
            RecordPayment(
                "cash", amount, reference, fund_code=fund, external_id=f"r{next(_receipts)}"
            ),
            ctx,
        )
    first, second = (build(projection, size) for size in page_sizes)
    try:
        assert compare_models(projection.engine, first, second) == []
    finally:
        first.metadata.drop_all(projection.engine)
        second.metadata.drop_all(projection.engine)


def test_a_carrying_build_equals_one_written_page_by_page(ledger, projection, monkeypatch) -> None:
    """A rebuild carries balances, takings and payment rows from page to page and writes them
    once; written part-way whenever CARRY_PAYMENTS payments are held (here after every one to
    three payments, so later pages load and upsert rows an earlier flush wrote), the tables
    come out the same as from the live projector's page-by-page upserts."""
    from projections import ledger_view

    random_workload(ledger, seed=11, receipts=30)
    models = []
    try:
        models.append(build(projection, 7))
        for carry_payments, page_size in [(1, 1), (3, 7), (2, 5000), (10**6, 7), (10**6, 5000)]:
            monkeypatch.setattr(ledger_view, "CARRY_PAYMENTS", carry_payments)
            models.append(build(projection, page_size, carry=True))
            assert compare_models(projection.engine, models[0], models[-1]) == [], (
                carry_payments,
                page_size,
            )
    finally:
        for model in models:
            model.metadata.drop_all(projection.engine)
