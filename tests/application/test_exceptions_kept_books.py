"""The exceptions report from the books a process keeps (reconciliation.kept_books, brought
up to date with the events recorded since its last call), and from the books a new process
starts from (stored in the database: books_snapshot, plus the events recorded since), is
the report read afresh from the whole event store, at every step of a mixed day, on SQLite
and PostgreSQL; a store restored to an older state, or another store, is read afresh."""

from __future__ import annotations

from itertools import pairwise
from uuid import UUID, uuid4

import pytest
from sqlalchemy import delete, text, update

from application import books_snapshot, event_store, reconciliation
from application.books_snapshot import EXCEPTIONS_BOOKS, books_snapshot_table
from application.imports import import_file, reverse_import
from application.reconciliation import (
    BOOKS_SNAPSHOT_FORMAT,
    BooksFold,
    KeptBooks,
    choose_link,
    exceptions,
    link_counted_twice,
    read_books,
    unlink_line,
)
from domain.payment import ReversalKind
from income_ledger.bootstrap import build_ledger
from tests.application.test_card_payouts import dispute, pay, send
from tests.application.test_late_statement_links import (
    OFFICER,
    SUPERVISOR,
    allpay,
    card_day,
    govuk_pay_payment,
    statement_with_split_payout,
)
from tests.application.test_statement_imports import TODAY, camt, entry, govuk_pay
from tests.domain.helpers import CT_REF


def same_both_ways(ledger) -> dict:
    """A new process (from the books stored at the previous step, and the events since),
    this process's kept books and a fold from scratch make the same report; the fold
    stored and loaded back is the same fold, every dict in the same order."""
    stored = reconciliation._stored_fold(ledger)  # as the previous step stored it
    started = exceptions(ledger, books=KeptBooks().books(ledger))
    kept = exceptions(ledger)
    fresh = exceptions(ledger, books=read_books(ledger))
    assert started == kept == fresh
    if stored is not None:
        read_before = stored.position
        stored.read(ledger)  # only the events recorded since it was stored
        assert stored.unsaved <= ledger.count_events(read_before)
        assert exceptions(ledger, books=stored.books(ledger)) == fresh
    fold = BooksFold()
    fold.read(ledger)
    if fold.mark is not None:
        loaded = BooksFold.from_snapshot(fold.to_snapshot())
        assert fold_state(loaded) == fold_state(fold)
    return kept


def fold_state(fold: BooksFold) -> dict:
    """Everything a fold holds (dicts as their items, in order), but its count of events
    not yet stored."""
    return {
        name: list(value.items()) if isinstance(value, dict) else value
        for name, value in vars(fold).items()
        if name != "unsaved"
    }


@pytest.fixture
def stored_each_call(monkeypatch):
    """Every call that folds new events stores the books (at least one event since)."""
    monkeypatch.setattr(reconciliation, "SNAPSHOT_EVERY_EVENTS", 1)


def test_the_kept_books_report_is_the_report_read_afresh_at_every_step(
    ledger, stored_each_call
) -> None:
    steps = []
    steps.append(same_both_ways(ledger))  # empty: the books start folded from nothing
    batch_id = statement_with_split_payout(ledger)
    steps.append(same_both_ways(ledger))
    allpay(ledger)
    card_day(ledger)
    govuk_pay_payment(ledger)
    steps.append(same_both_ways(ledger))
    late = link_counted_twice(ledger, OFFICER)
    assert late, "the day's files link lines of the statement"
    steps.append(same_both_ways(ledger))
    unlink_line(ledger, batch_id, late[0].line, SUPERVISOR, "a payer's own transfer")
    steps.append(same_both_ways(ledger))
    # Two receipts of one line's amount: the line waits for a person, who chooses.
    waiting = import_file(
        ledger, camt(entry("9.99", ref="W1", text="CHQ DEPOSIT")), OFFICER, file_name="w.xml"
    ).batch_id
    first = govuk_pay(ledger, 999, TODAY, "chq-1", "cheque")
    govuk_pay(ledger, 999, TODAY, "chq-2", "cheque")
    report = same_both_ways(ledger)
    (line,) = [
        row for row in report["unmatched_statement_lines"] if row["batch_id"] == str(waiting)
    ]
    assert len(line["candidates"]) == 2
    choose_link(ledger, SUPERVISOR, waiting, 1, first, "the paying-in slip names it")
    steps.append(same_both_ways(ledger))
    # Card money: a dispute opened and lost, a refund; a receipt reversed and its
    # reversal undone; a whole import reversed.
    send(ledger, pay("card_payment_captured", "pay-d", fee=20))
    send(ledger, dispute("dispute_created", "pay-d"))
    steps.append(same_both_ways(ledger))
    send(ledger, dispute("dispute_lost", "pay-d"))
    send(
        ledger, pay("card_payment_refunded", "pay-split", refund_summary={"amount_submitted": 500})
    )
    receipt = govuk_pay(ledger, 1_234, TODAY, "cash-1", "cash")
    ledger.reverse(UUID(receipt), ReversalKind.COUNTED_TWICE.value, OFFICER, "a test reversal")
    steps.append(same_both_ways(ledger))
    other = import_file(
        ledger, camt(entry("3.21", ref="R1", text=CT_REF)), OFFICER, file_name="r.xml"
    ).batch_id
    reverse_import(ledger, other, SUPERVISOR, "the wrong account's statement")
    reverse_import(ledger, batch_id, SUPERVISOR, "imported twice by another name")
    steps.append(same_both_ways(ledger))
    # (the day linked whole, the report is as empty as at first: the payer's own line is
    # no exception)
    changed = [repr(before) != repr(after) for before, after in pairwise(steps)]
    assert all(changed), "each step changed the report"


