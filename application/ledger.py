"""The income ledger application: command methods that change payments and funds, and query
methods that return plain values.

Each command loads the aggregates it needs, asks the domain to decide, checks the ledger's
invariants on the new events and saves them in one transaction. Optimistic concurrency comes
from the event store: two writers of the same payment version cannot both commit.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import queue
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy.exc
from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Notification, Recording, StoredEvent
from eventsourcing.utils import get_topic
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from application import event_store
from application.access import EVERY_FUND, FundAccess
from application.grouped_writes import GroupWriter, Row, Write
from application.idempotency import (
    IdempotentRequest,
    StoredResponse,
    idempotency_table,
    recall,
    remember,
    stored_response_row,
    with_position,
)
from application.offices import counter_of
from application.outages import DATABASE_UNAVAILABLE_ERRORS, DatabaseUnavailable
from application.payer_details import (
    PayerDetails,
    erase_payer_details,
    load_payer_details,
    payer_details_row,
    payer_details_table,
    save_payer_details,
)
from application.periods import (
    Movement,
    movements,
    needs_period_gate,
    require_open_at,
    require_open_periods,
)
from application.receipt_encoding import ReceiptEncoder
from application.receipt_maker import ReceiptMaker
from domain.allocation_lines import AllocationLine, line_key
from domain.cards import reject_card_numbers
from domain.errors import ConcurrentUpdate, InvalidRequest, PaymentNotFound, PeriodClosed
from domain.funds import FROM_THE_START, Fund, FundChart, Match
from domain.import_rules import RuleDecision
from domain.limits import MAX_ACTOR_LENGTH, MAX_CORRELATION_ID_LENGTH, require_length
from domain.payment import (
    AllocationRequest,
    Channel,
    Payment,
    PendingRefund,
    ReversalKind,
    payment_id_for,
    payment_status,
    settlement_day,
)
from domain.postings import effective_at, postings_for
from domain.references import normalise_reference
from domain.statements import (
    COLLECTOR_NARRATIVES,
    PAYOUT_NARRATIVES,
    ProviderNames,
    payout_patterns,
)
from runtime.collector import collector_paused
from runtime.processes import default_processes

log = logging.getLogger(__name__)
MAX_BATCH_SIZE = 10_000
# A request that loses a race is run again to find what the winner did; more than a few
# losses in a row means heavy contention, and the client is better placed to wait.
MAX_ATTEMPTS = 3
DEFAULT_REFUND_APPROVAL_LIMIT_PENCE = 50_000
MAX_PENDING_LISTED = 500
# Events behind the read model are counted up to this many (a bounded index range scan):
# readiness probes and metric scrapes ask every few seconds, and counting a backlog of a
# million events scanned the whole table each time (docs/performance.md, Readiness).
LAG_COUNT_LIMIT = 10_000
# Payments whose events one query reads (payments_events): within SQLite's oldest limit of
# 999 bound parameters.
READ_CHUNK = 500
SYSTEM_ACTOR = "system"
# A command's stored response, and True when it is a replay of the first.
Answer = tuple[StoredResponse, bool]


@dataclass(frozen=True)
class CommandContext:
    """Who asks, what their key lets them do, and the key that makes a retried request
    safe. `access` limits them to fund groups; `partial_refunds` says whether their role may
    refund part of what a payment holds."""

    actor: str
    idempotency_key: str | None = None
    access: FundAccess = EVERY_FUND
    partial_refunds: bool = True

    def __post_init__(self) -> None:
        if not self.actor or not self.actor.strip():
            raise InvalidRequest("every command needs an actor: who is doing this")
        require_length("actor", self.actor, MAX_ACTOR_LENGTH)
        if self.idempotency_key == "":
            raise InvalidRequest("an idempotency key cannot be empty")
        # The key as stored (an HTTP client's key comes scoped as `user:key`).
        require_length("idempotency key", self.idempotency_key, MAX_CORRELATION_ID_LENGTH)
        reject_card_numbers("actor", self.actor)
        reject_card_numbers("idempotency key", self.idempotency_key)


@dataclass(frozen=True)
class RecordPayment:
    channel: str
    amount_pence: int
    reference: str
    received_at: datetime | None = None
    fund_code: str | None = None
    external_id: str | None = None
    payer: PayerDetails | None = None
    # True when external_id is the payment provider's own id (not typed by a person): it is
    # then not checked for card numbers, which a numeric id may resemble by chance.
    external_id_from_provider: bool = False
    provider_details: dict[str, Any] | None = None
    # Set when the caller already knows the receipt cannot be allocated (an unusable
    # reference): it goes to suspense with this reason instead of being matched.
    hold_in_suspense: Match | None = None
    # The cash office and till that took it at a counter (both, or neither).
    office_code: str | None = None
    till_code: str | None = None
    # An import rule decided where the money goes (`reference` is then the rewritten one).
    rule_decision: RuleDecision | None = None

    def fingerprint(self, counter: tuple[str, str] | None = None) -> str:
        """What the command asked, for idempotency: a retry must ask the same. The counter
        only when given, so that a retry of a request made before offices were kept still
        matches its first fingerprint."""
        return fingerprint(
            "record",
            channel=self.channel,
            amount_pence=self.amount_pence,
            reference=self.reference,
            fund_code=self.fund_code,
            external_id=self.external_id,
            received_at=self.received_at.isoformat() if self.received_at else None,
            **({"counter": list(counter)} if counter else {}),
        )


@dataclass(frozen=True)
class EncodedReceipt:
    """A new receipt's events as stored, and each money movement among them (for the period
    gate): all that saving it needs (IncomeLedger.encoded_receipt)."""

    payment_id: UUID
    stored: tuple[StoredEvent, ...]
    moves: tuple[Movement, ...]


@dataclass(frozen=True)
class Outcome:
    """The result of a command: the payment it concerned and whether anything was recorded.

    `position` is the notification id of the last event recorded (None when the command was a
    repeat and recorded nothing), for read-your-writes against the projections.
    `refund_request_id` is set when a refund waits for a second person's approval.
    """

    payment_id: UUID
    recorded: bool
    position: int | None
    payment: dict[str, Any] = field(repr=False)
    refund_request_id: str | None = None


# What json.dumps(..., sort_keys=True, default=str) writes, by the json module's own C
# encoder made once with the same settings: `JSONEncoder.encode` makes one per call, a
# third of a fingerprint's time (#9). No circular check: arguments are request data.
_CANONICAL = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None, str, json.encoder.encode_basestring_ascii, None, ": ", ", ", True, False, True
)


def fingerprint(command: str, **arguments: Any) -> str:
    """A stable digest of a command and its arguments, to tell a retry from a new request."""
    canonical = "".join(_CANONICAL({"command": command, **arguments}, 0))
    return hashlib.sha256(canonical.encode()).hexdigest()


def fund_match(command: RecordPayment, chart: FundChart) -> Match:
    """Where a command's new receipt goes: one fund, or suspense with the reason (a hold the
    command carries, else the council's import rule that decided it, else the chart)."""
    return command.hold_in_suspense or (
        command.rule_decision.match(chart)
        if command.rule_decision
        else chart.match(command.reference, command.fund_code)
    )


