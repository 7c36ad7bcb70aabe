"""Bank reconciliation over HTTP: the exceptions report, linking statement lines that were
counted twice, undoing a wrong link, and a person's check of a line an import rule sent to
a fund (issue #10).

Thin: application.reconciliation reads the event store and builds the report; this module
only renders it as JSON, or as CSV when the client asks with `Accept: text/csv`.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field, model_validator

from api.deps import Reader, Recorder, ServicesDep, Staff
from api.problems import ApiProblem
from api.routes_queries import Limit, Offset
from api.schemas import Reason
from application.reconciliation import (
    Books,
    check_line,
    choose_link,
    exceptions,
    exceptions_csv,
    exceptions_report_page,
    kept_books,
    link_counted_twice,
    provider_lines_in_funds,
    undo_line_check,
    unlink_line,
)
from domain.imports import MAX_IMPORT_LINES

router = APIRouter()


class CandidateFileOut(BaseModel):
    batch_id: str = Field(description="the imported file's import")
    file_name: str
    day: str = Field(description="the latest UK day of its receipts (ISO)")


class CandidateOut(BaseModel):
    """One record a statement line may pay in, for a person to choose (POST
    /reconciliation/choices with its candidate key, or its payment_id)."""

    rule: str = Field(
        description="one_receipt, import_total, channel_day_total, card_payout or "
        "imports_together (two or three files of one format received on different days, "
        "whose totals only together make the line's amount: never linked by a run)"
    )
    matched: str = Field(description="what it is, in words")
    candidate: str = Field(
        description="its key, to name it by when choosing it (POST /reconciliation/choices): "
        "a hash of what it pays in, the same wherever and whenever the candidate is listed; "
        "it names every candidate, also one whose receipts other candidates pay in too "
        "(payment_id null)"
    )
    payment_id: str | None = Field(
        None,
        description="a receipt that names it too (POST /reconciliation/choices): the "
        "first of payment_ids that no other candidate of the line pays in; for a payout "
        "split over lines whose payment_ids another split of the line pays in too, the own "
        "receipt of its other line that tells them apart",
    )
    payment_ids: list[str] = Field(description="the receipts the line would pay in")
    matched_batch_id: str | None = Field(description="import_total: the import")
    settled_day: str | None = Field(
        None, description="card_payout: the card provider's settlement day it pays out (ISO)"
    )
    channels: list[str]
    days: list[str] = Field(description="the UK days the receipts were received (ISO)")
    files: list[CandidateFileOut] = Field(
        [], description="import_total and imports_together: the imported files it pays in"
    )


class ExceptionRow(BaseModel):
    kind: str = Field(
        description="statement_line (a new bank receipt someone still has to settle: in "
        "suspense, even in part, or sent to a fund by an import rule and not yet checked by a "
        "person, POST /reconciliation/checks; not a payer's own "
        "transfer a fund took by its reference, nor a line an officer has since allocated "
        "in full, refunded or reversed), statement_debit (a GOV.UK Pay "
        "payout debit no refunds explain yet: money out, its amount negative, no receipt), "
        "receipt, unsettled_payment (a card "
        "payment no payout has paid in, net of its fees), unsettled_deduction (a refund, lost "
        "dispute or fee no payout has deducted yet) or open_dispute (money at risk)"
    )
    batch_id: str | None
    line: int | None
    payment_id: str | None
    channel: str
    amount_pence: int
    reference: str
    date: str = Field(
        description="booking date of the line, the receipt's UK date, the card item's "
        "settlement day, or the day a dispute was opened"
    )
    age_days: int
    age_band: str
    candidates: list[CandidateOut] = Field(
        [],
        description="statement_line (or statement_debit) waiting for a person: everything "
        "it may pay in, by any matching rule, when a run would guess (its rule gives more "
        "than one candidate, or another waiting line may pay in the same): no linking run "
        "links it, a person chooses (POST /reconciliation/choices); empty otherwise",
    )


class ExceptionSummary(BaseModel):
    kind: str
    age_band: str
    count: int
    amount_pence: int


class ExceptionsOut(BaseModel):
    as_of: str
    limit: int
    offset: int = Field(
        description="the page's first row, counted across the four sections in this order"
    )
    total: int = Field(description="rows in the whole report, in all four sections")
    position: int = Field(
        description="the ledger position the report was made at (its last event that "
        "changes the report): pass it as `at_position` when asking for the next pages, so "
        "that a report changed meanwhile (rows shifted by a link, a new receipt) is refused "
        "(409 report_changed) instead of a page that skips or repeats rows"
    )
    unmatched_statement_lines: list[ExceptionRow] = Field(description="this page's, if any")
    unmatched_receipts: list[ExceptionRow] = Field(description="this page's, if any")
    unsettled_card_payments: list[ExceptionRow] = Field(description="this page's, if any")
    open_disputes: list[ExceptionRow] = Field(description="this page's, if any")
    summary: list[ExceptionSummary] = Field(
        description="counts and amounts by kind and age band, of the whole report"
    )


@router.get(
    "/reconciliation/exceptions",
    tags=["reconciliation"],
    response_model=ExceptionsOut,
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV on request"}},
)
async def reconciliation_exceptions(
    svc: ServicesDep,
    user: Reader,
    accept: Annotated[str | None, Header()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    at_position: Annotated[
        int | None,
        Query(
            ge=0,
            description="the `position` of the report's first page: a later page is "
            "refused (409 report_changed) if the report has changed since",
        ),
    ] = None,
) -> Any:
    """Statement credit lines that no receipt recorded by another channel explains (they
    were recorded as new bank receipts), receipts of other channels that no statement
    line has paid in yet, GOV.UK Pay money no payout has paid in yet (per payment and
    settlement day, net of fees, refunds and lost disputes), and card disputes not yet
    decided, oldest first with their age band (0-3, 4-7, 8-30, over 30 days).
    Paged: `limit` rows from `offset`, counted across the four sections in that order
    (`total`: rows in all; the summary is the whole report's). The report is made afresh
    on each call: `position` names the state it was made at; give it back as
    `at_position` for the next pages, and a page of a report changed since (a line linked,
    money recorded: rows would shift, and a client skip or repeat some) is refused with
    409 report_changed: start again from the first page. CSV (`Accept: text/csv`)
    is the whole report, unpaged.
    The matching rules are in README, "A day's files". Roles: officer, supervisor, auditor,
    reporting."""
    user.access.require_whole_ledger("the reconciliation exceptions report")

    csv = bool(accept and "text/csv" in accept)

    def made() -> tuple[Books, dict[str, Any] | None]:
        books = kept_books(svc.ledger)
        if csv:
            return books, exceptions(svc.ledger, books=books)
        if at_position is not None and at_position != books.position:
            return books, None  # refused below: no page made
        return books, exceptions_report_page(svc.ledger, limit, offset, books=books)

    books, report = await run_in_threadpool(made)
    if csv:
        assert report is not None
        return Response(exceptions_csv(report), media_type="text/csv; charset=utf-8")
    if report is None:
        raise ApiProblem(
            409,
            "The report changed",
            f"the exceptions report has changed since the page made at position "
            f"{at_position} (it is now at position {books.position}): rows may have moved "
            "between pages; start again from the first page (offset 0, without at_position)",
            "report_changed",
        )
    return report | {"position": books.position}


class LateLinkOut(BaseModel):
    batch_id: str = Field(description="the statement's import")
    file_name: str
    line: int
    amount_pence: int
    reversed_payment_id: str | None = Field(
        description="the line's own receipt, reversed (kind counted_twice); null for a "
        "negative payout's debit line, which has none"
    )
    rule: str
    matched_payment_ids: list[str]
    matched: str
    settled_day: str | None = None
    matched_batch_id: str | None = None
    matched_batch_ids: list[str] = Field(
        [], description="imports_together: the imports whose totals it paid in together"
    )


class LateLinksOut(BaseModel):
    links: list[LateLinkOut]


@router.post("/reconciliation/links", tags=["reconciliation"], response_model=LateLinksOut)
async def reconciliation_links(svc: ServicesDep, user: Recorder) -> Any:
    """Statement lines recorded as their own receipts (the statement was imported first)
    that pay in receipts another channel recorded since are linked to them by the import's
    matching rules, and each such line's receipt, if still wholly in suspense, is reversed
    (kind `counted_twice`) in the same transaction. Idempotent: a second call links
    nothing. Roles: officer, supervisor, integration."""
    user.access.require_whole_ledger("linking statement lines")
    links = await run_in_threadpool(link_counted_twice, svc.ledger, user.context())
    return {"links": [link.to_dict() for link in links]}


@router.post(
    "/reconciliation/links/{batch_id}/{line}",
    tags=["reconciliation"],
    response_model=LateLinksOut,
)
async def reconciliation_link_line(
    batch_id: UUID,
    line: Annotated[int, Path(ge=1, le=MAX_IMPORT_LINES)],
    svc: ServicesDep,
    user: Staff,
) -> Any:
    """A person links one statement line (and the other parts of a payout split over lines
    it begins) by the same rules as POST /reconciliation/links, a pairing undone before
    (POST /reconciliation/unlinks) included. An empty list: it matches nothing now. 404
    for an unknown import or line, 409 for a line that does not wait for a link, or that
    may pay in more than one record (line_needs_a_choice: POST /reconciliation/choices).
    Roles: officer, supervisor."""
    user.access.require_whole_ledger("linking statement lines")
    links = await run_in_threadpool(
        link_counted_twice, svc.ledger, user.context(), (batch_id, line)
    )
    return {"links": [link.to_dict() for link in links]}


class ChoiceIn(BaseModel):
    """The candidate chosen is named by `candidate` or by `payment_id`: one of the two."""

    batch_id: UUID = Field(description="the statement's import")
    line: int = Field(ge=1, le=MAX_IMPORT_LINES, description="the statement line's number")
    candidate: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="the candidate chosen, by its key (its candidate on the exceptions "
        "report or GET /imports/{batch_id}); or else payment_id",
    )
    payment_id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="a receipt naming the candidate chosen (its payment_id on the "
        "exceptions report or GET /imports/{batch_id}), when not naming it by candidate",
    )
    reason: Reason = Field(description="why this candidate: what the person checked")

    @model_validator(mode="after")
    def _names_one(self) -> ChoiceIn:
        if (self.candidate is None) == (self.payment_id is None):
            raise ValueError(
                "name the candidate chosen by candidate (its key) or by payment_id, one of the two"
            )
        return self


@router.post("/reconciliation/choices", tags=["reconciliation"], response_model=LateLinksOut)
async def reconciliation_choice(body: ChoiceIn, svc: ServicesDep, user: Staff) -> Any:
    """A person links a statement line that may pay in more than one record to the one
    they choose, saying why: the candidate (by the same rules as POST
    /reconciliation/links) whose key is `candidate`, or else the one paying in
    `payment_id`. Linked as a run links (the line's own receipt reversed as counted twice,
    what it pays in noted), recorded with the person and the reason, and undone by POST
    /reconciliation/unlinks. 404 for an unknown import or line, 409 for a key or receipt
    that names no one candidate (not_a_candidate) or a line that does not wait for a link,
    422 without a reason or naming neither or both of candidate and payment_id. Roles:
    officer, supervisor."""
    user.access.require_whole_ledger("linking statement lines")
    links = await run_in_threadpool(
        choose_link,
        svc.ledger,
        user.context(),
        body.batch_id,
        body.line,
        body.payment_id,
        body.reason,
        candidate=body.candidate,
    )
    return {"links": [link.to_dict() for link in links]}


class _StatementLineIn(BaseModel):
    """A statement line a person acts on (unlink, check, uncheck), with their reason."""

    batch_id: UUID = Field(description="the statement's import")
    line: int = Field(ge=1, le=MAX_IMPORT_LINES, description="the statement line's number")


class UnlinkIn(_StatementLineIn):
    reason: Reason = Field(description="why the link is wrong")


class UndoneLinkOut(BaseModel):
    batch_id: str
    file_name: str
    line: int
    restored_payment_id: str | None = Field(
        description="the line's own receipt, its counted_twice reversal undone: in suspense"
    )
    rule: str
    matched_payment_ids: list[str] = Field(description="the receipts no longer paid in")
    matched: str
    settled_day: str | None = None
    matched_batch_id: str | None = None
    matched_batch_ids: list[str] = Field(
        [], description="imports_together: the imports whose totals it paid in together"
    )


class UndoneLinksOut(BaseModel):
    undone: list[UndoneLinkOut]


@router.post("/reconciliation/unlinks", tags=["reconciliation"], response_model=UndoneLinksOut)
async def reconciliation_unlink(body: UnlinkIn, svc: ServicesDep, user: Staff) -> Any:
    """Undo a wrong late link (made by POST /reconciliation/links): the line's own receipt is
    counted again (its counted_twice reversal undone, back in suspense), the receipts it paid
    in are noted as no longer paid in (GOV.UK Pay payments back in clearing), and no linking
    run makes that pairing again. The first line of a payout split over lines takes its parts
    with it. 404 for an unknown import or line, 409 for a line not linked (or already
    undone, or linked at import: reverse the whole import instead). Roles: officer,
    supervisor."""
    user.access.require_whole_ledger("undoing a statement line's link")
    undone = await run_in_threadpool(
        unlink_line, svc.ledger, body.batch_id, body.line, user.context(), body.reason
    )
    return {"undone": [item.to_dict() for item in undone]}


class CheckIn(_StatementLineIn):
    reason: Reason = Field(description="what the person checked, and why the line is right")


class UncheckIn(_StatementLineIn):
    reason: Reason = Field(description="why the check was wrong")


class LineCheckOut(BaseModel):
    batch_id: str
    file_name: str
    line: int
    payment_id: str | None = Field(description="the line's own receipt")
    amount_pence: int
    checked: bool = Field(description="whether the check stands now (false: undone)")
    actor: str
    reason: str
    on_report: bool = Field(
        description="whether the line is on the exceptions report now: an undone check puts "
        "it back, unless its receipt was since refunded in full or reversed"
    )


@router.post("/reconciliation/checks", tags=["reconciliation"], response_model=LineCheckOut)
async def reconciliation_check(body: CheckIn, svc: ServicesDep, user: Staff) -> Any:
    """A person checked a statement line an import rule sent to a fund (by its narrative,
    amount or channel: perhaps another channel's money counted twice) and says it is right:
    recorded on the statement's import (LineChecked: who, when, why), and the line leaves
    the exceptions report; GET /imports/{batch_id} shows the check on the line, and POST
    /reconciliation/unchecks undoes it. 404 for an unknown import or line, 409
    line_not_to_check for a line that is no such line (in suspense: allocate, refund or
    reverse its receipt; a payer's own transfer a fund took by its reference; linked; of
    a reversed import; of an Allpay or CSV file) or that was checked already, 422 without a reason. Roles: officer,
    supervisor."""
    user.access.require_whole_ledger("checking a statement line")
    done = await run_in_threadpool(
        check_line, svc.ledger, body.batch_id, body.line, user.context(), body.reason
    )
    return done.to_dict()


@router.post("/reconciliation/unchecks", tags=["reconciliation"], response_model=LineCheckOut)
async def reconciliation_uncheck(body: UncheckIn, svc: ServicesDep, user: Staff) -> Any:
    """Undo a person's check of a statement line (POST /reconciliation/checks): the line is
    back on the exceptions report; the check and its undoing (LineCheckUndone) both stay in
    the history. 404 for an unknown import or line, 409 line_not_checked for a line whose
    check does not stand, 422 without a reason. Roles: officer, supervisor."""
    user.access.require_whole_ledger("undoing a statement line's check")
    done = await run_in_threadpool(
        undo_line_check, svc.ledger, body.batch_id, body.line, user.context(), body.reason
    )
    return done.to_dict()


class FundHeldOut(BaseModel):
    fund_code: str
    reference: str
    amount_pence: int


class ProviderLineOut(BaseModel):
    batch_id: str = Field(description="the statement's import")
    file_name: str
    line: int
    booking_date: str | None
    payment_id: str = Field(description="the line's own receipt")
    amount_pence: int
    reference: str
    narrative: str = Field(description="the line's narrative, naming a provider")
    funds: list[FundHeldOut] = Field(description="where the receipt's money is now")


class ProviderLinesOut(BaseModel):
    total: int = Field(description="all such lines (at most `limit` are listed)")
    lines: list[ProviderLineOut]


@router.get(
    "/reconciliation/provider-lines", tags=["reconciliation"], response_model=ProviderLinesOut
)
async def reconciliation_provider_lines(
    svc: ServicesDep, user: Reader, limit: Annotated[int, Query(ge=1, le=1_000)] = 100
) -> Any:
    """Read-only: statement credit lines a fund took by their reference at import whose
    narrative names a payment provider by the ledger's names now (LEDGER_PAYOUT_NARRATIVES,
    LEDGER_COLLECTOR_NARRATIVES): a provider's payout taken for a payer's own transfer, as
    imports did before a provider's line was held for its provider, or before a name was
    added to the settings. With where each receipt's money is now, so that an officer
    transfers or reverses it (counted_twice); lines of reversed statements, and receipts
    refunded or reversed in full, are left out. Nothing is changed. Reads every statement
    import: a check to run now and then, not a dashboard. Roles: officer, supervisor,
    auditor, reporting."""
    user.access.require_whole_ledger("the statement lines naming a provider")
    return await run_in_threadpool(provider_lines_in_funds, svc.ledger, limit)
