"""The books keep a receipt that a standing statement link pays in by its id only
(BooksFold.paid_in, BOOKS_SNAPSHOT_FORMAT 8, issue #10), and bring it back whole when the
link is undone or its statement reversed (BooksFold.settle). Held against a fold that
keeps every receipt whole (the fold as it was before: `whole_fold`), after each step of
random days of files, receipts, statements, late links, people's choices, links undone,
reversals and imports reversed, on SQLite and PostgreSQL: the same report (rows, summary
and candidates), the same books but for the receipts paid in, which are exactly the
whole fold's receipts that a standing link pays in (none leaks back into the report, none
is missing from it); from the kept books, from books read afresh, and from the books a new
process loads from the database."""

from __future__ import annotations

import contextlib
import random
from dataclasses import asdict
from datetime import timedelta
from uuid import UUID

import pytest
from sqlalchemy import delete

from application import books_snapshot, event_store, reconciliation
from application.books_snapshot import EXCEPTIONS_BOOKS, books_snapshot_table
from application.imports import import_file, reverse_import
from application.reconciliation import (
    BOOKS_SNAPSHOT_FORMAT,
    BooksFold,
    KeptBooks,
    StatementLink,
    choose_link,
    exceptions,
    kept_books,
    link_counted_twice,
    read_books,
    unlink_line,
)
from domain.errors import LedgerError
from domain.payment import ReversalKind
from tests.application.test_imports import allpay_file, allpay_line
from tests.application.test_late_statement_links import OFFICER, SUPERVISOR
from tests.application.test_statement_imports import TODAY, camt, entry, govuk_pay
from tests.domain.helpers import CT_REF


class WholeFold(BooksFold):
    """The fold as before format 8: every receipt kept whole, paid in or not."""

    def _pays_in(self, link: StatementLink, change: int) -> None:
        return None


def whole_fold(ledger, after: int = 0) -> reconciliation.Books:
    fold = WholeFold(after)
    fold.read(ledger)
    return fold.books(ledger)


def held_against_the_whole_fold(ledger) -> dict:
    """Every way of making the books makes the whole fold's report, and its books but for
    the receipts paid in, which are its receipts that a standing link pays in."""
    whole = whole_fold(ledger)
    expected = exceptions(ledger, books=whole)
    paid = {pid for pid in whole.receipts if pid in whole.linked}
    stored = reconciliation._stored_fold(ledger)
    ways = {
        "kept": kept_books(ledger),
        "afresh": read_books(ledger),
        "new process": KeptBooks().books(ledger),
    }
    if stored is not None:
        stored.read(ledger)
        ways["stored"] = stored.books(ledger)
    for way, books in ways.items():
        assert exceptions(ledger, books=books) == expected, way
        assert books.paid_in == paid, way
        assert books.receipts == {
            pid: receipt for pid, receipt in whole.receipts.items() if pid not in paid
        }, way
        assert books.paid_in <= books.linked, way
        assert asdict(books) | {"receipts": {}, "paid_in": set()} == asdict(whole) | {
            "receipts": {},
            "paid_in": set(),
        }, way
    # A fold from a later position (a linking run's, the import view's) too.
    middle = ledger.max_position() // 2
    cut = read_books(ledger, middle)
    assert exceptions(ledger, books=cut) == exceptions(ledger, books=whole_fold(ledger, middle))
    return expected


@pytest.fixture
def stored_each_call(monkeypatch):
    monkeypatch.setattr(reconciliation, "SNAPSHOT_EVERY_EVENTS", 1)


