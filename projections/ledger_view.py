"""Fills the read-model tables from domain events, a page at a time.

A page of events is applied in memory (the payments it touches are loaded first), then
written with one statement per table through the bare driver (projections.bulk_write): COPY
(PostgreSQL) for postings and the audit trail, one additive upsert for balances and takings,
one replacing upsert for payment rows. The caller commits the page in
the same transaction as its tracking position, which makes the projection exactly once.

A rebuild (or a verification) fills empty scratch tables nobody else writes: its
CarryingProjector keeps the balances, totals, takings and payment rows in memory from page to
page and writes them once, with COPY, instead of loading and upserting them every page.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import Table, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect

from domain.funds import FundChart
from domain.imports import ImportBatch, batch_totals
from domain.payment import Payment, payment_status
from domain.postings import (
    SUSPENSE,
    VAT_OUTPUT,
    Movement,
    Posting,
    effective_at,
    income_account,
    postings_for,
)
from domain.references import normalise_reference
from projections.bulk_write import (
    insert_processed,
    insert_rows,
    insert_tuples,
    one_round_trip,
    processed_rows,
    processed_tuples,
    upsert_rows,
)
from projections.schema import SUSPENSE_FUND, ReadModel

UK = ZoneInfo("Europe/London")
PAYMENT_EVENTS = (Payment.Event, Payment.Received)
Key = tuple[Any, ...]
Row = dict[str, Any]
# Accounts a receipt's money arrives in: a channel's cash, or a card provider's clearing.
_RECEIVING_ACCOUNTS = ("cash", "clearing")
# fund_balances columns moved by a movement, and in which direction of the money held.
_FUND_MOVEMENT_COLUMNS = {
    Movement.ALLOCATION: ("allocated_pence", 1),
    Movement.ALLOCATION_ON_ARRIVAL: ("allocated_pence", 1),
    Movement.TRANSFER_IN: ("transfers_in_pence", 1),
    Movement.TRANSFER_OUT: ("transfers_out_pence", -1),
    Movement.REFUND: ("refunds_pence", -1),
    Movement.REVERSAL: ("reversals_pence", -1),
}
# A payment's money paid back: the credits of its channel's refunds and reversals accounts
# (a payout's debits of them settle what was already paid back).
_PAID_BACK_COLUMNS = {
    (Movement.REFUND, "refunds"): "refunded_pence",
    (Movement.REVERSAL, "reversals"): "reversed_pence",
}
# The movements that can move a channel's figures (_add_channel_figures) or a payment's
# money paid back (_PAID_BACK_COLUMNS).
_CHANNEL_MOVEMENTS = frozenset({Movement.RECEIPT, Movement.REFUND, Movement.REVERSAL})
# The movements that can move a day's takings (_add_takings).
_TAKINGS_MOVEMENTS = _CHANNEL_MOVEMENTS | {Movement.ALLOCATION_ON_ARRIVAL}


def uk_date(moment: datetime) -> date:
    """The UK business date of a moment: what a person in the income office calls 'the day'."""
    return moment.astimezone(UK).date()


def event_id(event: Any, originator: str | None = None) -> str:
    """`originator`: the event's originator id as text, if made already."""
    return f"{originator or event.originator_id}:{event.originator_version}"


