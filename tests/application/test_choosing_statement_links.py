"""A statement line that may pay in more than one record (two receipts of its amount in its
window, two imports of its total, two channels' days of it) is linked by no run: it waits
on the exceptions report with its candidates, and a person chooses one, saying why
(application.reconciliation.choose_link), undoable like any late link; on SQLite and
PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from uuid import UUID

import pytest

from application.imports import get_import, import_file, reverse_import
from application.ledger import CommandContext
from application.reconciliation import (
    candidate_key,
    choose_link,
    exceptions,
    exceptions_csv,
    link_after_recording,
    link_counted_twice,
    unlink_line,
)
from domain.errors import LineNeedsAChoice, NotACandidate, ReasonRequired
from domain.imports import StatementLink
from domain.limits import uk_day_start
from tests.application.test_card_payouts import pay, send
from tests.application.test_imports import allpay_file, allpay_line
from tests.application.test_late_statement_links import OFFICER, counted_pence
from tests.application.test_statement_imports import TODAY, YESTERDAY, camt, entry, govuk_pay
from tests.domain.helpers import CT_REF

EARLIER = TODAY - timedelta(days=3)
SUPERVISOR = CommandContext("supervisor:recon")
WHY = "the till's bag of that day was banked on its own"


def two_card_receipts(ledger) -> tuple[str, str]:
    """Two card payments of 9.00 taken at a till, yesterday and three days ago."""
    nearer = govuk_pay(ledger, 900, YESTERDAY, "till-b", "card")
    older = govuk_pay(ledger, 900, EARLIER, "till-a", "card")
    return nearer, older


def two_files_and_a_line(ledger) -> tuple[UUID, UUID, UUID]:
    """Two Allpay files of 7.00 each and a statement whose one line (7.00 from ALLPAY LTD)
    may pay in either: the files' and the statement's batch ids."""
    first, second = (
        import_file(
            ledger, allpay_file(*(allpay_line(CT_REF, a) for a in amounts)), OFFICER, file_name=name
        ).batch_id
        for name, amounts in (("be1.txt", ("3.00", "4.00")), ("be2.txt", ("2.00", "5.00")))
    )
    content = camt(entry("7.00", ref="B1", text="ALLPAY LTD"))
    return first, second, import_file(ledger, content, OFFICER, file_name="s.xml").batch_id


def line_row(ledger) -> dict:
    (row,) = exceptions(ledger)["unmatched_statement_lines"]
    return row


def test_a_line_two_receipts_of_its_amount_may_pay_in_waits_for_a_person(ledger):
    nearer, older = two_card_receipts(ledger)
    statement = camt(
        entry("9.00", ref="B1", text="CARD TAKINGS"), entry("9.00", ref="B2", text=CT_REF)
    )
    batch_id = import_file(ledger, statement, OFFICER, file_name="s.xml").batch_id
    lines = get_import(ledger, batch_id)["lines"]
    # Not the nearer day's by a guess: recorded, in suspense, with both candidates.
    assert [line["outcome"] for line in lines] == ["recorded", "recorded"]
    expected = [
        {
            "rule": "one_receipt",
            "matched": f"card receipt of {day}",
            "candidate": candidate_key(
                StatementLink("one_receipt", (payment_id,), f"card receipt of {day}")
            ),
            "payment_id": payment_id,
            "payment_ids": [payment_id],
            "matched_batch_id": None,
            "settled_day": None,
            "channels": ["card"],
            "days": [day.isoformat()],
            "files": [],
        }
        for payment_id, day in ((nearer, YESTERDAY), (older, EARLIER))
    ]
    assert lines[0]["candidates"] == expected
    assert lines[1]["candidates"] == []  # a payer's own transfer, allocated: nothing to choose
    report = exceptions(ledger)
    rows = {row["line"]: row for row in report["unmatched_statement_lines"]}
    assert rows[1]["candidates"] == expected
    assert 2 not in rows, "a payer's own transfer a fund took is no exception"
    assert sorted(r["payment_id"] for r in report["unmatched_receipts"]) == sorted([nearer, older])
    (csv_row,) = [
        r for r in csv.DictReader(io.StringIO(exceptions_csv(report))) if r["line"] == "1"
    ]
    assert (
        f"card receipt of {YESTERDAY} (card; {YESTERDAY}; receipt {nearer}; "
        f"candidate {expected[0]['candidate']})" in csv_row["candidates"]
    )
    assert f"receipt {older}" in csv_row["candidates"]
    # No run links it, and a person's plain "link again" is told to choose.
    assert link_counted_twice(ledger, OFFICER) == []
    assert link_after_recording(ledger, EARLIER) == []
    with pytest.raises(LineNeedsAChoice, match="reconcile choose") as refused:
        link_counted_twice(ledger, OFFICER, (batch_id, 1))
    assert nearer in refused.value.message and older in refused.value.message


def test_a_person_chooses_the_receipt_says_why_and_can_undo_it(ledger):
    nearer, older = two_card_receipts(ledger)
    content = camt(entry("9.00", ref="B1", text="CARD TAKINGS"))
    batch_id = import_file(ledger, content, OFFICER, file_name="s.xml").batch_id
    before = ledger.max_position()
    with pytest.raises(ReasonRequired):
        choose_link(ledger, OFFICER, batch_id, 1, older, "  ")
    with pytest.raises(NotACandidate, match=f"receipt {older}|card receipt of {EARLIER}"):
        choose_link(ledger, OFFICER, batch_id, 1, "not-a-receipt", WHY)
    assert ledger.max_position() == before  # refused, nothing stored

    (late,) = choose_link(ledger, OFFICER, batch_id, 1, older, WHY)
    assert late.link.matched_payment_ids == (older,) and late.link.rule == "one_receipt"
    (linked,) = [e for _, e in ledger.read_events() if type(e).__name__ == "LineLinked"]
    assert linked.actor == OFFICER.actor
    assert linked.reason == (
        f"counted twice: s.xml line 1 pays in card receipt of {EARLIER} (one_receipt), "
        f"recorded after the statement; chosen by a person: {WHY}"
    )
    own = ledger.payment_history(UUID(late.reversed_payment_id))[-1]
    assert own["details"]["kind"] == "counted_twice" and own["reason"] == linked.reason
    note = ledger.payment_history(UUID(older))[-1]["details"]["text"]
    assert note.startswith("paid in by bank statement s.xml line 1 (one_receipt")
    report = exceptions(ledger)
    assert report["unmatched_statement_lines"] == []
    assert [r["payment_id"] for r in report["unmatched_receipts"]] == [nearer]
    assert counted_pence(ledger) == 900 + 900

    (undone,) = unlink_line(ledger, batch_id, 1, OFFICER, "it was the other day's bag")
    assert undone.link.matched_payment_ids == (older,)
    assert counted_pence(ledger) == 900 + 900 + 900


def test_a_choice_undone_leaves_the_line_waiting_for_a_person(ledger):
    """Undoing a person's choice does not make the line unambiguous: both receipts are
    still of its amount in its window. No run links the other one by elimination (the
    person may have meant neither); the line waits with both candidates, which the
    import's page offers to choose from ("Link again" would be refused as needing a
    choice, so the page must not offer it alone)."""
    nearer, older = two_card_receipts(ledger)
    content = camt(entry("9.00", ref="B1", text="CARD TAKINGS"))
    batch_id = import_file(ledger, content, OFFICER, file_name="s.xml").batch_id
    choose_link(ledger, OFFICER, batch_id, 1, older, WHY)
    unlink_line(ledger, batch_id, 1, OFFICER, "the remittance names neither")
    assert link_counted_twice(ledger, OFFICER) == []
    assert link_after_recording(ledger, EARLIER) == []
    paid_in = [c["payment_ids"] for c in line_row(ledger)["candidates"]]
    assert paid_in == [[nearer], [older]]
    (line,) = get_import(ledger, batch_id)["lines"]
    assert [c["payment_ids"] for c in line["candidates"]] == paid_in
    with pytest.raises(LineNeedsAChoice):
        link_counted_twice(ledger, OFFICER, (batch_id, 1))
    (late,) = choose_link(ledger, OFFICER, batch_id, 1, nearer, "the other day's bag")
    assert late.link.matched_payment_ids == (nearer,)


def test_a_person_may_choose_a_pairing_undone_before(ledger):
    nearer, older = two_card_receipts(ledger)
    content = camt(entry("9.00", ref="B1", text="CARD TAKINGS"))
    batch_id = import_file(ledger, content, OFFICER, file_name="s.xml").batch_id
    choose_link(ledger, OFFICER, batch_id, 1, older, WHY)
    unlink_line(ledger, batch_id, 1, OFFICER, "wrong day")
    (again,) = choose_link(ledger, OFFICER, batch_id, 1, older, "it was that day's after all")
    assert again.link.matched_payment_ids == (older,)
    assert [r["payment_id"] for r in exceptions(ledger)["unmatched_receipts"]] == [nearer]


def test_receipts_recorded_after_the_statement_make_its_line_wait_too(ledger):
    content = camt(entry("9.00", ref="B1", text="CARD TAKINGS"))
    batch_id = import_file(ledger, content, OFFICER, file_name="s.xml").batch_id
    nearer, _ = two_card_receipts(ledger)
    assert link_after_recording(ledger, EARLIER) == [] and link_counted_twice(ledger, OFFICER) == []
    assert len(line_row(ledger)["candidates"]) == 2
    (late,) = choose_link(ledger, OFFICER, batch_id, 1, nearer, WHY)
    assert late.link.matched_payment_ids == (nearer,)


def test_two_imports_of_the_lines_total_wait_for_a_person(ledger):
    first, second, batch_id = two_files_and_a_line(ledger)
    (line,) = get_import(ledger, batch_id)["lines"]
    assert line["outcome"] == "recorded"
    assert {c["rule"] for c in line["candidates"]} == {"import_total"}
    assert {c["matched_batch_id"] for c in line["candidates"]} == {str(first), str(second)}
    assert link_counted_twice(ledger, OFFICER) == []
    chosen = next(c for c in line["candidates"] if c["matched_batch_id"] == str(second))
    (late,) = choose_link(ledger, OFFICER, batch_id, 1, chosen["payment_ids"][1], WHY)
    assert late.link.matched_batch_id == str(second)
    assert counted_pence(ledger) == 700 + 700


def test_two_channels_days_of_the_lines_amount_wait_for_a_person(ledger):
    for pence, day in ((500, YESTERDAY), (650, YESTERDAY), (400, EARLIER), (750, EARLIER)):
        govuk_pay(ledger, pence, day, f"c-{pence}", "card")
    content = camt(entry("11.50", ref="B1", text="CARD TAKINGS"))
    batch_id = import_file(ledger, content, OFFICER, file_name="s.xml").batch_id
    (line,) = get_import(ledger, batch_id)["lines"]
    assert [(c["rule"], c["days"]) for c in line["candidates"]] == [
        ("channel_day_total", [YESTERDAY.isoformat()]),
        ("channel_day_total", [EARLIER.isoformat()]),
    ]
    assert link_counted_twice(ledger, OFFICER) == []
    (late,) = choose_link(
        ledger, OFFICER, batch_id, 1, line["candidates"][1]["payment_ids"][0], WHY
    )
    assert late.link.matched == f"the card receipts of {EARLIER}"


def test_a_statement_whose_lines_all_found_a_fund_reads_no_books_for_its_view(ledger, monkeypatch):
    two_card_receipts(ledger)
    content = camt(entry("9.00", ref="B1", text=CT_REF))  # allocated by its reference
    batch_id = import_file(ledger, content, OFFICER, file_name="s.xml").batch_id

    def no_books(*_args, **_kwargs):
        raise AssertionError("the import's view read the books")

    monkeypatch.setattr("application.reconciliation.read_books", no_books)
    (line,) = get_import(ledger, batch_id)["lines"]
    assert line["status"] == "allocated" and line["candidates"] == []


def test_a_choice_of_an_import_reversed_meanwhile_links_nothing(ledger, monkeypatch):
    """The chosen candidate's import is reversed between the choice's reading of the books
    and its saving (by a supervisor at the same moment): the line must not pay in
    receipts that are reversed, its own money counted nowhere. The choice is refused."""
    from application import reconciliation

    first, _, batch_id = two_files_and_a_line(ledger)
    (line,) = get_import(ledger, batch_id)["lines"]
    chosen = next(c for c in line["candidates"] if c["matched_batch_id"] == str(first))
    real_read = reconciliation.read_books

    def read_then_reverse_the_import(ledger_, after=0, **options):
        books = real_read(ledger_, after, **options)
        monkeypatch.setattr(reconciliation, "read_books", real_read)
        reverse_import(ledger_, first, SUPERVISOR, "the wrong day's file")
        return books

    monkeypatch.setattr(reconciliation, "read_books", read_then_reverse_the_import)
    with pytest.raises(NotACandidate):
        choose_link(ledger, OFFICER, batch_id, 1, chosen["payment_ids"][0], WHY)
    (line,) = get_import(ledger, batch_id)["lines"]
    assert (line["late_link"], line["status"]) == (None, "suspense")
    assert counted_pence(ledger) == 700 + 700  # the other import and the line, once each


def test_a_choice_of_a_receipt_chosen_meanwhile_for_another_line_links_nothing(ledger, monkeypatch):
    """Line 1 (booked yesterday) may pay in either 9.00 receipt; line 2 (booked today) only
    the nearer, which line 1 may pay in too, so both wait. A person chooses the nearer for
    line 1 while another chooses it for line 2 between the first choice's reading of the
    books and its saving: the first choice is refused, the receipt is paid in once."""
    from application import reconciliation

    content = camt(
        entry("9.00", ref="B1", text="CARD TAKINGS", day=YESTERDAY),
        entry("9.00", ref="B2", text="CARD TAKINGS", day=TODAY),
    )
    batch_id = import_file(ledger, content, OFFICER, file_name="s.xml").batch_id
    nearer = govuk_pay(ledger, 900, YESTERDAY, "till-b", "card")
    govuk_pay(ledger, 900, TODAY - timedelta(days=6), "till-a", "card")
    assert link_counted_twice(ledger, OFFICER) == []
    real_read = reconciliation.read_books
    other_choice: list = []

    def read_then_let_another_choose(ledger_, after=0, **options):
        books = real_read(ledger_, after, **options)
        monkeypatch.setattr(reconciliation, "read_books", real_read)
        other_choice.extend(choose_link(ledger_, OFFICER, batch_id, 2, nearer, WHY))
        return books

    monkeypatch.setattr(reconciliation, "read_books", read_then_let_another_choose)
    with pytest.raises(NotACandidate):
        choose_link(ledger, OFFICER, batch_id, 1, nearer, WHY)
    (late,) = other_choice
    assert (late.line, late.link.matched_payment_ids) == (2, (nearer,))
    lines = get_import(ledger, batch_id)["lines"]
    assert [line["late_link"] is None for line in lines] == [True, False]
    assert counted_pence(ledger) == 900 + 900 + 900  # line 1 and both receipts, once each


def two_days_payouts(ledger) -> tuple[str, str]:
    """GOV.UK Pay payments of 100.00 (fee 0.20) settled yesterday and three days ago: two
    settlement days whose payouts are both 99.80. Their payment ids, the nearer first."""
    for name, day in (("pay-near", YESTERDAY), ("pay-old", EARLIER)):
        send(
            ledger,
            pay(
                "card_payment_captured",
                name,
                fee=20,
                settlement_summary={"captured_date": day.isoformat()},
            ),
        )
    found = exceptions(ledger)["unsettled_card_payments"]
    by_day = {row["date"]: row["payment_id"] for row in found}
    return by_day[YESTERDAY.isoformat()], by_day[EARLIER.isoformat()]


def test_a_payout_of_two_settlement_days_waits_for_a_person(ledger):
    """Rule 4 as rules 1-3: a line of 99.80 may be either day's payout, so nothing links
    it (not the nearer day by a guess); a person chooses, and an undone choice is not made
    again by a run."""
    nearer, older = two_days_payouts(ledger)
    content = camt(entry("99.80", ref="P1", text="GOVUK PAY"))
    batch_id = import_file(ledger, content, OFFICER, file_name="s.xml").batch_id
    (line,) = get_import(ledger, batch_id)["lines"]
    assert line["outcome"] == "recorded"
    assert [(c["rule"], c["settled_day"], c["payment_id"]) for c in line["candidates"]] == [
        ("card_payout", YESTERDAY.isoformat(), nearer),
        ("card_payout", EARLIER.isoformat(), older),
    ]
    assert line_row(ledger)["candidates"] == line["candidates"]
    assert link_counted_twice(ledger, OFFICER) == []
    assert link_after_recording(ledger, EARLIER) == []
    with pytest.raises(LineNeedsAChoice, match="reconcile choose"):
        link_counted_twice(ledger, OFFICER, (batch_id, 1))
    assert len(exceptions(ledger)["unsettled_card_payments"]) == 2

    (late,) = choose_link(ledger, OFFICER, batch_id, 1, older, WHY)
    assert (late.link.rule, late.link.settled_day) == ("card_payout", EARLIER.isoformat())
    (left,) = exceptions(ledger)["unsettled_card_payments"]
    assert left["payment_id"] == nearer
    unlink_line(ledger, batch_id, 1, OFFICER, "it was yesterday's")
    assert link_counted_twice(ledger, OFFICER) == []  # not again, not the other by elimination
    assert [c["payment_id"] for c in line_row(ledger)["candidates"]] == [nearer, older]
    (again,) = choose_link(ledger, OFFICER, batch_id, 1, nearer, "the bank's advice")
    assert again.link.settled_day == YESTERDAY.isoformat()


def test_two_lines_of_one_amount_wait_for_the_one_receipt_then_a_person_links_one(ledger):
    """Two credit lines of 9.00 recorded before their money, then one receipt of 9.00: a run
    links neither (whichever it took would be a guess), nor does a person's "link again";
    both show the receipt; once a person links it to one, the other no longer offers it."""
    content = camt(
        entry("9.00", ref="B1", text="CARD TAKINGS"), entry("9.00", ref="B2", text="BANKING")
    )
    batch_id = import_file(ledger, content, OFFICER, file_name="s.xml").batch_id
    receipt = govuk_pay(ledger, 900, YESTERDAY, "till-a", "card")
    assert link_after_recording(ledger, YESTERDAY) == []
    assert link_counted_twice(ledger, OFFICER) == []
    with pytest.raises(LineNeedsAChoice, match="another statement line"):
        link_counted_twice(ledger, OFFICER, (batch_id, 2))
    lines = get_import(ledger, batch_id)["lines"]
    assert [[c["payment_id"] for c in line["candidates"]] for line in lines] == [
        [receipt],
        [receipt],
    ]
    rows = exceptions(ledger)["unmatched_statement_lines"]
    assert [[c["payment_id"] for c in row["candidates"]] for row in rows] == [[receipt]] * 2
    (late,) = choose_link(ledger, OFFICER, batch_id, 2, receipt, WHY)
    assert late.line == 2
    assert line_row(ledger)["candidates"] == []
    with pytest.raises(NotACandidate):
        choose_link(ledger, OFFICER, batch_id, 1, receipt, WHY)
    assert link_counted_twice(ledger, OFFICER, (batch_id, 1)) == []
    assert counted_pence(ledger) == 900 + 900


def test_a_line_waiting_for_a_person_offers_every_rules_candidates(ledger):
    """Two receipts of the line's amount (rule 1) and a channel's day adding up to it (rule
    3): a person sees all three and may choose the day."""
    singles = [
        govuk_pay(ledger, 1_150, day, f"one-{day}", "cheque") for day in (YESTERDAY, EARLIER)
    ]
    day = [govuk_pay(ledger, pence, EARLIER, f"c-{pence}", "card") for pence in (500, 650)]
    content = camt(entry("11.50", ref="B1", text="COUNTER BANKING"))
    batch_id = import_file(ledger, content, OFFICER, file_name="s.xml").batch_id
    (line,) = get_import(ledger, batch_id)["lines"]
    assert [(c["rule"], c["payment_ids"]) for c in line["candidates"]] == [
        ("one_receipt", [singles[0]]),
        ("one_receipt", [singles[1]]),
        ("channel_day_total", sorted(day)),
    ]
    (late,) = choose_link(ledger, OFFICER, batch_id, 1, day[1], WHY)
    assert late.link.rule == "channel_day_total"
    assert late.link.matched_payment_ids == tuple(sorted(day))
    assert sorted(r["payment_id"] for r in exceptions(ledger)["unmatched_receipts"]) == sorted(
        singles
    )


def test_a_day_a_run_leaves_two_lines_by_its_own_link_is_linked_to_neither(ledger):
    """Cheques of 5.00, 3.00 and 4.00 yesterday, and a statement of 5.00, 7.00 and 7.00
    before them. The 5.00 line is linked to the 5.00 cheque; what is left of the day, 7.00,
    is then what either 7.00 line may pay in, which no line could pay in when the run read
    the books: the run links neither by a guess (the older one, before), and the next run
    leaves both waiting for a person, the day their candidate."""
    content = camt(
        entry("5.00", ref="B1", text="COUNTER"),
        entry("7.00", ref="B2", text="COUNTER"),
        entry("7.00", ref="B3", text="COUNTER"),
    )
    batch_id = import_file(ledger, content, OFFICER, file_name="s.xml").batch_id
    five = govuk_pay(ledger, 500, YESTERDAY, "chq-5", "cheque")
    rest = sorted(govuk_pay(ledger, p, YESTERDAY, f"chq-{p}", "cheque") for p in (300, 400))
    (late,) = link_counted_twice(ledger, OFFICER)
    assert (late.line, late.link.matched_payment_ids) == (1, (five,))
    assert link_counted_twice(ledger, OFFICER) == []
    lines = get_import(ledger, batch_id)["lines"]
    assert [[c["payment_ids"] for c in line["candidates"]] for line in lines] == [
        [],
        [rest],
        [rest],
    ]
    (chosen,) = choose_link(ledger, OFFICER, batch_id, 3, rest[0], WHY)
    assert chosen.link.rule == "channel_day_total"
    assert counted_pence(ledger) == 500 + 300 + 400 + 700  # line 2 is its own receipt


WAITING_PAYOUT_LINES = (
    entry("99.80", ref="C1", text="GOVUK PAY"),
    entry("99.80", ref="C2", text="GOVUK PAY"),
)
SPLIT_PAYOUT_LINES = (
    entry("50.00", ref="P1", text="GOVUK PAY"),
    entry("49.80", ref="P2", text="GOVUK PAY"),
)


@pytest.mark.parametrize("payment_first", [True, False], ids=["at_import", "by_a_run"])
def test_a_payout_two_lines_wait_for_is_not_taken_for_a_split_payout(ledger, payment_first):
    """Two lines of 99.80 wait for a person, the one payout of 99.80 their candidate; a
    later statement's two lines adding up to it (a payout split over lines) do not take it,
    at their import or in a run: whichever took it would be a guess."""
    if payment_first:
        send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    waiting = import_file(ledger, camt(*WAITING_PAYOUT_LINES), OFFICER, file_name="w.xml")
    split = import_file(ledger, camt(*SPLIT_PAYOUT_LINES), OFFICER, file_name="s.xml")
    if not payment_first:
        send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    assert link_counted_twice(ledger, OFFICER) == []
    lines = get_import(ledger, split.batch_id)["lines"]
    assert [line["outcome"] for line in lines] == ["recorded", "recorded"]
    lines = get_import(ledger, waiting.batch_id)["lines"]
    assert [[c["rule"] for c in line["candidates"]] for line in lines] == [["card_payout"]] * 2
    assert len(exceptions(ledger)["unsettled_card_payments"]) == 1
    # The split's lines list the payout too, for a person, who finds it was the split.
    split_lines = get_import(ledger, split.batch_id)["lines"]
    (offered,) = split_lines[0]["candidates"]
    assert split_lines[1]["candidates"] == [offered] and "(lines 1, 2)" in offered["matched"]
    chosen = choose_link(
        ledger, SUPERVISOR, split.batch_id, 1, offered["payment_id"], "Pay's payout report"
    )
    assert [(link.line, link.link.rule) for link in chosen] == [
        (1, "card_payout"),
        (2, "card_payout_part"),
    ]
    report = exceptions(ledger)
    assert report["unsettled_card_payments"] == []
    waiting_rows = report["unmatched_statement_lines"]
    assert len(waiting_rows) == 2 and all(row["candidates"] == [] for row in waiting_rows)


def two_days_refunds(ledger) -> tuple[list[str], list]:
    """Two payments taken four days ago, one refunded 60.00 two days ago and the other 60.00
    yesterday: two settlement days whose payouts are both -60.00. The payment ids (sorted)
    and their refunds' days, in the same order."""
    taken = TODAY - timedelta(days=4)
    for name in ("pay-a", "pay-b"):
        captured = {"captured_date": taken.isoformat()}
        created = f"{taken}T10:00:00.000Z"
        send(
            ledger,
            pay("card_payment_captured", name, settlement_summary=captured, created_date=created),
        )
    paid = sorted({row["payment_id"] for row in exceptions(ledger)["unsettled_card_payments"]})
    refund_days = [TODAY - timedelta(days=2), YESTERDAY]
    for payment_id, day in zip(paid, refund_days, strict=True):
        when = uk_day_start(day) + timedelta(hours=10)
        ledger.refund(UUID(payment_id), 6_000, SUPERVISOR, "refunded at Pay", effective=when)
    return paid, refund_days