class IncomeLedger(Application):
    """Records receipts and every later move of their money, as immutable events."""

    name = "Ledger"

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        refund_approval_limit_pence: int = DEFAULT_REFUND_APPROVAL_LIMIT_PENCE,
        payout_narratives: Sequence[str] = PAYOUT_NARRATIVES,
        collector_narratives: Sequence[str] = COLLECTOR_NARRATIVES,
        import_processes: int | None = None,
    ) -> None:
        super().__init__(env)
        # Processes a large import's lines are checked and encoded in (application.forked;
        # None: one per CPU core).
        self.import_processes = import_processes or default_processes()
        # What a statement line's narrative holds when it is a card provider's payout
        # (domain.statements.names_payout): split payouts, payout debits kept unmatched.
        self.payout_narratives = payout_patterns(payout_narratives)
        # What a statement credit line's narrative holds when it is a payment provider's
        # money, a card payout or a collector's settlement: never a payer's own transfer,
        # whatever its reference (application.imports.names_provider).
        self.provider_narratives = ProviderNames.of(payout_narratives, collector_narratives)
        if refund_approval_limit_pence < 0:
            raise InvalidRequest("the refund approval limit cannot be negative")
        # Refunds on one payment adding up to more than this need a second person.
        self.refund_approval_limit_pence = refund_approval_limit_pence
        self._read_chart: FundChart | None = None
        self._read_chart_lock = threading.Lock()
        # A chart and the read model position it is known to cover (see chart_covering).
        self._chart_covering: tuple[FundChart, int] | None = None
        # Set by the composition root where the event store can commit concurrent receipts
        # together (PostgreSQL); None writes each in its own transaction.
        self.group_writer: GroupWriter | None = None
        # Makes a batch's new receipts' events and stored events in one step (new_receipt).
        self._receipt_encoder = ReceiptEncoder(self.mapper)

    # ---- funds ----------------------------------------------------------------------------

    def add_fund(self, fund: Fund, ctx: CommandContext, reason: str = "new fund") -> int | None:
        return self._change_chart(lambda chart: chart.add_fund(fund, ctx.actor, reason))

    def add_funds(
        self, funds: Sequence[Fund], ctx: CommandContext, reason: str = "new fund"
    ) -> int | None:
        """Add several funds in one write: all of them, or (if any is refused) none."""

        def change(chart: FundChart) -> None:
            for fund in funds:
                chart.add_fund(fund, ctx.actor, reason)

        return self._change_chart(change)

    def amend_fund(
        self,
        code: str,
        changes: dict[str, Any],
        ctx: CommandContext,
        reason: str,
        vat_rate_effective_from: datetime | None = None,
    ) -> int | None:
        """Change a fund; a new VAT rate applies to movements effective from
        `vat_rate_effective_from` (default: now)."""
        return self._change_chart(
            lambda chart: chart.amend_fund(
                code.upper(), changes, ctx.actor, reason, vat_rate_effective_from
            )
        )

    def disable_fund(self, code: str, ctx: CommandContext, reason: str) -> int | None:
        return self._change_chart(lambda chart: chart.disable_fund(code.upper(), ctx.actor, reason))

    def enable_fund(self, code: str, ctx: CommandContext, reason: str) -> int | None:
        return self._change_chart(lambda chart: chart.enable_fund(code.upper(), ctx.actor, reason))

    def chart(self) -> FundChart:
        """The current chart of funds, for reading only (never change the returned object).

        Every payment and many queries consult it, so this process keeps a copy and asks the
        event store only for events after its version; it is copied again only when the chart
        has actually changed, and swapped in whole so concurrent readers never see it half
        updated.
        """
        cached = self._read_chart
        if cached is None:
            fresh = self._chart_to_change()
            if fresh.pending_events:  # no chart recorded yet: nothing worth keeping
                return fresh
        else:
            newer = list(self.events.get(cached.id, gt=cached.version))
            if not newer:
                return cached
            fresh = copy.deepcopy(cached)
            for event in newer:
                event.mutate(fresh)

        def keep() -> None:
            with self._read_chart_lock:
                if self._read_chart is None or fresh.version > self._read_chart.version:
                    self._read_chart = fresh

        # Read inside a command's transaction, the chart may hold the command's own chart
        # events: kept for every request only once they are committed.
        event_store.when_committed(self.recorder, keep)
        return fresh

    def chart_covering(self, position: int) -> FundChart:
        """The chart, at least as new as every event up to `position`: the read model's
        position, read before calling. A query of the read model needs the chart no newer
        than the model itself, so the event store is asked again only when the read model
        has moved past the position the held chart was last checked at (an idle or read-only
        server asks it nothing)."""
        held = self._chart_covering  # one read: the chart and what it covers, together
        if held is not None and position <= held[1]:
            return held[0]
        chart = self.chart()

        # Every event up to `position` was committed before chart() read the store, so the
        # newer of the two charts covers both positions.
        def keep() -> None:
            with self._read_chart_lock:
                held = self._chart_covering
                newer = held[0] if held is not None and held[0].version > chart.version else chart
                covers = max(position, held[1]) if held is not None else position
                self._chart_covering = (newer, covers)

        event_store.when_committed(self.recorder, keep)
        return chart

    def _chart_to_change(self) -> FundChart:
        try:
            return self.repository.get(FundChart.create_id())
        except AggregateNotFoundError:
            return FundChart.open(actor=SYSTEM_ACTOR)

    def funds(
        self, access: FundAccess = EVERY_FUND, *, covering: int | None = None
    ) -> list[dict[str, Any]]:
        """Every fund the user may see; `covering`: see chart_covering."""
        chart = self.chart() if covering is None else self.chart_covering(covering)
        visible = access.visible_fund_codes(chart)
        return [
            fund_view(fund)
            for fund in sorted(chart.funds.values(), key=lambda f: f.code)
            if visible is None or fund.code in visible
        ]

    def fund(
        self, code: str, access: FundAccess = EVERY_FUND, *, covering: int | None = None
    ) -> dict[str, Any]:
        chart = self.chart() if covering is None else self.chart_covering(covering)
        fund = chart.fund(code)
        access.require_funds(chart, [fund.code])
        return fund_view(fund)

    def _change_chart(self, change: Callable[[FundChart], None]) -> int | None:
        chart = self._chart_to_change()
        change(chart)
        try:
            return self.save_checked(chart)
        except IntegrityError:
            raise ConcurrentUpdate(
                "the chart of funds was changed by someone else at the same moment; retry"
            ) from None

    # ---- payments: commands ---------------------------------------------------------------

    def record_payment(self, command: RecordPayment, ctx: CommandContext) -> Outcome:
        """Record a receipt once; a repeat of the same external payment returns the first."""
        payment = self._new_payment(command, ctx, self.chart())
        # Saving empties the pending events, and a failed save too: keep what a repeat is
        # compared with before trying.
        asked = payment.pending_events[0].fingerprint
        existing = self._existing_payment(payment.id, asked, ctx)
        if existing is not None:
            return existing
        try:
            with self._transaction() as session:
                if command.payer is not None and not command.payer.is_empty():
                    save_payer_details(session, payment.id, command.payer, payment.created_on)
                position = self.save_checked(payment)
        except IntegrityError:
            existing = self._existing_payment(payment.id, asked, ctx)
            if existing is None:
                raise ConcurrentUpdate("the payment could not be recorded; retry") from None
            return existing
        return Outcome(payment.id, True, position, self.payment_view(payment))

    def record_payment_once(
        self,
        request: IdempotentRequest | None,
        command: RecordPayment,
        ctx: CommandContext,
        respond: Callable[[Outcome], StoredResponse],
    ) -> Answer:
        """`record_payment` under `run_once`: True when the response is replayed.

        With a group writer, a new receipt is written in one transaction with concurrent
        ones, its stored response too. Whatever the group cannot take (a repeat, a clash, a
        back-dated receipt that needs the period gate) runs alone, as `run_once` runs it.
        """
        if self.group_writer is not None:
            grouped = self._record_in_group(self.group_writer, request, command, ctx, respond)
            if grouped is not None:
                return grouped
        return self._record_alone(request, command, ctx, respond)

    async def record_payment_awaiting(
        self,
        request: IdempotentRequest | None,
        command: RecordPayment,
        ctx: CommandContext,
        respond: Callable[[Outcome], StoredResponse],
        in_thread: Callable[[Callable[[], Answer]], Awaitable[Answer]],
    ) -> Answer:
        """`record_payment_once` for an event loop: a new receipt that needs no database
        read (no Idempotency-Key to look up, no till, the chart held) is built here and its
        group commit awaited, with no thread blocked on it. Everything else, and whatever
        the group cannot take, runs through `in_thread` as `record_payment_once` runs it."""
        writer, chart = self.group_writer, self._read_chart
        if (
            writer is None
            or chart is None
            or request is not None
            or command.office_code is not None
            or command.till_code is not None
        ):
            return await in_thread(lambda: self.record_payment_once(request, command, ctx, respond))
        payment = self._new_payment(command, ctx, chart)
        grouped = self._grouped(None, command, respond, chart, payment)
        if grouped is None:
            return await in_thread(lambda: self._record_alone(None, command, ctx, respond))
        write, response = grouped
        answer = writer.submit(write)
        if answer is None:  # the writer is full: wait for room in a thread
            return await in_thread(lambda: self.record_payment_once(request, command, ctx, respond))
        try:
            position = await answer  # a TimeoutError after WAIT_LIMIT_S (`submit`)
        except queue.Full:  # filled up before the hand-over: wait for room in a thread
            return await in_thread(lambda: self.record_payment_once(request, command, ctx, respond))
        except (IntegrityError, sqlalchemy.exc.IntegrityError):
            position = None
        except TimeoutError as error:
            raise DatabaseUnavailable(saved_unknown=True) from error
        if position is None:
            return await in_thread(lambda: self._record_alone(None, command, ctx, respond))
        payment.collect_events()
        return with_position(response, position), False

    def _record_alone(
        self,
        request: IdempotentRequest | None,
        command: RecordPayment,
        ctx: CommandContext,
        respond: Callable[[Outcome], StoredResponse],
    ) -> Answer:
        return self.run_once(request, lambda: respond(self.record_payment(command, ctx)))

    def _record_in_group(
        self,
        writer: GroupWriter,
        request: IdempotentRequest | None,
        command: RecordPayment,
        ctx: CommandContext,
        respond: Callable[[Outcome], StoredResponse],
    ) -> Answer | None:
        with nothing_saved_on_outage():
            if request is not None:
                with self._transaction(commit=False) as session:
                    stored = recall(session, request.scope_key, request.request_hash)
                if stored is not None:
                    return stored, True
            # The chart this process knows, unread: the group's statement checks, under the
            # table lock, that it is still the latest, else the receipt runs alone on a fresh
            # one. That saves every receipt a read (and its round trips) of the event store.
            chart = self._read_chart or self.chart()
            payment = self._new_payment(command, ctx, chart)
        grouped = self._grouped(request, command, respond, chart, payment)
        if grouped is None:
            return None
        write, response = grouped
        try:
            position = writer.write(write)
        except (IntegrityError, sqlalchemy.exc.IntegrityError):
            return None  # another request stored a response under this key: run_once finds it
        except TimeoutError as error:
            raise DatabaseUnavailable(saved_unknown=True) from error
        if position is None:
            return None
        payment.collect_events()
        return with_position(response, position), False

    def _grouped(
        self,
        request: IdempotentRequest | None,
        command: RecordPayment,
        respond: Callable[[Outcome], StoredResponse],
        chart: FundChart,
        payment: Payment,
    ) -> tuple[Write, StoredResponse] | None:
        """A new receipt's write for the group commit, and its response as stored (without
        its position: known only once written); None when it must run alone (back-dated:
        the period gate)."""
        check_balanced(payment)
        if needs_period_gate([payment]):
            return None
        response = respond(Outcome(payment.id, True, None, self.payment_view(payment)))
        rows = []
        if command.payer is not None and not command.payer.is_empty():
            details = payer_details_row(payment.id, command.payer, payment.created_on)
            rows.append(Row(payer_details_table, details))
        if request is not None:
            stored_row = stored_response_row(request, response)
            rows.append(Row(idempotency_table, stored_row, position_column="position"))
        events = [self.mapper.to_stored_event(event) for event in payment.pending_events]
        return Write(events, rows, [_decided_on(chart)]), response

    def record_payments(
        self, commands: Sequence[RecordPayment], ctx: CommandContext
    ) -> list[Outcome]:
        """Record a batch (a channel's daily file) all or nothing, skipping known payments
        (a repeat returns the payment its command makes, `recorded` False).

        Each receipt is only its events until saved, as an import's are (`receipt_events`):
        building and saving a payment per receipt cost most of a batch's time. Each outcome
        shows the payment its events make (`receipt_view`: `payment_view` of the payment
        replayed from them, without replaying it; the invariant checked as it is built)."""
        if len(commands) > MAX_BATCH_SIZE:
            raise InvalidRequest(f"a batch holds at most {MAX_BATCH_SIZE} payments; split it")
        chart = self.chart()
        with collector_paused():
            # The batch's events are freed as `_record_batch` returns, before the collector
            # resumes: its first collection walks only what outlives the batch, not every
            # event of it (2 ms of a batch's time, #9).
            return self._record_batch(commands, ctx, chart)

    def _record_batch(
        self, commands: Sequence[RecordPayment], ctx: CommandContext, chart: FundChart
    ) -> list[Outcome]:
        receipts = [self.new_receipt(command, ctx, chart) for command in commands]
        views = [receipt_view(events) for events, _ in receipts]  # checks the invariant
        ids = [encoded.payment_id for _, encoded in receipts]
        require_distinct(ids)
        known: set[UUID] = set()
        try:
            try:
                # Most batches are all new: stored as such without asking which receipts
                # are known (a query of a batch's ids took a tenth of its time, #9). A
                # refusal that knowing them could avert (one is recorded already, or
                # dated in a closed period and perhaps recorded) rolls that attempt
                # back, and the batch is stored again skipping the known ones.
                position = self._save_batch(receipts, commands, known)
            except (IntegrityError, PeriodClosed):
                known = self._recorded(ids)
                position = self._save_batch(receipts, commands, known)
        except IntegrityError:
            raise ConcurrentUpdate(
                "another process recorded some of these payments at the same time; retry "
                "the batch (payments already recorded will be skipped)"
            ) from None
        return [
            Outcome(payment_id, new, position if new else None, view)
            for payment_id, view in zip(ids, views, strict=True)
            for new in (payment_id not in known,)
        ]

    def _save_batch(
        self,
        receipts: Sequence[tuple[Sequence[Payment.Event], EncodedReceipt]],
        commands: Sequence[RecordPayment],
        known: set[UUID],
    ) -> int | None:
        """Store a batch's receipts but the known ones, with their payers' details, in one
        transaction; the last position (None: nothing new). Nothing is written before the
        period gate has passed them."""
        new = [
            (receipt, command)
            for receipt, command in zip(receipts, commands, strict=True)
            if receipt[1].payment_id not in known
        ]
        encoded = [encoded for (_, encoded), _ in new]
        with self._transaction() as session:
            require_open_at(self, session, [move for r in encoded for move in r.moves])
            for (events, _), command in new:
                payer = command.payer
                if payer and not payer.is_empty():
                    received = events[0]
                    save_payer_details(session, received.originator_id, payer, received.timestamp)
            return self._insert_encoded(encoded)

    def new_receipt(
        self, command: RecordPayment, ctx: CommandContext, chart: FundChart
    ) -> tuple[list[Payment.Event], EncodedReceipt]:
        """The events of the new receipt a command makes (as `receipt_events`) and the
        receipt as stored (as `encoded_receipt` makes it of them, byte for byte), made in one
        step without the events' constructors and the mapper (application.receipt_encoding,
        #9 and #10). Needs no database, as `encoded_receipt`."""
        arguments = self._receipt_arguments(command, ctx, chart)
        events, stored = self._receipt_encoder.encode(*Payment.receipt_fields(**arguments))
        for event in events:
            postings_for(event)
        return events, EncodedReceipt(stored[0].originator_id, stored, tuple(movements(events)))

    def receipt_maker(self, ctx: CommandContext, chart: FundChart) -> ReceiptMaker:
        """What makes many new receipts for one user against one chart (a file's lines) as
        `new_receipt` makes each, with what they share worked out once."""
        return ReceiptMaker(self, ctx, chart)

    def encoded_receipt(self, events: Sequence[Payment.Event]) -> EncodedReceipt:
        """A new receipt's events (from `receipt_events`) as they are stored, each one's
        postings checked as `save_checked` checks a payment's: needs no database, so a large
        import makes them in worker processes (application.imports)."""
        for event in events:
            postings_for(event)
        return EncodedReceipt(
            events[0].originator_id,
            tuple(map(self.mapper.to_stored_event, events)),
            tuple(movements(events)),
        )

    def save_encoded_receipts(self, receipts: Sequence[EncodedReceipt]) -> set[UUID]:
        """Store new receipts (from `encoded_receipt`) all or nothing, skipping receipts
        already recorded, whose ids it returns; inside `unit_of_work`, part of its
        transaction.

        The same rows as saving the receipts built as payments, without building them: the
        events were encoded by the ledger's own mapper and are inserted by its recorder."""
        known = self._known_receipts([receipt.payment_id for receipt in receipts])
        if known:  # seldom: a file's receipts are new (a UUID's hash is Python code)
            receipts = [receipt for receipt in receipts if receipt.payment_id not in known]
        self._store_encoded(receipts)
        return known

    def save_new_receipts(self, receipts: Sequence[EncodedReceipt]) -> None:
        """Store new receipts (from `encoded_receipt`) all or nothing without asking first
        which are recorded already; inside `unit_of_work`, part of its transaction. When one
        is, the events table's unique index refuses the write (IntegrityError), the caller's
        transaction rolls back, and `save_encoded_receipts` stores them skipping it.

        A file's receipts are new (their ids are the file's and its lines', and a file
        imported again is known by its batch before this): asking which of 100,000 are
        known took the importing process 0.5-0.7 s of CPU on SQLite (issue #10)."""
        require_distinct([receipt.payment_id for receipt in receipts])
        self._store_encoded(receipts)

    def _known_receipts(self, ids: Sequence[UUID]) -> set[UUID]:
        """Which of these new receipts are recorded already; the same one twice is refused."""
        require_distinct(ids)
        return self._recorded(ids)

    def _store_encoded(self, receipts: Sequence[EncodedReceipt]) -> int | None:
        """Insert these receipts' stored events past the period gate; the last position."""
        with self._transaction() as session:
            require_open_at(self, session, [move for r in receipts for move in r.moves])
            return self._insert_encoded(receipts)

    def _insert_encoded(self, receipts: Sequence[EncodedReceipt]) -> int | None:
        """Insert these receipts' stored events in the transaction under way; the last
        position (None: none)."""
        stored = [event for receipt in receipts for event in receipt.stored]
        if not stored:
            return None
        # The recorder's own call, not the event store's `put`, which builds a recording
        # per event that nobody here reads (3% of a batch's time).
        positions = self.recorder.insert_events(stored)
        return positions[-1] if positions else None

    def check_payments(
        self,
        commands: Sequence[RecordPayment],
        ctx: CommandContext,
        chart: FundChart | None = None,
    ) -> list[dict[str, Any]]:
        """The payments these commands would record, checked by every rule but not saved.

        `chart` checks them against a chart not saved yet (funds about to be added)."""
        chart = chart or self.chart()
        payments = [self.check_payment(command, ctx, chart) for command in commands]
        for payment in payments:  # never saved: checked here instead
            check_balanced(payment)
        return [self.payment_view(payment) for payment in payments]

    def check_payment(
        self, command: RecordPayment, ctx: CommandContext, chart: FundChart
    ) -> Payment:
        """The new receipt a command makes, checked by every rule, not saved (see
        `save_checked`, which checks that its postings balance as it saves)."""
        return self._new_payment(command, ctx, chart)

    def allocate(
        self,
        payment_id: UUID,
        lines: Sequence[tuple[str, str, int]],
        ctx: CommandContext,
        reason: str = "allocated",
        effective: datetime | None = None,
    ) -> Outcome:
        key = fingerprint("allocate", lines=[list(line) for line in lines], reason=reason)

        def change(payment: Payment, chart: FundChart) -> None:
            requests = [
                (chart.enabled_fund(code), AllocationRequest(code.upper(), reference, amount))
                for code, reference, amount in lines
            ]
            payment.allocate(
                requests,
                actor=ctx.actor,
                reason=reason,
                idempotency_key=ctx.idempotency_key,
                fingerprint=key,
                effective_at=effective,
            )

        return self._change_payment(payment_id, change, ctx)

    def transfer(
        self,
        payment_id: UUID,
        source: tuple[str, str],
        target: tuple[str, str],
        amount_pence: int,
        ctx: CommandContext,
        reason: str,
        effective: datetime | None = None,
    ) -> Outcome:
        key = fingerprint(
            "transfer",
            source=list(source),
            target=list(target),
            amount_pence=amount_pence,
            reason=reason,
        )

        def change(payment: Payment, chart: FundChart) -> None:
            payment.transfer(
                from_fund_code=source[0].upper(),
                from_reference=normalise_reference(source[1]),
                to_fund=chart.enabled_fund(target[0]),
                to_reference=target[1],
                amount_pence=amount_pence,
                actor=ctx.actor,
                reason=reason,
                idempotency_key=ctx.idempotency_key,
                fingerprint=key,
                effective_at=effective,
            )

        return self._change_payment(payment_id, change, ctx)

    def refund(
        self,
        payment_id: UUID,
        amount_pence: int,
        ctx: CommandContext,
        reason: str,
        source: tuple[str, str] | None = None,
        effective: datetime | None = None,
    ) -> Outcome:
        """Refund now, or, when the payment's refunds would add up to more than the approval
        limit, record a request that a second person approves (`refund_request_id` is set)."""
        key = fingerprint(
            "refund",
            amount_pence=amount_pence,
            reason=reason,
            source=list(source) if source else None,
        )
        request_ids: list[str | None] = []

        def change(payment: Payment, _: FundChart) -> None:
            request_ids.append(
                payment.refund(
                    amount_pence=amount_pence,
                    actor=ctx.actor,
                    reason=reason,
                    fund_code=source[0].upper() if source else None,
                    reference=source[1] if source else None,
                    approval_limit_pence=self.refund_approval_limit_pence,
                    partial_allowed=ctx.partial_refunds,
                    idempotency_key=ctx.idempotency_key,
                    fingerprint=key,
                    effective_at=effective,
                )
            )

        outcome = self._change_payment(payment_id, change, ctx)
        return replace(outcome, refund_request_id=request_ids[-1])

    def approve_refund(self, payment_id: UUID, request_id: str, ctx: CommandContext) -> Outcome:
        key = fingerprint("approve_refund", request_id=request_id)

        def change(payment: Payment, _: FundChart) -> None:
            payment.approve_refund(
                request_id, actor=ctx.actor, idempotency_key=ctx.idempotency_key, fingerprint=key
            )

        return self._change_payment(payment_id, change, ctx)

    def decline_refund(
        self, payment_id: UUID, request_id: str, ctx: CommandContext, reason: str
    ) -> Outcome:
        key = fingerprint("decline_refund", request_id=request_id, reason=reason)

        def change(payment: Payment, _: FundChart) -> None:
            payment.decline_refund(
                request_id,
                actor=ctx.actor,
                reason=reason,
                idempotency_key=ctx.idempotency_key,
                fingerprint=key,
            )

        return self._change_payment(payment_id, change, ctx)

    def settle_external_refunds(
        self, payment_id: UUID, total_refunded_pence: int, ctx: CommandContext, reason: str
    ) -> Outcome:
        """Bring a payment's refunds up to a total reported by its channel (GOV.UK Pay).

        The channel reports a running total, so a repeated or late message refunds nothing
        more. Money comes from the unallocated part first, then from the largest allocations.
        """
        key = fingerprint("external_refund", total=total_refunded_pence)

        def change(payment: Payment, _: FundChart) -> None:
            payment.refund_up_to(
                total_refunded_pence,
                actor=ctx.actor,
                reason=reason,
                idempotency_key=ctx.idempotency_key,
                fingerprint=key,
            )

        return self._change_payment(payment_id, change, ctx)

    def reverse(
        self,
        payment_id: UUID,
        kind: str,
        ctx: CommandContext,
        reason: str,
        effective: datetime | None = None,
    ) -> Outcome:
        reversal = ReversalKind.parse(kind)
        key = fingerprint("reverse", kind=reversal.value, reason=reason)

        def change(payment: Payment, _: FundChart) -> None:
            payment.reverse(
                kind=reversal,
                actor=ctx.actor,
                reason=reason,
                idempotency_key=ctx.idempotency_key,
                fingerprint=key,
                effective_at=effective,
            )

        return self._change_payment(payment_id, change, ctx)

    def note(self, payment_id: UUID, text: str, ctx: CommandContext) -> Outcome:
        key = fingerprint("note", text=text)

        def change(payment: Payment, _: FundChart) -> None:
            payment.note(
                text, actor=ctx.actor, idempotency_key=ctx.idempotency_key, fingerprint=key
            )

        return self._change_payment(payment_id, change, ctx)

    def erase_payer_details(self, payment_id: UUID, ctx: CommandContext, reason: str) -> Outcome:
        """Erase personal data on request; the amounts and their history stay intact."""
        payment = self._payment(payment_id)
        with self._transaction() as session:
            erased = erase_payer_details(session, payment_id)
            if not erased:
                return Outcome(payment.id, False, None, self.payment_view(payment))
            payment.record_payer_details_erased(actor=ctx.actor, reason=reason)
            position = self.save_checked(payment)
        return Outcome(payment.id, True, position, self.payment_view(payment))

    # ---- payments: a channel's messages, applied whole --------------------------------------

    def recorded_payment(self, channel: Channel, external_id: str) -> Payment | None:
        """The payment recorded for a channel's external id, to change and then save with
        `save_payment`; None when it was never recorded."""
        try:
            return self._payment(payment_id_for(channel, external_id, None))
        except PaymentNotFound:
            return None

    def prepare_payment(self, command: RecordPayment, ctx: CommandContext) -> Payment:
        """A new receipt, not yet saved: more changes may follow before `save_payment`."""
        return self._new_payment(command, ctx, self.chart())

    def save_payment(self, payment: Payment) -> Outcome:
        """Save all of a payment's pending events in one transaction, or none of them."""
        try:
            position = self.save_checked(payment)
        except IntegrityError:
            raise ConcurrentUpdate(
                "another delivery recorded this payment at the same moment; nothing was saved. "
                "Retry."
            ) from None
        return Outcome(payment.id, position is not None, position, self.payment_view(payment))

    # ---- payments: queries ----------------------------------------------------------------

    def get_payment(self, payment_id: UUID, access: FundAccess = EVERY_FUND) -> dict[str, Any]:
        """A payment with its allocations, status, payer details and full history."""
        payment = self._payment(payment_id)
        access.require_payment(self.chart(), payment)
        view = self.payment_view(payment)
        with self._transaction(commit=False) as session:
            payer = load_payer_details(session, payment_id)
        view["payer"] = (
            None if payer is None else {k: v for k, v in vars(payer).items() if v is not None}
        )
        view["history"] = self.payment_history(payment_id)
        return view

    def payment_history(self, payment_id: UUID) -> list[dict[str, Any]]:
        return [describe_event(event) for event in self.repository.event_store.get(payment_id)]

    def find_payment(self, channel: str, external_id: str) -> UUID | None:
        payment_id = payment_id_for(Channel.parse(channel), external_id, None)
        return payment_id if payment_id in self.repository else None

    @staticmethod
    def payment_view(payment: Payment) -> dict[str, Any]:
        return {
            "payment_id": str(payment.id),
            "channel": payment.channel,
            "amount_pence": payment.amount_pence,
            "reference": payment.reference,
            "fund_hint": payment.fund_hint,
            "external_id": payment.external_id,
            "provider_details": payment.provider_details,
            "office_code": payment.office_code,
            "till_code": payment.till_code,
            "received_at": payment.received_at.isoformat(),
            "recorded_at": payment.created_on.isoformat(),
            "recorded_by": payment.recorded_by,
            "status": payment.status.value,
            "suspense_reason": payment.suspense_reason if payment.unallocated_pence else None,
            "import_rule": payment.import_rule,
            "allocated_pence": payment.allocated_pence,
            "unallocated_pence": payment.unallocated_pence,
            "refunded_pence": payment.refunded_pence,
            "reversed_pence": payment.reversed_pence,
            "pending_refunds": [pending_refund_view(p) for p in payment.pending_refunds.values()],
            "allocations": [
                {
                    "fund_code": line.fund_code,
                    "reference": line.reference,
                    "amount_pence": line.amount_pence,
                    "vat_pence": line.vat_pence,
                }
                for line in payment.lines_with_money()
            ],
            "card_provider": card_provider_view(payment),
            "version": payment.version,
        }

    def pending_refunds(
        self, limit: int = MAX_PENDING_LISTED, access: FundAccess = EVERY_FUND
    ) -> list[dict[str, Any]]:
        """Refund requests waiting for a second person, on any payment the user may see,
        oldest first.

        Only refunds above the approval limit become requests, so the event store is asked for
        RefundRequested events alone and only the payments they name are loaded.
        """
        payment_ids = dict.fromkeys(
            UUID(str(n.originator_id)) for n in self.notifications(Payment.RefundRequested)
        )
        chart = self.chart()
        payments = [self._payment(payment_id) for payment_id in payment_ids]
        waiting = [
            {"payment_id": str(payment.id), **pending_refund_view(pending)}
            for payment in payments
            if access.sees_payment(chart, payment)
            for pending in payment.pending_refunds.values()
        ]
        return sorted(waiting, key=lambda p: p["requested_at"])[:limit]

    # ---- request idempotency ---------------------------------------------------------------

    def run_once(
        self, request: IdempotentRequest | None, command: Callable[[], StoredResponse]
    ) -> tuple[StoredResponse, bool]:
        """Run a command and keep its response in the same transaction; True when replayed.

        The events and the stored response commit together or not at all, so a retry finds
        either both (and gets the first response) or neither (and runs the command afresh).
        A concurrent request that got there first makes this one's save fail; the next attempt
        finds its response, or (for the same payment under another key) the payment itself.

        A transaction the database rolled back to settle a clash with another one (a deadlock,
        a serialization failure) is run once more, afresh: the database said nothing of it was
        saved, stored response included, so this is the retry the caller would make. A clash
        that comes back is answered (503 `database_conflict`).
        """
        retried_conflict = False
        for _ in range(MAX_ATTEMPTS):
            try:
                with self.unit_of_work() as session:
                    if request is not None:
                        stored = recall(session, request.scope_key, request.request_hash)
                        if stored is not None:
                            return stored, True
                    response = command()
                    if request is not None:
                        remember(session, request, response)
                return response, False
            except IntegrityError:
                continue
            except DatabaseUnavailable as error:
                if not error.conflict or retried_conflict:
                    raise
                retried_conflict = True
                log.warning("the database rolled a command back (%s); running it again", error)
        raise ConcurrentUpdate(
            "other requests changed the same records at the same moment; nothing was saved. Retry."
        )

    # ---- the event log --------------------------------------------------------------------

    def max_position(self) -> int:
        return self.recorder.max_notification_id() or 0

    def count_events(self, after: int = 0, up_to: int | None = None) -> int:
        """How many events are stored after the position `after` (at most `up_to`: the
        count then reads no more than that many index entries). Not `max_position() -
        after`: PostgreSQL positions can skip numbers for good (a write refused by a clash
        keeps the sequence values it took), so a difference of positions overstates."""
        recorder: Any = self.recorder
        table = recorder.events_record_cls.__table__
        after_ = select(table.c.id).where(table.c.id > after)
        if up_to is not None:
            after_ = after_.order_by(table.c.id).limit(up_to)
        with recorder.datastore.engine.connect() as connection:
            return connection.execute(
                select(func.count()).select_from(after_.subquery())
            ).scalar_one()

    def events_behind(self, after: int) -> tuple[int, bool]:
        """How many events are stored after `after`, and whether that is exact: counted up
        to LAG_COUNT_LIMIT, past which the difference of positions, an upper bound."""
        counted = self.count_events(after, up_to=LAG_COUNT_LIMIT)
        if counted < LAG_COUNT_LIMIT:
            return counted, True
        return max(counted, self.max_position() - after), False

    def read_events(self, after: int = 0, page_size: int = 1000) -> Iterator[tuple[int, Any]]:
        """Every domain event in recording order with its position, read in bounded pages."""
        for notification in self.notifications(after=after, page_size=page_size):
            yield notification.id, self.mapper.to_domain_event(notification)

    def events_of(self, *classes: type, after: int = 0) -> Iterator[Any]:
        """The domain events of these classes in recording order, read in bounded pages."""
        for notification in self.notifications(*classes, after=after):
            yield self.mapper.to_domain_event(notification)

    def notifications(
        self, *classes: type, after: int = 0, page_size: int = 1000
    ) -> Iterator[Notification]:
        """Stored events after `after` in recording order (of these classes only, when any
        are given; the store filters by topic), read in bounded pages."""
        topics = [get_topic(cls) for cls in classes]
        while True:
            page = self.recorder.select_notifications(
                start=after, limit=page_size, topics=topics, inclusive_of_start=False
            )
            yield from page
            if len(page) < page_size:
                return
            after = page[-1].id

    # ---- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        if self.group_writer is not None:
            self.group_writer.close()
        super().close()
        engine = event_store.engine(self.recorder)
        if engine is not None:
            engine.dispose()

    def _new_payment(
        self, command: RecordPayment, ctx: CommandContext, chart: FundChart
    ) -> Payment:
        return Payment.receive(**self._receipt_arguments(command, ctx, chart))

    def receipt_events(
        self, command: RecordPayment, ctx: CommandContext, chart: FundChart
    ) -> list[Payment.Event]:
        """The events the new receipt a command makes would record, checked by every rule
        that `check_payment` applies, without building the payment (see
        `save_receipt_events`)."""
        return Payment.receipt_events(**self._receipt_arguments(command, ctx, chart))

    def _receipt_arguments(
        self, command: RecordPayment, ctx: CommandContext, chart: FundChart
    ) -> dict[str, Any]:
        """What `Payment.receive` is given for a command: its fund matched, the user's access
        to it checked, its counter checked and the command's fingerprint."""
        channel = Channel.parse(command.channel)
        match = fund_match(command, chart)
        fund = chart.funds[match.fund_code] if match.fund_code else None
        if fund is not None:
            ctx.access.require_funds(chart, [fund.code])
        received_at = command.received_at or datetime.now(UTC)
        counter = counter_of(self, command.office_code, command.till_code, channel, received_at)
        return {
            "channel": channel,
            "amount_pence": command.amount_pence,
            "received_at": received_at,
            "reference": command.reference,
            "fund_hint": command.fund_code,
            "external_id": command.external_id,
            "match": match,
            "fund": fund,
            "actor": ctx.actor,
            "idempotency_key": ctx.idempotency_key,
            "external_id_from_provider": command.external_id_from_provider,
            "provider_details": command.provider_details,
            "counter": counter,
            "fingerprint": command.fingerprint(counter),
        }

    def _existing_payment(
        self, payment_id: UUID, asked: str, ctx: CommandContext
    ) -> Outcome | None:
        """The payment already recorded under this id, or None.

        An external id identifies the money itself, so a repeat delivery returns the first
        payment whatever it says. An idempotency key without an external id must come with the
        same request (the `asked` fingerprint), or it is refused.
        """
        try:
            payment: Payment = self.repository.get(payment_id)
        except AggregateNotFoundError:
            return None
        if payment.external_id is None and ctx.idempotency_key:
            payment.is_repeat(ctx.idempotency_key, asked)
        return Outcome(payment.id, False, None, self.payment_view(payment))

    def _recorded(self, ids: Sequence[UUID]) -> set[UUID]:
        """Which of these aggregates already exist."""
        with self._transaction(commit=False) as session:
            if session.get_bind().dialect.name == "sqlite":
                found = event_store.originators_stored(self.recorder, session, ids, READ_CHUNK)
            else:
                rows = self._event_rows(session, ids, ("originator_id",), first_only=True)
                found = (row[0] for row in rows)
            return {UUID(str(originator_id)) for originator_id in found}

    def payments_events(self, ids: Sequence[UUID]) -> dict[UUID, list[Payment.Event]]:
        """The stored events of these payments in version order (an id with none stored is
        left out), read together rather than one query per payment: a bank statement's line
        paying in an Allpay deposit pays in a thousand receipts (issue #10). It reads inside
        the caller's transaction where there is one."""
        events: dict[UUID, list[Payment.Event]] = {}
        decode = self.mapper.to_domain_event
        columns = ("originator_id", "originator_version", "topic", "state")
        with self._transaction(commit=False) as session:
            rows = self._event_rows(session, list(dict.fromkeys(ids)), columns, ordered=True)
            for originator, version, topic, state in rows:
                payment_id = originator if isinstance(originator, UUID) else UUID(str(originator))
                stored = StoredEvent(payment_id, version, topic, bytes(state))
                events.setdefault(payment_id, []).append(decode(stored))
        return events

    def _event_rows(
        self,
        session: Session,
        ids: Sequence[UUID],
        columns: Sequence[str],
        *,
        first_only: bool = False,
        ordered: bool = False,
    ) -> Iterator[Any]:
        """The stored events' `columns` of these aggregates (with `first_only`, their first
        events; with `ordered`, by aggregate and version). On PostgreSQL one query with the
        ids as one array: a batch's 1,000 ids expanded into IN lists took SQLAlchemy longer
        to compile than the server to answer. Elsewhere an IN list per READ_CHUNK ids."""
        if session.get_bind().dialect.name == "postgresql":
            table = event_store.events_table_name(self.recorder)
            query = (
                f"SELECT {', '.join(columns)} FROM {table} "
                "WHERE originator_id = ANY(CAST(:ids AS uuid[]))"
            )
            query += " AND originator_version = 1" if first_only else ""
            query += " ORDER BY originator_id, originator_version" if ordered else ""
            yield from session.execute(text(query), {"ids": [str(id_) for id_ in ids]})
            return
        record_class = event_store.events_record_class(self.recorder)
        for start in range(0, len(ids), READ_CHUNK):
            statement = select(*(getattr(record_class, column) for column in columns)).where(
                record_class.originator_id.in_(ids[start : start + READ_CHUNK])
            )
            if first_only:
                statement = statement.where(record_class.originator_version == 1)
            if ordered:
                statement = statement.order_by(
                    record_class.originator_id, record_class.originator_version
                )
            yield from session.execute(statement)

    def _change_payment(
        self, payment_id: UUID, change: Callable[[Payment, FundChart], None], ctx: CommandContext
    ) -> Outcome:
        payment = self._payment(payment_id)
        chart = self.chart()
        # Before: the user may not touch a payment of another service's funds at all; after:
        # nor move money into one.
        ctx.access.require_payment(chart, payment)
        change(payment, chart)
        ctx.access.require_payment(chart, payment)
        position = self.save_checked(payment)
        return Outcome(payment.id, position is not None, position, self.payment_view(payment))

    def _payment(self, payment_id: UUID) -> Payment:
        try:
            payment = self.repository.get(payment_id)
        except AggregateNotFoundError:
            raise PaymentNotFound(f"no payment with id {payment_id}") from None
        if not isinstance(payment, Payment):
            raise PaymentNotFound(f"no payment with id {payment_id}")
        payment.check_invariant()
        return payment

    def save_checked(self, *aggregates: Payment | FundChart) -> int | None:
        """Save pending events after checking that each balances; returns the last position."""
        for aggregate in aggregates:
            check_balanced(aggregate)
        if not any(aggregate.pending_events for aggregate in aggregates):
            return None
        creating = any(
            a.pending_events and a.pending_events[0].originator_version == 1 for a in aggregates
        )
        try:
            with self._transaction() as session:
                require_open_periods(self, session, aggregates)
                recordings = self.save(*aggregates)
        except (IntegrityError, sqlalchemy.exc.IntegrityError):
            # Inside an enclosing transaction the error arrives unwrapped (eventsourcing wraps
            # it only when the outermost transaction ends).
            if creating:
                raise
            raise ConcurrentUpdate(
                "someone else changed this record at the same moment; nothing was saved. "
                "Fetch it again and retry."
            ) from None
        return recordings[-1].notification.id if recordings else None

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """Application.save, collecting the ledger's aggregates' pending events directly.

        eventsourcing's ProcessingEvent asks two runtime-checkable Protocols whether each
        object is an event or an aggregate: about 35 µs an aggregate, a tenth of a receipt's
        cost in a bulk save. Anything but aggregates goes the library's way."""
        if not all(isinstance(obj, Aggregate) for obj in objs):
            return super().save(*objs, **kwargs)
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        for aggregate in objs:
            processing_event.events.extend(aggregate.collect_events())
            processing_event.aggregates[aggregate.id] = aggregate
        processing_event.saved_kwargs.update(kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)
        return recordings

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        """Application._record; an aggregate read back in the same transaction went into
        the repository's cache with these uncommitted events (fast-forwarded, or read
        whole): dropped from it if the transaction does not commit."""
        recordings = super()._record(processing_event)
        cache = self.repository.cache
        if cache is not None:
            saved = {event.originator_id for event in processing_event.events}
            event_store.when_rolled_back(self.recorder, lambda: forget_cached(cache, saved))
        return recordings

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """One transaction for a whole command, telling a failed connection before the commit
        (nothing saved) from one during it (nobody here can know)."""
        committing = False
        try:
            with self._transaction() as session:
                yield session
                committing = True
        except DATABASE_UNAVAILABLE_ERRORS as error:
            raise DatabaseUnavailable.of(error, committing) from error

    @contextmanager
    def _transaction(self, commit: bool = True) -> Iterator[Session]:
        with event_store.transaction(self.recorder, commit) as session:
            yield session


