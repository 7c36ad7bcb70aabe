"""`record_payments` stores each receipt's events without building and saving a payment (#9,
the bulk row), as an import does (test_fast_import). Here the same batches go into two fresh
databases: one through `record_by_aggregates`, the batch path as it was (a payment built by
`Payment.receive` per receipt and saved), one through `record_payments`. The stored events
must be the same rows, timestamps aside; the outcomes, the payer details, the payments read
back, the projections and the audit chain must agree, on both backends."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import ANY
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent
from sqlalchemy import create_engine, select, text

from application.ledger import (
    CommandContext,
    IncomeLedger,
    Outcome,
    RecordPayment,
    check_balanced,
    receipt_view,
    replayed,
)
from application.payer_details import PayerDetails, payer_details_table, save_payer_details
from application.periods import close_period
from domain.errors import ConcurrentUpdate, InvalidRequest, LedgerError
from domain.limits import uk_day_start, uk_today
from domain.payment import Payment
from domain.sample_chart import SAMPLE_FUNDS
from income_ledger import event_store
from income_ledger.bootstrap import build_ledger
from income_ledger.event_store import COPY_FROM_BYTES, COPY_FROM_EVENTS
from income_ledger.settings import Settings
from tests.application.test_fast_import import (  # noqa: F401 (twin_settings: a fixture)
    chain_verifies,
    from_clock,
    read_model,
    stored_rows,
    twin_settings,
    without_recording_time,
)
from tests.domain.helpers import CT_REF, CT_REF_2, HRA_REF, SUN_REF

OFFICER = CommandContext("officer:batch")
KEYED = CommandContext("officer:keyed", idempotency_key="batch-key-1")
SUPERVISOR = CommandContext("supervisor:periods")
CARD = "4111111111111111"
Record = Callable[[IncomeLedger, Sequence[RecordPayment], CommandContext], list[Outcome]]


def record_by_aggregates(
    ledger: IncomeLedger, commands: Sequence[RecordPayment], ctx: CommandContext
) -> list[Outcome]:
    """`record_payments` as it was before it stored events alone: every receipt built as a
    payment, repeats skipped, payer details and payments saved in one transaction."""
    chart = ledger.chart()
    payments = [ledger.check_payment(command, ctx, chart) for command in commands]
    ids = [payment.id for payment in payments]
    if len(set(ids)) != len(ids):
        raise InvalidRequest("the batch holds the same payment twice (same channel and id)")
    known = {payment_id for payment_id in ids if payment_id in ledger.repository}
    new = [payment for payment in payments if payment.id not in known]
    for payment in new:
        check_balanced(payment)
    with ledger.unit_of_work() as session:
        for payment, command in zip(payments, commands, strict=True):
            payer = command.payer
            if payment.id not in known and payer and not payer.is_empty():
                save_payer_details(session, payment.id, payer, payment.created_on)
        position = ledger.save_checked(*new) if new else None
    return [
        Outcome(
            p.id,
            p.id not in known,
            position if p.id not in known else None,
            ledger.payment_view(p),
        )
        for p in payments
    ]


def fast(
    ledger: IncomeLedger, commands: Sequence[RecordPayment], ctx: CommandContext
) -> list[Outcome]:
    return ledger.record_payments(commands, ctx)


@pytest.fixture
def by_aggregates(twin_settings: Settings) -> Iterator[IncomeLedger]:  # noqa: F811
    ledger = build_ledger(twin_settings)
    for fund in SAMPLE_FUNDS:
        ledger.add_fund(fund, CommandContext("test:setup"))
    yield ledger
    ledger.close()


def batches() -> list[tuple[CommandContext, list[RecordPayment]]]:
    yesterday = uk_day_start(uk_today() - timedelta(days=1)) + timedelta(hours=10)
    payer = PayerDetails(name="A. Patel", email="a@example.org", address="1 High St")
    first = RecordPayment("allpay", 1_200, CT_REF, external_id="line-1", payer=payer)
    return [
        (
            OFFICER,
            [
                first,  # allocated, with the payer's details
                RecordPayment("allpay", 300, "NOSUCH", external_id="line-2"),  # suspense
                RecordPayment("cheque", 12_000, SUN_REF, yesterday, "SUN", "chq-9"),  # VAT
                RecordPayment("card", 999, "411111******1111", external_id="c-1"),  # masked
                RecordPayment(
                    "govuk_pay",
                    2_500,
                    CT_REF_2,
                    external_id="pay_abc123",
                    external_id_from_provider=True,
                    provider_details={"card_brand": "visa", "last_digits": "1111"},
                    payer=PayerDetails(email="b@example.org"),
                ),
                RecordPayment(
                    "cash", 150, HRA_REF, external_id="t-7", payer=PayerDetails()
                ),  # empty details
            ],
        ),
        (
            OFFICER,
            [
                # The same external payment again, whatever it says now: skipped.
                RecordPayment("allpay", 9_999, CT_REF, external_id="line-1", payer=payer),
                RecordPayment("allpay", 700, CT_REF, yesterday, external_id="line-3"),
                RecordPayment(
                    "bank_transfer", 4_000, "UNKNOWN REF", external_id="b-1", payer=payer
                ),
            ],
        ),
        (KEYED, [RecordPayment("cash", 250, CT_REF)]),
        (KEYED, [RecordPayment("cash", 250, CT_REF)]),  # the keyed batch again
        (OFFICER, [RecordPayment("allpay", 800, "NOSUCH", external_id="line-2")]),  # all known
    ]


# Refused whole, nothing stored: the same payment twice in one batch, a bad receipt beside a
# good one, a card number, and (after yesterday's close) a receipt dated yesterday.
REFUSED = [
    [
        RecordPayment("allpay", 100, CT_REF, external_id="twice"),
        RecordPayment("allpay", 200, CT_REF, external_id="twice"),
    ],
    [
        RecordPayment("allpay", 100, CT_REF, external_id="good", payer=PayerDetails(name="X")),
        RecordPayment("allpay", -1, CT_REF, external_id="bad"),
    ],
    [RecordPayment("card", 100, CARD, external_id="card-in-ref")],
]


def record_all(ledger: IncomeLedger, record: Record) -> list[Any]:
    """Every batch's outcomes or refusal, with the refusals after yesterday's close."""
    results: list[Any] = []
    for ctx, commands in batches():
        results.append(
            [
                [o.payment_id, o.recorded, o.position, o.payment]
                for o in record(ledger, commands, ctx)
            ]
        )
    yesterday = uk_today() - timedelta(days=1)
    close_period(ledger, "day", yesterday, SUPERVISOR, "cashed up")
    late = RecordPayment("allpay", 100, CT_REF, uk_day_start(yesterday), external_id="late")
    for commands in [*REFUSED, [RecordPayment("allpay", 5, CT_REF, external_id="ok"), late]]:
        before = ledger.max_position()
        with pytest.raises(LedgerError) as refused:
            record(ledger, commands, OFFICER)
        assert ledger.max_position() == before
        results.append([type(refused.value), refused.value.message])
    return results


def payer_rows(ledger: IncomeLedger) -> list[tuple[Any, ...]]:
    """Every payer's details, each recorded at its payment's own time (saved with it)."""
    with ledger.unit_of_work() as session:
        rows = session.execute(select(payer_details_table)).all()
    for row in rows:
        recorded_at = ledger.get_payment(row.payment_id)["recorded_at"]
        # SQLite gives the stored UTC time back without its zone.
        stored = row.recorded_at if row.recorded_at.tzinfo else row.recorded_at.replace(tzinfo=UTC)
        assert stored == datetime.fromisoformat(recorded_at)
    return sorted(tuple(map(from_clock, row)) for row in rows)


def test_record_payments_stores_the_events_the_aggregates_would(
    ledger,
    settings,
    by_aggregates,
    twin_settings,  # noqa: F811
) -> None:
    fast_results = record_all(ledger, fast)
    built_results = record_all(by_aggregates, record_by_aggregates)
    # The batches cover what the path must get right: new and repeated, every refusal.
    outcomes = [outcome for result in fast_results[:5] for outcome in result]
    assert {recorded for _, recorded, _, _ in outcomes} == {True, False}
    assert {view["status"] for *_, view in outcomes} >= {"allocated", "suspense"}
    assert [type_.__name__ for type_, _ in fast_results[5:]] == [
        "InvalidRequest",
        "InvalidAmount",
        "CardNumberRejected",
        "PeriodClosed",
    ]
    assert without_recording_time(fast_results) == without_recording_time(built_results)
    # A new receipt's view is the payment as stored, its times too.
    for _, recorded, _, view in outcomes:
        if recorded:
            stored = ledger.get_payment(view["payment_id"])
            assert view | {"history": ANY, "payer": ANY} == stored

    fast_rows, built_rows = stored_rows(ledger), stored_rows(by_aggregates)
    assert len(fast_rows) == len(built_rows) > 10
    for fast_row, built_row in zip(fast_rows, built_rows, strict=True):
        assert fast_row == built_row
    assert payer_rows(ledger) == payer_rows(by_aggregates)
    assert len(payer_rows(ledger)) == 3
    for payment_id in {payment_id for payment_id, *_ in outcomes}:
        assert without_recording_time(ledger.get_payment(payment_id)) == without_recording_time(
            by_aggregates.get_payment(payment_id)
        )
    # Positions differ where the refused attempt used some up: the read model checks itself.
    assert read_model(settings, ledger)["payments"]
    assert chain_verifies(settings, ledger) and chain_verifies(twin_settings, by_aggregates)


def test_a_concurrent_recording_of_the_same_receipt_refuses_the_whole_batch(
    ledger, monkeypatch
) -> None:
    """Another process records one of the batch's receipts between the check for known
    receipts and the save: nothing of the batch is stored, and a retry skips it."""
    theirs = RecordPayment("allpay", 1_200, CT_REF, external_id="raced")
    batch = [
        RecordPayment("allpay", 300, CT_REF, external_id="mine", payer=PayerDetails("Y")),
        theirs,
    ]
    monkeypatch.setattr(ledger, "_recorded", lambda ids: set())
    ledger.record_payment(theirs, OFFICER)
    before = ledger.max_position()
    with pytest.raises(ConcurrentUpdate):
        ledger.record_payments(batch, OFFICER)
    assert ledger.max_position() == before
    monkeypatch.undo()
    assert [o.recorded for o in ledger.record_payments(batch, OFFICER)] == [True, False]


def test_a_large_batch_stores_what_small_batches_do_and_is_refused_whole(
    ledger, by_aggregates, settings, monkeypatch
) -> None:
    """A batch of more events than `COPY_FROM_EVENTS` (COPY on PostgreSQL) against the same
    receipts in batches below it (a multi-row INSERT): the same stored bytes. A clash with a
    receipt recorded meanwhile stores none of it; the retry's positions are the stored ones,
    in order, whatever positions the refused attempt used up."""
    commands = [
        RecordPayment("allpay", 100 + n, "NOSUCH" if n % 10 == 0 else CT_REF, external_id=f"b{n}")
        for n in range(80)
    ]
    theirs = commands[51]
    events = [1 if c.reference == "NOSUCH" else 2 for c in commands if c is not theirs]
    assert sum(events) >= COPY_FROM_EVENTS > 40 * 2
    by_aggregates.record_payment(theirs, OFFICER)
    for start in range(0, len(commands), 40):
        by_aggregates.record_payments(commands[start : start + 40], OFFICER)

    ledger.record_payment(theirs, OFFICER)
    before = ledger.max_position()
    monkeypatch.setattr(ledger, "_recorded", lambda ids: set())
    with pytest.raises(ConcurrentUpdate):
        ledger.record_payments(commands, OFFICER)
    assert ledger.max_position() == before
    monkeypatch.undo()
    outcomes = ledger.record_payments(commands, OFFICER)

    assert [o.recorded for o in outcomes] == [c is not theirs for c in commands]
    stored = list(ledger.recorder.select_notifications(start=before + 1, limit=1_000))
    assert len(stored) == sum(events)
    assert [n.id for n in stored] == sorted({n.id for n in stored})
    assert {o.position for o in outcomes if o.recorded} == {stored[-1].id}
    assert stored_rows(ledger) == stored_rows(by_aggregates)
    # Positions differ where the refused attempt used some up: the read model checks itself.
    assert read_model(settings, ledger)["payments"]
    assert chain_verifies(settings, ledger)


def test_an_event_of_many_bytes_is_stored_as_it_is_and_clashes_as_any(ledger) -> None:
    """One event of more than `COPY_FROM_BYTES` (COPY on PostgreSQL, like an import's batch
    event): read back byte for byte; the same aggregate version again is eventsourcing's
    IntegrityError, as for a multi-row INSERT, and stores nothing."""
    state = bytes(range(256)) * (COPY_FROM_BYTES // 256 + 1)
    event = StoredEvent(uuid4(), 1, "tests.big:Event", state)
    before = ledger.max_position()
    (position,) = ledger.recorder.insert_events([event])
    assert position > before and ledger.max_position() == position
    (stored,) = ledger.recorder.select_notifications(start=position, limit=1)
    assert (stored.id, stored.originator_id, stored.topic, stored.state) == (
        position,
        event.originator_id,
        event.topic,
        state,
    )
    for clash in ([event], [StoredEvent(uuid4(), 1, "tests.big:Event", b"{}"), event]):
        with pytest.raises(IntegrityError):
            ledger.recorder.insert_events(clash)
    assert ledger.max_position() == position


def test_a_write_of_no_events_stores_nothing(ledger) -> None:
    """The recorder's contract on every backend: no events, no positions (PostgreSQL's
    multi-row INSERT had no row to send and was a syntax error)."""
    before = ledger.max_position()
    assert not ledger.recorder.insert_events([])
    assert ledger.max_position() == before


def test_a_small_write_waits_for_a_copy_that_took_its_positions(ledger, settings, monkeypatch):
    """Another process's INSERT during a COPY waits for the table lock the COPY's positions
    were taken under, so its position comes after them and nobody reads one before them."""
    if not settings.is_postgres:
        pytest.skip("COPY is PostgreSQL's")
    other = build_ledger(settings)
    positions_taken, go_on = threading.Event(), threading.Event()
    copy_data = event_store._copy_data

    def paused(positions: Sequence[int], events: Sequence[StoredEvent]) -> bytes:
        positions_taken.set()
        go_on.wait(10)
        return copy_data(positions, events)

    monkeypatch.setattr(event_store, "_copy_data", paused)
    large = [StoredEvent(uuid4(), 1, "tests.copy:Event", b"{}") for _ in range(COPY_FROM_EVENTS)]
    small = [StoredEvent(uuid4(), 1, "tests.copy:Event", b"{}")]
    written: dict[str, Sequence[int]] = {}
    copying = threading.Thread(
        target=lambda: written.update(large=ledger.recorder.insert_events(large))
    )
    inserting = threading.Thread(
        target=lambda: written.update(small=other.recorder.insert_events(small))
    )
    try:
        copying.start()
        assert positions_taken.wait(10)
        inserting.start()
        inserting.join(0.5)
        assert inserting.is_alive() and "small" not in written
    finally:
        go_on.set()
        copying.join(10)
        inserting.join(10)
        other.close()
    assert max(written["large"]) < written["small"][0] == ledger.max_position()


def test_a_copy_takes_its_positions_from_a_sequence_the_table_does_not_own(
    ledger, settings
) -> None:
    """A table whose `id` default calls a sequence it does not own (OWNED BY NONE, a table
    made by hand): small writes are numbered by it, and a COPY takes its positions from it
    too (pg_get_serial_sequence finds nothing there)."""
    if not settings.is_postgres:
        pytest.skip("COPY is PostgreSQL's")
    engine = create_engine(settings.database_url)
    with engine.begin() as connection:
        connection.execute(text("ALTER SEQUENCE ledger_events_id_seq OWNED BY NONE"))
    try:
        before = ledger.max_position()
        large = [
            StoredEvent(uuid4(), 1, "tests.copy:Event", b"{}") for _ in range(COPY_FROM_EVENTS)
        ]
        positions = ledger.recorder.insert_events(large)
        (small,) = ledger.recorder.insert_events([StoredEvent(uuid4(), 1, "tests.copy:E", b"")])
        stored = ledger.recorder.select_notifications(start=before + 1, limit=1_000)
        assert [n.id for n in stored] == [*positions, small]
        assert before < positions[0] and positions[-1] < small
    finally:
        with engine.begin() as connection:
            connection.execute(
                text("ALTER SEQUENCE ledger_events_id_seq OWNED BY ledger_events.id")
            )
        engine.dispose()


def test_receipt_view_is_the_replayed_payments_view(ledger) -> None:
    """`record_payments` builds each outcome's view from the receipt's events; for every
    receipt shape of the batches (allocated, suspense, VAT fund, masked card, GOV.UK Pay's
    provider details, payer details, repeats, a keyed receipt) it is the view of the payment
    replayed from them."""
    chart = ledger.chart()
    shapes = 0
    for ctx, commands in batches():
        for command in commands:
            events = ledger.receipt_events(command, ctx, chart)
            assert receipt_view(events) == ledger.payment_view(replayed(events))
            shapes += 1
    assert shapes == 12


def test_receipt_view_refuses_events_that_break_the_invariant(ledger) -> None:
    """What `Payment.check_invariant` refused on the replayed payment, `receipt_view` refuses:
    more allocated than received, a negative line, another payment's event."""
    events = ledger.receipt_events(
        RecordPayment("allpay", 1_200, CT_REF, external_id="x"), OFFICER, ledger.chart()
    )
    received, allocated = events
    assert isinstance(allocated, Payment.Allocated)
    line = allocated.lines[0]
    broken = [
        [received, replace(allocated, lines=[{**line, "amount_pence": 1_201}])],
        [received, replace(allocated, lines=[{**line, "vat_pence": -1}])],
        [received, replace(allocated, originator_id=uuid4())],
        [received, replace(allocated, originator_version=3)],
    ]
    for events in broken:
        with pytest.raises(AssertionError):
            receipt_view(events)


