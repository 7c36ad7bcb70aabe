"""The cash-up pages: an officer's form to submit a till's count, the supervisors' approval
queue, and one cash-up's page. They call application.cashups, as the API does."""

from __future__ import annotations

import re
import uuid
from datetime import date
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.auth import READERS, STAFF, SUPERVISORS
from application.cashups import (
    SubmitCashUp,
    approve_cashup,
    cashups,
    get_cashup,
    return_cashup,
    submit_cashup,
)
from application.idempotency import StoredResponse
from application.ledger import CommandContext
from application.offices import offices
from domain import errors
from domain.cashups import DENOMINATIONS_PENCE, NOTES_PENCE, Cheque, denomination_name
from domain.limits import uk_today
from domain.money import pounds_to_pence
from web.app import PREFIX, redirect, render
from web.pages import FormErrors, posted_form, record_once, services, user_allowed

router = APIRouter(prefix=PREFIX)
# Rows for cheques on the form; a till with more banks them on a second cash-up line.
CHEQUE_ROWS = 5
_CHEQUE = re.compile(r"^cheque (\d+)")
_PIECE = re.compile(r"^the count of (£\d+|\d+p)")


@router.get("/cashup")
def cashup_form(request: Request) -> Response:
    user_allowed(request, STAFF, "submit a cash-up")
    form = {"idempotency_key": str(uuid.uuid4()), "business_date": uk_today().isoformat()}
    return _form_page(request, form, {})


def _form_page(
    request: Request, form: dict[str, str], errors_by_field: dict[str, str], status: int = 200
) -> Response:
    tills = [
        (f"{office['code']}/{till['code']}", f"{office['name']}: till {till['name']}")
        for office in offices(services(request).ledger)
        if office["open"]
        for till in office["tills"]
        if till["open"]
    ]
    return render(
        request,
        "cashup_form.html",
        status,
        form=form,
        errors=errors_by_field,
        tills=tills,
        denominations=[(p, denomination_name(p), p in NOTES_PENCE) for p in DENOMINATIONS_PENCE],
        cheque_rows=range(1, CHEQUE_ROWS + 1),
    )


@router.post("/cashup")
async def submit(request: Request) -> Response:
    user, form = await posted_form(request, STAFF, "submit a cash-up")
    ledger = services(request).ledger

    def command(ctx: CommandContext) -> dict[str, Any]:
        try:
            return submit_cashup(ledger, _command(form), ctx)
        except errors.LedgerError as error:
            raise FormErrors({_field_of(error): error.message}) from None

    result = await run_in_threadpool(record_once, request, user, form, command)
    if isinstance(result, StoredResponse):
        return redirect(request, f"/cashups/{result.body['cashup_id']}?done=submitted")
    return await run_in_threadpool(_form_page, request, form, result, 422)


def _command(form: dict[str, str]) -> SubmitCashUp:
    """The form as a command; what cannot be read is said beside its field."""
    problems: dict[str, str] = {}
    office, _, till = form.get("till", "").partition("/")
    if not till:
        problems["till"] = "Choose the till counted"
    try:
        day = date.fromisoformat(form.get("business_date", ""))
    except ValueError:
        problems["business_date"] = "Enter the date counted, like 2026-03-31"
    pieces = {}
    for pence in DENOMINATIONS_PENCE:
        text = form.get(f"count_{pence}", "") or "0"
        if not text.isdigit():
            problems[f"count_{pence}"] = "Enter how many, as a whole number like 3"
        else:
            pieces[pence] = int(text)
    cheques = []
    for row in range(1, CHEQUE_ROWS + 1):
        amount, drawer, reference = (
            form.get(f"cheque_{name}_{row}", "") for name in ("amount", "drawer", "reference")
        )
        if not (amount or drawer or reference):
            continue
        try:
            cheques.append(Cheque(pounds_to_pence(amount), drawer, reference))
        except errors.InvalidAmount:
            problems[f"cheque_amount_{row}"] = "Enter the cheque's amount in pounds, like 25.00"
    if problems:
        raise FormErrors(problems)
    return SubmitCashUp(
        office, till, day, pieces, cheques, form.get("bag_number", ""), form.get("reason", "")
    )


def _field_of(error: errors.LedgerError) -> str:
    """The form field a ledger error is about; `summary` when about none."""
    message = error.message
    if isinstance(error, errors.ReasonRequired):
        return "reason"
    if isinstance(error, (errors.OfficeNotFound, errors.TillNotFound, errors.OfficeNotOpen)):
        return "till"
    if isinstance(error, errors.PeriodClosed) or message.startswith("the cash-up date"):
        return "business_date"
    if message.startswith("the bag number"):
        return "bag_number"
    cheque = _CHEQUE.match(message)
    if cheque:
        return f"cheque_amount_{cheque[1]}"
    piece = _PIECE.match(message)
    if piece:
        by_name = {denomination_name(p): p for p in DENOMINATIONS_PENCE}
        return f"count_{by_name[piece[1]]}"
    return "summary"


@router.get("/cashups")
def approval_queue(request: Request, done: str | None = None) -> Response:
    user = user_allowed(request, SUPERVISORS, "approve or return cash-ups")
    waiting = cashups(services(request).ledger, "submitted")
    return render(
        request, "cashups.html", waiting=waiting, actor=user.actor, new_key=_key, done=done
    )


@router.get("/cashups/{cashup_id}")
def cashup_page(request: Request, cashup_id: UUID, done: str | None = None) -> Response:
    user = user_allowed(request, READERS, "see cash-ups")
    try:
        found = get_cashup(services(request).ledger, cashup_id)
    except errors.CashUpNotFound:
        return render(request, "not_found.html", 404, what=f"cash-up {cashup_id}")
    return render(request, "cashup.html", cashup=found, actor=user.actor, new_key=_key, done=done)


@router.post("/cashups/{cashup_id}/{decision}")
async def decide(request: Request, cashup_id: UUID, decision: str) -> Response:
    user, form = await posted_form(request, SUPERVISORS, "approve or return cash-ups")
    ledger = services(request).ledger
    if decision not in ("approve", "return"):
        return render(request, "not_found.html", 404, what=f"the decision {decision!r}")

    def command(ctx: CommandContext) -> dict[str, Any]:
        if decision == "approve":
            return approve_cashup(ledger, cashup_id, ctx)
        return return_cashup(ledger, cashup_id, ctx, form.get("reason", ""))

    result = await run_in_threadpool(record_once, request, user, form, command)
    if isinstance(result, StoredResponse):
        return redirect(request, f"/cashups?done={decision}")
    waiting = await run_in_threadpool(cashups, ledger, "submitted")
    return render(
        request,
        "cashups.html",
        422,
        waiting=waiting,
        actor=user.actor,
        new_key=_key,
        failed=str(cashup_id),
        errors=result,
    )


def _key() -> str:
    return str(uuid.uuid4())
