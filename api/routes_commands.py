"""Commands: funds and payments. Each takes an Idempotency-Key and returns its position."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.auth import ApiUser
from api.deps import (
    AnyUser,
    Reader,
    Recorder,
    ServicesDep,
    Staff,
    Supervisor,
    json_response,
)
from api.problems import ApiProblem
from api.schemas import (
    AllocateIn,
    CommandOut,
    DeclineIn,
    FundCommandOut,
    FundIn,
    FundOut,
    FundPatch,
    NoteIn,
    PayerErasureIn,
    PaymentDetailOut,
    RecordPaymentIn,
    RefundIn,
    ReversalIn,
    TransferIn,
)
from api.services import Services
from application.idempotency import IdempotentRequest, StoredResponse, request_hash
from application.ledger import CommandContext, IncomeLedger, Outcome, RecordPayment
from application.payer_details import PayerDetails
from application.periods import relating_to
from domain.funds import Fund
from domain.limits import MAX_IDEMPOTENCY_KEY_LENGTH, UK

router = APIRouter()
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
        description="makes a retry safe: same key and body, same response",
    ),
]


def run_command(
    svc: Services,
    request: Request,
    user: ApiUser,
    key: str | None,
    body: BaseModel | None,
    command: Callable[[CommandContext], tuple[int, Any, int | None]],
) -> JSONResponse:
    """Run a command once per Idempotency-Key: a retry gets the stored first response.

    The command's events and its stored response commit in one transaction."""
    idempotent, ctx = command_context(request, user, key, body)
    stored, replayed = svc.ledger.run_once(idempotent, lambda: StoredResponse(*command(ctx)))
    return command_response(stored, replayed)


def command_context(
    request: Request, user: ApiUser, key: str | None, body: BaseModel | None
) -> tuple[IdempotentRequest | None, CommandContext]:
    """The request as made safe to retry (None without a key), and who asks."""
    scope = f"{user.name}:{key}" if key else None
    idempotent = None
    if scope is not None:
        canonical = body.model_dump_json(by_alias=True).encode() if body is not None else b""
        idempotent = IdempotentRequest(
            scope,
            request_hash(request.method, request.url.path, canonical),
            request.method,
            request.url.path,
        )
    return idempotent, user.context(scope)


def command_response(stored: StoredResponse, replayed: bool) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return json_response(stored.body, stored.status_code, stored.position, headers)


def outcome_body(outcome: Outcome) -> dict[str, Any]:
    return {"recorded": outcome.recorded, "position": outcome.position, "payment": outcome.payment}


def payment_command(status: int, outcome: Outcome) -> tuple[int, Any, int | None]:
    return (status if outcome.recorded else 200), outcome_body(outcome), outcome.position


# ---- funds --------------------------------------------------------------------------------


@router.get("/funds", tags=["funds"], response_model=list[FundOut])
def list_funds(svc: ServicesDep, user: AnyUser) -> Any:
    """The chart of funds. Roles: all."""
    return svc.ledger.funds(user.access)


@router.get("/funds/{code}", tags=["funds"], response_model=FundOut)
def get_fund(code: str, svc: ServicesDep, user: AnyUser) -> Any:
    """One fund. Roles: all."""
    return svc.ledger.fund(code, user.access)


@router.post("/funds", tags=["funds"], status_code=201, response_model=FundCommandOut)
def add_fund(
    body: FundIn, request: Request, svc: ServicesDep, user: Supervisor, key: IdempotencyKey = None
) -> Any:
    """Add a fund to the chart. Roles: supervisor."""

    def command(ctx: CommandContext) -> tuple[int, Any, int | None]:
        fund = Fund.from_dict(body.model_dump())
        position = svc.ledger.add_fund(fund, ctx)
        return 201, {"position": position, "fund": svc.ledger.fund(fund.code)}, position

    return run_command(svc, request, user, key, body, command)


@router.patch("/funds/{code}", tags=["funds"], response_model=FundCommandOut)
def amend_fund(
    code: str,
    body: FundPatch,
    request: Request,
    svc: ServicesDep,
    user: Supervisor,
    key: IdempotencyKey = None,
) -> Any:
    """Change a fund's settings, or enable/disable it. Roles: supervisor."""

    def command(ctx: CommandContext) -> tuple[int, Any, int | None]:
        changes = body.model_dump(
            exclude_unset=True, exclude={"reason", "enabled", "vat_rate_effective_from"}
        )
        position = None
        if changes or body.vat_rate_effective_from:
            position = (
                svc.ledger.amend_fund(code, changes, ctx, body.reason, body.vat_rate_effective_from)
                or position
            )
        if body.enabled is True:
            position = svc.ledger.enable_fund(code, ctx, body.reason) or position
        elif body.enabled is False:
            position = svc.ledger.disable_fund(code, ctx, body.reason) or position
        return 200, {"position": position, "fund": svc.ledger.fund(code)}, position

    return run_command(svc, request, user, key, body, command)