def test_a_payout_debit_two_days_refunds_may_pay_waits_for_a_person(ledger):
    """Two settlement days whose payouts are both -60.00 (two_days_refunds). A debit of
    60.00 naming the payout is kept unmatched with both days as its candidates; no run links
    it; a person chooses one, whose refund it settles, and the debit's row is gone."""
    paid, refund_days = two_days_refunds(ledger)
    debit = entry("60.00", ref="P2", debit=True, family="ICDT", text="GOVUK PAY")
    content = camt(debit, entry("12.34", ref="B1"))  # a file of debits alone is refused
    batch_id = import_file(ledger, content, OFFICER, file_name="d.xml").batch_id
    line = get_import(ledger, batch_id)["lines"][0]
    assert (line["kind"], line["outcome"]) == ("payout_debit", "unmatched")
    days = [day.isoformat() for day in reversed(refund_days)]  # the nearest first
    assert [(c["settled_day"], c["payment_id"]) for c in line["candidates"]] == list(
        zip(days, reversed(paid), strict=True)
    )
    rows = exceptions(ledger)["unmatched_statement_lines"]
    assert [row["candidates"] for row in rows if row["line"] == 1] == [line["candidates"]]
    assert link_counted_twice(ledger, OFFICER) == []
    (late,) = choose_link(ledger, OFFICER, batch_id, 1, paid[0], WHY)
    assert (late.reversed_payment_id, late.link.settled_day) == (None, days[1])
    rows = exceptions(ledger)["unmatched_statement_lines"]
    assert [row["kind"] for row in rows] == ["statement_line"]  # the 12.34 credit
    left = [(r["kind"], r["date"]) for r in exceptions(ledger)["unsettled_card_payments"]]
    assert ("unsettled_deduction", days[0]) in left and ("unsettled_deduction", days[1]) not in left


