"""The exceptions report's rows of one day in the order the ledger recorded them, whatever
day the report is asked on, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from application.imports import import_file
from application.reconciliation import exceptions, exceptions_csv
from tests.application.test_card_payouts import dispute, pay, send
from tests.application.test_late_statement_links import OFFICER
from tests.application.test_statement_imports import TODAY, YESTERDAY, camt, entry, govuk_pay

TWO_DAYS_AGO = TODAY - timedelta(days=2)


def test_one_days_rows_come_in_the_order_they_were_recorded(ledger):
    """After the older days' rows, one day's rows come in the order the ledger recorded
    them (a statement's lines in line order), not by their random receipt ids, so the same
    books give the same report, on any day."""
    receipts = [govuk_pay(ledger, 101 + n, YESTERDAY, f"till-{n}", "card") for n in range(6)]
    older_receipt = govuk_pay(ledger, 200, TWO_DAYS_AGO, "till-old", "card")
    captured = {"captured_date": YESTERDAY.isoformat()}
    for n in range(5):
        message = pay("card_payment_captured", f"pay-{n}", amount=1_000 + n)
        message["resource"]["settlement_summary"] = captured
        send(ledger, message)
    for n in (3, 1, 4):
        send(ledger, dispute("dispute_created", f"pay-{n}", amount=1_000 + n, fee=0))
    first = camt(*(entry(f"50.0{n}", day=YESTERDAY, ref=f"A{n}") for n in range(1, 4)))
    second = camt(
        *(entry(f"60.0{n}", day=YESTERDAY, ref=f"B{n}") for n in range(1, 4)),
        entry("70.00", day=TWO_DAYS_AGO, ref="B9"),
    )
    first_id = str(import_file(ledger, first, OFFICER, file_name="a.xml").batch_id)
    second_id = str(import_file(ledger, second, OFFICER, file_name="b.xml").batch_id)

    reports = [exceptions(ledger, today=today) for today in (TODAY, TODAY + timedelta(days=40))]
    for report in reports:
        assert [row["payment_id"] for row in report["unmatched_receipts"]] == [
            older_receipt,
            *receipts,
        ]
        lines = [(row["batch_id"], row["line"]) for row in report["unmatched_statement_lines"]]
        assert lines == [
            (second_id, 4),
            *((first_id, n) for n in (1, 2, 3)),
            *((second_id, n) for n in (1, 2, 3)),
        ]
        unsettled = report["unsettled_card_payments"]
        assert [row["amount_pence"] for row in unsettled] == [1_000 + n for n in range(5)]
        assert [row["amount_pence"] for row in report["open_disputes"]] == [1_003, 1_001, 1_004]
    csv_lines = exceptions_csv(reports[0]).splitlines()[1:]
    assert [row.split(",")[-2] for row in csv_lines[:7]] == ["4", "1", "2", "3", "1", "2", "3"]