def forget_cached(cache: Any, aggregate_ids: Iterable[UUID]) -> None:
    """Drop these aggregates from the repository's cache (those it does not hold too)."""
    for aggregate_id in aggregate_ids:
        with contextlib.suppress(KeyError):
            cache.get(aggregate_id, evict=True)


@contextmanager
def nothing_saved_on_outage() -> Iterator[None]:
    """Reads before a command saves: a database that fails here has saved nothing."""
    try:
        yield
    except DATABASE_UNAVAILABLE_ERRORS as error:
        raise DatabaseUnavailable.of(error, committing=False) from error


def _decided_on(chart: FundChart) -> tuple[UUID, int]:
    """The chart's id and version as a grouped write is decided on (0: none stored yet)."""
    return chart.id, 0 if chart.pending_events else chart.version


def replayed(events: Sequence[Payment.Event]) -> Payment:
    """The payment a new receipt's events make (from `receipt_events`), as the event store
    would rebuild it."""
    payment: Any = None
    for event in events:
        payment = event.mutate(payment)
    assert isinstance(payment, Payment)
    return payment


def receipt_lines(events: Sequence[Payment.Event]) -> dict[str, AllocationLine]:
    """A new receipt's allocation lines from its events (from `receipt_events`), as the
    payment replayed from them holds them (`Payment.Allocated.apply`), by line key."""
    lines: dict[str, AllocationLine] = {}
    for event in events[1:]:
        if isinstance(event, Payment.Allocated):
            for allocated in event.allocated_lines:
                key = line_key(allocated.fund_code, allocated.reference)
                line = lines.get(key) or AllocationLine(allocated.fund_code, allocated.reference)
                lines[key] = line.plus(allocated.part)
    return lines


