"""The officers' pages. Each reads and records through the same services as the HTTP API:
the read-model queries and the IncomeLedger application, never SQL of its own."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from datetime import date
from functools import partial
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from api.auth import READERS, STAFF, SUPERVISORS, ApiUser, Role
from api.deps import USER_SCOPE_KEY
from api.routes_queries import daily_takings_report, find_payments
from api.schemas import AllocateIn, DeclineIn, RefundIn
from api.services import Services
from application.idempotency import IdempotentRequest, StoredResponse, request_hash
from application.ledger import CommandContext, Outcome
from domain import errors
from domain.limits import MAX_IDEMPOTENCY_KEY_LENGTH, MAX_REFERENCE_LENGTH, uk_today
from domain.money import pounds_to_pence
from domain.payment import Channel, PaymentStatus
from projections import queries
from projections.business_figures import suspense_by_age
from web.app import PREFIX, Refused, redirect, render, session, set_session, signed_in_user
from web.sessions import Session
from web.sign_in_limits import SignInLimits

router = APIRouter(prefix=PREFIX)
SUSPENSE_PAGE_SIZE = 100
SEARCH_PAGE_SIZE = 50
# Lines of the allocate form: one receipt split across up to this many accounts at once.
ALLOCATION_LINES = 3
# Errors the ledger raises, and the form field each is about (others go in the summary).
FIELD_OF_ERROR: dict[type[errors.LedgerError], str] = {
    errors.UnknownFund: "fund_code",
    errors.FundDisabled: "fund_code",
    errors.InvalidReference: "reference",
    errors.InvalidAmount: "amount",
    errors.AllocationExceedsUnallocated: "amount",
    errors.TransferExceedsAllocation: "amount",
    errors.AllocationNotFound: "from_account",
    errors.RefundExceedsRemaining: "amount",
    errors.ReasonRequired: "reason",
}
# Pydantic's field names, as the form calls them.
FIELD_OF_SCHEMA = {"amount_pence": "amount", "fund_code": "fund_code", "reference": "reference"}


class FormErrors(Exception):
    def __init__(self, by_field: dict[str, str]) -> None:
        super().__init__("; ".join(by_field.values()))
        self.by_field = by_field


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def user_allowed(request: Request, roles: frozenset[Role], what: str) -> ApiUser:
    """The signed-in user, if their role may use this page; else the sign-in or 403 page."""
    user = signed_in_user(request)
    request.scope[USER_SCOPE_KEY] = user.actor
    if user.role not in roles:
        raise Refused(
            "You cannot use this page",
            f"The {user.role.value} role may not {what}. Ask a supervisor if you need to.",
        )
    return user


async def posted_form(
    request: Request, roles: frozenset[Role], what: str
) -> tuple[ApiUser, dict[str, str]]:
    """A form posted by a signed-in user allowed to send it, with its CSRF token checked."""
    user = user_allowed(request, roles, what)
    form = _fields(await request.body())
    require_csrf(request, form.get("csrf_token"))
    return user, form


def require_csrf(request: Request, token: str | None) -> None:
    if not session(request).csrf_ok(token):
        raise Refused(
            "The form could not be sent",
            "The form was not sent from this site, or it is too old. Go back, reload the "
            "page and send it again.",
        )


def _fields(body: bytes) -> dict[str, str]:
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[0].strip() for name, values in parsed.items()}


# ---- sign-in ----------------------------------------------------------------------------


@router.get("/sign-in")
def sign_in_page(request: Request, timed_out: bool = False) -> Response:
    return render(request, "sign_in.html", expired=timed_out)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = _fields(await request.body())
    current = session(request)
    if not current.csrf_ok(form.get("csrf_token")):
        raise Refused(
            "The form could not be sent",
            "The sign-in form was not sent from this site, or it is too old. Reload the "
            "sign-in page and try again.",
        )
    limits: SignInLimits = request.app.state.sign_in_limits
    address = request.client.host if request.client else "unknown"
    wait_s = limits.wait_seconds(address)
    if wait_s > 0:
        message = (
            f"Too many failed sign-ins from this computer: wait {math.ceil(wait_s / 60)} "
            "minutes, then try again, or ask the system administrator to check your key"
        )
        return render(request, "sign_in.html", 429, expired=False, errors={"access_key": message})
    user = services(request).api_keys.user_for(form.get("access_key", ""))
    if user is None:
        limits.failed(address)
        message = (
            "The access key is not recognised: check it and try again"
            if form.get("access_key")
            else "Enter your access key"
        )
        return render(request, "sign_in.html", 401, expired=False, errors={"access_key": message})
    request.scope[USER_SCOPE_KEY] = user.actor  # the access log shows who signed in
    set_session(request, current.signed_in(user))
    return redirect(request, "/")


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    form = _fields(await request.body())
    if not session(request).csrf_ok(form.get("csrf_token")):
        raise Refused("The form could not be sent", "Reload the page and sign out again.")
    set_session(request, Session.fresh())
    return render(request, "signed_out.html")


# ---- reading ----------------------------------------------------------------------------


@router.get("/")
def dashboard(request: Request) -> Response:
    user = user_allowed(request, READERS, "see the dashboard")
    svc = services(request)
    takings = daily_takings_report(svc, uk_today(), user.access)
    with svc.read_engine.connect() as connection:
        ageing = suspense_by_age(connection, uk_today())
    return render(
        request,
        "dashboard.html",
        takings=takings,
        ageing=ageing,
        takings_chart=list(takings["by_channel"].items()),
        funds_chart=list(takings["by_fund"].items()),
        ageing_chart=[(f"{band.age_days} days", band.amount_pence) for band in ageing],
    )


@router.get("/suspense")
def suspense(request: Request, page: int = 1) -> Response:
    user_allowed(request, READERS, "see the suspense queue")
    page = max(1, min(page, 10_000))
    with services(request).read_engine.connect() as connection:
        found = queries.suspense_page(
            connection, limit=SUSPENSE_PAGE_SIZE, offset=(page - 1) * SUSPENSE_PAGE_SIZE
        )
    return render(
        request,
        "suspense.html",
        suspense=found,
        page=page,
        page_size=SUSPENSE_PAGE_SIZE,
        staff=STAFF,
    )


@router.get("/payments")
def payment_search(request: Request, page: int = 1) -> Response:
    """Find payments by reference, channel, status and received dates (a GET form: the
    address can be bookmarked, and it changes nothing)."""
    user = user_allowed(request, READERS, "search payments")
    asked = {
        name: request.query_params.get(name, "").strip()[:MAX_REFERENCE_LENGTH]
        for name in ("reference", "channel", "status", "from", "to")
    }
    problems: dict[str, str] = {}
    channel = _choice(Channel, asked["channel"], "channel", problems)
    status = _choice(PaymentStatus, asked["status"], "status", problems)
    received_from = day_field(asked["from"], "from", problems)
    received_to = day_field(asked["to"], "to", problems)
    found = None
    page = max(1, min(page, 10_000))
    if not problems and any(asked.values()):
        try:
            found = find_payments(
                services(request),
                asked["reference"] or None,
                None,
                channel,
                status,
                received_from,
                received_to,
                SEARCH_PAGE_SIZE,
                (page - 1) * SEARCH_PAGE_SIZE,
                user.access,
            )
        except errors.InvalidRequest as error:
            problems["from"] = error.message
    return render(
        request,
        "payments.html",
        422 if problems else 200,
        asked=asked,
        found=found,
        errors=problems,
        page=page,
        page_size=SEARCH_PAGE_SIZE,
        channels=list(Channel),
        statuses=list(PaymentStatus),
    )


def _choice(kind: Any, text: str, field: str, problems: dict[str, str]) -> Any:
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        problems[field] = f"Choose a {field} from the list"
        return None


def day_field(text: str, field: str, problems: dict[str, str]) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        problems[field] = "Enter a date like 2026-03-31"
        return None


@router.get("/payments/{payment_id}")
def payment(request: Request, payment_id: UUID, done: str | None = None) -> Response:
    user_allowed(request, READERS, "see payments")
    return _payment_page(request, payment_id, done=done)


def _payment_page(
    request: Request, payment_id: UUID, status: int = 200, **context: Any
) -> Response:
    try:
        found = services(request).ledger.get_payment(payment_id, signed_in_user(request).access)
    except errors.PaymentNotFound:
        return render(request, "not_found.html", 404, what=f"payment {payment_id}")
    context.setdefault("refund_form", {"idempotency_key": new_key()})
    context.setdefault("errors", {})
    return render(request, "payment.html", status, payment=found, **context)


@router.get("/refunds")
def refund_queue(request: Request, done: str | None = None) -> Response:
    user = user_allowed(request, SUPERVISORS, "approve or decline refunds")
    waiting = services(request).ledger.pending_refunds(access=user.access)
    return render(
        request, "refunds.html", waiting=waiting, actor=user.actor, new_key=new_key, done=done
    )


# ---- recording --------------------------------------------------------------------------


@router.get("/payments/{payment_id}/allocate")
def allocate_page(request: Request, payment_id: UUID) -> Response:
    user_allowed(request, STAFF, "allocate money")
    form = {"idempotency_key": new_key(), "reason": "allocated"}
    return _allocate_form(request, payment_id, form, {})


def payment_form(
    request: Request,
    payment_id: UUID,
    form: dict[str, str],
    errors_by_field: dict[str, str],
    status: int = 200,
    *,
    template: str,
    more: Callable[[dict[str, Any]], dict[str, Any]] = lambda _: {},
) -> Response:
    """A form about one payment (or the page saying there is no such payment), with the
    enabled funds to choose from and what `more` adds from the payment."""
    try:
        access = signed_in_user(request).access
        found = services(request).ledger.get_payment(payment_id, access)
    except errors.PaymentNotFound:
        return render(request, "not_found.html", 404, what=f"payment {payment_id}")
    funds = [f for f in services(request).ledger.funds(access) if f["enabled"]]
    return render(
        request,
        template,
        status,
        payment=found,
        form=form,
        errors=errors_by_field,
        funds=funds,
        **more(found),
    )


_allocate_form = partial(
    payment_form,
    template="allocate.html",
    more=lambda _: {"line_numbers": range(1, ALLOCATION_LINES + 1)},
)


@router.post("/payments/{payment_id}/allocate")
async def allocate(request: Request, payment_id: UUID) -> Response:
    user, form = await posted_form(request, STAFF, "allocate money")

    def command(ctx: CommandContext) -> Outcome:
        numbers, lines = _split_lines(form)
        try:
            body = form_model(AllocateIn, lines=lines, reason=form.get("reason", ""))
        except FormErrors as failure:
            raise FormErrors(_numbered(failure.by_field, numbers)) from None
        try:
            return services(request).ledger.allocate(
                payment_id,
                [(x.fund_code, x.reference, x.amount_pence) for x in body.lines],
                ctx,
                body.reason,
            )
        except errors.LedgerError as error:
            raise FormErrors(_beside_its_line(error, form, numbers)) from None

    result = await run_in_threadpool(record_payment_command, request, user, form, command)
    if isinstance(result, StoredResponse):
        return redirect(request, f"/payments/{payment_id}?done=allocated")
    return await run_in_threadpool(_allocate_form, request, payment_id, form, result, 422)


def _split_lines(form: dict[str, str]) -> tuple[list[int], list[dict[str, Any]]]:
    """The form's filled-in lines (a blank line is left out), with their line numbers."""
    numbers, lines, amount_errors = [], [], {}
    for number in range(1, ALLOCATION_LINES + 1):
        fund, reference, amount = (
            form.get(f"{name}_{number}", "") for name in ("fund_code", "reference", "amount")
        )
        if not (fund or reference or amount):
            continue
        try:
            pence = pence_from(amount)
        except FormErrors:
            amount_errors[f"amount_{number}"] = "Enter an amount in pounds, like 12.50"
            continue
        numbers.append(number)
        lines.append({"fund_code": fund.upper(), "reference": reference, "amount_pence": pence})
    if amount_errors:
        raise FormErrors(amount_errors)
    if not lines:
        raise FormErrors({"fund_code_1": "Choose a fund, and enter a reference and an amount"})
    return numbers, lines