class Counters:
    """Additive deltas per key, written as INSERT ... ON CONFLICT DO UPDATE SET x = x + d."""

    def __init__(self, key_columns: Sequence[str], value_columns: Sequence[str]) -> None:
        self.key_columns = tuple(key_columns)
        self.value_columns = tuple(value_columns)
        self.rows: dict[Key, dict[str, int]] = {}
        self.extra: dict[Key, dict[str, Any]] = {}

    def add(self, key: Key, extra: dict[str, Any] | None = None, **deltas: int) -> None:
        row = self.row(key)
        for column, delta in deltas.items():
            row[column] += delta
        if extra:
            self.extra[key] = extra

    def row(self, key: Key) -> dict[str, int]:
        """The key's deltas, to add to in place (zeros for a key not held yet): what `add`
        does, without a dict of keyword arguments per call (a rebuild adds per posting)."""
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = dict.fromkeys(self.value_columns, 0)
        return row

    def write(self, connection: Connection, table: Table, *, new: bool = False) -> None:
        """Add the deltas to the table's rows; `new`: the table holds none of these keys, so
        the rows are plain inserts (COPY on PostgreSQL)."""
        if not self.rows:
            return
        if new:
            self._insert(connection, table)
            return
        rows = [
            dict(zip(self.key_columns, key, strict=True)) | self.extra.get(key, {}) | values
            for key, values in self.rows.items()
        ]
        upsert_rows(connection, table, self.key_columns, rows, add=self.value_columns)

    def _insert(self, connection: Connection, table: Table) -> None:
        insert_tuples(connection, table, *self.tuples())

    def tuples(self) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        """The columns, and the rows as tuples, with no dict made per row (a rebuild writes
        every account's and day's row at once); an `extra` is given for every key or none."""
        extra = self.extra
        extra_columns = tuple(next(iter(extra.values()), {}))
        columns = self.key_columns + extra_columns + self.value_columns
        if extra_columns:
            rows = [
                (*key, *map(extra[key].__getitem__, extra_columns), *figures.values())
                for key, figures in self.rows.items()
            ]
        else:
            rows = [(*key, *figures.values()) for key, figures in self.rows.items()]
        return columns, rows


class ProcessedTable(NamedTuple):
    """A table's new rows made ready to write: the table, its columns and their values."""

    table: Table
    columns: Sequence[str]
    values: list[Sequence[Any]]


def write_carried_columns(connection: Connection, tables: Sequence[ProcessedTable]) -> None:
    for table, columns, values in tables:
        insert_processed(connection, table, columns, values)


# Pages of at most this many events send their writes together (bulk_write.one_round_trip);
# larger ones (a catch-up) COPY their new rows.
ONE_ROUND_TRIP_EVENTS = 50


class PageProjector:
    """Applies one page of (position, event) pairs to the read model on a connection."""

    def __init__(self, model: ReadModel) -> None:
        self.model = model

    def apply(self, connection: Connection, page: Sequence[tuple[int, Any]]) -> None:
        state = _State(self.model)
        state.load(connection, page)
        for position, event in page:
            state.apply(position, event)
        # A following projector's page is a receipt or two: its nine or so writes cost
        # round trips, not rows (issue #9, save -> visible).
        small = len(page) <= ONE_ROUND_TRIP_EVENTS
        with one_round_trip(connection) if small else contextlib.nullcontext():
            state.write_page(connection)
            state.write_carried(connection)

    def flush(self, connection: Connection) -> None:
        """Nothing is held between pages."""


# A carrying projector writes what it holds once this many payments are held (memory).
CARRY_PAYMENTS = 50_000


class CarryingProjector:
    """A rebuild's projector: postings and the audit trail are written page by page, but
    balances, totals, takings and payment rows are carried in memory from page to page and
    written once (`flush`, or when CARRY_PAYMENTS payments are held), instead of loaded and
    upserted again on every page. Only for a read model no other writer touches (a rebuild's
    or a verification's scratch tables, empty at the start): its pages' tracking positions
    run ahead of what is written until `flush`, so a build that fails is begun again from
    empty tables, as rebuild and verify do."""

    def __init__(self, model: ReadModel, carry_payments: int | None = None) -> None:
        self.model = model
        self.carry_payments = CARRY_PAYMENTS if carry_payments is None else carry_payments
        self.state = _State(model)
        self.flushed = False  # once written, later rows may meet stored ones

    def apply(self, connection: Connection, page: Sequence[tuple[int, Any]]) -> None:
        state = self.state
        if self.flushed:
            state.load(connection, page)
        for position, event in page:
            state.apply(position, event)
        state.write_page(connection)
        if len(state.payments) >= self.carry_payments:
            self.flush(connection)

    def flush(self, connection: Connection) -> None:
        self.state.write_carried(connection, new=not self.flushed)
        self.flushed = True
        self.state = _State(self.model)

    def take_first_flush(self, dialect: Dialect) -> list[ProcessedTable] | None:
        """What a first `flush` would write, made ready without the connection (the caller
        writes it, `write_carried_columns`), and forgotten as a flush forgets it; None after
        a flush (its rows meet stored ones: `flush` upserts them)."""
        if self.flushed:
            return None
        tables = self.state.new_carried_columns(dialect)
        self.flushed = True
        self.state = _State(self.model)
        return tables