def two_days_of_one_payout(ledger) -> tuple[str, str]:
    """Two GOV.UK Pay payments of 100.00 (fee 0.20), captured yesterday and today: two
    settlement days whose payouts are both 99.80. The payment ids, yesterday's first."""
    today = {"captured_date": TODAY.isoformat()}
    send(ledger, pay("card_payment_captured", "pay-y", fee=20))
    send(ledger, pay("card_payment_captured", "pay-t", fee=20, settlement_summary=today))
    rows = exceptions(ledger)["unsettled_card_payments"]
    by_day = {row["date"]: row["payment_id"] for row in rows}
    return by_day[YESTERDAY.isoformat()], by_day[TODAY.isoformat()]


@pytest.mark.parametrize("payments_first", [True, False], ids=["at_import", "by_a_run"])
def test_a_split_payout_two_days_make_is_offered_and_a_person_chooses(ledger, payments_first):
    """A payout split over two lines (50.00 + 49.80 naming GOV.UK Pay) that yesterday's and
    today's payouts both add up to: no run links it (a guess), both lines list the two days
    for a person, who chooses one; the lines are then linked as a split payout is, and the
    other day's payment stays in clearing."""
    if payments_first:
        yesterday_id, today_id = two_days_of_one_payout(ledger)
    split = import_file(ledger, camt(*SPLIT_PAYOUT_LINES), OFFICER, file_name="s.xml")
    if not payments_first:
        yesterday_id, today_id = two_days_of_one_payout(ledger)
    assert link_counted_twice(ledger, OFFICER) == []
    lines = get_import(ledger, split.batch_id)["lines"]
    assert [line["outcome"] for line in lines] == ["recorded", "recorded"]
    rows = exceptions(ledger)["unmatched_statement_lines"]
    assert [row["line"] for row in rows] == [1, 2] or [row["line"] for row in rows] == [2, 1]
    for row in rows:
        days = sorted(c["settled_day"] for c in row["candidates"])
        assert days == [YESTERDAY.isoformat(), TODAY.isoformat()]
        assert all(c["rule"] == "card_payout" for c in row["candidates"])
        assert all("(lines 1, 2)" in c["matched"] for c in row["candidates"])
    assert [[c["rule"] for c in line["candidates"]] for line in lines] == [["card_payout"] * 2] * 2
    with pytest.raises(LineNeedsAChoice):
        link_counted_twice(ledger, OFFICER, (split.batch_id, 1))
    with pytest.raises(NotACandidate):
        choose_link(ledger, SUPERVISOR, split.batch_id, 2, "no-such-receipt", WHY)
    before = counted_pence(ledger)
    links = choose_link(ledger, SUPERVISOR, split.batch_id, 2, today_id, "Pay's payout report")
    assert [(link.line, link.link.rule) for link in links] == [
        (1, "card_payout"),
        (2, "card_payout_part"),
    ]
    assert links[0].link.settled_day == TODAY.isoformat()
    assert counted_pence(ledger) == before - 9_980  # the two lines' receipts reversed
    report = exceptions(ledger)
    assert report["unmatched_statement_lines"] == []
    (left,) = report["unsettled_card_payments"]
    assert (left["payment_id"], left["date"]) == (yesterday_id, YESTERDAY.isoformat())
    assert link_counted_twice(ledger, OFFICER) == []
    # Undone, the pairing is rejected but the lines still have two candidates: they wait.
    unlink_line(ledger, split.batch_id, 1, SUPERVISOR, "the other day's after all")
    assert link_counted_twice(ledger, OFFICER) == []
    rows = exceptions(ledger)["unmatched_statement_lines"]
    assert len(rows) == 2 and all(len(row["candidates"]) == 2 for row in rows)
    choose_link(ledger, SUPERVISOR, split.batch_id, 1, yesterday_id, "Pay's report, re-read")
    (left,) = exceptions(ledger)["unsettled_card_payments"]
    assert left["payment_id"] == today_id