def _numbered(by_field: dict[str, str], numbers: list[int]) -> dict[str, str]:
    """Schema errors named `lines.<index>.<field>` become the form's `<field>_<line>`."""
    found = {}
    for name, message in by_field.items():
        index, _, field = name.partition(".")
        if index.isdigit() and int(index) < len(numbers):
            found[f"{field}_{numbers[int(index)]}"] = message
        else:
            found[name] = message
    return found


def _beside_its_line(
    error: errors.LedgerError, form: dict[str, str], numbers: list[int]
) -> dict[str, str]:
    """The ledger's error beside the line it is about: the line whose reference it quotes,
    else the first line; errors about no field go in the summary."""
    field = FIELD_OF_ERROR.get(type(error))
    if field is None:
        return {"summary": error.message}
    line = next(
        (
            n
            for n in numbers
            if form.get(f"reference_{n}") and repr(form[f"reference_{n}"]) in error.message
        ),
        numbers[0],
    )
    return {f"{field}_{line}": error.message}


@router.post("/payments/{payment_id}/refund")
async def refund(request: Request, payment_id: UUID) -> Response:
    user, form = await posted_form(request, STAFF, "refund money")

    def command(ctx: CommandContext) -> Outcome:
        body = form_model(
            RefundIn, amount_pence=pence_from(form.get("amount", "")), reason=form.get("reason", "")
        )
        return services(request).ledger.refund(
            payment_id, body.amount_pence, ctx, body.reason, None
        )

    result = await run_in_threadpool(record_payment_command, request, user, form, command)
    if isinstance(result, StoredResponse):
        done = "refund_requested" if result.body.get("requested") else "refunded"
        return redirect(request, f"/payments/{payment_id}?done={done}")
    return await run_in_threadpool(
        _payment_page, request, payment_id, 422, refund_form=form, errors=result
    )


