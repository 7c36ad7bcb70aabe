"""Queries over the read model. Each accepts min_position for read-your-writes."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import AuditReader, Reader, ServicesDep, json_response, model_response
from api.problems import ApiProblem
from api.schemas import (
    AccountOut,
    AuditPage,
    DailyTakingsOut,
    FundBalanceOut,
    FundBalancesOut,
    PaymentsPage,
    SuspenseOut,
)
from api.services import MAX_PAGE_SIZE, Services
from application.access import EVERY_FUND, FundAccess
from domain.limits import (
    MAX_ACTOR_LENGTH,
    MAX_FUND_CODE_LENGTH,
    MAX_REFERENCE_LENGTH,
    parse_query_moment,
    require_query_date,
    uk_today,
)
from domain.payment import Channel, PaymentStatus
from projections import queries
from projections.ledger_view import AUDIT_COLUMNS
from projections.schema import SUSPENSE_FUND

router = APIRouter()
MAX_POSITION = 2**53  # event positions stay far below this; larger values are typos
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="page size")]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
AUDIT_CSV_PAGE = 2000


async def read_model_at(
    svc: ServicesDep,
    min_position: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_POSITION,
            description="wait until the read model has applied this event "
            "position (from a command's response)",
        ),
    ] = None,
) -> Services:
    # Async, so that a read without min_position, or with one already heard applied, costs
    # no hop to the thread pool.
    if (
        min_position is not None
        and not svc.read_model.reached(min_position)
        and not await run_in_threadpool(
            svc.read_model.wait, min_position, svc.config.read_wait_seconds
        )
    ):
        raise ApiProblem(
            503,
            "Read model not up to date",
            f"the read model has not reached position {min_position} within "
            f"{svc.config.read_wait_seconds:g}s; retry shortly",
            "read_model_behind",
            {"Retry-After": "1"},
        )
    return svc


Fresh = Annotated[Services, Depends(read_model_at)]


def _position(svc: Services) -> int:
    with svc.read_engine.connect() as connection:
        return queries.read_model_position(connection)


@router.get("/payments", tags=["payments"], response_model=PaymentsPage)
def search_payments(
    svc: Fresh,
    user: Reader,
    reference: Annotated[str | None, Query(max_length=MAX_REFERENCE_LENGTH)] = None,
    fund_code: Annotated[str | None, Query(max_length=MAX_FUND_CODE_LENGTH)] = None,
    channel: Channel | None = None,
    status: PaymentStatus | None = None,
    received_from: Annotated[
        date | None, Query(alias="from", description="received on or after (UK date)")
    ] = None,
    received_to: Annotated[
        date | None, Query(alias="to", description="received on or before (UK date)")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    """Search payments (newest first) by reference, fund, channel, status and received date.
    Roles: officer, supervisor, auditor, reporting."""
    return find_payments(
        svc,
        reference,
        fund_code,
        channel,
        status,
        received_from,
        received_to,
        limit,
        offset,
        user.access,
    )


def find_payments(
    svc: Services,
    reference: str | None,
    fund_code: str | None,
    channel: Channel | None,
    status: PaymentStatus | None,
    received_from: date | None,
    received_to: date | None,
    limit: int,
    offset: int,
    access: FundAccess = EVERY_FUND,
) -> dict[str, Any]:
    """One page of the payments found (the API's search and the web pages'): of a user
    limited to fund groups, only payments with no money in other groups' funds."""
    chart = svc.ledger.chart()
    if fund_code:
        access.require_funds(chart, [fund_code])
    with svc.read_engine.connect() as connection:
        items, total = queries.search_payments(
            connection,
            reference=reference or None,
            fund_code=fund_code.upper() if fund_code else None,
            channel=channel.value if channel else None,
            status=status.value if status else None,
            received_from=received_from and require_query_date(received_from, "from"),
            received_to=received_to and require_query_date(received_to, "to"),
            limit=limit,
            offset=offset,
            visible_fund_codes=access.visible_fund_codes(chart),
        )
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def _fund_balances(svc: Services, access: FundAccess = EVERY_FUND) -> dict[str, Any]:
    with svc.read_engine.connect() as connection:
        position = queries.read_model_position(connection)
        funds = svc.ledger.funds(access, covering=position)
        names = {fund["code"]: fund["name"] for fund in funds}
        rows = {
            row["fund_code"]: row
            for row in queries.fund_balances(connection)
            if not access.limited or row["fund_code"] in names
        }
    zero = dict.fromkeys(FundBalanceOut.model_fields, 0)
    funds = [
        zero | rows.get(code, {}) | {"fund_code": code, "name": names.get(code)}
        for code in sorted(set(names) | set(rows))
    ]
    return {
        "position": position,
        "funds": funds,
        "total_pence": sum(f["balance_pence"] for f in funds),
    }


