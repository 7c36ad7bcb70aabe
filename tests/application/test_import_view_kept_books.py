"""A statement's view (GET /imports/{id}, `import show`: reconciliation.line_choices) reads
the books this process keeps (kept_books) cut where the view's window starts, not the
window's events again: its lines' candidates are those the window's own read
(read_books from that position) gives, on SQLite and PostgreSQL. Held equal at every
position a window may start from, over a mixed day: payouts booked after their window,
payouts split over lines, links undone, receipts and a statement reversed, a card
payment refunded after its payout day."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from uuid import UUID

from application import reconciliation
from application.imports import get_import, import_file, reverse_import
from application.reconciliation import (
    _choices,
    choose_link,
    kept_books,
    line_choices,
    link_counted_twice,
    read_books,
    unlink_line,
)
from domain.payment import ReversalKind
from tests.application.test_card_payouts import pay, send
from tests.application.test_choosing_statement_links import (
    EARLIER,
    LOOSE_SPLITS,
    SPLIT_PAYOUT_LINES,
    two_card_receipts,
    two_days_of_one_payout,
)
from tests.application.test_imports import allpay_file, allpay_line
from tests.application.test_late_statement_links import OFFICER, SUPERVISOR
from tests.application.test_statement_imports import (
    TODAY,
    YESTERDAY,
    camt,
    entry,
    govuk_pay,
)
from tests.domain.helpers import CT_REF


def captured_days_ago(name: str, pence: int, days: int) -> dict:
    """A GOV.UK Pay payment (fee 0.20) captured `days` days ago, settled that day."""
    day = TODAY - timedelta(days=days)
    message = pay("card_payment_captured", name, amount=pence, fee=20)
    message["resource"]["settlement_summary"] = {"captured_date": day.isoformat()}
    message["resource"]["created_date"] = f"{day}T10:00:00.000Z"
    return message


def the_window(books: reconciliation.Books) -> dict:
    """Books as compared: all of them but the count of notes, which no choice reads."""
    return {k: v for k, v in asdict(books).items() if k != "paid_in_notes"}


def same_at_every_cut(ledger, monkeypatch, batches: list[UUID]) -> int:
    """At every position a view's window may start from: the kept books cut there are the
    books read from there, and each statement's view offers the same; the number of cuts
    at which the whole history's books would have offered something else."""
    wider = 0
    for after in range(ledger.max_position() + 1):
        read = read_books(ledger, after)
        assert the_window(kept_books(ledger, after)) == the_window(read), after
        whole = kept_books(ledger)
        for batch_id in batches:
            with monkeypatch.context() as patch:
                patch.setattr(reconciliation, "scope_start", lambda *_a, at=after: at)
                view = line_choices(ledger, ledger.repository.get(batch_id))
                patch.setattr(reconciliation, "kept_books", lambda led, at=0: read_books(led, at))
                assert view == line_choices(ledger, ledger.repository.get(batch_id)), after
            windowed = _choices(ledger, read, str(batch_id))
            wider += windowed != _choices(ledger, whole, str(batch_id))
    return wider


def test_the_import_view_from_kept_books_is_the_windowed_read_at_every_cut(
    ledger, monkeypatch
) -> None:
    batches = []
    # A payout booked 8 days after its settlement day: a person's candidate only.
    send(ledger, captured_days_ago("pay-late", 7_020, 8))
    payout = camt(entry("70.00", ref="P1", text="GOVUK PAY"))
    batches.append(import_file(ledger, payout, OFFICER, file_name="late.xml").batch_id)
    # Two receipts of a line's amount; a split payout two days make, and a late one.
    two_card_receipts(ledger)
    two_days_of_one_payout(ledger)
    send(ledger, captured_days_ago("pay-late-part", 5_020, 9))
    content = camt(*SPLIT_PAYOUT_LINES, entry("9.00", ref="B1", text="CARD TAKINGS"))
    batches.append(import_file(ledger, content, OFFICER, file_name="split.xml").batch_id)
    assert same_at_every_cut(ledger, monkeypatch, batches) > 0
    # A run's link undone, a loose split, a receipt reversed, a refund, a statement reversed.
    undone = camt(entry("12.34", ref="U1", text="CARD TAKINGS"))
    batches.append(import_file(ledger, undone, OFFICER, file_name="undo.xml").batch_id)
    govuk_pay(ledger, 1_234, YESTERDAY, "till-u", "card")
    (linked,) = link_counted_twice(ledger, OFFICER)
    unlink_line(ledger, batches[-1], linked.line, OFFICER, "a payer's own transfer")
    govuk_pay(ledger, 1_234, EARLIER, "till-v", "card")
    loose = camt(*LOOSE_SPLITS["narratives"])
    batches.append(import_file(ledger, loose, OFFICER, file_name="loose.xml").batch_id)
    send(ledger, captured_days_ago("pay-1", 10_000, 3))
    reversed_receipt = govuk_pay(ledger, 900, YESTERDAY, "till-r", "card")
    ledger.reverse(
        UUID(reversed_receipt), ReversalKind.COUNTED_TWICE.value, OFFICER, "a test reversal"
    )
    send(ledger, pay("card_payment_refunded", "pay-late", refund_summary={"amount_submitted": 80}))
    gone = import_file(ledger, camt(entry("3.21", ref="R1", text="X")), OFFICER, file_name="r.xml")
    reverse_import(ledger, gone.batch_id, SUPERVISOR, "the wrong account's statement")
    batches.append(gone.batch_id)
    assert link_counted_twice(ledger, OFFICER) == []
    wider = same_at_every_cut(ledger, monkeypatch, batches)
    assert wider > 0, "the whole history's books offer more than some windows: cut them"
    offered = [
        line["candidates"]
        for batch_id in batches[:4]
        for line in get_import(ledger, batch_id)["lines"]
    ]
    assert sum(1 for candidates in offered if candidates) >= 5, "lines wait with candidates"