class _State:
    """What pages of events change: rows to add (postings, audit trail, import batches) and
    the figures and payment rows they move (loaded first for the payments they touch)."""

    def __init__(self, model: ReadModel) -> None:
        self.model = model
        # Rows as tuples in POSTING_COLUMNS' and AUDIT_COLUMNS' order: many per page.
        self.postings: list[tuple[Any, ...]] = []
        self.audit: list[tuple[Any, ...]] = []
        self.accounts = Counters(["account"], ["balance_pence", "postings_count"])
        self.funds = Counters(
            ["fund_code"],
            [
                "balance_pence",
                "net_pence",
                "vat_pence",
                "allocated_pence",
                "transfers_in_pence",
                "transfers_out_pence",
                "refunds_pence",
                "reversals_pence",
            ],
        )
        self.channels = Counters(
            ["channel"],
            ["receipts_count", "received_pence", "refunds_pence", "reversals_pence", "net_pence"],
        )
        self.takings = Counters(
            ["business_date", "channel", "fund_code"],
            [
                "receipts_count",
                "received_pence",
                "vat_pence",
                "refunds_count",
                "refunds_pence",
                "reversals_count",
                "reversals_pence",
                "net_pence",
            ],
        )
        self.import_batches: list[dict[str, Any]] = []
        self.import_reversals: list[dict[str, Any]] = []
        self.payments: dict[str, dict[str, Any]] = {}
        self.lines: dict[str, dict[tuple[str, str], dict]] = defaultdict(dict)
        self.touched: set[str] = set()
        # (the form typed now, the form recorded) of references recorded unfolded
        self.forms: set[tuple[str, str]] = set()

    # ---- loading ---------------------------------------------------------------------------

    def load(self, connection: Connection, page: Sequence[tuple[int, Any]]) -> None:
        """Load the stored rows of the payments the page touches and this state lacks."""
        touched = {str(e.originator_id) for _, e in page if isinstance(e, PAYMENT_EVENTS)}
        # A payment received in this page has no stored rows yet: each event is applied
        # once, and its receipt is its first (a lone receipt's page reads nothing).
        received = {str(e.originator_id) for _, e in page if isinstance(e, Payment.Received)}
        wanted = touched - received - self.payments.keys()
        if not wanted:
            return
        payments, lines = self.model.payments, self.model.payment_allocations
        for chunk in _chunks(sorted(wanted), 500):
            result = connection.execute(select(payments).where(payments.c.payment_id.in_(chunk)))
            self.payments.update({row.payment_id: dict(row._mapping) for row in result})
            result = connection.execute(select(lines).where(lines.c.payment_id.in_(chunk)))
            for row in result:
                self.lines[row.payment_id][(row.fund_code, row.reference)] = dict(row._mapping)

    # ---- applying --------------------------------------------------------------------------

    def apply(self, position: int, event: Any) -> None:
        postings = postings_for(event)
        moment = effective_at(event)
        # Made once per event: the originator's id as text (its payment id and its event
        # id) and the UK date of its moment (its postings' and a receipt's row's).
        originator = str(event.originator_id)
        identifier = event_id(event, originator)
        day = uk_date(moment)
        payment_id = originator if isinstance(event, PAYMENT_EVENTS) else None
        channel = self._channel(event, payment_id)
        if isinstance(event, Payment.Received):
            self._received(event, payment_id, day)
            self._note_form(event.reference)
        rows = posting_tuples(
            position, event, postings, payment_id, moment, channel, identifier, day
        )
        self.postings.extend(rows)
        accounts = self.accounts.rows
        subjects = self.accounts.extra
        for posting, row in zip(postings, rows, strict=True):
            key = (posting.account,)
            figures = accounts.get(key) or self.accounts.row(key)
            figures["balance_pence"] += posting.amount_pence
            figures["postings_count"] += 1
            if key not in subjects:  # an account's fund and reference are in its name
                subjects[key] = account_subject(posting)
                self._note_form(posting.reference)
            self._add_figures(posting, row[_POSTING_CHANNEL], day, payment_id)
        self.audit.append(audit_tuple(position, event, payment_id, moment, identifier))
        if payment_id is not None:
            self._touch_payment(position, event, payment_id)
        elif isinstance(event, ImportBatch.Imported):
            self.import_batches.append(import_batch_row(position, event))
        elif isinstance(event, ImportBatch.Reversed):
            self.import_reversals.append(
                {
                    "id": str(event.originator_id),
                    "reversed_at": event.timestamp,
                    "reversed_by": event.actor,
                    "reversal_reason": event.reason,
                    "reversed_pence": event.amount_pence,
                    "position": position,
                }
            )

    def _note_form(self, reference: str | None) -> None:
        """A reference recorded in a form that typing no longer gives (full-width digits, a
        zero-width space: recorded before 2026-12-01) is listed under the form it is typed
        in now. ASCII is always in that form (the common case: nothing to do)."""
        if reference and not reference.isascii():
            typed = normalise_reference(reference)
            if typed != reference:
                self.forms.add((typed, reference))

    def _channel(self, event: Any, payment_id: str | None) -> str | None:
        if isinstance(event, Payment.Received):
            return event.channel
        if payment_id is not None and payment_id in self.payments:
            return self.payments[payment_id]["channel"]
        return getattr(event, "channel", None)

    # Every money figure below is a sum of postings (domain.postings.postings_for), picked by
    # account and movement; none is read off the event's own fields.

    def _add_figures(
        self, posting: Posting, channel: str | None, day: date, payment_id: str | None
    ) -> None:
        # Only receipts, refunds and reversals move a channel's figures or a payment's money
        # paid back, which need the account's kind (`prefix`): an allocation's postings
        # (about half) skip both look-ups.
        movement = posting.movement
        prefix = _prefix(posting) if movement in _CHANNEL_MOVEMENTS else None
        if prefix is not None:
            self._add_channel_figures(posting, prefix, channel)
        if payment_id is not None:
            self._add_payment_figures(posting, prefix, payment_id)
        fund_code = posting.fund_code
        holder = fund_code or (SUSPENSE_FUND if posting.account == SUSPENSE else None)
        if holder is None:
            return
        if fund_code:
            self._add_fund_figures(posting)
        if movement in _TAKINGS_MOVEMENTS:
            self._add_takings(posting, (day, channel, holder))

    def _add_channel_figures(self, posting: Posting, prefix: str, channel: str | None) -> None:
        """Money through a channel: receipts debit its cash or clearing account, refunds and
        reversals credit its own accounts (a payout's debits of those are no new refunds)."""
        pence, movement = posting.amount_pence, posting.movement
        if movement is Movement.RECEIPT and prefix in _RECEIVING_ACCOUNTS:
            figures = self.channels.row((channel,))
            figures["receipts_count"] += 1
            figures["received_pence"] += pence
            figures["net_pence"] += pence
        elif movement == Movement.REFUND and prefix == "refunds":
            figures = self.channels.row((channel,))
            figures["refunds_pence"] -= pence
            figures["net_pence"] += pence
        elif movement == Movement.REVERSAL and prefix == "reversals":
            figures = self.channels.row((channel,))
            figures["reversals_pence"] -= pence
            figures["net_pence"] += pence

    def _add_fund_figures(self, posting: Posting) -> None:
        held = -posting.amount_pence  # income held is a credit
        figures = self.funds.row((posting.fund_code,))
        figures["balance_pence"] += held
        figures["vat_pence" if posting.account == VAT_OUTPUT else "net_pence"] += held
        if posting.movement in _FUND_MOVEMENT_COLUMNS:
            column, sign = _FUND_MOVEMENT_COLUMNS[posting.movement]
            figures[column] += sign * held

    def _add_takings(self, posting: Posting, key: Key) -> None:
        held = -posting.amount_pence
        movement = posting.movement
        # One receipt, refund or reversal per posting to a payer account or to suspense (the
        # VAT beside it is part of the same one).
        item = posting.account != VAT_OUTPUT
        if movement in (Movement.RECEIPT, Movement.ALLOCATION_ON_ARRIVAL):
            # An allocation on arrival (effective when the money was received) moves the
            # receipt from suspense's takings to its fund's, on the same day.
            figures = self.takings.row(key)
            figures["receipts_count"] += (1 if held >= 0 else -1) if item else 0
            figures["received_pence"] += held
            figures["vat_pence"] += 0 if item else held
            figures["net_pence"] += held
        elif movement is Movement.REFUND:
            figures = self.takings.row(key)
            figures["refunds_count"] += int(item)
            figures["refunds_pence"] -= held
            figures["net_pence"] += held
        elif movement is Movement.REVERSAL:
            # A reversal debits a payer account or suspense; its undoing (ReversalUndone)
            # credits it back: one reversal fewer.
            figures = self.takings.row(key)
            figures["reversals_count"] += (1 if held < 0 else -1) if item else 0
            figures["reversals_pence"] -= held
            figures["net_pence"] += held

    def _add_payment_figures(self, posting: Posting, prefix: str | None, payment_id: str) -> None:
        """`prefix`: the account's kind, or None where its movement pays nothing back."""
        row = self.payments[payment_id]
        paid_back = None if prefix is None else _PAID_BACK_COLUMNS.get((posting.movement, prefix))
        if paid_back:
            row[paid_back] -= posting.amount_pence
            return
        held = -posting.amount_pence
        if posting.account == SUSPENSE:
            row["unallocated_pence"] += held
            if posting.movement is Movement.RECEIPT:
                row["amount_pence"] += held
        elif posting.fund_code:
            assert posting.reference is not None
            row["allocated_pence"] += held
            line = self._line(payment_id, posting.fund_code, posting.reference)
            line["amount_pence"] += held
            if posting.account == VAT_OUTPUT:
                line["vat_pence"] += held

    def _touch_payment(self, position: int, event: Any, payment_id: str) -> None:
        row = self.payments[payment_id]
        # A StrEnum's str() is its value, made in C (`.value` is a Python property).
        row["status"] = str(
            payment_status(row["allocated_pence"], row["unallocated_pence"], row["reversed_pence"])
        )
        row["fund_code"] = self._main_fund(payment_id) or row["fund_code"]
        row["updated_at"] = event.timestamp
        row["version"] = event.originator_version
        row["position"] = position
        self.touched.add(payment_id)

    def _received(self, event: Payment.Received, payment_id: str, day: date) -> None:
        """The receipt's own row: its money figures start at zero and come from postings;
        `day`: the UK date it was received."""
        self.payments[payment_id] = {
            "payment_id": payment_id,
            "channel": event.channel,
            "amount_pence": 0,
            "reference": event.reference,
            "fund_hint": event.fund_hint,
            "fund_code": None,
            "external_id": event.external_id,
            "status": "suspense",
            "allocated_pence": 0,
            "unallocated_pence": 0,
            "refunded_pence": 0,
            "reversed_pence": 0,
            "suspense_reason": event.suspense_reason,
            "received_at": event.received_at,
            "received_date": day,
            "recorded_at": event.timestamp,
            "recorded_by": event.actor,
        }

    def _line(self, payment_id: str, fund_code: str, reference: str) -> dict[str, Any]:
        return self.lines[payment_id].setdefault(
            (fund_code, reference),
            {
                "payment_id": payment_id,
                "fund_code": fund_code,
                "reference": reference,
                "amount_pence": 0,
                "vat_pence": 0,
            },
        )

    def _main_fund(self, payment_id: str) -> str | None:
        lines = self.lines.get(payment_id)
        if not lines:
            return None
        if len(lines) == 1:  # most payments
            (line,) = lines.values()
            return line["fund_code"] if line["amount_pence"] else None
        held = [line for line in lines.values() if line["amount_pence"]]
        if not held:
            return None
        return max(held, key=lambda line: (line["amount_pence"], line["fund_code"]))["fund_code"]

    # ---- writing ---------------------------------------------------------------------------

    def write_page(self, connection: Connection) -> None:
        """Write the rows the events added (postings, audit trail, import batches)."""
        model = self.model
        insert_tuples(connection, model.postings, POSTING_COLUMNS, self.postings)
        insert_tuples(connection, model.audit_trail, AUDIT_COLUMNS, self.audit)
        insert_rows(connection, model.import_batches, self.import_batches)
        _insert_new_forms(connection, model.reference_forms, self.forms)
        table = model.import_batches
        for reversal in self.import_reversals:  # a batch is reversed at most once
            connection.execute(
                update(table)
                .where(table.c.batch_id == reversal["id"])
                .values({k: v for k, v in reversal.items() if k != "id"})
            )
        self.postings, self.audit, self.import_batches, self.import_reversals = [], [], [], []
        self.forms = set()

    def write_carried(self, connection: Connection, *, new: bool = False) -> None:
        """Write the figures and payment rows moved; `new`: the tables hold none of them."""
        model = self.model
        self.accounts.write(connection, model.account_balances, new=new)
        self.funds.write(connection, model.fund_balances, new=new)
        self.channels.write(connection, model.channel_totals, new=new)
        self.takings.write(connection, model.daily_takings, new=new)
        self._write_payments(connection, new)

    def new_carried_columns(self, dialect: Dialect) -> list[ProcessedTable]:
        """What `write_carried(..., new=True)` writes, made ready to write without the
        connection (bulk_write.processed_tuples), for `write_carried_columns`."""
        model = self.model
        tables = []
        for counters, table in (
            (self.accounts, model.account_balances),
            (self.funds, model.fund_balances),
            (self.channels, model.channel_totals),
            (self.takings, model.daily_takings),
        ):
            if counters.rows:
                columns, rows = counters.tuples()
                values = processed_tuples(dialect, table, columns, rows)
                tables.append(ProcessedTable(table, columns, values))
        if self.touched:
            for table, rows in zip(
                (model.payments, model.payment_allocations, model.suspense_items),
                self._payment_rows(),
                strict=True,
            ):
                tables.append(ProcessedTable(table, *processed_rows(dialect, table, rows)))
        return tables

    def _payment_rows(self) -> tuple[list[Row], list[Row], list[Row]]:
        """The touched payments' rows, their allocation lines and their open suspense items."""
        touched = sorted(self.touched)
        rows = [self.payments[pid] for pid in touched]
        held = self.lines
        lines = [line for pid in touched if pid in held for line in held[pid].values()]
        open_items = [
            {
                "payment_id": row["payment_id"],
                "channel": row["channel"],
                "reference": row["reference"],
                "amount_pence": row["unallocated_pence"],
                "reason": row["suspense_reason"],
                "received_at": row["received_at"],
                "received_date": row["received_date"],
            }
            for row in rows
            if row["unallocated_pence"] > 0
        ]
        return rows, lines, open_items

    def _write_payments(self, connection: Connection, new: bool) -> None:
        if not self.touched:
            return
        model = self.model
        rows, lines, open_items = self._payment_rows()
        if new:
            insert_rows(connection, model.payments, rows)
            insert_rows(connection, model.payment_allocations, lines)
            insert_rows(connection, model.suspense_items, open_items)
            return
        upsert_rows(connection, model.payments, ["payment_id"], rows)
        if lines:
            upsert_rows(
                connection,
                model.payment_allocations,
                ["payment_id", "fund_code", "reference"],
                lines,
            )
        if open_items:
            upsert_rows(connection, model.suspense_items, ["payment_id"], open_items)
        cleared = [row["payment_id"] for row in rows if row["unallocated_pence"] <= 0]
        for chunk in _chunks(cleared, 500):
            connection.execute(
                delete(model.suspense_items).where(model.suspense_items.c.payment_id.in_(chunk))
            )