@router.get("/balances/funds", tags=["read model"], response_model=FundBalancesOut)
def fund_balances(svc: Fresh, user: Reader) -> Any:
    """Every fund's balance (income held, VAT included) with its parts.
    Roles: officer, supervisor, auditor, reporting."""
    return model_response(FundBalancesOut, _fund_balances(svc, user.access))


@router.get(
    "/balances/funds/{code}",
    tags=["read model"],
    response_model=FundBalanceOut,
    responses={404: {"description": "no such fund"}},
)
def fund_balance(code: str, svc: Fresh, user: Reader) -> Any:
    """One fund's balance. Roles: officer, supervisor, auditor, reporting."""
    svc.ledger.fund(code, user.access)
    balances = _fund_balances(svc, user.access)
    found = next(f for f in balances["funds"] if f["fund_code"] == code.upper())
    return json_response(found, position=balances["position"])


@router.get(
    "/accounts/{fund_code}/{reference}",
    tags=["read model"],
    response_model=AccountOut,
    responses={404: {"description": "no such fund"}},
)
def account(
    fund_code: str, reference: str, svc: Fresh, user: Reader, limit: Limit = 100, offset: Offset = 0
) -> Any:
    """A payer account's balance and statement (oldest first, with running balance).
    Roles: officer, supervisor, auditor, reporting."""
    with svc.read_engine.connect() as connection:
        position = queries.read_model_position(connection)
        fund = svc.ledger.fund(fund_code, user.access, covering=position)
        statement = queries.account_statement(
            connection, fund["code"], reference, limit=limit, offset=offset
        )
    return model_response(
        AccountOut, statement | {"position": position, "limit": limit, "offset": offset}
    )


@router.get("/suspense", tags=["read model"], response_model=SuspenseOut)
def suspense(svc: Fresh, user: Reader, limit: Limit = 100, offset: Offset = 0) -> Any:
    """Open suspense items, oldest first, with age in days and reason, and the total.
    Roles: officer, supervisor, auditor, reporting."""
    with svc.read_engine.connect() as connection:
        position = queries.read_model_position(connection)
        page = queries.suspense_page(connection, limit=limit, offset=offset)
    return page | {"position": position, "limit": limit, "offset": offset}


def _only_date_asked(request: Request) -> None:
    """A report of one day answers the day asked for: a query it does not know (from, to,
    day, ...) would otherwise be ignored and today's figures returned as if they were it."""
    unknown = sorted(set(request.query_params) - {"date", "min_position"})
    if unknown:
        raise ApiProblem(
            422,
            "Invalid request",
            f"unknown query parameter {', '.join(map(repr, unknown))}: this report is of one "
            "UK business day, asked as date=2026-03-31 (default today)",
            "invalid_request",
        )


@router.get("/reports/daily-takings", tags=["read model"], response_model=DailyTakingsOut)
def daily_takings(
    svc: Fresh,
    user: Reader,
    _only_date: Annotated[None, Depends(_only_date_asked)],
    business_date: Annotated[
        date | None, Query(alias="date", description="UK business date; default today")
    ] = None,
) -> Any:
    """The cash-up: per channel and fund, receipts, refunds and reversals of one UK business
    date, and per channel the over/short of the day's approved till cash-ups: net plus
    over/short (`counted_by_channel`) is what the GL export's lines for the channel come to
    (its cash line less refunds and reversals). Roles: officer, supervisor, auditor,
    reporting."""
    day = require_query_date(business_date, "date") if business_date else uk_today()
    return daily_takings_report(svc, day, user.access)


def daily_takings_report(
    svc: Services, day: date, access: FundAccess = EVERY_FUND
) -> dict[str, Any]:
    """One UK business date's takings, per channel and fund, with the totals per channel
    (the API's report and the web dashboard) and per fund (the dashboard). A user limited
    to fund groups sees their funds' rows and suspense's (which has no fund)."""
    visible = access.visible_fund_codes(svc.ledger.chart())
    with svc.read_engine.connect() as connection:
        position = queries.read_model_position(connection)
        rows = [
            row
            for row in queries.daily_takings(connection, day)
            if visible is None or row["fund_code"] in visible | {SUSPENSE_FUND}
        ]
        # A till's over/short is of no fund: shown to those who see the whole ledger.
        over_short = queries.over_short_by_channel(connection, day) if visible is None else {}
    by_channel = _net_by(rows, "channel")
    counted = dict(by_channel)
    for channel, pence in over_short.items():
        counted[channel] = counted.get(channel, 0) + pence
    return {
        "business_date": day,
        "position": position,
        "rows": rows,
        "by_channel": by_channel,
        "by_fund": _net_by(rows, "fund_code"),
        "total_net_pence": sum(by_channel.values()),
        "over_short_by_channel": over_short,
        "total_over_short_pence": sum(over_short.values()),
        "counted_by_channel": counted,
        "total_counted_pence": sum(counted.values()),
    }