def receipt_view(events: Sequence[Payment.Event]) -> dict[str, Any]:
    """`IncomeLedger.payment_view` of the payment a new receipt's events make (from
    `receipt_events`: a Received event and at most an allocation), without replaying it:
    replaying cost a batch a seventh of its time (#9). Checks what the replay checked: the
    events are one payment's, in version order, and `Payment.check_invariant` (held equal to
    the replayed payment's view by tests/application/test_fast_record_payments.py)."""
    received = events[0]
    assert isinstance(received, Payment.Received)
    payment_id = received.originator_id
    for version, event in enumerate(events, start=Payment.INITIAL_VERSION):
        assert event.originator_id == payment_id and event.originator_version == version
        assert event is received or isinstance(event, Payment.Allocated), event
    allocations, allocated = _receipt_allocations(events)
    unallocated = received.amount_pence - allocated
    # Payment.check_invariant: nothing refunded or reversed yet, so allocated and
    # unallocated account for every penny by construction; none may be negative.
    assert unallocated >= 0, (payment_id, unallocated)
    clearing = received.clearing_account
    return {
        "payment_id": str(payment_id),
        "channel": received.channel,
        "amount_pence": received.amount_pence,
        "reference": received.reference,
        "fund_hint": received.fund_hint,
        "external_id": received.external_id,
        "provider_details": received.provider_details,
        "office_code": received.office_code,
        "till_code": received.till_code,
        "received_at": received.received_at.isoformat(),
        "recorded_at": received.timestamp.isoformat(),
        "recorded_by": received.actor,
        "status": payment_status(allocated, unallocated, 0).value,
        "suspense_reason": received.suspense_reason if unallocated else None,
        "import_rule": received.import_rule,
        "allocated_pence": allocated,
        "unallocated_pence": unallocated,
        "refunded_pence": 0,
        "reversed_pence": 0,
        "pending_refunds": [],
        "allocations": allocations,
        "card_provider": None
        if clearing is None
        else {
            "clearing_account": clearing,
            "settles_on": settlement_day(received.provider_details or {}, received.received_at),
            "unsettled_pence": received.amount_pence,
            "fees_pence": 0,
            "disputed_pence": 0,
            "disputes": [],
        },
        "version": events[-1].originator_version,
    }