@router.post("/payments/{payment_id}/refunds/{request_id}/{decision}")
async def decide_refund(
    request: Request, payment_id: UUID, request_id: str, decision: str
) -> Response:
    user, form = await posted_form(request, SUPERVISORS, "approve or decline refunds")
    ledger = services(request).ledger

    def command(ctx: CommandContext) -> Outcome:
        if decision == "approve":
            return ledger.approve_refund(payment_id, request_id, ctx)
        body = form_model(DeclineIn, reason=form.get("reason", ""))
        return ledger.decline_refund(payment_id, request_id, ctx, body.reason)

    if decision not in ("approve", "decline"):
        return render(request, "not_found.html", 404, what=f"the decision {decision!r}")
    result = await run_in_threadpool(record_payment_command, request, user, form, command)
    if isinstance(result, StoredResponse):
        return redirect(request, f"/refunds?done={decision}")
    waiting = await run_in_threadpool(lambda: ledger.pending_refunds(access=user.access))
    return render(
        request,
        "refunds.html",
        422,
        waiting=waiting,
        actor=user.actor,
        new_key=new_key,
        failed=request_id,
        errors=result,
    )


def record_payment_command(
    request: Request,
    user: ApiUser,
    form: dict[str, str],
    command: Callable[[CommandContext], Outcome],
) -> StoredResponse | dict[str, str]:
    """A payment form's command, once per idempotency key (see `record_once`)."""

    def body(ctx: CommandContext) -> dict[str, Any]:
        outcome = command(ctx)
        return {
            "payment_id": str(outcome.payment_id),
            "requested": outcome.refund_request_id,
            "position": outcome.position,
        }

    return record_once(request, user, form, body)


