"""Read-side queries over the read-model tables, returning plain values.

Used by the CLI and the HTTP API; reporting tools can run the same SQL themselves.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, String, bindparam, case, func, literal, select, union_all
from sqlalchemy.engine import Connection

from domain.references import normalise_reference
from projections.ledger_view import uk_date
from projections.schema import LIVE


def _plain(row: Any) -> dict[str, Any]:
    return {
        k: (v.isoformat() if isinstance(v, datetime | date) else v) for k, v in row._mapping.items()
    }


_FUND_BALANCES = select(LIVE.fund_balances).order_by(LIVE.fund_balances.c.fund_code)


def fund_balances(connection: Connection) -> list[dict[str, Any]]:
    return [_plain(r) for r in connection.execute(_FUND_BALANCES)]


def daily_takings(
    connection: Connection, business_date: date | None = None
) -> list[dict[str, Any]]:
    table = LIVE.daily_takings
    query = select(table).order_by(table.c.business_date, table.c.channel, table.c.fund_code)
    if business_date is not None:
        query = query.where(table.c.business_date == business_date)
    return [_plain(r) for r in connection.execute(query)]


def over_short(connection: Connection, business_date: date | None = None) -> list[dict[str, Any]]:
    """The differences of approved cash-ups per UK business date and channel, in pence
    (`over_short_pence`): positive over (more counted than recorded), negative short.
    Summed from the `over_short:<channel>` postings the GL export sums too, so a day's
    takings plus these come to its GL lines for the channel."""
    table = LIVE.postings
    query = (
        select(
            table.c.effective_date.label("business_date"),
            table.c.channel,
            func.sum(-table.c.amount_pence).label("over_short_pence"),
        )
        .where(table.c.account.like("over\\_short:%", escape="\\"))
        .group_by(table.c.effective_date, table.c.channel)
        .order_by(table.c.effective_date, table.c.channel)
    )
    if business_date is not None:
        query = query.where(table.c.effective_date == business_date)
    return [_plain(r) for r in connection.execute(query) if r.over_short_pence]


def over_short_by_channel(connection: Connection, business_date: date) -> dict[str, int]:
    """`over_short` of one day: pence per channel."""
    return {
        row["channel"]: int(row["over_short_pence"])
        for row in over_short(connection, business_date)
    }


def trial_balance_pence(connection: Connection) -> int:
    table = LIVE.account_balances
    return int(
        connection.execute(select(func.coalesce(func.sum(table.c.balance_pence), 0))).scalar_one()
    )


def read_model_position(connection: Connection) -> int:
    from projections.runner import tracked_position

    return tracked_position(connection)


def search_payments(
    connection: Connection,
    *,
    reference: str | None = None,
    fund_code: str | None = None,
    channel: str | None = None,
    status: str | None = None,
    received_from: date | None = None,
    received_to: date | None = None,
    limit: int = 100,
    offset: int = 0,
    visible_fund_codes: Collection[str] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Payments by reference (as typed: `recorded_forms`), fund (any allocation, past or
    present), channel, status and received date (inclusive), newest first. With
    `visible_fund_codes`, only payments that never had money in any other fund."""
    table, lines = LIVE.payments, LIVE.payment_allocations
    conditions = []
    kept = normalise_reference(reference) if reference else ""
    if kept:
        conditions.append(table.c.reference.in_(recorded_forms(literal(kept, String))))
    if channel:
        conditions.append(table.c.channel == channel)
    if status:
        conditions.append(table.c.status == status)
    if received_from:
        conditions.append(table.c.received_date >= received_from)
    if received_to:
        conditions.append(table.c.received_date <= received_to)
    if fund_code:
        conditions.append(
            table.c.payment_id.in_(select(lines.c.payment_id).where(lines.c.fund_code == fund_code))
        )
    if visible_fund_codes is not None:
        elsewhere = select(lines.c.payment_id).where(lines.c.fund_code.not_in(visible_fund_codes))
        conditions.append(table.c.payment_id.not_in(elsewhere))
    query = select(table).where(*conditions)
    total = connection.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = connection.execute(
        query.order_by(table.c.received_at.desc(), table.c.payment_id).limit(limit).offset(offset)
    )
    return [_plain(r) for r in rows], int(total)


def recorded_forms(reference: Any) -> Any:
    """Every form a reference kept as `reference` (`normalise_reference`: how it is typed
    now) may be recorded in: itself, and those recorded before 2026-12-01 with full-width
    characters or a zero-width space (`reference_forms`). A subquery, so a lookup costs one
    probe by primary key inside the statement, not another round trip."""
    forms = LIVE.reference_forms
    return union_all(
        select(reference),
        select(forms.c.recorded_reference).where(forms.c.reference == reference),
    )


_POSTINGS = LIVE.postings
_VAT_PENCE = case((_POSTINGS.c.account == "vat:output", -_POSTINGS.c.amount_pence), else_=0)
_MOVEMENT_PENCE = func.sum(-_POSTINGS.c.amount_pence)
_MOVEMENT_VAT_PENCE = func.sum(_VAT_PENCE)