def _allocation_view(
    fund_code: str, reference: str, amount_pence: int, vat_pence: int
) -> dict[str, Any]:
    """One allocation line as a receipt's view shows it."""
    return {
        "fund_code": fund_code,
        "reference": reference,
        "amount_pence": amount_pence,
        "vat_pence": vat_pence,
    }


def _receipt_allocations(events: Sequence[Payment.Event]) -> tuple[list[dict[str, Any]], int]:
    """A new receipt's allocations as its view shows them, and the pence they hold; each
    line's parts checked (none below zero), as `Payment.check_invariant` checks them."""
    if len(events) == 2 and len(events[1].lines) == 1:
        # What `receipt_events` makes when a fund takes the money: one line of one part,
        # read as it is stored (a fifth of the view's time went in building the line, #9).
        line = events[1].lines[0]
        amount, vat = line["amount_pence"], line["vat_pence"]
        assert amount >= 0 and vat >= 0, line
        if not amount:
            return [], 0
        return [_allocation_view(line["fund_code"], line["reference"], amount, vat)], amount
    # Each line's sums once, in one pass.
    allocations = []
    allocated = 0
    for merged in receipt_lines(events).values():
        amount = merged.amount_pence
        if not amount:
            continue
        for part in merged.parts:
            assert part.amount_pence >= 0 and part.vat_pence >= 0, merged
        allocated += amount
        allocations.append(
            _allocation_view(merged.fund_code, merged.reference, amount, merged.vat_pence)
        )
    return allocations, allocated