# ---- payments -----------------------------------------------------------------------------


@router.post(
    "/payments",
    tags=["payments"],
    status_code=201,
    response_model=CommandOut,
    responses={200: {"description": "already recorded: the first payment", "model": CommandOut}},
)
async def record_payment(
    body: RecordPaymentIn,
    request: Request,
    user: Recorder,
    key: IdempotencyKey = None,
) -> Any:
    """Record a receipt. It is allocated at once when its reference is valid for the hinted
    fund or for exactly one fund; otherwise it waits in suspense with the reason. The same
    (channel, external_id) is recorded once: a repeat answers 200 with the first payment.
    Statement lines imported before the receipt that pay it in are linked afterwards, off
    the request (LEDGER_AUTO_LINK_STATEMENTS). Roles: officer, supervisor, integration."""
    # async: the hot path builds the receipt on the event loop and awaits its group commit;
    # whatever reads the database goes to the thread pool (`record_payment_awaiting`).
    # The services are read off the app, not through `ServicesDep`: one dependency fewer
    # for FastAPI to solve on the busiest route.
    svc: Services = request.app.state.services
    idempotent, ctx = command_context(request, user, key, body)
    payer = PayerDetails(**body.payer.model_dump()) if body.payer else None
    record = RecordPayment(
        channel=body.channel.value,
        amount_pence=body.amount_pence,
        reference=body.reference,
        received_at=body.received_at,
        fund_code=body.fund_code,
        external_id=body.external_id,
        payer=payer,
        office_code=body.office_code,
        till_code=body.till_code,
    )
    if body.relates_to_period is not None:  # reads the period calendar
        record = await run_in_threadpool(relating_to, svc.ledger, record, body.relates_to_period)
    stored, replayed = await svc.ledger.record_payment_awaiting(
        idempotent,
        record,
        ctx,
        lambda outcome: StoredResponse(*payment_command(201, outcome)),
        run_in_threadpool,
    )
    if svc.config.auto_link_statements and stored.body["recorded"] and not replayed:
        _link_after(svc, stored.body["payment"])
    return command_response(stored, replayed)


def _link_after(svc: Services, payment: dict[str, Any]) -> None:
    """A statement imported first may hold the line that pays this receipt in."""
    received = datetime.fromisoformat(payment["received_at"]).astimezone(UK).date()
    svc.linking.after_receipt(received, payment["amount_pence"], payment["channel"])


@router.get(
    "/payments/{payment_id}",
    tags=["payments"],
    response_model=PaymentDetailOut,
    responses={404: {"description": "no such payment"}},
)
def get_payment(payment_id: UUID, svc: ServicesDep, user: Reader) -> Any:
    """A payment with its allocations, status, payer details and whole history (from the
    event store: always current). Roles: officer, supervisor, auditor, reporting."""
    return svc.ledger.get_payment(payment_id, user.access)


@router.post(
    "/payments/{payment_id}/allocations",
    tags=["payments"],
    status_code=201,
    response_model=CommandOut,
)
def allocate(
    payment_id: UUID,
    body: AllocateIn,
    request: Request,
    svc: ServicesDep,
    user: Staff,
    key: IdempotencyKey = None,
) -> Any:
    """Allocate unallocated money to one or more funds and references (never more than is
    unallocated). Roles: officer, supervisor."""

    def command(ctx: CommandContext) -> tuple[int, Any, int | None]:
        lines = [(x.fund_code, x.reference, x.amount_pence) for x in body.lines]
        return payment_command(201, svc.ledger.allocate(payment_id, lines, ctx, body.reason))

    return run_command(svc, request, user, key, body, command)


def transfer_money(
    ledger: IncomeLedger, payment_id: UUID, body: TransferIn, ctx: CommandContext
) -> Outcome:
    """The transfer a checked TransferIn asks for (the API and the web form both send one)."""
    return ledger.transfer(
        payment_id,
        (body.from_.fund_code, body.from_.reference),
        (body.to.fund_code, body.to.reference),
        body.amount_pence,
        ctx,
        body.reason,
    )


@router.post(
    "/payments/{payment_id}/transfers",
    tags=["payments"],
    status_code=201,
    response_model=CommandOut,
)
def transfer(
    payment_id: UUID,
    body: TransferIn,
    request: Request,
    svc: ServicesDep,
    user: Staff,
    key: IdempotencyKey = None,
) -> Any:
    """Move allocated money to another fund or reference; both halves are recorded and the
    original allocation stays in the history. Roles: officer, supervisor."""

    def command(ctx: CommandContext) -> tuple[int, Any, int | None]:
        return payment_command(201, transfer_money(svc.ledger, payment_id, body, ctx))

    return run_command(svc, request, user, key, body, command)