def _insert_new_forms(
    connection: Connection, table: Table, forms: Iterable[tuple[str, str]]
) -> None:
    """Rows for the forms not listed yet (another page may have listed one)."""
    rows = [{"reference": typed, "recorded_reference": recorded} for typed, recorded in forms]
    if not rows:
        return
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    connection.execute(dialect.insert(table).on_conflict_do_nothing(), rows)


def import_batch_row(position: int, event: ImportBatch.Imported) -> dict[str, Any]:
    totals = batch_totals(event.imported_lines)
    return {
        "batch_id": str(event.originator_id),
        "file_name": event.file_name,
        "file_format": event.file_format,
        "sha256": event.sha256,
        "line_count": event.line_count,
        "control_total_pence": event.control_total_pence,
        "control_count": event.control_count,
        "receipts_count": totals.receipts_count,
        "receipts_pence": totals.receipts_pence,
        "returned_cheques_count": totals.returned_cheques_count,
        "imported_at": event.timestamp,
        "imported_date": uk_date(event.timestamp),
        "imported_by": event.actor,
        "reversed_at": None,
        "reversed_by": None,
        "reversal_reason": None,
        "reversed_pence": 0,
        "position": position,
    }


def account_subject(posting: Posting) -> dict[str, Any]:
    """The fund and reference of an account row: only an account named for them has them.

    `vat:output` is one account holding the VAT of every fund; taking the fund of whichever
    posting came first would make the row depend on the page size (VAT per fund is in
    `fund_balances.vat_pence` and the postings).
    """
    if (
        posting.fund_code
        and posting.reference
        and posting.account == income_account(posting.fund_code, posting.reference)
    ):
        return {"fund_code": posting.fund_code, "reference": posting.reference}
    return {"fund_code": None, "reference": None}