def require_distinct(ids: Sequence[UUID]) -> None:
    """Refuse a batch that holds the same receipt twice."""
    # By each id's integer: a UUID's own hash is Python code, 0.3 us an id of 100,000.
    if len({id_.int for id_ in ids}) != len(ids):
        raise InvalidRequest("the batch holds the same payment twice (same channel and id)")


def check_balanced(aggregate: Payment | FundChart) -> None:
    """Every pending event has balanced postings and the payment keeps its invariant."""
    for event in aggregate.pending_events:
        postings_for(event)
    if isinstance(aggregate, Payment):
        aggregate.check_invariant()


def fund_view(fund: Fund) -> dict[str, Any]:
    """A fund with the VAT rate in force now, and every VAT rate it has had or will have and
    from when (None: from the start)."""
    return fund.to_dict() | {
        "vat_rate_basis_points": fund.vat_rate_at(datetime.now(UTC)),
        "vat_rates": [
            {
                "effective_from": None
                if change.effective_from == FROM_THE_START
                else change.effective_from.isoformat(),
                "vat_rate_basis_points": change.rate_basis_points,
            }
            for change in fund.vat_rates
        ],
    }


def card_provider_view(payment: Payment) -> dict[str, Any] | None:
    """What a card provider holds of the payment: None for a payment not held by one."""
    if payment.clearing_account is None:
        return None
    return {
        "clearing_account": payment.clearing_account,
        "settles_on": payment.settles_on,
        "unsettled_pence": sum(payment.clearing.values()),
        "fees_pence": payment.fees_pence,
        "disputed_pence": payment.disputed_pence,
        "disputes": [
            {
                "dispute_id": dispute.dispute_id,
                "amount_pence": dispute.amount_pence,
                "status": dispute.status.value,
                "opened_at": dispute.opened_at.isoformat(),
            }
            for dispute in payment.disputes.values()
        ],
    }