class Day:
    """Random steps of a reconciliation day, each one recorded through the application."""

    def __init__(self, ledger, seed: int) -> None:
        self.ledger, self.random, self.n = ledger, random.Random(seed), 0
        self.statements: list[UUID] = []
        self.files: list[tuple[UUID, int]] = []  # an Allpay file and its total
        self.receipts: list[tuple[str, int]] = []

    def name(self) -> str:
        self.n += 1
        return f"x{self.n}"

    def allpay(self) -> None:
        day = (TODAY - timedelta(days=self.random.randint(1, 4))).strftime("%d/%m/%Y")
        amounts = [self.random.choice((100, 200, 300)) for _ in range(self.random.randint(1, 3))]
        lines = [allpay_line(CT_REF, f"{p // 100}.{p % 100:02d}", day=day) for p in amounts]
        outcome = import_file(self.ledger, allpay_file(*lines), OFFICER, file_name=self.name())
        self.files.append((outcome.batch_id, sum(amounts)))

    def receipt(self) -> None:
        pence = self.random.choice((100, 200, 300, 500))
        day = TODAY - timedelta(days=self.random.randint(0, 4))
        channel = self.random.choice(("cash", "cheque", "card"))
        self.receipts.append((govuk_pay(self.ledger, pence, day, self.name(), channel), pence))

    def statement(self) -> None:
        amounts = []
        for _ in range(self.random.randint(1, 3)):
            known = [total for _, total in self.files] + [pence for _, pence in self.receipts]
            amounts.append(self.random.choice(known or [100]))
        entries = [
            entry(f"{p // 100}.{p % 100:02d}", ref=self.name(), text="BANK GIRO CREDIT")
            for p in amounts
        ]
        outcome = import_file(self.ledger, camt(*entries), OFFICER, file_name=self.name())
        self.statements.append(outcome.batch_id)

    def link_late(self) -> None:
        link_counted_twice(self.ledger, OFFICER)

    def unlink(self) -> None:
        linked = sorted(kept_books(self.ledger).linked_lines)
        if linked:
            batch_id, line = self.random.choice(linked)
            unlink_line(self.ledger, UUID(batch_id), line, SUPERVISOR, "a payer's own transfer")

    def choose(self) -> None:
        report = exceptions(self.ledger)
        waiting = [row for row in report["unmatched_statement_lines"] if row["candidates"]]
        if waiting:
            row = self.random.choice(waiting)
            candidate = self.random.choice(row["candidates"])
            choose_link(
                self.ledger,
                SUPERVISOR,
                UUID(row["batch_id"]),
                row["line"],
                None,
                "the slip names it",
                candidate=candidate["candidate"],
            )

    def reverse_receipt(self) -> None:
        if self.receipts:
            payment_id, _ = self.random.choice(self.receipts)
            kind = ReversalKind.COUNTED_TWICE.value
            self.ledger.reverse(UUID(payment_id), kind, OFFICER, "recorded twice")

    def reverse_import(self) -> None:
        imports = self.statements + [batch_id for batch_id, _ in self.files]
        if imports:
            batch_id = self.random.choice(imports)
            reverse_import(self.ledger, batch_id, SUPERVISOR, "the wrong file")

    def step(self) -> str:
        steps = [
            (self.allpay, 3),
            (self.receipt, 3),
            (self.statement, 4),
            (self.link_late, 2),
            (self.unlink, 2),
            (self.choose, 2),
            (self.reverse_receipt, 1),
            (self.reverse_import, 1),
        ]
        (chosen,) = self.random.choices(
            [step for step, _ in steps], weights=[w for _, w in steps], k=1
        )
        # (refused as a person would be: already reversed, a file a statement paid in, ...)
        with contextlib.suppress(LedgerError):
            chosen()
        return chosen.__name__


@pytest.mark.parametrize("seed", [1, 2])
def test_paid_in_receipts_kept_by_id_make_the_whole_folds_report(
    ledger, stored_each_call, seed
) -> None:
    day = Day(ledger, seed)
    for _ in range(3):
        day.allpay()
        day.receipt()
    done = []
    for _ in range(16):
        done.append(day.step())
        held_against_the_whole_fold(ledger)
    report = held_against_the_whole_fold(ledger)
    assert report["summary"], "something is left open"
    assert kept_books(ledger).paid_in, f"something is paid in: {done}"


