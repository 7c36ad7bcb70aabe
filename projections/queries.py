"""Read-side queries over the read-model tables, returning plain values.

Used by the CLI and the HTTP API; reporting tools can run the same SQL themselves.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from projections.ledger_view import uk_date
from projections.schema import LIVE


def _plain(row: Any) -> dict[str, Any]:
    return {
        k: (v.isoformat() if isinstance(v, datetime | date) else v) for k, v in row._mapping.items()
    }


def fund_balances(connection: Connection) -> list[dict[str, Any]]:
    table = LIVE.fund_balances
    return [_plain(r) for r in connection.execute(select(table).order_by(table.c.fund_code))]


def suspense(
    connection: Connection, today: date | None = None, limit: int = 1000
) -> dict[str, Any]:
    """Open suspense items, oldest first, with their age in days."""
    table = LIVE.suspense_items
    today = today or uk_date(datetime.now().astimezone())
    items = []
    for row in connection.execute(
        select(table).order_by(table.c.received_date, table.c.payment_id).limit(limit)
    ):
        item = _plain(row)
        item["age_days"] = (today - row.received_date).days
        items.append(item)
    total, count = connection.execute(
        select(func.coalesce(func.sum(table.c.amount_pence), 0), func.count())
    ).one()
    return {"total_pence": int(total), "count": int(count), "items": items}


def daily_takings(
    connection: Connection, business_date: date | None = None
) -> list[dict[str, Any]]:
    table = LIVE.daily_takings
    query = select(table).order_by(table.c.business_date, table.c.channel, table.c.fund_code)
    if business_date is not None:
        query = query.where(table.c.business_date == business_date)
    return [_plain(r) for r in connection.execute(query)]


def trial_balance_pence(connection: Connection) -> int:
    table = LIVE.account_balances
    return int(
        connection.execute(select(func.coalesce(func.sum(table.c.balance_pence), 0))).scalar_one()
    )
