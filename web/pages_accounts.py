"""A payer account's statement (with its CSV), and the forms that move a payment's money:
a transfer to another account and a reversal of what remains."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import date, datetime
from functools import partial
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.auth import READERS, STAFF
from api.routes_commands import transfer_money
from api.schemas import ReversalIn, TransferIn
from application.idempotency import StoredResponse
from application.ledger import CommandContext, Outcome
from domain import errors
from domain.limits import MAX_FUND_CODE_LENGTH, MAX_REFERENCE_LENGTH, UK
from domain.money import pounds_text
from domain.payment import ReversalKind
from projections import queries
from web.app import PREFIX, download, redirect, render, signed_in_user
from web.pages import (
    FormErrors,
    day_field,
    form_model,
    new_key,
    payment_form,
    pence_from,
    posted_form,
    record_payment_command,
    services,
    user_allowed,
)

router = APIRouter(prefix=PREFIX)
# Movements read for one statement; a payer account has far fewer. Beyond this the page
# says that it shows the first ones only.
STATEMENT_MAX_LINES = 5000
# What an officer reverses by hand: an imported file's reversal is the import's own action.
REVERSAL_KINDS = [
    kind
    for kind in ReversalKind
    if kind not in (ReversalKind.IMPORT_REVERSED, ReversalKind.COUNTED_TWICE)
]
STATEMENT_COLUMNS = [
    "effective_date",
    "action",
    "payment_id",
    "amount_pence",
    "vat_pence",
    "balance_pence",
    "position",
]


# ---- the statement ----------------------------------------------------------------------


@router.get("/accounts")
def account_page(request: Request) -> Response:
    """A GET form: fund and reference, optionally a range of effective (UK) dates."""
    user_allowed(request, READERS, "see account statements")
    asked, problems, statement = _statement(request)
    return render(
        request,
        "account.html",
        422 if problems else 200,
        asked=asked,
        errors=problems,
        statement=statement,
        funds=services(request).ledger.funds(signed_in_user(request).access),
        csv_query=request.url.query,
    )


@router.get("/accounts.csv")
def account_csv(request: Request) -> Response:
    user_allowed(request, READERS, "see account statements")
    asked, problems, statement = _statement(request)
    if problems or statement is None:
        return render(
            request,
            "account.html",
            422,
            asked=asked,
            errors=problems or {"fund_code": "Choose a fund and enter a reference"},
            statement=None,
            funds=services(request).ledger.funds(signed_in_user(request).access),
        )
    name = f"statement-{statement['fund_code']}-{statement['reference']}.csv"
    return csv_download(request, name, STATEMENT_COLUMNS, statement["lines"])


def _statement(request: Request) -> tuple[dict[str, str], dict[str, str], dict[str, Any] | None]:
    params = request.query_params
    asked = {
        "fund_code": params.get("fund_code", "").strip().upper()[:MAX_FUND_CODE_LENGTH],
        "reference": params.get("reference", "").strip()[:MAX_REFERENCE_LENGTH],
        "from": params.get("from", "").strip()[:10],
        "to": params.get("to", "").strip()[:10],
    }
    problems: dict[str, str] = {}
    start = day_field(asked["from"], "from", problems)
    end = day_field(asked["to"], "to", problems)
    if start and end and start > end:
        problems["to"] = "The end date must be the same as or after the start date"
    if not (asked["fund_code"] or asked["reference"]):
        return asked, problems, None
    if not asked["fund_code"]:
        problems["fund_code"] = "Choose a fund"
    if not asked["reference"]:
        problems["reference"] = "Enter the payer's reference"
    if problems:
        return asked, problems, None
    svc = services(request)
    try:
        fund = svc.ledger.fund(asked["fund_code"], signed_in_user(request).access)
    except errors.UnknownFund as error:
        return asked, {"fund_code": error.message}, None
    with svc.read_engine.connect() as connection:
        found = queries.account_statement(
            connection,
            fund["code"],
            asked["reference"],
            limit=STATEMENT_MAX_LINES,
        )
    return asked, problems, found | within_dates(found["statement"], start, end)


def within_dates(lines: Iterable[dict[str, Any]], start: date | None, end: date | None) -> dict:
    """The movements effective (UK date) from `start` to `end`, each with the running balance
    from the balance brought forward (everything effective before `start`)."""
    opening = 0
    shown = []
    for line in lines:
        day = datetime.fromisoformat(line["effective_at"]).astimezone(UK).date()
        if start is not None and day < start:
            opening += line["amount_pence"]
        elif end is None or day <= end:
            shown.append(line | {"effective_date": day.isoformat()})
    running = opening
    for line in shown:
        running += line["amount_pence"]
        line["balance_pence"] = running
    return {"opening_pence": opening, "closing_pence": running, "lines": shown}


def csv_download(
    request: Request, file_name: str, columns: list[str], rows: Iterable[dict[str, Any]]
) -> Response:
    """A CSV file to save (pence as integers, as reporting tools read them)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return download(request, file_name, buffer.getvalue())