def test_a_second_ledger_object_on_the_same_store_sees_the_same(ledger, settings) -> None:
    statement_with_split_payout(ledger)
    assert exceptions(ledger)["unmatched_statement_lines"]
    other = build_ledger(settings)
    try:
        allpay(other)  # recorded by another process: this one's kept books read it next
        link_counted_twice(other, OFFICER)
        assert (
            exceptions(ledger) == exceptions(other) == exceptions(ledger, books=read_books(ledger))
        )
    finally:
        other.close()


def stored_position(ledger) -> int:
    snapshot = books_snapshot.load(ledger, EXCEPTIONS_BOOKS, BOOKS_SNAPSHOT_FORMAT)
    return 0 if snapshot is None else snapshot.mark.position


def test_a_store_restored_to_an_older_state_is_read_afresh(ledger, stored_each_call) -> None:
    statement_with_split_payout(ledger)
    older = ledger.max_position()
    allpay(ledger)
    card_day(ledger)
    before = exceptions(ledger)  # this process keeps the books and stores them
    kept_at = stored_position(ledger)
    assert kept_at > older
    # The database restored from a backup taken at `older`, then money recorded again,
    # past the position the books were kept at (a PostgreSQL sequence restored with it
    # or not: the events there are others, or none).
    engine = event_store.engine(ledger.recorder)
    events = event_store.events_record_class(ledger.recorder).__table__
    with engine.begin() as connection:
        connection.execute(delete(events).where(events.c.id > older))
    day = 0
    while ledger.max_position() <= kept_at:
        day += 1
        govuk_pay(ledger, 100 + day, TODAY, f"after-restore-{day}", "cash")
    fresh = exceptions(ledger, books=read_books(ledger))
    assert fresh != before
    assert exceptions(ledger) == fresh, "this process's kept books noticed the restore"
    assert exceptions(ledger, books=KeptBooks().books(ledger)) == fresh, "a new process too"
    assert 0 < stored_position(ledger) <= ledger.max_position()


def test_books_stored_by_another_store_are_not_read(ledger, stored_each_call) -> None:
    statement_with_split_payout(ledger)
    exceptions(ledger)
    engine = event_store.engine(ledger.recorder)
    table = books_snapshot_table
    with engine.begin() as connection:  # as if copied from another database
        connection.execute(update(table).values(originator_id=str(uuid4())))
    assert books_snapshot.load(ledger, EXCEPTIONS_BOOKS, BOOKS_SNAPSHOT_FORMAT) is None
    allpay(ledger)
    fresh = exceptions(ledger, books=read_books(ledger))
    assert exceptions(ledger, books=KeptBooks().books(ledger)) == fresh
    assert stored_position(ledger) > 0, "stored afresh in its place"


def test_books_stored_in_another_format_are_not_read(ledger, stored_each_call) -> None:
    statement_with_split_payout(ledger)
    exceptions(ledger)
    engine = event_store.engine(ledger.recorder)
    with engine.begin() as connection:
        connection.execute(update(books_snapshot_table).values(format=BOOKS_SNAPSHOT_FORMAT + 1))
    assert books_snapshot.load(ledger, EXCEPTIONS_BOOKS, BOOKS_SNAPSHOT_FORMAT) is None
    fresh = exceptions(ledger, books=read_books(ledger))
    assert exceptions(ledger, books=KeptBooks().books(ledger)) == fresh


