"""A page of the exceptions report made alone (reconciliation.exceptions_report_page: only
its rows made, issue #10) is the page cut from the whole report, at every step of a mixed
day, on any day it is asked, for every limit and offset; its summary is the whole
report's rows counted; and the matching indexes made day by day when a line asks for
them (Matcher) offer the very candidates indexes made of every receipt at once do, on
SQLite and PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from uuid import UUID

from application import reconciliation
from application.imports import import_file, reverse_import
from application.reconciliation import (
    AGE_BANDS,
    OLDEST_BAND,
    REPORT_SECTIONS,
    choose_link,
    exceptions,
    exceptions_csv,
    exceptions_page,
    exceptions_report_page,
    link_counted_twice,
    unlink_line,
)
from domain.payment import ReversalKind
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


class EagerMatcher(reconciliation.Matcher):
    """The matcher as it was: every day's receipts and every import indexed when made."""

    def __init__(self, books: reconciliation.Books) -> None:
        super().__init__(books)
        for day in list(self.days):
            self._index_day(day)
        self._index_files()


def counted(report: dict) -> list[dict]:
    """The summary counted from the report's rows, by kind and age band."""
    totals: dict = defaultdict(lambda: [0, 0])
    for section in REPORT_SECTIONS:
        for row in report[section]:
            totals[(row["kind"], row["age_band"])][0] += 1
            totals[(row["kind"], row["age_band"])][1] += row["amount_pence"]
    order = [name for _, name in AGE_BANDS] + [OLDEST_BAND]
    return [
        {"kind": kind, "age_band": band, "count": count, "amount_pence": pence}
        for (kind, band), (count, pence) in sorted(
            totals.items(), key=lambda item: (item[0][0], order.index(item[0][1]))
        )
    ]


def pages_alike(ledger, monkeypatch) -> int:
    """Every page made alone is the page of the whole report; the report is the one an
    eager matcher makes. The report's rows."""
    for today in (TODAY, TODAY + timedelta(days=6), TODAY + timedelta(days=40)):
        report = exceptions(ledger, today=today)
        assert report["summary"] == counted(report)
        with monkeypatch.context() as patched:
            patched.setattr(reconciliation, "Matcher", EagerMatcher)
            eager = exceptions(ledger, today=today)
        assert report == eager
        assert exceptions_csv(report) == exceptions_csv(eager)
        total = sum(len(report[section]) for section in REPORT_SECTIONS)
        for limit in (1, 2, 3, 5, 100):
            for offset in range(total + 2):
                page = exceptions_report_page(ledger, limit, offset, today=today)
                assert page == exceptions_page(report, limit, offset), (limit, offset)
    return total


def test_a_page_made_alone_is_the_page_of_the_whole_report(ledger, monkeypatch) -> None:
    sizes = [pages_alike(ledger, monkeypatch)]
    batch_id = statement_with_split_payout(ledger)
    sizes.append(pages_alike(ledger, monkeypatch))
    allpay(ledger)
    card_day(ledger)
    govuk_pay_payment(ledger)
    sizes.append(pages_alike(ledger, monkeypatch))
    late = link_counted_twice(ledger, OFFICER)
    assert late, "the day's files link lines of the statement"
    sizes.append(pages_alike(ledger, monkeypatch))
    unlink_line(ledger, batch_id, late[0].line, SUPERVISOR, "a payer's own transfer")
    sizes.append(pages_alike(ledger, monkeypatch))
    waiting = import_file(
        ledger, camt(entry("9.99", ref="W1", text="CHQ DEPOSIT")), OFFICER, file_name="w.xml"
    ).batch_id
    first = govuk_pay(ledger, 999, TODAY, "chq-1", "cheque")
    govuk_pay(ledger, 999, TODAY, "chq-2", "cheque")
    for n in range(3):  # receipts of earlier days, across the age bands
        govuk_pay(ledger, 500 + n, TODAY - timedelta(days=3 * n + 1), f"old-{n}", "cash")
    sizes.append(pages_alike(ledger, monkeypatch))
    choose_link(ledger, SUPERVISOR, waiting, 1, first, "the paying-in slip names it")
    send(ledger, pay("card_payment_captured", "pay-d", fee=20))
    send(ledger, dispute("dispute_created", "pay-d"))
    sizes.append(pages_alike(ledger, monkeypatch))
    send(ledger, dispute("dispute_lost", "pay-d"))
    send(
        ledger, pay("card_payment_refunded", "pay-split", refund_summary={"amount_submitted": 500})
    )
    receipt = govuk_pay(ledger, 1_234, TODAY, "cash-1", "cash")
    ledger.reverse(UUID(receipt), ReversalKind.COUNTED_TWICE.value, OFFICER, "a test reversal")
    sizes.append(pages_alike(ledger, monkeypatch))
    other = import_file(
        ledger, camt(entry("3.21", ref="R1", text=CT_REF)), OFFICER, file_name="r.xml"
    ).batch_id
    reverse_import(ledger, other, SUPERVISOR, "the wrong account's statement")
    reverse_import(ledger, batch_id, SUPERVISOR, "imported twice by another name")
    sizes.append(pages_alike(ledger, monkeypatch))
    assert max(sizes) >= 8, "some step's report has rows of several sections"