def test_a_split_payout_one_day_makes_is_still_linked_by_a_run(ledger):
    send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    split = import_file(ledger, camt(*SPLIT_PAYOUT_LINES), OFFICER, file_name="s.xml")
    lines = get_import(ledger, split.batch_id)["lines"]
    assert [line["rule"] for line in lines] == ["card_payout", "card_payout_part"]
    assert all(not line["candidates"] for line in lines)


def captured_days_ago(ledger, name: str, days: int) -> None:
    """A GOV.UK Pay payment of 100.00 (fee 0.20) captured `days` days ago, Pay's
    settled_date unknown: its settlement day is its capture day."""
    day = TODAY - timedelta(days=days)
    captured = {"captured_date": day.isoformat()}
    created = f"{day}T10:00:00.000Z"
    message = pay("card_payment_captured", name, fee=20, settlement_summary=captured)
    message["resource"]["created_date"] = created
    send(ledger, message)


@pytest.mark.parametrize("days", [8, 20, 31])
@pytest.mark.parametrize("payment_first", [True, False], ids=["at_import", "by_a_run"])
def test_a_payout_booked_after_its_window_is_offered_to_a_person(ledger, payment_first, days):
    """Pay's payout of a day 8 days before the bank booked it (a bank holiday weekend, no
    settled_date), or up to a month before (a payout Pay held back for checks): outside
    the 5 days a run matches, so no run links it, but the line lists it for a person, who
    chooses it; its payment is settled. A payout 32 days before the line is offered to no
    one."""
    if payment_first:
        captured_days_ago(ledger, "pay-late", days)
    payout = camt(entry("99.80", ref="P1", text="GOVUK PAY"))
    batch_id = import_file(ledger, payout, OFFICER, file_name="s.xml").batch_id
    if not payment_first:
        captured_days_ago(ledger, "pay-late", days)
    assert link_counted_twice(ledger, OFFICER) == []
    (line,) = get_import(ledger, batch_id)["lines"]
    assert line["outcome"] == "recorded"
    (offered,) = line["candidates"]
    assert (offered["rule"], offered["settled_day"]) == (
        "card_payout",
        (TODAY - timedelta(days=days)).isoformat(),
    )
    (row,) = exceptions(ledger)["unmatched_statement_lines"]
    assert row["candidates"] == [offered]
    with pytest.raises(LineNeedsAChoice):
        link_counted_twice(ledger, OFFICER, (batch_id, 1))
    (link,) = choose_link(ledger, SUPERVISOR, batch_id, 1, offered["payment_id"], WHY)
    assert link.link.rule == "card_payout"
    report = exceptions(ledger)
    assert report["unmatched_statement_lines"] == report["unsettled_card_payments"] == []