def pending_refund_view(pending: PendingRefund) -> dict[str, Any]:
    return {
        "request_id": pending.request_id,
        "amount_pence": pending.amount_pence,
        "fund_code": pending.fund_code,
        "reference": pending.reference,
        "reason": pending.reason,
        "requested_by": pending.requested_by,
        "requested_at": pending.requested_at.isoformat(),
    }


def describe_event(event: Any) -> dict[str, Any]:
    """One event as a person reads it in a history: what, who, why, when, and its postings."""
    name = type(event).__name__
    details = {
        key: value
        for key, value in vars(event).items()
        if key
        not in {
            "originator_id",
            "originator_version",
            "timestamp",
            "originator_topic",
            "actor",
            "reason",
            "idempotency_key",
            "fingerprint",
        }
    }
    return {
        "version": event.originator_version,
        "action": name,
        "recorded_at": event.timestamp.isoformat(),
        "effective_at": effective_at(event).isoformat(),
        "actor": getattr(event, "actor", None),
        "reason": getattr(event, "reason", None),
        "idempotency_key": getattr(event, "idempotency_key", None),
        "details": json.loads(json.dumps(details, default=_json_default)),
        "postings": [
            {
                "account": p.account,
                "amount_pence": p.amount_pence,
                "fund_code": p.fund_code,
                "reference": p.reference,
            }
            for p in postings_for(event)
        ],
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