def test_a_link_undone_and_a_statement_reversed_bring_the_receipts_back(
    ledger, stored_each_call
) -> None:
    open_ = [govuk_pay(ledger, 700, TODAY - timedelta(days=1), f"r{n}", "cash") for n in (1, 2)]
    paid = govuk_pay(ledger, 1_234, TODAY - timedelta(days=1), "r3", "cash")
    first = held_against_the_whole_fold(ledger)
    assert {row["payment_id"] for row in first["unmatched_receipts"]} == {*open_, paid}
    statement = import_file(
        ledger, camt(entry("12.34", ref="P1", text="BANK GIRO CREDIT")), OFFICER, file_name="p"
    ).batch_id
    books = kept_books(ledger)
    assert books.paid_in == {paid} and paid not in books.receipts
    after = held_against_the_whole_fold(ledger)
    assert {row["payment_id"] for row in after["unmatched_receipts"]} == set(open_)
    # A statement line recorded first, linked late, then unlinked: back whole.
    late = import_file(
        ledger, camt(entry("5.55", ref="L1", text="BANK GIRO CREDIT")), OFFICER, file_name="l"
    ).batch_id
    cash = govuk_pay(ledger, 555, TODAY, "r4", "cash")
    (linked,) = link_counted_twice(ledger, OFFICER)
    assert cash in kept_books(ledger).paid_in
    held_against_the_whole_fold(ledger)
    unlink_line(ledger, late, linked.line, SUPERVISOR, "the payer's own")
    assert cash in kept_books(ledger).receipts
    back = held_against_the_whole_fold(ledger)
    assert cash in {row["payment_id"] for row in back["unmatched_receipts"]}
    reverse_import(ledger, statement, SUPERVISOR, "the wrong account's statement")
    assert paid in kept_books(ledger).receipts and not kept_books(ledger).paid_in
    again = held_against_the_whole_fold(ledger)
    assert paid in {row["payment_id"] for row in again["unmatched_receipts"]}


def test_books_stored_before_format_8_are_folded_afresh_once(ledger, monkeypatch) -> None:
    """Books a release before format 8 stored (every receipt whole) are not read: the
    first process folds afresh and stores format 8 at once; the next loads those."""
    monkeypatch.setattr(reconciliation, "SNAPSHOT_EVERY_EVENTS", 2)
    govuk_pay(ledger, 1_234, TODAY - timedelta(days=1), "r1", "cash")
    govuk_pay(ledger, 700, TODAY - timedelta(days=1), "r2", "cash")
    import_file(
        ledger, camt(entry("12.34", ref="P1", text="BANK GIRO CREDIT")), OFFICER, file_name="p"
    )
    before = WholeFold()
    before.read(ledger)
    with event_store.engine(ledger.recorder).begin() as connection:  # (the import stored 8)
        connection.execute(delete(books_snapshot_table))
    books_snapshot.save(ledger, EXCEPTIONS_BOOKS, 7, before.to_snapshot())
    assert books_snapshot.load(ledger, EXCEPTIONS_BOOKS, BOOKS_SNAPSHOT_FORMAT) is None
    expected = exceptions(ledger, books=whole_fold(ledger))
    assert exceptions(ledger, books=KeptBooks().books(ledger)) == expected
    stored = books_snapshot.load(ledger, EXCEPTIONS_BOOKS, BOOKS_SNAPSHOT_FORMAT)
    assert stored is not None and stored.mark.position == ledger.max_position()
    folded = []
    apply = BooksFold.apply
    monkeypatch.setattr(BooksFold, "apply", lambda *args: folded.append(args) or apply(*args))
    assert exceptions(ledger, books=KeptBooks().books(ledger)) == expected
    assert folded == [], "the next process loads the books stored in format 8"