def test_a_payout_settled_long_before_the_line_is_offered_to_no_one(ledger):
    """More than a month (LATE_PAYOUT_DAYS) before the line: a case for the provider's
    support desk, not a guess offered to a person; its payment stays unsettled."""
    captured_days_ago(ledger, "pay-old", 32)
    payout = camt(entry("99.80", ref="P1", text="GOVUK PAY"))
    batch_id = import_file(ledger, payout, OFFICER, file_name="s.xml").batch_id
    report = exceptions(ledger)
    (row,) = report["unmatched_statement_lines"]
    assert row["candidates"] == []
    (line,) = get_import(ledger, batch_id)["lines"]
    assert line["candidates"] == []
    (held,) = report["unsettled_card_payments"]
    assert (held["amount_pence"], held["date"]) == (9_980, (TODAY - timedelta(days=32)).isoformat())
    assert held["age_band"] == "over 30 days"


@pytest.mark.parametrize("payments_first", [True, False], ids=["at_import", "by_a_run"])
def test_a_split_payout_line_with_a_late_payout_offers_the_split_first(ledger, payments_first):
    """A payout split over two lines (50.00 + 49.80) that yesterday's and today's payouts
    both add up to, and a payout of 50.00 settled 8 days before the lines (late for line 1
    alone): line 1 offers the two days' split payouts first, then the late payout; line 2
    the split payouts. A person may choose the split on either line, or the late payout on
    line 1 alone."""
    late_payout = pay("card_payment_captured", "pay-late", amount=5_020, fee=20)
    day = TODAY - timedelta(days=8)
    late_payout["resource"]["settlement_summary"] = {"captured_date": day.isoformat()}
    late_payout["resource"]["created_date"] = f"{day}T10:00:00.000Z"
    if payments_first:
        yesterday_id, today_id = two_days_of_one_payout(ledger)
        send(ledger, late_payout)
    split = import_file(ledger, camt(*SPLIT_PAYOUT_LINES), OFFICER, file_name="s.xml")
    if not payments_first:
        yesterday_id, today_id = two_days_of_one_payout(ledger)
        send(ledger, late_payout)
    assert link_counted_twice(ledger, OFFICER) == []
    by_day = {row["date"]: row for row in exceptions(ledger)["unsettled_card_payments"]}
    late_id = by_day[day.isoformat()]["payment_id"]
    lines = get_import(ledger, split.batch_id)["lines"]
    split_days = [(TODAY.isoformat(), today_id), (YESTERDAY.isoformat(), yesterday_id)]
    offered = [[(c["settled_day"], c["payment_id"]) for c in line["candidates"]] for line in lines]
    assert offered == [[*split_days, (day.isoformat(), late_id)], split_days]
    assert all("(lines 1, 2)" in c["matched"] for c in lines[0]["candidates"][:2])
    rows = sorted(exceptions(ledger)["unmatched_statement_lines"], key=lambda row: row["line"])
    assert [row["candidates"] for row in rows] == [line["candidates"] for line in lines]
    for line in (1, 2):
        with pytest.raises(LineNeedsAChoice, match=today_id):
            link_counted_twice(ledger, OFFICER, (split.batch_id, line))

    links = choose_link(ledger, SUPERVISOR, split.batch_id, 1, today_id, "Pay's payout report")
    assert [(link.line, link.link.rule) for link in links] == [
        (1, "card_payout"),
        (2, "card_payout_part"),
    ]
    assert links[0].link.settled_day == TODAY.isoformat()
    left = {row["payment_id"] for row in exceptions(ledger)["unsettled_card_payments"]}
    assert left == {yesterday_id, late_id}

    unlink_line(ledger, split.batch_id, 1, SUPERVISOR, "line 1 was the late payout")
    assert link_counted_twice(ledger, OFFICER) == []
    (late,) = choose_link(ledger, SUPERVISOR, split.batch_id, 1, late_id, "the bank's advice")
    assert (late.line, late.link.settled_day) == (1, day.isoformat())
    report = exceptions(ledger)
    left = {row["payment_id"] for row in report["unsettled_card_payments"]}
    assert left == {yesterday_id, today_id}
    (row,) = report["unmatched_statement_lines"]
    assert (row["line"], row["candidates"]) == (2, [])


