"""The exceptions report's statement lines are the lines someone still has to settle, not a
payer's own transfer a fund took by its reference (reconciliation.taken_by_its_reference),
on SQLite and PostgreSQL; the import's view still shows every line."""

from __future__ import annotations

from application.import_rules import add_rule
from application.imports import get_import, import_file
from application.reconciliation import (
    exceptions,
    exceptions_csv,
    exceptions_page,
    kept_books,
    read_books,
)
from tests.application.test_late_statement_links import OFFICER, SUPERVISOR
from tests.application.test_statement_imports import YESTERDAY, camt, entry
from tests.domain.helpers import CT_REF, CT_REF_2

BAD_CHECK_DIGIT = CT_REF[:-1] + str((int(CT_REF[-1]) + 1) % 10)


def test_a_payers_own_transfer_a_fund_took_is_no_exception(ledger) -> None:
    """Of five credit lines, the two a fund took by the payer's account in their reference
    are left out (nothing waits on them: no run links them, no person is offered a choice);
    a line in suspense (no payer's reference, or a check digit off one), a line an import
    rule sent to a fund by its narrative (perhaps another channel's money: a person checks
    it) are listed, and the summary, the paging and the CSV count the same rows."""
    add_rule(
        ledger,
        {
            "name": "till deposits",
            "narrative_contains": "TILL DEPOSIT",
            "fund_code": "CT",
            "rewrite_pattern": "[A-Z]+",
            "rewrite_to": CT_REF_2,
        },
        SUPERVISOR,
        "the counter's cash goes to council tax",
    )
    statement = camt(
        entry("10.00", day=YESTERDAY, ref="B1", text=CT_REF),  # a payer's own: allocated
        entry("11.00", day=YESTERDAY, ref="B2", text="NO IDEA"),  # suspense
        entry("12.00", day=YESTERDAY, ref="B3", text=BAD_CHECK_DIGIT),  # suspense, a payer's?
        entry("13.00", day=YESTERDAY, ref="B4", text="TILL DEPOSIT"),  # an import rule's fund
        entry("14.00", day=YESTERDAY, ref="B5", text=CT_REF_2),  # a payer's own: allocated
    )
    batch_id = str(import_file(ledger, statement, OFFICER, file_name="day.xml").batch_id)
    view = get_import(ledger, batch_id)["lines"]
    assert [line["status"] for line in view] == [
        "allocated",
        "suspense",
        "suspense",
        "allocated",
        "allocated",
    ], "the import's view shows every line"
    assert view[3]["import_rule"]["rule_name"] == "till deposits"

    report = exceptions(ledger)
    lines = report["unmatched_statement_lines"]
    assert [(row["line"], row["amount_pence"]) for row in lines] == [
        (2, 1_100),
        (3, 1_200),
        (4, 1_300),
    ]
    (summary,) = [row for row in report["summary"] if row["kind"] == "statement_line"]
    assert (summary["count"], summary["amount_pence"]) == (3, 3_600)
    page = exceptions_page(report, limit=2, offset=2)
    assert page["total"] == 3 and [row["line"] for row in page["unmatched_statement_lines"]] == [4]
    csv_rows = exceptions_csv(report).splitlines()[1:]
    assert len(csv_rows) == 3 and all(row.startswith("statement_line,") for row in csv_rows)
    assert exceptions(ledger, books=read_books(ledger)) == report
    assert exceptions(ledger, books=kept_books(ledger)) == report