def test_books_of_another_format_are_replaced_by_the_first_process_to_fold_afresh(
    ledger, monkeypatch
) -> None:
    """After an upgrade that changes the format (or books stored unreadable), the first
    process folds afresh and stores its books at once, however near the old row's position:
    else every new process (every CLI call) folds the whole store again until
    SNAPSHOT_EVERY_EVENTS more events are recorded."""
    monkeypatch.setattr(reconciliation, "SNAPSHOT_EVERY_EVENTS", 2)
    statement_with_split_payout(ledger)
    allpay(ledger)
    exceptions(ledger)
    assert stored_position(ledger) == ledger.max_position()
    engine = event_store.engine(ledger.recorder)
    with engine.begin() as connection:  # as a release before the format changed stored it
        connection.execute(update(books_snapshot_table).values(format=BOOKS_SNAPSHOT_FORMAT - 1))
    fresh = exceptions(ledger, books=read_books(ledger))
    assert exceptions(ledger, books=KeptBooks().books(ledger)) == fresh
    assert stored_position(ledger) == ledger.max_position(), "stored in this format"


def test_books_stored_unreadable_are_replaced_by_the_first_process_to_fold_afresh(
    ledger, monkeypatch
) -> None:
    monkeypatch.setattr(reconciliation, "SNAPSHOT_EVERY_EVENTS", 2)
    statement_with_split_payout(ledger)
    allpay(ledger)
    exceptions(ledger)
    engine = event_store.engine(ledger.recorder)
    with engine.begin() as connection:
        connection.execute(update(books_snapshot_table).values(books=b"not zlib"))
    assert reconciliation._stored_fold(ledger) is None
    fresh = exceptions(ledger, books=read_books(ledger))
    assert exceptions(ledger, books=KeptBooks().books(ledger)) == fresh
    assert reconciliation._stored_fold(ledger) is not None, "stored afresh in its place"


def test_books_of_a_newer_format_are_left_to_the_release_that_stored_them(
    ledger, monkeypatch
) -> None:
    """While two releases run (a rolling upgrade), the older one folds afresh but never
    replaces the newer one's books, which would make the newer one fold afresh in turn."""
    monkeypatch.setattr(reconciliation, "SNAPSHOT_EVERY_EVENTS", 2)
    statement_with_split_payout(ledger)
    exceptions(ledger)
    engine = event_store.engine(ledger.recorder)
    with engine.begin() as connection:
        connection.execute(update(books_snapshot_table).values(format=BOOKS_SNAPSHOT_FORMAT + 1))
    allpay(ledger)
    fresh = exceptions(ledger, books=read_books(ledger))
    assert exceptions(ledger, books=KeptBooks().books(ledger)) == fresh
    assert books_snapshot.load(ledger, EXCEPTIONS_BOOKS, BOOKS_SNAPSHOT_FORMAT + 1) is not None


def test_the_same_payment_recorded_again_at_the_same_position_is_read_afresh(
    ledger, stored_each_call
) -> None:
    """After a restore, money entered again may put the same payment (its id is made from
    its channel and external id) at the very position the books were stored at, with the
    same id and version: only its bytes (its recording time) tell it apart."""
    statement_with_split_payout(ledger)
    older = ledger.max_position()
    govuk_pay(ledger, 4_321, TODAY, "lost-in-the-restore", "cash")
    govuk_pay(ledger, 1_111, TODAY, "entered-again", "cash")
    before = exceptions(ledger)  # stores the books, marked at the second payment's allocation
    kept_at = stored_position(ledger)
    assert kept_at == older + 4  # each payment: received, then allocated (both folded)
    stored_mark = books_snapshot.mark_at(ledger, kept_at)
    engine = event_store.engine(ledger.recorder)
    events = event_store.events_record_class(ledger.recorder).__table__
    with engine.begin() as connection:
        connection.execute(delete(events).where(events.c.id > older))
        if engine.dialect.name == "postgresql":  # the sequence restored with the table
            connection.execute(
                text("SELECT setval(pg_get_serial_sequence(:table, 'id'), :at)"),
                {"table": events.name, "at": older},
            )
    govuk_pay(ledger, 2_222, TODAY, "entered-instead", "cash")
    govuk_pay(ledger, 1_111, TODAY, "entered-again", "cash")
    again = books_snapshot.mark_at(ledger, kept_at)
    assert (again.originator_id, again.originator_version) == (
        stored_mark.originator_id,
        stored_mark.originator_version,
    ), "the same payment's first event, at the very same position"
    fresh = exceptions(ledger, books=read_books(ledger))
    assert fresh != before
    assert exceptions(ledger, books=KeptBooks().books(ledger)) == fresh, "a new process"
    assert exceptions(ledger) == fresh, "this process's kept books noticed the restore"