@pytest.mark.parametrize("late_payout", [False, True], ids=["alone", "with_a_late_payout"])
def test_a_late_payout_does_not_keep_a_line_whose_pairing_was_undone_from_its_one_receipt(
    ledger, late_payout
):
    """A person undid a line's link to a till's receipt of 99.80, which the next day's
    statement then paid in; the one receipt of 99.80 recorded since is the line's one
    candidate in its window, which a run links, as it does for any line with one candidate.
    A GOV.UK Pay payout of 99.80 settled 8 days before the line, a person's candidate only
    (late payouts are never linked by a run, nor do they stop one), changes nothing."""
    content = camt(entry("99.80", ref="B1", text="CARD TAKINGS"))
    batch_id = import_file(ledger, content, OFFICER, file_name="s.xml").batch_id
    wrong = govuk_pay(ledger, 9_980, YESTERDAY, "till-a", "card")
    (first,) = link_counted_twice(ledger, OFFICER)
    assert first.link.matched_payment_ids == (wrong,)
    unlink_line(ledger, batch_id, 1, OFFICER, "that bag was banked the next day")
    content = camt(entry("99.80", ref="B2", text="CARD TAKINGS"))
    next_day = import_file(ledger, content, OFFICER, file_name="s2.xml").batch_id
    (line,) = get_import(ledger, next_day)["lines"]
    assert line["matched_payment_ids"] == [wrong]
    if late_payout:
        captured_days_ago(ledger, "pay-late", 8)
    right = govuk_pay(ledger, 9_980, EARLIER, "till-b", "card")
    (linked,) = link_counted_twice(ledger, OFFICER)
    assert (linked.batch_id, linked.line) == (str(batch_id), 1)
    assert linked.link.matched_payment_ids == (right,)
    report = exceptions(ledger)
    assert report["unmatched_statement_lines"] == []
    assert len(report["unsettled_card_payments"]) == int(late_payout)


@pytest.mark.parametrize("late_payout", [False, True], ids=["alone", "with_a_late_payout"])
def test_a_split_payout_is_linked_though_a_line_whose_pairing_was_undone_has_a_late_payout(
    ledger, late_payout
):
    """A payout split over two lines (50.00 + 49.80) whose first line a run had linked to a
    till's receipt of 50.00, undone by a person: once yesterday's payout of 99.80 is recorded,
    a run links the split, as it does when one of a split's lines has a payout of 50.00
    settled 8 days before it (a person's candidate only)."""
    split = import_file(ledger, camt(*SPLIT_PAYOUT_LINES), OFFICER, file_name="s.xml")
    till = govuk_pay(ledger, 5_000, YESTERDAY, "till-a", "card")
    (first,) = link_counted_twice(ledger, OFFICER)
    assert (first.line, first.link.matched_payment_ids) == (1, (till,))
    unlink_line(ledger, split.batch_id, 1, OFFICER, "the till's bag is on the next statement")
    if late_payout:
        late = pay("card_payment_captured", "pay-late", amount=5_020, fee=20)
        day = TODAY - timedelta(days=8)
        late["resource"]["settlement_summary"] = {"captured_date": day.isoformat()}
        late["resource"]["created_date"] = f"{day}T10:00:00.000Z"
        send(ledger, late)
    send(ledger, pay("card_payment_captured", "pay-y", fee=20))
    links = link_counted_twice(ledger, OFFICER)
    assert [(link.line, link.link.rule) for link in links] == [
        (1, "card_payout"),
        (2, "card_payout_part"),
    ]
    assert links[0].link.settled_day == YESTERDAY.isoformat()
    assert exceptions(ledger)["unmatched_statement_lines"] == []


# A GOV.UK Pay payout of 99.80 that the bank split over two lines whose narratives differ,
# or whose booking days do: a run groups neither (SplitCandidate), a person is offered it.
LOOSE_SPLITS = {
    "narratives": (
        entry("50.00", ref="P1", text="GOVUK PAY 4471 1/2"),
        entry("49.80", ref="P2", text="GOVUK PAY 4471 2/2"),
    ),
    "days": (
        entry("50.00", day=YESTERDAY, ref="P1", text="GOVUK PAY"),
        entry("49.80", ref="P2", text="GOVUK PAY"),
    ),
}