@router.post(
    "/payments/{payment_id}/refunds",
    tags=["payments"],
    status_code=201,
    response_model=CommandOut,
    responses={
        202: {
            "description": "above the approval limit: requested, waiting for a supervisor",
            "model": CommandOut,
        }
    },
)
def refund(
    payment_id: UUID,
    body: RefundIn,
    request: Request,
    svc: ServicesDep,
    user: Staff,
    key: IdempotencyKey = None,
) -> Any:
    """Refund part or all of what remains (never more), with a reason. When the payment's
    refunds (made, reported by the channel, and waiting) would add up to more than the
    approval limit, the refund is requested instead (202) and a supervisor other than the
    requester approves it. Roles: officer, supervisor."""
    if (body.fund_code is None) != (body.reference is None):
        raise ApiProblem(
            422,
            "Invalid request",
            "give both fund_code and reference, or neither",
            "validation_error",
        )
    source = (body.fund_code, body.reference) if body.fund_code and body.reference else None

    def command(ctx: CommandContext) -> tuple[int, Any, int | None]:
        outcome = svc.ledger.refund(payment_id, body.amount_pence, ctx, body.reason, source)
        return payment_command(202 if outcome.refund_request_id else 201, outcome)

    return run_command(svc, request, user, key, body, command)


@router.post(
    "/payments/{payment_id}/refunds/{request_id}/approve",
    tags=["payments"],
    status_code=201,
    response_model=CommandOut,
)
def approve_refund(
    payment_id: UUID,
    request_id: str,
    request: Request,
    svc: ServicesDep,
    user: Supervisor,
    key: IdempotencyKey = None,
) -> Any:
    """Approve a refund above the limit; the money moves now, from where it was requested
    (409 refund_request_stale if that money has moved since: decline and request again). The
    requester cannot approve their own request; a second approval, or one that loses a race,
    gets 409. Roles: supervisor."""

    def command(ctx: CommandContext) -> tuple[int, Any, int | None]:
        return payment_command(201, svc.ledger.approve_refund(payment_id, request_id, ctx))

    return run_command(svc, request, user, key, None, command)


@router.post(
    "/payments/{payment_id}/refunds/{request_id}/decline",
    tags=["payments"],
    status_code=201,
    response_model=CommandOut,
)
def decline_refund(
    payment_id: UUID,
    request_id: str,
    body: DeclineIn,
    request: Request,
    svc: ServicesDep,
    user: Supervisor,
    key: IdempotencyKey = None,
) -> Any:
    """Decline a requested refund, with a reason. Roles: supervisor."""

    def command(ctx: CommandContext) -> tuple[int, Any, int | None]:
        return payment_command(
            201, svc.ledger.decline_refund(payment_id, request_id, ctx, body.reason)
        )

    return run_command(svc, request, user, key, body, command)


@router.post(
    "/payments/{payment_id}/reversals",
    tags=["payments"],
    status_code=201,
    response_model=CommandOut,
)
def reverse(
    payment_id: UUID,
    body: ReversalIn,
    request: Request,
    svc: ServicesDep,
    user: Staff,
    key: IdempotencyKey = None,
) -> Any:
    """Reverse all that remains of a payment that never really arrived (returned cheque,
    direct-debit return, chargeback). Roles: officer, supervisor."""

    def command(ctx: CommandContext) -> tuple[int, Any, int | None]:
        return payment_command(
            201, svc.ledger.reverse(payment_id, body.kind.value, ctx, body.reason)
        )

    return run_command(svc, request, user, key, body, command)


@router.post(
    "/payments/{payment_id}/notes", tags=["payments"], status_code=201, response_model=CommandOut
)
def note(
    payment_id: UUID,
    body: NoteIn,
    request: Request,
    svc: ServicesDep,
    user: Staff,
    key: IdempotencyKey = None,
) -> Any:
    """Add a note to a payment's history. Roles: officer, supervisor."""

    def command(ctx: CommandContext) -> tuple[int, Any, int | None]:
        return payment_command(201, svc.ledger.note(payment_id, body.text, ctx))

    return run_command(svc, request, user, key, body, command)


@router.post(
    "/payments/{payment_id}/payer-erasure",
    tags=["payments"],
    status_code=201,
    response_model=CommandOut,
    responses={200: {"description": "no payer details held: nothing erased", "model": CommandOut}},
)
def erase_payer(
    payment_id: UUID,
    body: PayerErasureIn,
    request: Request,
    svc: ServicesDep,
    user: Supervisor,
    key: IdempotencyKey = None,
) -> Any:
    """Erase the payer's personal details (name, email, phone, address) on request, with a
    reason. The erasure is recorded in the payment's history; the amounts and every event
    stay as they were. Roles: supervisor."""

    def command(ctx: CommandContext) -> tuple[int, Any, int | None]:
        return payment_command(201, svc.ledger.erase_payer_details(payment_id, ctx, body.reason))

    return run_command(svc, request, user, key, body, command)
