"""The bank reconciliation exceptions report as a page, and its CSV: the same report as
`GET /reconciliation/exceptions` and `income-ledger reconcile exceptions`, paged as the API
pages it (a later page names the position the first was made at, and a report changed
since is said so, with a link to start again, never a page that skips or repeats rows)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.auth import READERS
from application.reconciliation import (
    REPORT_SECTIONS,
    Books,
    exceptions,
    exceptions_csv,
    exceptions_page,
    kept_books,
)
from web.app import PREFIX, render
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


def _made(request: Request) -> tuple[Books, dict[str, Any]]:
    """The books and the report made from them, as the API makes them (one read)."""
    user_allowed(request, READERS, WHAT).access.require_whole_ledger(
        "the reconciliation exceptions report"
    )
    ledger = services(request).ledger
    books = kept_books(ledger)
    return books, exceptions(ledger, books=books)


@router.get("/exceptions")
def exceptions_report(request: Request, page: int = 1, position: int | None = None) -> Response:
    """One page of the report. `position` is the first page's (its Next link carries it):
    a report changed since answers 409 with a link to its first page, as the API's
    report_changed."""
    books, report = _made(request)
    page = max(1, min(page, 10_000))
    if position is not None and position != books.position:
        return render(request, "exceptions.html", 409, changed=True, report=None)
    shown = exceptions_page(report, EXCEPTIONS_PAGE_SIZE, (page - 1) * EXCEPTIONS_PAGE_SIZE)
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
    _, report = _made(request)
    return Response(
        exceptions_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="exceptions-{report["as_of"]}.csv"',
            "Cache-Control": "no-store",
        },
    )