@pytest.mark.parametrize("payment_first", [True, False], ids=["at_import", "by_a_run"])
@pytest.mark.parametrize("shape", sorted(LOOSE_SPLITS))
def test_a_payout_split_over_lines_of_different_narratives_or_days_is_offered(
    ledger, shape, payment_first
):
    """Yesterday's payout of 99.80 split over a line of 50.00 and one of 49.80 whose
    narratives, or booking days, differ: no run links them (lines grouped by a guess), both
    lines offer the split to a person, who chooses it on either; the lines are then linked
    as a split is, and unlinking the first undoes both."""
    if payment_first:
        send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    split = import_file(ledger, camt(*LOOSE_SPLITS[shape]), OFFICER, file_name="s.xml")
    if not payment_first:
        send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    assert link_counted_twice(ledger, OFFICER) == []
    (held,) = exceptions(ledger)["unsettled_card_payments"]
    lines = get_import(ledger, split.batch_id)["lines"]
    assert [line["outcome"] for line in lines] == ["recorded", "recorded"]
    offered = [
        [(c["rule"], c["settled_day"], c["payment_id"]) for c in line["candidates"]]
        for line in lines
    ]
    assert offered == [[("card_payout", YESTERDAY.isoformat(), held["payment_id"])]] * 2
    assert all("(lines 1, 2)" in line["candidates"][0]["matched"] for line in lines)
    rows = sorted(exceptions(ledger)["unmatched_statement_lines"], key=lambda row: row["line"])
    assert [row["candidates"] for row in rows] == [line["candidates"] for line in lines]
    for line in (1, 2):
        with pytest.raises(LineNeedsAChoice, match=held["payment_id"]):
            link_counted_twice(ledger, OFFICER, (split.batch_id, line))

    links = choose_link(ledger, SUPERVISOR, split.batch_id, 2, held["payment_id"], WHY)
    assert [(link.line, link.link.rule) for link in links] == [
        (1, "card_payout"),
        (2, "card_payout_part"),
    ]
    report = exceptions(ledger)
    assert report["unmatched_statement_lines"] == report["unsettled_card_payments"] == []
    undone = unlink_line(ledger, split.batch_id, 1, SUPERVISOR, "two payouts after all")
    assert [link.line for link in undone] == [1, 2]
    assert link_counted_twice(ledger, OFFICER) == []  # a person's guess, never a run's
    assert len(exceptions(ledger)["unsettled_card_payments"]) == 1


def test_lines_booked_too_far_apart_or_not_naming_a_payout_are_offered_no_split(ledger):
    """Parts booked more than LOOSE_SPLIT_DAYS apart, or a line that does not name the
    payout (a payer's transfer that happens to add up), are no split of it."""
    send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    content = camt(
        entry("50.00", day=TODAY - timedelta(days=6), ref="P1", text="GOVUK PAY 1/2"),
        entry("49.80", ref="P2", text="GOVUK PAY 2/2"),
        entry("60.00", ref="P3", text="GOVUK PAY"),
        entry("39.80", ref="P4", text="SMITH J RENT"),
    )
    batch_id = import_file(ledger, content, OFFICER, file_name="s.xml").batch_id
    lines = get_import(ledger, batch_id)["lines"]
    assert [line["candidates"] for line in lines] == [[]] * 4
    assert all(row["candidates"] == [] for row in exceptions(ledger)["unmatched_statement_lines"])


def test_a_split_offered_on_a_line_whose_pairing_was_undone_is_chosen_on_that_line(ledger):
    """Line 1 of a payout split over lines of different narratives, linked by a run to a
    till's 50.00 and undone by a person, then yesterday's payout of 99.80: the report offers
    the split on line 1 (its undone pairing is no run's candidate, so it may be a part), and
    a person chooses it there, as offered (not refused as if the undone pairing made line 1
    a receipt's line rather than a part)."""
    split = import_file(ledger, camt(*LOOSE_SPLITS["narratives"]), OFFICER, file_name="s.xml")
    till = govuk_pay(ledger, 5_000, YESTERDAY, "till-a", "card")
    (first,) = link_counted_twice(ledger, OFFICER)
    assert (first.line, first.link.matched_payment_ids) == (1, (till,))
    unlink_line(ledger, split.batch_id, 1, OFFICER, "line 1 is part of Pay's payout")
    send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    assert link_counted_twice(ledger, OFFICER) == []
    (held,) = exceptions(ledger)["unsettled_card_payments"]
    lines = get_import(ledger, split.batch_id)["lines"]
    offered = [[c["payment_id"] for c in line["candidates"]] for line in lines]
    assert offered == [[held["payment_id"], till], [held["payment_id"]]]
    links = choose_link(ledger, SUPERVISOR, split.batch_id, 1, held["payment_id"], WHY)
    assert [(link.line, link.link.rule) for link in links] == [
        (1, "card_payout"),
        (2, "card_payout_part"),
    ]
    report = exceptions(ledger)
    assert report["unmatched_statement_lines"] == report["unsettled_card_payments"] == []
    assert [r["payment_id"] for r in report["unmatched_receipts"]] == [till]


def _late_payout_chosen_undone_and_a_till_receipt(ledger) -> tuple[UUID, dict, str]:
    """A statement line of 99.80 a person chose the payout settled 8 days before it for,
    then undid; then a till's receipt of 99.80 in the line's window: the statement's batch
    id, the payout's candidate and the till's payment id."""
    captured_days_ago(ledger, "pay-late", 8)
    content = camt(entry("99.80", ref="P1", text="GOVUK PAY"))
    batch_id = import_file(ledger, content, OFFICER, file_name="s.xml").batch_id
    (line,) = get_import(ledger, batch_id)["lines"]
    (late,) = line["candidates"]
    choose_link(ledger, SUPERVISOR, batch_id, 1, late["payment_id"], WHY)
    unlink_line(ledger, batch_id, 1, SUPERVISOR, "the bank's advice names another payout")
    till = govuk_pay(ledger, 9_980, EARLIER, "till-b", "card")
    return batch_id, late, till


def test_a_late_payout_a_person_chose_and_undid_keeps_the_line_from_a_run(ledger):
    """A person chose for a line the payout settled 8 days before it, then undid it; a
    till's receipt of 99.80 recorded since in the line's window is no run's link by
    elimination: the undone pairing is still a candidate, so the line waits for a person
    with both, as it does when the undone pairing is in the window."""
    _, late, till = _late_payout_chosen_undone_and_a_till_receipt(ledger)
    assert link_counted_twice(ledger, OFFICER) == []
    (row,) = exceptions(ledger)["unmatched_statement_lines"]
    assert [c["payment_id"] for c in row["candidates"]] == [till, late["payment_id"]]


def test_a_persons_plain_link_after_a_late_payout_undone_does_not_link_by_elimination(ledger):
    """As above, but the person asks for the line alone to be linked by the rules
    (`reconcile link --batch ID --line N`, not a choice): the till's receipt is the rules'
    one candidate in the window only because the payout they undid is settled before it.
    Linking it would be elimination, a guess: the line needs a choice, naming both, and
    nothing is stored; a person then chooses either."""
    batch_id, late, till = _late_payout_chosen_undone_and_a_till_receipt(ledger)
    position = ledger.max_position()
    with pytest.raises(LineNeedsAChoice, match="reconcile choose") as refused:
        link_counted_twice(ledger, OFFICER, (batch_id, 1))
    assert till in str(refused.value) and late["payment_id"] in str(refused.value)
    assert ledger.max_position() == position, "nothing stored"
    (chosen,) = choose_link(ledger, SUPERVISOR, batch_id, 1, till, WHY)
    assert chosen.link.matched_payment_ids == (till,)