def _account_statements(reference_matches: Any) -> tuple[Select[Any], Select[Any]]:
    """The account's totals, for a page past its end, and a page of its movements: one line
    per movement (its postings of one event: one payment, one action), oldest first, with
    the running balance and the account's totals as window sums over every movement, so
    that one statement (one plan, one look-up of `reference_forms`) answers a page whatever
    its offset, where the totals, the balance before the page and the page took three."""
    of_account = (_POSTINGS.c.fund_code == bindparam("fund_code"), reference_matches)
    totals = select(
        func.coalesce(func.sum(-_POSTINGS.c.amount_pence), 0),
        func.coalesce(func.sum(_VAT_PENCE), 0),
        func.count(func.distinct(_POSTINGS.c.position)),
    ).where(*of_account)
    page = (
        select(
            _POSTINGS.c.position,
            _POSTINGS.c.payment_id,
            _POSTINGS.c.action,
            func.min(_POSTINGS.c.effective_at).label("effective_at"),
            func.min(_POSTINGS.c.recorded_at).label("recorded_at"),
            _MOVEMENT_PENCE.label("amount_pence"),
            _MOVEMENT_VAT_PENCE.label("vat_pence"),
            func.sum(_MOVEMENT_PENCE)
            .over(order_by=_POSTINGS.c.position, rows=(None, 0))
            .label("balance_pence"),
            func.sum(_MOVEMENT_PENCE).over().label("account_balance_pence"),
            func.sum(_MOVEMENT_VAT_PENCE).over().label("account_vat_pence"),
            func.count().over().label("account_movements"),
        )
        .where(*of_account)
        .group_by(_POSTINGS.c.position, _POSTINGS.c.payment_id, _POSTINGS.c.action)
        .order_by(_POSTINGS.c.position)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    return totals, page


_TYPED = bindparam("reference", type_=String)
_OLDER_FORMS = select(LIVE.reference_forms.c.recorded_reference).where(
    LIVE.reference_forms.c.reference == _TYPED
)
# Built once: SQLAlchemy then finds each statement's compiled form in its cache by identity
# instead of building and hashing the expression on every request. PostgreSQL plans
# `= ANY(array_append(ARRAY(older forms), :reference))` (an init plan, then the same probe of
# ix_postings_fund_code_reference) in about 0.1 ms less than the semi-join that
# `IN (recorded_forms)` makes of it; SQLite has no arrays and plans the IN list as cheaply.
_ACCOUNT_STATEMENTS = {
    "postgresql": _account_statements(
        _POSTINGS.c.reference
        == func.any(func.array_append(func.array(_OLDER_FORMS.scalar_subquery()), _TYPED))
    )
}
_ANY_BACKEND = _account_statements(_POSTINGS.c.reference.in_(recorded_forms(_TYPED)))
_ACCOUNT_FIGURES = ("account_balance_pence", "account_vat_pence", "account_movements")


def account_statement(
    connection: Connection, fund_code: str, typed: str, *, limit: int = 100, offset: int = 0
) -> dict[str, Any]:
    """A payer account's balance (income held, VAT included) and its movements, oldest first,
    each with the running balance (carried over from the pages before `offset`): the account
    of the reference as typed, in every form it was recorded in (`recorded_forms`)."""
    reference = normalise_reference(typed)
    account = {"fund_code": fund_code, "reference": reference}
    totals, page = _ACCOUNT_STATEMENTS.get(connection.dialect.name, _ANY_BACKEND)
    rows = connection.execute(page, account | {"limit": limit, "offset": offset}).all()
    if rows:
        balance, vat, total = (rows[0]._mapping[name] for name in _ACCOUNT_FIGURES)
    elif offset or limit < 1:  # past the last page, or the figures alone (limit 0)
        balance, vat, total = connection.execute(totals, account).one()
    else:  # no movement at all
        balance, vat, total = 0, 0, 0
    statement = []
    for row in rows:
        line = _plain(row)
        for name in _ACCOUNT_FIGURES:
            del line[name]
        line["amount_pence"] = int(row.amount_pence)
        line["vat_pence"] = int(row.vat_pence)
        line["balance_pence"] = int(row.balance_pence)
        statement.append(line)
    return {
        "fund_code": fund_code,
        "reference": reference,
        "balance_pence": int(balance),
        "vat_pence": int(vat),
        "statement": statement,
        "total": int(total),
    }


def suspense_page(
    connection: Connection, today: date | None = None, *, limit: int = 100, offset: int = 0
) -> dict[str, Any]:
    """Open suspense items, oldest first, with their age in days, and the total."""
    table = LIVE.suspense_items
    today = today or uk_date(datetime.now().astimezone())
    items = []
    for row in connection.execute(
        select(table)
        .order_by(table.c.received_date, table.c.payment_id)
        .limit(limit)
        .offset(offset)
    ):
        item = _plain(row)
        item["age_days"] = (today - row.received_date).days
        items.append(item)
    total, count = connection.execute(
        select(func.coalesce(func.sum(table.c.amount_pence), 0), func.count())
    ).one()
    return {"total_pence": int(total), "total": int(count), "items": items}


def audit_page(
    connection: Connection,
    *,
    recorded_from: datetime | None = None,
    recorded_to: datetime | None = None,
    actor: str | None = None,
    payment_id: str | None = None,
    after_position: int = 0,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Audit trail rows in position order, after a position (keyset paging)."""
    table = LIVE.audit_trail
    conditions = [table.c.position > after_position]
    if recorded_from:
        conditions.append(table.c.recorded_at >= recorded_from)
    if recorded_to:
        conditions.append(table.c.recorded_at < recorded_to)
    if actor:
        conditions.append(table.c.actor == actor)
    if payment_id:
        conditions.append(table.c.payment_id == payment_id)
    rows = connection.execute(
        select(table).where(*conditions).order_by(table.c.position).limit(limit)
    )
    return [_plain(r) for r in rows]


def import_batches_page(
    connection: Connection, *, limit: int = 100, offset: int = 0
) -> dict[str, Any]:
    """Imported files, newest first, and how many there are."""
    table = LIVE.import_batches
    query = (
        select(table)
        .order_by(table.c.imported_at.desc(), table.c.batch_id)
        .limit(limit)
        .offset(offset)
    )
    batches = [_plain(row) for row in connection.execute(query)]
    total = connection.execute(select(func.count()).select_from(table)).scalar_one()
    return {"total": int(total), "batches": batches}