def record_once(
    request: Request,
    user: ApiUser,
    form: dict[str, str],
    command: Callable[[CommandContext], dict[str, Any]],
) -> StoredResponse | dict[str, str]:
    """Run a form's command once per idempotency key (a double submit records once), as the
    API runs its commands: its stored response (the body the command returned), or the
    errors by form field."""
    key = form.get("idempotency_key") or new_key()
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        return {"summary": "The form is damaged: reload the page and send it again"}
    scope = f"{user.name}:web:{key}"
    fields = {k: v for k, v in form.items() if k not in ("csrf_token", "idempotency_key")}
    path = request.url.path
    asked = IdempotentRequest(
        scope,
        request_hash("POST", path, json.dumps(fields, sort_keys=True).encode()),
        "POST",
        path,
    )

    def run() -> StoredResponse:
        body = command(user.context(scope))
        return StoredResponse(201, body, body.get("position"))

    try:
        stored, _ = services(request).ledger.run_once(asked, run)
    except FormErrors as failure:
        return failure.by_field
    except errors.LedgerError as error:
        return {FIELD_OF_ERROR.get(type(error), "summary"): error.message}
    return stored


def pence_from(text: str) -> int:
    try:
        return pounds_to_pence(text)
    except errors.InvalidAmount:
        raise FormErrors({"amount": "Enter an amount in pounds, like 12.50"}) from None


def form_model(schema: type[BaseModel], **fields: Any) -> Any:
    try:
        return schema.model_validate(fields)
    except ValidationError as invalid:
        found: dict[str, str] = {}
        for problem in invalid.errors():
            *where, last = [str(part) for part in problem["loc"]] or ["summary"]
            name = ".".join([*where[1:], FIELD_OF_SCHEMA.get(last, last)])
            found.setdefault(name, sentence(problem["msg"]))
        raise FormErrors(found) from None


def sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


def new_key() -> str:
    return str(uuid.uuid4())