AUDIT_COLUMNS = (
    "position",
    "event_id",
    "recorded_at",
    "effective_at",
    "actor",
    "action",
    "payment_id",
    "fund_code",
    "reference",
    "amount_pence",
    "reason",
    "correlation_id",
)
POSTING_COLUMNS = (
    "position",
    "event_id",
    "payment_id",
    "action",
    "account",
    "fund_code",
    "reference",
    "channel",
    "amount_pence",
    "effective_at",
    "effective_date",
    "recorded_at",
)
_POSTING_CHANNEL = POSTING_COLUMNS.index("channel")


def audit_row(
    position: int, event: Any, payment_id: str | None, moment: datetime
) -> dict[str, Any]:
    """One event as a row of the audit trail."""
    values = audit_tuple(position, event, payment_id, moment)
    return dict(zip(AUDIT_COLUMNS, values, strict=True))


def audit_tuple(
    position: int,
    event: Any,
    payment_id: str | None,
    moment: datetime,
    identifier: str | None = None,
) -> tuple[Any, ...]:
    """audit_row's values in AUDIT_COLUMNS' order (`identifier`: its event_id, if made
    already)."""
    fund_code, reference, amount = _audit_subject(event)
    return (
        position,
        identifier or event_id(event),
        event.timestamp,
        moment,
        getattr(event, "actor", None),
        type(event).__name__,
        payment_id,
        fund_code,
        reference,
        amount,
        getattr(event, "reason", None) or getattr(event, "text", None),
        getattr(event, "idempotency_key", None),
    )


