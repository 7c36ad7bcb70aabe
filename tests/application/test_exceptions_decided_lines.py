"""The exceptions report's statement lines leave out a line recorded in suspense whose
receipt a person has since decided: no money of it left in suspense (allocated in full by
an officer, refunded, reversed). A line still (even partly) in suspense stays. Runs link
as before (a decided line is no rival of a waiting one), and a decided line that was
another channel's money leaves that channel's receipts on the report. SQLite and
PostgreSQL; the books kept, read afresh and stored agree."""

from __future__ import annotations

from uuid import UUID

from application.imports import get_import, import_file
from application.reconciliation import (
    BooksFold,
    KeptBooks,
    exceptions,
    exceptions_csv,
    exceptions_page,
    kept_books,
    link_counted_twice,
    read_books,
)
from domain.payment import ReversalKind
from tests.application.test_late_statement_links import OFFICER, allpay
from tests.application.test_statement_imports import YESTERDAY, camt, entry
from tests.domain.helpers import CT_REF


def receipts_of(ledger, batch_id) -> list[UUID]:
    return [UUID(line["payment_id"]) for line in get_import(ledger, batch_id)["lines"]]


def same_every_way(ledger) -> dict:
    """Kept books, books read afresh, a new process's books and the stored fold agree."""
    report = exceptions(ledger)
    assert exceptions(ledger, books=read_books(ledger)) == report
    assert exceptions(ledger, books=KeptBooks().books(ledger)) == report
    fold = BooksFold()
    fold.read(ledger)
    loaded = BooksFold.from_snapshot(fold.to_snapshot())
    assert loaded.in_suspense == fold.in_suspense
    assert loaded.in_funds == fold.in_funds and loaded.checked == fold.checked
    assert exceptions(ledger, books=loaded.books(ledger)) == report
    return report


def listed(report: dict) -> list[tuple[int, int]]:
    return [(row["line"], row["amount_pence"]) for row in report["unmatched_statement_lines"]]


def test_a_line_an_officer_decided_is_no_exception_one_still_in_suspense_is(ledger) -> None:
    statement = camt(
        entry("10.01", day=YESTERDAY, ref="B1", text="NO IDEA 1"),  # allocated in full
        entry("11.02", day=YESTERDAY, ref="B2", text="NO IDEA 2"),  # allocated in part
        entry("12.03", day=YESTERDAY, ref="B3", text="NO IDEA 3"),  # refunded in full
        entry("13.04", day=YESTERDAY, ref="B4", text="NO IDEA 4"),  # reversed
        entry("14.05", day=YESTERDAY, ref="B5", text="NO IDEA 5"),  # untouched
        entry("15.06", day=YESTERDAY, ref="B6", text="NO IDEA 6"),  # part allocated, part refunded
    )
    batch_id = import_file(ledger, statement, OFFICER, file_name="day.xml").batch_id
    first, part, refunded, reversed_, _untouched, mixed = receipts_of(ledger, batch_id)
    before = same_every_way(ledger)
    assert len(listed(before)) == 6
    position = kept_books(ledger).position

    ledger.allocate(first, [("CT", CT_REF, 1_001)], OFFICER, "remittance advice came")
    assert kept_books(ledger).position > position, "an allocation moves the report's position"
    ledger.allocate(part, [("CT", CT_REF, 500)], OFFICER, "part of it is council tax")
    ledger.refund(refunded, 1_203, OFFICER, "sent to us in error")
    ledger.reverse(reversed_, ReversalKind.DIRECT_DEBIT_RETURN, OFFICER, "returned by the bank")
    ledger.allocate(mixed, [("CT", CT_REF, 1_000)], OFFICER, "council tax")
    ledger.refund(mixed, 506, OFFICER, "overpaid")

    report = same_every_way(ledger)
    assert listed(report) == [(2, 1_102), (5, 1_405)]
    (summary,) = [row for row in report["summary"] if row["kind"] == "statement_line"]
    assert (summary["count"], summary["amount_pence"]) == (2, 2_507)
    assert exceptions_page(report, limit=1, offset=1)["total"] == 2
    csv_rows = exceptions_csv(report).splitlines()[1:]
    assert [row.split(",")[0] for row in csv_rows] == ["statement_line", "statement_line"]
    books = kept_books(ledger)
    assert {line for _, line in books.decided_lines} == {1, 3, 6}
    # The runs consider every line as before: the decided ones are never linked.
    assert len(books.unmatched_lines) == 5
    run_books = read_books(ledger, decisions=False)  # a run's: no Allocated event read
    assert run_books.unmatched_lines == books.unmatched_lines and not run_books.decided_lines
    assert link_counted_twice(ledger, OFFICER) == []

    ledger.allocate(part, [("CT", CT_REF, 602)], OFFICER, "the rest too")
    assert listed(same_every_way(ledger)) == [(5, 1_405)]


def test_a_decided_line_is_no_rival_and_another_channels_receipts_stay(ledger) -> None:
    """Two lines of 7.00 in suspense, then an Allpay file of 7.00: while both wait, no run
    links either (a guess); once an officer allocated one, the other is linked by a run,
    as before. And a decided line alone leaves the file's receipts on the report."""
    statement = camt(
        entry("7.00", day=YESTERDAY, ref="B1", text="NO IDEA 1"),
        entry("7.00", day=YESTERDAY, ref="B2", text="NO IDEA 2"),
    )
    batch_id = import_file(ledger, statement, OFFICER, file_name="day.xml").batch_id
    decided, waiting = receipts_of(ledger, batch_id)
    ledger.allocate(decided, [("CT", CT_REF, 700)], OFFICER, "the payer rang")
    allpay(ledger)
    (late,) = link_counted_twice(ledger, OFFICER)
    assert late.line == 2 and late.reversed_payment_id == str(waiting)
    report = same_every_way(ledger)
    assert report["unmatched_statement_lines"] == []
    assert report["unmatched_receipts"] == []


def test_a_decided_line_of_another_channels_money_leaves_its_receipts_listed(ledger) -> None:
    statement = camt(entry("7.00", day=YESTERDAY, ref="B1", text="NO IDEA"))
    batch_id = import_file(ledger, statement, OFFICER, file_name="day.xml").batch_id
    (own,) = receipts_of(ledger, batch_id)
    ledger.allocate(own, [("CT", CT_REF, 700)], OFFICER, "the payer rang")
    allpay(ledger)
    assert link_counted_twice(ledger, OFFICER) == []  # a person's decision stands
    report = same_every_way(ledger)
    assert report["unmatched_statement_lines"] == []
    assert sorted(row["amount_pence"] for row in report["unmatched_receipts"]) == [300, 400]