def test_a_statement_whose_only_waiting_line_is_a_payout_debit_offers_its_choices(ledger):
    """A debit of 60.00 naming the payout that two settlement days' refunds may pay, beside
    a credit a fund took by its reference: the debit is the statement's only line waiting
    for a person, and its import's view offers both days, as the exceptions report does
    (not nothing, as if only credit lines could wait)."""
    paid, refund_days = two_days_refunds(ledger)
    debit = entry("60.00", ref="P2", debit=True, family="ICDT", text="GOVUK PAY")
    content = camt(debit, entry("12.34", ref="B1", text=CT_REF))  # allocated: waits for no one
    batch_id = import_file(ledger, content, OFFICER, file_name="d.xml").batch_id
    lines = get_import(ledger, batch_id)["lines"]
    assert [(line["kind"], line["outcome"], line["status"]) for line in lines] == [
        ("payout_debit", "unmatched", None),
        ("receipt", "recorded", "allocated"),
    ]
    rows = exceptions(ledger)["unmatched_statement_lines"]
    # The bank's credit a fund took by its payer's reference is no exception (its view
    # shows it, allocated, with no choices).
    assert [(row["kind"], row["line"]) for row in rows] == [("statement_debit", 1)]
    row = rows[0]
    days = [day.isoformat() for day in reversed(refund_days)]
    assert [(c["settled_day"], c["payment_id"]) for c in row["candidates"]] == list(
        zip(days, reversed(paid), strict=True)
    )
    assert [line["candidates"] for line in lines] == [row["candidates"], []]
    (late,) = choose_link(ledger, OFFICER, batch_id, 1, paid[1], WHY)
    assert (late.reversed_payment_id, late.link.settled_day) == (None, days[0])
    assert exceptions(ledger)["unmatched_statement_lines"] == []
    assert [line["candidates"] for line in get_import(ledger, batch_id)["lines"]] == [[], []]


@pytest.mark.parametrize("payment_first", [True, False], ids=["at_import", "by_a_run"])
def test_a_payout_split_two_ways_on_one_line_is_chosen_on_that_line(ledger, payment_first):
    """Yesterday's payout of 99.80 and lines of 50.00, 49.80 and 49.80 of different
    narratives: line 1 may be split with line 2 or with line 3, both splits paying in the
    same payout's receipt. Line 1 offers both, each named by its other line's own receipt
    (what tells them apart); lines 2 and 3 offer theirs by the payout's receipt. A person
    on line 1 chooses the split with line 3 by line 3's receipt: lines 1 and 3 are linked,
    line 2 stays its own receipt; naming the payout's receipt on line 1 is refused."""
    if payment_first:
        send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    content = camt(
        entry("50.00", ref="P1", text="GOVUK PAY 4471 1/2"),
        entry("49.80", ref="P2", text="GOVUK PAY 4471 2/2"),
        entry("49.80", ref="P3", text="GOVUK PAY 9902"),
    )
    batch_id = import_file(ledger, content, OFFICER, file_name="s.xml").batch_id
    if not payment_first:
        send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    assert link_counted_twice(ledger, OFFICER) == []
    (held,) = exceptions(ledger)["unsettled_card_payments"]
    payout = held["payment_id"]
    lines = get_import(ledger, batch_id)["lines"]
    own = [line["payment_id"] for line in lines]
    offered = [[(c["matched"], c["payment_id"]) for c in line["candidates"]] for line in lines]
    split = f"the govuk_pay payout of {YESTERDAY}"
    assert offered == [
        [(f"{split} (lines 1, 2)", own[1]), (f"{split} (lines 1, 3)", own[2])],
        [(f"{split} (lines 1, 2)", payout)],
        [(f"{split} (lines 1, 3)", payout)],
    ]
    rows = sorted(exceptions(ledger)["unmatched_statement_lines"], key=lambda row: row["line"])
    assert [row["candidates"] for row in rows] == [line["candidates"] for line in lines]
    assert f"receipt {own[2]}, its other line's own" in exceptions_csv(exceptions(ledger))
    with pytest.raises(NotACandidate, match=f"name the receipt.*{own[1]}.*{own[2]}"):
        choose_link(ledger, SUPERVISOR, batch_id, 1, payout, WHY)

    links = choose_link(ledger, SUPERVISOR, batch_id, 1, own[2], "Pay's report: 9902")
    assert [(link.line, link.link.rule) for link in links] == [
        (1, "card_payout"),
        (3, "card_payout_part"),
    ]
    assert "(lines 1, 3)" in links[0].link.matched
    report = exceptions(ledger)
    assert report["unsettled_card_payments"] == []
    assert [(row["line"], row["candidates"]) for row in report["unmatched_statement_lines"]] == [
        (2, [])
    ]


def test_a_payout_whose_receipts_the_other_days_payout_pays_in_too_is_chosen_by_its_key(
    ledger,
):
    """A payment of 100.00 (fee 0.20) settled three days ago, refunded 60.00 today, and a
    payment of 160.00 (fee 0.20) settled today: both days' payouts are 99.80, and the refund
    puts the first payment in today's payout too. The earlier day's payout pays in no
    receipt of its own (payment_id None), so no receipt chooses it (the old refusal, "none
    of them its own to name"): it is chosen by its candidate key."""
    earlier = {"captured_date": EARLIER.isoformat()}
    created = f"{EARLIER}T10:00:00.000Z"
    first = pay(
        "card_payment_captured", "pay-a", fee=20, settlement_summary=earlier, created_date=created
    )
    send(ledger, first)
    (refunded,) = [row["payment_id"] for row in exceptions(ledger)["unsettled_card_payments"]]
    ledger.refund(UUID(refunded), 6_000, SUPERVISOR, "refunded at Pay")
    today = {"captured_date": TODAY.isoformat()}
    send(
        ledger,
        pay("card_payment_captured", "pay-b", amount=16_000, fee=20, settlement_summary=today),
    )
    content = camt(entry("99.80", ref="P1", text="GOVUK PAY"))
    batch_id = import_file(ledger, content, OFFICER, file_name="s.xml").batch_id
    (line,) = get_import(ledger, batch_id)["lines"]
    offered = [(c["settled_day"], c["payment_id"]) for c in line["candidates"]]
    assert offered[1] == (EARLIER.isoformat(), None)
    assert offered[0][0] == TODAY.isoformat() and offered[0][1] not in (None, refunded)
    assert "none of them its own: name its candidate key" in exceptions_csv(exceptions(ledger))
    with pytest.raises(NotACandidate, match="more than one"):
        choose_link(ledger, OFFICER, batch_id, 1, refunded, WHY)
    key = line["candidates"][1]["candidate"]
    (late,) = choose_link(ledger, OFFICER, batch_id, 1, None, WHY, candidate=key)
    assert (late.link.rule, late.link.settled_day) == ("card_payout", EARLIER.isoformat())
    left = {row["date"] for row in exceptions(ledger)["unsettled_card_payments"]}
    assert left == {TODAY.isoformat()}
