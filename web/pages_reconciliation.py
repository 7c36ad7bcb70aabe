"""The bank reconciliation exceptions report as a page, and its CSV: the same report as
`GET /reconciliation/exceptions` and `income-ledger reconcile exceptions`, paged as the API
pages it (a later page names the position the first was made at, and a report changed
since is said so, with a link to start again, never a page that skips or repeats rows)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.auth import READERS
from application.reconciliation import (
    REPORT_SECTIONS,
    Books,
    exceptions,
    exceptions_csv,
    exceptions_report_page,
    kept_books,
)
from web.app import PREFIX, download, render
from web.pages import services, user_allowed

router = APIRouter(prefix=f"{PREFIX}/reconciliation")
EXCEPTIONS_PAGE_SIZE = 50
WHAT = "see the bank reconciliation exceptions report"
# A row's kind as an officer reads it.
KIND_NAMES = {
    "statement_line": "Statement line",
    "statement_debit": "Payout debit",
    "receipt": "Receipt",
    "unsettled_payment": "Card payment not paid out",
    "unsettled_deduction": "Card deduction not taken",
    "open_dispute": "Open dispute",
}
SECTION_NAMES = {
    "unmatched_statement_lines": "Statement lines not matched",
    "unmatched_receipts": "Receipts no statement line has paid in",
    "unsettled_card_payments": "Card money not paid out yet",
    "open_disputes": "Open card disputes",
}


def _books(request: Request) -> Books:
    """The books the report is made from, as the API reads them, for a reader of the whole
    ledger (as the API's GET)."""
    user_allowed(request, READERS, WHAT).access.require_whole_ledger(
        "the reconciliation exceptions report"
    )
    return kept_books(services(request).ledger)


@router.get("/exceptions")
def exceptions_report(request: Request, page: int = 1, position: int | None = None) -> Response:
    """One page of the report, made as the API makes it (only the page's rows). `position`
    is the first page's (its Next link carries it): a report changed since answers 409 with
    a link to its first page, as the API's report_changed."""
    books = _books(request)
    page = max(1, min(page, 10_000))
    if position is not None and position != books.position:
        return render(request, "exceptions.html", 409, changed=True, report=None)
    shown = exceptions_report_page(
        services(request).ledger,
        EXCEPTIONS_PAGE_SIZE,
        (page - 1) * EXCEPTIONS_PAGE_SIZE,
        books=books,
    )
    return render(
        request,
        "exceptions.html",
        changed=False,
        report=shown,
        position=books.position,
        page=page,
        page_size=EXCEPTIONS_PAGE_SIZE,
        sections=[(SECTION_NAMES[name], shown[name]) for name in REPORT_SECTIONS],
        kinds=KIND_NAMES,
    )


@router.get("/exceptions.csv")
def exceptions_report_csv(request: Request) -> Response:
    """The whole report, unpaged, as the API's CSV (amounts in pounds, oldest first)."""
    books = _books(request)
    report = exceptions(services(request).ledger, books=books)
    return download(request, f"exceptions-{report['as_of']}.csv", exceptions_csv(report))
