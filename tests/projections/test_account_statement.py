"""A page of an account's statement, whatever its limit and offset, says what the whole
statement says: the same lines, the running balance carried over, the account's balance,
VAT and number of movements."""

from __future__ import annotations

from itertools import accumulate

from projections import queries
from tests.projections.conftest import ACCOUNTS, random_workload


def test_every_page_of_a_statement_agrees_with_the_whole(ledger, projection) -> None:
    random_workload(ledger, seed=7, receipts=30)
    projection.catch_up()
    with projection.engine.connect() as connection:
        for fund_code, reference in ACCOUNTS:
            whole = queries.account_statement(connection, fund_code, reference, limit=10_000)
            lines = whole["statement"]
            assert [line["balance_pence"] for line in lines] == list(
                accumulate(line["amount_pence"] for line in lines)
            )
            figures = (whole["balance_pence"], whole["vat_pence"], whole["total"])
            assert figures == (
                sum(line["amount_pence"] for line in lines),
                sum(line["vat_pence"] for line in lines),
                len(lines),
            )
            # limit 0 too: a caller asking for the figures alone gets them, not zeros
            for limit in (0, 1, 2, 3):
                for offset in range(len(lines) + 2):
                    page = queries.account_statement(
                        connection, fund_code, reference, limit=limit, offset=offset
                    )
                    assert page["statement"] == lines[offset : offset + limit], (limit, offset)
                    assert (page["balance_pence"], page["vat_pence"], page["total"]) == figures, (
                        fund_code,
                        limit,
                        offset,
                    )