# ---- transfer ---------------------------------------------------------------------------


@router.get("/payments/{payment_id}/transfer")
def transfer_page(request: Request, payment_id: UUID, source: str = "") -> Response:
    user_allowed(request, STAFF, "move money between accounts")
    form = {"idempotency_key": new_key(), "from_account": source[:300]}
    return _transfer_form(request, payment_id, form, {})


def _sources(payment: dict[str, Any]) -> dict[str, Any]:
    """The accounts this payment's money is allocated to, to move it from."""
    return {
        "sources": [
            (
                f"{a['fund_code']}:{a['reference']}",
                f"{a['fund_code']} {a['reference']} ({pounds_text(a['amount_pence'])})",
            )
            for a in payment["allocations"]
            if a["amount_pence"] > 0
        ]
    }


_transfer_form = partial(payment_form, template="transfer.html", more=_sources)


@router.post("/payments/{payment_id}/transfer")
async def transfer(request: Request, payment_id: UUID) -> Response:
    user, form = await posted_form(request, STAFF, "move money between accounts")

    def command(ctx: CommandContext) -> Outcome:
        source_fund, _, source_reference = form.get("from_account", "").partition(":")
        if not source_reference:
            raise FormErrors({"from_account": "Choose the account to move the money from"})
        body = form_model(
            TransferIn,
            **{
                "from": {"fund_code": source_fund, "reference": source_reference},
                "to": {"fund_code": form.get("fund_code", ""), "reference": form.get("reference")},
                "amount_pence": pence_from(form.get("amount", "")),
                "reason": form.get("reason", ""),
            },
        )
        return transfer_money(services(request).ledger, payment_id, body, ctx)

    result = await run_in_threadpool(record_payment_command, request, user, form, command)
    if isinstance(result, StoredResponse):
        return redirect(request, f"/payments/{payment_id}?done=transferred")
    return await run_in_threadpool(_transfer_form, request, payment_id, form, result, 422)


# ---- reversal ---------------------------------------------------------------------------


@router.get("/payments/{payment_id}/reverse")
def reverse_page(request: Request, payment_id: UUID) -> Response:
    user_allowed(request, STAFF, "reverse payments")
    return _reverse_form(request, payment_id, {"idempotency_key": new_key()}, {})


_reverse_form = partial(
    payment_form, template="reverse.html", more=lambda _: {"kinds": REVERSAL_KINDS}
)


@router.post("/payments/{payment_id}/reverse")
async def reverse(request: Request, payment_id: UUID) -> Response:
    user, form = await posted_form(request, STAFF, "reverse payments")

    def command(ctx: CommandContext) -> Outcome:
        if form.get("kind") not in REVERSAL_KINDS:
            raise FormErrors({"kind": "Choose why the money was taken back"})
        body = form_model(ReversalIn, kind=form["kind"], reason=form.get("reason", ""))
        return services(request).ledger.reverse(payment_id, body.kind.value, ctx, body.reason)

    result = await run_in_threadpool(record_payment_command, request, user, form, command)
    if isinstance(result, StoredResponse):
        return redirect(request, f"/payments/{payment_id}?done=reversed")
    return await run_in_threadpool(_reverse_form, request, payment_id, form, result, 422)