def test_a_receipt_an_older_statement_paid_in_late_is_not_offered_again(
    ledger, monkeypatch
) -> None:
    """A statement imported before a view's window starts, whose line a person links
    afterwards to a receipt of the window: that receipt is paid in, so the window's books
    (kept and read alike) count it linked, and a later statement's line of the same amount
    is not offered it again (only the two receipts still open)."""
    older = camt(entry("9.00", ref="O1", text="CARD TAKINGS"))
    older_id = import_file(ledger, older, OFFICER, file_name="older.xml").batch_id
    window_starts = ledger.max_position()
    paid, *still_open = (
        govuk_pay(ledger, 900, YESTERDAY, f"till-{name}", "card") for name in "abc"
    )
    choose_link(ledger, OFFICER, older_id, 1, paid, "the paying-in slip names it")
    newer = camt(entry("9.00", ref="N1", text="CARD TAKINGS"))
    newer_id = import_file(ledger, newer, OFFICER, file_name="newer.xml").batch_id
    with monkeypatch.context() as patch:  # the view's window starts after the older statement
        patch.setattr(reconciliation, "scope_start", lambda *_a: window_starts)
        (line,) = get_import(ledger, newer_id)["lines"]
    assert sorted(c["payment_id"] for c in line["candidates"]) == sorted(still_open)
    for books in (read_books(ledger, window_starts), kept_books(ledger, window_starts)):
        offered = _choices(ledger, books, str(newer_id))[(str(newer_id), 1)]
        assert sorted(c["payment_id"] for c in offered) == sorted(still_open)
        assert paid in books.linked
    assert same_at_every_cut(ledger, monkeypatch, [older_id, newer_id]) >= 0


def test_an_older_statements_late_links_undone_chosen_again_and_reversed_at_every_cut(
    ledger, monkeypatch
) -> None:
    """Late links of a statement imported before a window starts, undone, made again (one
    paying in an import's total), and that statement reversed: at every step a newer
    statement's line is offered, in the window, only the receipts still open (by the view,
    read_books and kept_books cut there), and at every cut the kept books cut there are
    the books read from there."""
    older = camt(
        entry("9.00", ref="O1", text="CARD TAKINGS"), entry("7.00", ref="O2", text="ALLPAY LTD")
    )
    older_id = import_file(ledger, older, OFFICER, file_name="older.xml").batch_id
    window_starts = ledger.max_position()
    first, second, third = (
        govuk_pay(ledger, 900, YESTERDAY, f"till-{name}", "card") for name in "abc"
    )
    allpay = allpay_file(allpay_line(CT_REF, "3.00"), allpay_line(CT_REF, "4.00"))
    allpay_id = import_file(ledger, allpay, OFFICER, file_name="be.txt").batch_id
    (by_total,) = link_counted_twice(ledger, OFFICER)
    assert (by_total.line, by_total.link.matched_batch_id) == (2, str(allpay_id))
    choose_link(ledger, OFFICER, older_id, 1, first, "the paying-in slip names it")
    newer = camt(entry("9.00", ref="N1", text="CARD TAKINGS"))
    newer_id = import_file(ledger, newer, OFFICER, file_name="newer.xml").batch_id

    def offered_in_the_window() -> list[str]:
        with monkeypatch.context() as patch:
            patch.setattr(reconciliation, "scope_start", lambda *_a: window_starts)
            (line,) = get_import(ledger, newer_id)["lines"]
        seen = sorted(c["payment_id"] for c in line["candidates"])
        for books in (read_books(ledger, window_starts), kept_books(ledger, window_starts)):
            found = _choices(ledger, books, str(newer_id))[(str(newer_id), 1)]
            assert sorted(c["payment_id"] for c in found) == seen
            assert (str(allpay_id) in books.linked_batches) == (str(allpay_id) in linked)
        same_at_every_cut(ledger, monkeypatch, [older_id, newer_id])
        return seen

    linked = {str(allpay_id)}
    assert offered_in_the_window() == sorted([second, third])
    unlink_line(ledger, older_id, 1, OFFICER, "the slip named another till")
    unlink_line(ledger, older_id, 2, OFFICER, "a payer's own transfer")
    linked = set()
    assert offered_in_the_window() == sorted([first, second, third])
    choose_link(ledger, OFFICER, older_id, 1, second, "the slip, read again")
    (again,) = link_counted_twice(ledger, OFFICER, (older_id, 2))
    assert again.link.matched_batch_id == str(allpay_id)
    linked = {str(allpay_id)}
    assert offered_in_the_window() == sorted([first, third])
    reverse_import(ledger, older_id, SUPERVISOR, "the wrong account's statement")
    linked = set()
    assert offered_in_the_window() == sorted([first, second, third])