def _net_by(rows: list[dict[str, Any]], column: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for row in rows:
        totals[row[column]] = totals.get(row[column], 0) + row["net_pence"]
    return totals


FROM_HELP = (
    "recorded at or after: ISO 8601 with a zone, or a date (2026-03-31) meaning the start "
    "of that UK day"
)
TO_HELP = (
    "recorded at or before: ISO 8601 with a zone, or a date (2026-03-31) meaning the end "
    "of that UK day"
)
AT_HELP = "ISO 8601 with a zone, or a date (2026-03-31) meaning the end of that UK day"


def _bound(text: str | None, name: str, *, end_of_day: bool) -> datetime | None:
    return None if text is None else parse_query_moment(text, name, end_of_day=end_of_day)


@router.get(
    "/audit",
    tags=["audit"],
    response_model=AuditPage,
    responses={200: {"content": {"text/csv": {}}, "description": "JSON page, or all rows as CSV"}},
)
def audit(
    svc: Fresh,
    user: AuditReader,
    recorded_from: Annotated[
        str | None, Query(alias="from", description=FROM_HELP, max_length=64)
    ] = None,
    recorded_to: Annotated[
        str | None, Query(alias="to", description=TO_HELP, max_length=64)
    ] = None,
    actor: Annotated[str | None, Query(max_length=MAX_ACTOR_LENGTH)] = None,
    payment_id: Annotated[str | None, Query(max_length=36)] = None,
    after_position: Annotated[int, Query(ge=0, le=MAX_POSITION)] = 0,
    limit: Limit = 100,
    accept: Annotated[str | None, Header()] = None,
) -> Any:
    """The audit trail: every event in order with actor, action, amount and reason. With
    `Accept: text/csv` every matching row is streamed as CSV.
    Roles: officer, supervisor, auditor."""
    user.access.require_whole_ledger("the audit trail")
    filters = {
        "recorded_from": _bound(recorded_from, "from", end_of_day=False),
        "recorded_to": _bound(recorded_to, "to", end_of_day=True),
        "actor": actor,
        "payment_id": payment_id,
    }
    if accept and "text/csv" in accept:
        return StreamingResponse(
            _audit_csv(svc, filters, after_position),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="audit-trail.csv"'},
        )
    with svc.read_engine.connect() as connection:
        items = queries.audit_page(
            connection, after_position=after_position, limit=limit, **filters
        )
    following = items[-1]["position"] if len(items) == limit else None
    return {"items": items, "next_after_position": following}


def _audit_csv(svc: Services, filters: dict[str, Any], after: int) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, AUDIT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    while True:
        with svc.read_engine.connect() as connection:
            rows = queries.audit_page(
                connection, after_position=after, limit=AUDIT_CSV_PAGE, **filters
            )
        for row in rows:
            writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < AUDIT_CSV_PAGE:
            return
        after = rows[-1]["position"]


@router.get("/audit/balances", tags=["audit"])
def audit_balances(
    svc: ServicesDep,
    user: AuditReader,
    as_at: Annotated[str, Query(description=f"effective time: {AT_HELP}", max_length=64)],
    known_at: Annotated[
        str | None,
        Query(description=f"count only what had been recorded by then: {AT_HELP}", max_length=64),
    ] = None,
    fund_code: Annotated[str | None, Query(max_length=MAX_FUND_CODE_LENGTH)] = None,
) -> Any:
    """Balances replayed straight from the event store (not the read model) as at an
    effective time, optionally as known at a recording time. Roles: officer, supervisor,
    auditor."""
    user.access.require_whole_ledger("a replay of the balances")
    as_at_moment = _bound(as_at, "as_at", end_of_day=True)
    known_at_moment = _bound(known_at, "known_at", end_of_day=True)
    if svc.replay is None:
        raise ApiProblem(
            501, "Not available", "replay is not configured on this server", "not_available"
        )
    fund = fund_code.upper() if fund_code else None
    return svc.replay(as_at_moment, known_at_moment, fund).to_dict()
