"""The exceptions report from the books a process keeps (reconciliation.kept_books, brought
up to date with the events recorded since its last call) is the report read afresh from the
whole event store, at every step of a mixed day, on SQLite and PostgreSQL."""

from __future__ import annotations

from uuid import UUID

from application.imports import import_file, reverse_import
from application.reconciliation import (
    choose_link,
    exceptions,
    link_counted_twice,
    read_books,
    unlink_line,
)
from domain.payment import ReversalKind
from income_ledger.bootstrap import build_ledger
from tests.application.test_card_payouts import dispute, pay, send
from tests.application.test_late_statement_links import (
    OFFICER,
    SUPERVISOR,
    allpay,
    card_day,
    govuk_pay_payment,
    statement_with_split_payout,
)
from tests.application.test_statement_imports import TODAY, camt, entry, govuk_pay
from tests.domain.helpers import CT_REF


def same_both_ways(ledger) -> dict:
    kept = exceptions(ledger)
    assert kept == exceptions(ledger, books=read_books(ledger))
    return kept


def test_the_kept_books_report_is_the_report_read_afresh_at_every_step(ledger) -> None:
    steps = []
    steps.append(same_both_ways(ledger))  # empty: the books start folded from nothing
    batch_id = statement_with_split_payout(ledger)
    steps.append(same_both_ways(ledger))
    allpay(ledger)
    card_day(ledger)
    govuk_pay_payment(ledger)
    steps.append(same_both_ways(ledger))
    late = link_counted_twice(ledger, OFFICER)
    assert late, "the day's files link lines of the statement"
    steps.append(same_both_ways(ledger))
    unlink_line(ledger, batch_id, late[0].line, SUPERVISOR, "a payer's own transfer")
    steps.append(same_both_ways(ledger))
    # Two receipts of one line's amount: the line waits for a person, who chooses.
    waiting = import_file(
        ledger, camt(entry("9.99", ref="W1", text="CHQ DEPOSIT")), OFFICER, file_name="w.xml"
    ).batch_id
    first = govuk_pay(ledger, 999, TODAY, "chq-1", "cheque")
    govuk_pay(ledger, 999, TODAY, "chq-2", "cheque")
    report = same_both_ways(ledger)
    (line,) = [
        row for row in report["unmatched_statement_lines"] if row["batch_id"] == str(waiting)
    ]
    assert len(line["candidates"]) == 2
    choose_link(ledger, SUPERVISOR, waiting, 1, first, "the paying-in slip names it")
    steps.append(same_both_ways(ledger))
    # Card money: a dispute opened and lost, a refund; a receipt reversed and its
    # reversal undone; a whole import reversed.
    send(ledger, pay("card_payment_captured", "pay-d", fee=20))
    send(ledger, dispute("dispute_created", "pay-d"))
    steps.append(same_both_ways(ledger))
    send(ledger, dispute("dispute_lost", "pay-d"))
    send(
        ledger, pay("card_payment_refunded", "pay-split", refund_summary={"amount_submitted": 500})
    )
    receipt = govuk_pay(ledger, 1_234, TODAY, "cash-1", "cash")
    ledger.reverse(UUID(receipt), ReversalKind.COUNTED_TWICE.value, OFFICER, "a test reversal")
    steps.append(same_both_ways(ledger))
    other = import_file(
        ledger, camt(entry("3.21", ref="R1", text=CT_REF)), OFFICER, file_name="r.xml"
    ).batch_id
    reverse_import(ledger, other, SUPERVISOR, "the wrong account's statement")
    reverse_import(ledger, batch_id, SUPERVISOR, "imported twice by another name")
    steps.append(same_both_ways(ledger))
    assert len({repr(step) for step in steps}) == len(steps), "each step changed the report"


def test_a_second_ledger_object_on_the_same_store_sees_the_same(ledger, settings) -> None:
    statement_with_split_payout(ledger)
    assert exceptions(ledger)["unmatched_statement_lines"]
    other = build_ledger(settings)
    try:
        allpay(other)  # recorded by another process: this one's kept books read it next
        link_counted_twice(other, OFFICER)
        assert (
            exceptions(ledger) == exceptions(other) == exceptions(ledger, books=read_books(ledger))
        )
    finally:
        other.close()
