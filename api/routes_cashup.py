"""Cash offices, tills and the daily cash-up over HTTP (#11).

Thin: application.offices and application.cashups decide; this translates. An officer
submits a till's count, a supervisor who did not submit it approves or returns it.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from api.deps import Reader, ServicesDep, Staff, Supervisor
from api.routes_commands import IdempotencyKey, run_command
from api.schemas import Pence, Reason, Strict
from application.cashups import (
    SubmitCashUp,
    approve_cashup,
    cashups,
    get_cashup,
    return_cashup,
    submit_cashup,
)
from application.ledger import CommandContext
from application.offices import add_office, add_till, offices
from domain.cashups import (
    DENOMINATIONS_PENCE,
    MAX_BAG_NUMBER_LENGTH,
    MAX_CHEQUE_TEXT_LENGTH,
    MAX_CHEQUES,
    MAX_PIECES,
    CashUpStatus,
    Cheque,
)
from domain.limits import MAX_TEXT_LENGTH
from domain.offices import MAX_CODE_LENGTH, MAX_NAME_LENGTH

router = APIRouter(tags=["cash-up"])
Code = Annotated[str, Field(min_length=1, max_length=MAX_CODE_LENGTH, description="like CIVIC")]
CounterChannel = Literal["cash", "cheque", "card"]
Denomination = Literal[DENOMINATIONS_PENCE]  # type: ignore[valid-type]


class OfficeIn(Strict):
    code: Code
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    channels: list[CounterChannel] = Field(
        min_length=1, max_length=3, description="what its counter takes"
    )


class TillIn(Strict):
    code: Code
    name: str = Field("", max_length=MAX_NAME_LENGTH, description="default: the code")


class PiecesIn(Strict):
    denomination_pence: Denomination = Field(description="5000, 2000, ... 2, 1")
    count: int = Field(ge=0, le=MAX_PIECES)


class ChequeIn(Strict):
    amount_pence: Pence
    drawer: str = Field(min_length=1, max_length=MAX_CHEQUE_TEXT_LENGTH)
    reference: str = Field("", max_length=MAX_CHEQUE_TEXT_LENGTH)


class CashUpIn(Strict):
    office_code: Code
    till_code: Code
    business_date: date = Field(description="the UK business date counted, like 2026-03-31")
    pieces: list[PiecesIn] = Field(
        default_factory=list, max_length=len(DENOMINATIONS_PENCE), description="notes and coins"
    )
    cheques: list[ChequeIn] = Field(default_factory=list, max_length=MAX_CHEQUES)
    bag_number: str = Field(min_length=1, max_length=MAX_BAG_NUMBER_LENGTH)
    reason: str = Field(
        "", max_length=MAX_TEXT_LENGTH, description="required when the count differs"
    )


class ReturnIn(Strict):
    reason: Reason


class TillOut(BaseModel):
    code: str
    name: str
    open: bool


class OfficeOut(BaseModel):
    code: str
    name: str
    channels: list[str]
    open: bool
    tills: list[TillOut]


class OfficesOut(BaseModel):
    position: int | None
    offices: list[OfficeOut]


class CashUpLineOut(BaseModel):
    channel: str
    counted_pence: int
    recorded_pence: int
    difference_pence: int = Field(description="counted - recorded: over if positive")


class CashUpOut(BaseModel):
    cashup_id: str
    office_code: str
    till_code: str
    business_date: str
    status: str
    submitted_by: str
    submitted_at: str
    decided_by: str | None
    pieces: list[dict[str, int]]
    cheques: list[dict[str, Any]]
    bag_number: str
    lines: list[CashUpLineOut]
    difference_pence: int
    reason: str
    history: list[dict[str, str]]
    version: int


class CashUpCommandOut(CashUpOut):
    recorded: bool
    position: int | None


@router.get("/offices", response_model=list[OfficeOut])
def list_offices(svc: ServicesDep, user: Reader) -> Any:
    """Every cash office with its tills and channels. Roles: officer, supervisor, auditor,
    reporting."""
    return offices(svc.ledger)


@router.post("/offices", status_code=201, response_model=OfficesOut)
def new_office(
    body: OfficeIn, request: Request, svc: ServicesDep, user: Supervisor, key: IdempotencyKey = None
) -> Any:
    """Add a cash office and the channels its counter takes. Roles: supervisor."""

    def command(ctx: CommandContext) -> tuple[int, Any, int | None]:
        result = add_office(svc.ledger, body.code, body.name, list(body.channels), ctx)
        return 201, result, result["position"]

    return run_command(svc, request, user, key, body, command)


@router.post("/offices/{office_code}/tills", status_code=201, response_model=OfficesOut)
def new_till(
    office_code: str,
    body: TillIn,
    request: Request,
    svc: ServicesDep,
    user: Supervisor,
    key: IdempotencyKey = None,
) -> Any:
    """Add a till to an office. Roles: supervisor."""

    def command(ctx: CommandContext) -> tuple[int, Any, int | None]:
        result = add_till(svc.ledger, office_code, body.code, ctx, body.name)
        return 201, result, result["position"]

    return run_command(svc, request, user, key, body, command)


@router.post("/cashups", status_code=201, response_model=CashUpCommandOut)
def submit(
    body: CashUpIn, request: Request, svc: ServicesDep, user: Staff, key: IdempotencyKey = None
) -> Any:
    """Submit a till's count for a day: notes and coins, cheques, the bag number. It is
    compared with the receipts recorded for that office, till and channel that day; a
    difference needs a reason (422 reason_required). The same count again answers 200 and
    records nothing; a count waiting for a decision cannot be replaced (409
    cashup_awaiting_decision); one returned can be submitted again. Roles: officer,
    supervisor."""

    def command(ctx: CommandContext) -> tuple[int, Any, int | None]:
        result = submit_cashup(svc.ledger, to_command(body), ctx)
        return (201 if result["recorded"] else 200), result, result["position"]

    return run_command(svc, request, user, key, body, command)


def to_command(body: CashUpIn) -> SubmitCashUp:
    return SubmitCashUp(
        body.office_code,
        body.till_code,
        body.business_date,
        {p.denomination_pence: p.count for p in body.pieces},
        [Cheque(c.amount_pence, c.drawer, c.reference) for c in body.cheques],
        body.bag_number,
        body.reason,
    )


@router.get("/cashups", response_model=list[CashUpOut])
def list_cashups(
    svc: ServicesDep,
    user: Reader,
    status: Annotated[
        CashUpStatus | None, Query(description="submitted: waiting for a supervisor")
    ] = None,
) -> Any:
    """Cash-ups, newest day first (at most 500). Roles: officer, supervisor, auditor,
    reporting."""
    return cashups(svc.ledger, status.value if status else None)


@router.get("/cashups/{cashup_id}", response_model=CashUpOut)
def show_cashup(cashup_id: UUID, svc: ServicesDep, user: Reader) -> Any:
    """One cash-up with its count, comparison and history. Roles: officer, supervisor,
    auditor, reporting."""
    return get_cashup(svc.ledger, cashup_id)


@router.post("/cashups/{cashup_id}/approval", response_model=CashUpCommandOut)
def approve(
    cashup_id: UUID,
    request: Request,
    svc: ServicesDep,
    user: Supervisor,
    key: IdempotencyKey = None,
) -> Any:
    """Approve a submitted cash-up (never one's own: 409 second_person_required): final,
    and each difference moves to the channel's over/short account. Refused as stale (409
    cashup_stale) when receipts were recorded for the till's day since it was submitted.
    Roles: supervisor."""

    def command(ctx: CommandContext) -> tuple[int, Any, int | None]:
        result = approve_cashup(svc.ledger, cashup_id, ctx)
        return 200, result, result["position"]

    return run_command(svc, request, user, key, None, command)


@router.post("/cashups/{cashup_id}/return", response_model=CashUpCommandOut)
def send_back(
    cashup_id: UUID,
    body: ReturnIn,
    request: Request,
    svc: ServicesDep,
    user: Supervisor,
    key: IdempotencyKey = None,
) -> Any:
    """Return a submitted cash-up to be counted again, saying why (never one's own).
    Roles: supervisor."""

    def command(ctx: CommandContext) -> tuple[int, Any, int | None]:
        result = return_cashup(svc.ledger, cashup_id, ctx, body.reason)
        return 200, result, result["position"]

    return run_command(svc, request, user, key, body, command)
