"""The auditor's pages: balances replayed from the event store as at a date (as known at
another), and the trial balance, each with its CSV. The same replay as `GET /audit/balances`
and `income-ledger audit trial-balance`: the events, not the read model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from domain import errors
from domain.limits import MAX_FUND_CODE_LENGTH, parse_query_moment
from projections.replay import ReplayResult, income_per_fund
from web.app import AUDITORS, PREFIX, render
from web.pages import services, user_allowed
from web.pages_accounts import csv_download

router = APIRouter(prefix=f"{PREFIX}/audit")
WHAT = "replay the ledger (auditors only)"
REPLAY_COLUMNS = ["kind", "fund_code", "balance_pence", "vat_pence"]
TRIAL_BALANCE_COLUMNS = ["account", "balance_pence", "debit_pence", "credit_pence"]
RowsOf = Callable[[ReplayResult], list[dict[str, Any]]]


@router.get("/replay")
async def replay_page(request: Request) -> Response:
    return await _audit_page(request, "replay.html", _replay_rows)


@router.get("/replay.csv")
async def replay_csv(request: Request) -> Response:
    return await _audit_csv(request, "replay.html", "replay", REPLAY_COLUMNS, _replay_rows)


@router.get("/trial-balance")
async def trial_balance_page(request: Request) -> Response:
    return await _audit_page(request, "trial_balance.html", _trial_rows_per_fund)


@router.get("/trial-balance.csv")
async def trial_balance_csv(request: Request) -> Response:
    return await _audit_csv(
        request, "trial_balance.html", "trial-balance", TRIAL_BALANCE_COLUMNS, _trial_rows
    )


async def _audit_page(request: Request, template: str, rows_of: RowsOf) -> Response:
    user_allowed(request, AUDITORS, WHAT).access.require_whole_ledger("a replay of the balances")
    asked, problems, result = await run_in_threadpool(_replayed, request)
    return render(
        request,
        template,
        422 if problems else 200,
        asked=asked,
        errors=problems,
        result=result,
        rows=rows_of(result) if result else [],
        csv_query=request.url.query,
    )


async def _audit_csv(
    request: Request, template: str, name: str, columns: list[str], rows_of: RowsOf
) -> Response:
    user_allowed(request, AUDITORS, WHAT).access.require_whole_ledger("a replay of the balances")
    asked, problems, result = await run_in_threadpool(_replayed, request)
    if result is None:
        return render(request, template, 422, asked=asked, errors=_or_ask(problems))
    return csv_download(request, f"{name}-{asked['as_at']}.csv", columns, rows_of(result))


def _or_ask(problems: dict[str, str]) -> dict[str, str]:
    return problems or {"as_at": "Enter the date to replay the ledger as at"}


def _replayed(request: Request) -> tuple[dict[str, str], dict[str, str], ReplayResult | None]:
    """The replay the query asks for: as at a date (end of that UK day) or moment, optionally
    as known at another, optionally one fund."""
    params = request.query_params
    asked = {
        "as_at": params.get("as_at", "").strip()[:64],
        "known_at": params.get("known_at", "").strip()[:64],
        "fund_code": params.get("fund_code", "").strip().upper()[:MAX_FUND_CODE_LENGTH],
    }
    if not asked["as_at"]:
        problems = {"as_at": "Enter the date to replay the ledger as at"} if params else {}
        return asked, problems, None
    problems: dict[str, str] = {}
    moments = {}
    for name in ("as_at", "known_at"):
        if asked[name]:
            try:
                moments[name] = parse_query_moment(asked[name], name, end_of_day=True)
            except errors.InvalidRequest:
                problems[name] = "Enter a date like 2026-03-31, or a time like 2026-03-31T17:00Z"
    replay = services(request).replay
    if problems or replay is None:
        return asked, problems or {"summary": "Replay is not available on this server"}, None
    result = replay(moments["as_at"], moments.get("known_at"), asked["fund_code"] or None)
    return asked, problems, result


def _replay_rows(result: ReplayResult) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {
            "kind": "fund",
            "fund_code": code,
            "balance_pence": pence,
            "vat_pence": result.vat_pence_by_fund.get(code, 0),
        }
        for code, pence in sorted(result.funds.items())
    ]
    rows.append(
        {
            "kind": "suspense",
            "fund_code": "",
            "balance_pence": result.suspense_pence,
            "vat_pence": 0,
        }
    )
    return rows


def _trial_rows_per_fund(result: ReplayResult) -> list[dict[str, Any]]:
    return _debits_and_credits(income_per_fund(result.accounts))


def _trial_rows(result: ReplayResult) -> list[dict[str, Any]]:
    return _debits_and_credits(dict(sorted(result.accounts.items())))


def _debits_and_credits(accounts: dict[str, int]) -> list[dict[str, Any]]:
    return [
        {
            "account": account,
            "balance_pence": pence,
            "debit_pence": max(pence, 0),
            "credit_pence": max(-pence, 0),
        }
        for account, pence in accounts.items()
    ]