def test_receipt_view_reads_any_allocation_as_the_replayed_payment_does(ledger) -> None:
    """`receipt_view` reads the one line a receipt's allocation holds as it is stored; other
    shapes (several lines, the same line twice, a line of nothing) still give the replayed
    payment's view, and a negative part among several lines is still refused."""
    events = ledger.receipt_events(
        RecordPayment("allpay", 1_200, CT_REF, external_id="x"), OFFICER, ledger.chart()
    )
    received, allocated = events
    assert isinstance(allocated, Payment.Allocated)
    line = allocated.lines[0]
    half = {**line, "amount_pence": 600, "vat_pence": 0}
    other = {**half, "reference": "OTHER"}
    nothing = {**line, "amount_pence": 0, "vat_pence": 0}
    for lines in ([line], [half, other], [half, half], [nothing], [nothing, half]):
        shaped = [received, replace(allocated, lines=lines)]
        assert receipt_view(shaped) == ledger.payment_view(replayed(shaped))
    with pytest.raises(AssertionError):
        receipt_view([received, replace(allocated, lines=[half, {**other, "vat_pence": -1}])])


def test_a_new_batch_is_stored_without_asking_which_receipts_are_known(ledger, monkeypatch) -> None:
    """A batch of new receipts goes straight to the store: the query for known receipts
    runs only when the store refuses the batch as it stands."""

    def asked(ids: Any) -> set[Any]:
        raise AssertionError("asked which receipts are known")

    monkeypatch.setattr(ledger, "_recorded", asked)
    batch = [
        RecordPayment("allpay", 100 + n, CT_REF, external_id=f"new-{n}", payer=PayerDetails("Z"))
        for n in range(3)
    ]
    assert [o.recorded for o in ledger.record_payments(batch, OFFICER)] == [True] * 3
    monkeypatch.undo()
    again = ledger.record_payments(
        [*batch, RecordPayment("cash", 5, CT_REF, external_id="n")], OFFICER
    )
    assert [o.recorded for o in again] == [False, False, False, True]
    assert len(payer_rows(ledger)) == 3


def test_a_batch_sent_again_after_its_day_closed_is_answered_as_recorded(ledger) -> None:
    """Receipts dated in a day closed since they were recorded: the batch sent again is
    answered with the payments recorded (nothing new), not refused by the closed day; a new
    receipt of that day beside them is refused, and nothing of the batch is stored."""
    yesterday = uk_today() - timedelta(days=1)
    at = uk_day_start(yesterday) + timedelta(hours=10)
    batch = [RecordPayment("allpay", 100 + n, CT_REF, at, external_id=f"y-{n}") for n in range(3)]
    first = ledger.record_payments(batch, OFFICER)
    close_period(ledger, "day", yesterday, SUPERVISOR, "cashed up")
    before = ledger.max_position()
    again = ledger.record_payments(batch, OFFICER)
    assert [(o.recorded, o.position) for o in again] == [(False, None)] * 3
    assert [o.payment for o in again] == [o.payment | {"recorded_at": ANY} for o in first]
    late = RecordPayment("allpay", 7, CT_REF, at, external_id="y-late")
    with pytest.raises(LedgerError, match=f"day {yesterday}"):
        ledger.record_payments([*batch, late], OFFICER)
    assert ledger.max_position() == before