def posting_rows(
    position: int,
    event: Any,
    postings: Iterable[Posting],
    payment_id: str | None,
    moment: datetime,
    channel: str | None,
) -> list[dict[str, Any]]:
    """The event's postings (from postings_for, the one source of money movements) as rows."""
    values = posting_tuples(position, event, postings, payment_id, moment, channel)
    return [dict(zip(POSTING_COLUMNS, row, strict=True)) for row in values]


def posting_tuples(
    position: int,
    event: Any,
    postings: Iterable[Posting],
    payment_id: str | None,
    moment: datetime,
    channel: str | None,
    identifier: str | None = None,
    day: date | None = None,
) -> list[tuple[Any, ...]]:
    """posting_rows' values in POSTING_COLUMNS' order (`identifier`: the event's event_id,
    and `day`: the moment's UK date, if made already)."""
    identifier = identifier or event_id(event)
    action, recorded = type(event).__name__, event.timestamp
    day = day or uk_date(moment)
    return [
        (
            position,
            identifier,
            payment_id,
            action,
            posting.account,
            posting.fund_code,
            posting.reference,
            posting.channel or channel,
            posting.amount_pence,
            moment,
            day,
            recorded,
        )
        for posting in postings
    ]


def _audit_subject(event: Any) -> tuple[str | None, str | None, int | None]:
    """The fund, reference and amount an audit reader looks for in one event."""
    if isinstance(event, Payment.Received):
        return event.fund_hint, event.reference, event.amount_pence
    if isinstance(event, Payment.Allocated):
        # The stored lines (plain dicts), not `allocated_lines`, which makes an object of
        # each again: postings_for has just made them once.
        lines = event.lines
        funds = {line["fund_code"] for line in lines}
        return (
            lines[0]["fund_code"] if len(funds) == 1 else None,
            lines[0]["reference"] if len(lines) == 1 else None,
            sum(line["amount_pence"] for line in lines),
        )
    if isinstance(event, Payment.Transferred):
        return event.to_fund_code, event.to_reference, event.amount_pence
    if isinstance(event, (Payment.Refunded, Payment.Reversed, Payment.RefundRequested)):
        return (
            getattr(event, "fund_code", None),
            getattr(event, "reference", None),
            (event.amount_pence),
        )
    if isinstance(event, FundChart.FundAdded):
        return event.fund["code"], None, None
    return getattr(event, "code", None), None, None


def _prefix(posting: Posting) -> str:
    """The kind of account a posting is on: `cash` of `cash:cheque`."""
    return posting.account.split(":", 1)[0]


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
