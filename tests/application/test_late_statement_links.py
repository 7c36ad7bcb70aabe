"""A statement imported before the channel's own record of the same money, linked afterwards
(application.reconciliation.link_counted_twice), on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from datetime import timedelta
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from application.imports import get_import, import_file, reverse_import
from application.ledger import CommandContext
from application.reconciliation import (
    card_money_day,
    choose_link,
    exceptions,
    link_after_recording,
    link_counted_twice,
    read_books,
)
from domain.errors import LedgerError, NotACandidate
from domain.sample_chart import SAMPLE_FUNDS
from income_ledger.bootstrap import build_ledger, init_database
from income_ledger.settings import Settings
from tests.application.test_card_payouts import pay, send
from tests.application.test_concurrency import _race
from tests.application.test_imports import allpay_file, allpay_line
from tests.application.test_statement_imports import TODAY, YESTERDAY, camt, entry, govuk_pay
from tests.conftest import reset_postgres
from tests.domain.helpers import CT_REF

OFFICER = CommandContext("officer:recon")
ALLPAY_PAYOUT = entry("7.00", ref="B1", text="ALLPAY LTD")
CARD_PAYOUT = entry("11.50", ref="B2", text="CARD TAKINGS")
PAYERS_OWN = entry(
    "12.34", ref="B3", text=CT_REF
)  # a payer's transfer with a council tax reference
# A GOV.UK Pay payout of 100.00 less a 0.20 fee, split by the bank over two lines.
PAY_PARTS = (entry("50.00", ref="B4", text="GOVUK PAY"), entry("49.80", ref="B5", text="GOVUK PAY"))
WITHOUT_GOVUK_PAY_PENCE = 700 + 1_150 + 1_234
REAL_PENCE = WITHOUT_GOVUK_PAY_PENCE + 10_000


def allpay(ledger) -> UUID:
    content = allpay_file(allpay_line(CT_REF, "3.00"), allpay_line(CT_REF, "4.00"))
    return import_file(ledger, content, OFFICER, file_name="be.txt").batch_id


def card_day(ledger) -> list[str]:
    return [govuk_pay(ledger, pence, YESTERDAY, f"c-{pence}", "card") for pence in (500, 650)]


def govuk_pay_payment(ledger) -> None:
    send(ledger, pay("card_payment_captured", "pay-split", fee=20))


def statement(ledger) -> UUID:
    content = camt(ALLPAY_PAYOUT, CARD_PAYOUT, PAYERS_OWN)
    return import_file(ledger, content, OFFICER, file_name="s.xml").batch_id


def statement_with_split_payout(ledger) -> UUID:
    content = camt(ALLPAY_PAYOUT, CARD_PAYOUT, PAYERS_OWN, *PAY_PARTS)
    return import_file(ledger, content, OFFICER, file_name="s.xml").batch_id


def counted_pence(ledger) -> int:
    """Money received less money reversed, from the events: each penny once."""
    signs = {"Received": 1, "Reversed": -1, "ReversalUndone": 1}
    total = 0
    for _, event in ledger.read_events():
        sign = signs.get(type(event).__name__) if hasattr(event, "channel") else None
        if sign is not None:
            total += sign * event.amount_pence
    return total


def test_an_allpay_file_after_the_statement_is_linked_and_the_line_receipt_reversed(ledger):
    batch_id = statement(ledger)
    lines = get_import(ledger, batch_id)["lines"]
    assert [line["status"] for line in lines] == ["suspense", "suspense", "allocated"]
    allpay_batch = allpay(ledger)
    assert counted_pence(ledger) == 700 + 1_150 + 1_234 + 700  # counted twice until linked
    (late,) = link_counted_twice(ledger, OFFICER)
    assert (late.line, late.link.rule) == (1, "import_total")
    assert late.link.matched_batch_id == str(allpay_batch)
    assert counted_pence(ledger) == 700 + 1_150 + 1_234
    reversed_receipt = ledger.get_payment(UUID(late.reversed_payment_id))
    assert reversed_receipt["status"] == "reversed"
    reversal = ledger.payment_history(UUID(late.reversed_payment_id))[-1]
    assert reversal["details"]["kind"] == "counted_twice"
    assert reversal["reason"] == (
        f"counted twice: s.xml line 1 pays in the total of import {allpay_batch} "
        "(import_total), recorded after the statement"
    )
    for payment_id in late.link.matched_payment_ids:
        note = ledger.payment_history(UUID(payment_id))[-1]["details"]["text"]
        assert note.startswith("paid in by bank statement s.xml line 1 (import_total")
    report = exceptions(ledger)
    # (line 3, the payer's own transfer a fund took, is no exception)
    assert sorted(row["line"] for row in report["unmatched_statement_lines"]) == [2]
    assert report["unmatched_receipts"] == []
    assert link_counted_twice(ledger, OFFICER) == []  # nothing more to link, nothing saved


def test_a_days_card_payments_after_the_statement_are_linked(ledger):
    statement(ledger)
    paid = card_day(ledger)
    (late,) = link_counted_twice(ledger, OFFICER)
    assert (late.line, late.link.rule) == (2, "channel_day_total")
    assert sorted(late.link.matched_payment_ids) == sorted(paid)
    assert sorted(row["line"] for row in exceptions(ledger)["unmatched_statement_lines"]) == [1]


def test_a_line_allocated_by_its_reference_or_by_an_officer_is_left_to_a_person(ledger):
    import_file(ledger, camt(entry("7.00", ref="B1", text=CT_REF)), OFFICER, file_name="s.xml")
    allpay(ledger)
    assert link_counted_twice(ledger, OFFICER) == []
    report = exceptions(ledger)
    # The payer's own transfer is theirs: no exception. The Allpay receipts still wait.
    assert report["unmatched_statement_lines"] == []
    assert len(report["unmatched_receipts"]) == 2


def test_a_statement_after_the_channel_file_still_links_at_import(ledger):
    allpay(ledger)
    batch_id = statement(ledger)
    assert get_import(ledger, batch_id)["lines"][0]["outcome"] == "reconciled"
    assert link_counted_twice(ledger, OFFICER) == []


def _link_in_a_process(barrier, url: str) -> str:
    ledger = build_ledger(Settings(database_url=url))
    try:
        barrier.wait()
        return f"linked {len(link_counted_twice(ledger, CommandContext('officer:race')))}"
    except LedgerError as error:
        return error.code
    finally:
        ledger.close()


def test_two_linking_runs_at_once_link_each_line_once(ledger, settings):
    statement(ledger)
    allpay(ledger)
    card_day(ledger)
    results = Counter(_race(_link_in_a_process, [(settings.database_url,)] * 2))
    linked = [e for _, e in ledger.read_events() if type(e).__name__ == "LineLinked"]
    assert sorted(e.line for e in linked) == [1, 2], results
    assert sum(int(r.split()[1]) for r in results.elements() if r.startswith("linked")) == 2
    assert counted_pence(ledger) == WITHOUT_GOVUK_PAY_PENCE


def _fresh_ledger(database_url: str, example: int, tmp_path):
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / f'example{example}.db'}"
    else:
        reset_postgres(database_url)
        url = database_url
    settings = Settings(database_url=url)
    init_database(settings)
    ledger = build_ledger(settings)
    for fund in SAMPLE_FUNDS:
        ledger.add_fund(fund, CommandContext("test:setup"))
    return ledger


EXAMPLES = itertools.count()
ARRIVALS = {
    "statement": statement_with_split_payout,
    "allpay": allpay,
    "cards": card_day,
    "govuk_pay": govuk_pay_payment,
}


@hypothesis_settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    order=st.permutations(sorted(ARRIVALS)),
    link_after=st.lists(st.booleans(), min_size=4, max_size=4),
)
def test_whatever_order_the_files_arrive_in_each_penny_is_counted_once(
    database_url, tmp_path, order, link_after
):
    """The statement, the Allpay file, the day's card payments and a GOV.UK Pay payment
    whose payout the bank split over two lines, in any order, linking after any of them
    (and always at the end of the day): the money counted is the money that arrived, the
    GOV.UK Pay money is settled, and no exception is left (the payer's own transfer, a
    fund took it by its reference, is none)."""
    ledger = _fresh_ledger(database_url, next(EXAMPLES), tmp_path)
    try:
        for name, link in zip(order, link_after, strict=True):
            ARRIVALS[name](ledger)
            if link:
                link_counted_twice(ledger, OFFICER)
        link_counted_twice(ledger, OFFICER)
        assert counted_pence(ledger) == REAL_PENCE
        report = exceptions(ledger)
        assert report["unmatched_statement_lines"] == []
        assert report["unmatched_receipts"] == report["unsettled_card_payments"] == []
    finally:
        ledger.close()


# A payer's own 70.00 transfer for a parking ticket (no fund knows the reference: suspense),
# and a 70.00 GOV.UK Pay payment of someone else the same week, its fee 0.20.
PAYERS_TRANSFER = entry("70.00", ref="B7", text="PARKING TICKET PN123")
CARD_70 = pay("card_payment_captured", "pay-70", amount=7_000, fee=20)


def test_a_payers_transfer_is_not_taken_for_a_card_payment_of_the_same_amount(ledger):
    statement_id = import_file(ledger, camt(PAYERS_TRANSFER), OFFICER, file_name="s.xml").batch_id
    send(ledger, CARD_70)
    # Card money in clearing is paid in by its payout only (rule 4), never by amount alone.
    assert link_counted_twice(ledger, OFFICER) == []
    (line,) = get_import(ledger, statement_id)["lines"]
    assert ledger.get_payment(UUID(line["payment_id"]))["status"] == "suspense"
    # The day's real payout (70.00 less the fee) then pays the card payment in.
    payout = camt(entry("69.80", ref="B8", text="GOVUK PAY"))
    outcome = import_file(ledger, payout, OFFICER, file_name="s2.xml")
    (paid_in,) = get_import(ledger, outcome.batch_id)["lines"]
    assert (paid_in["outcome"], paid_in["rule"]) == ("reconciled", "card_payout")
    report = exceptions(ledger)
    assert [row["amount_pence"] for row in report["unmatched_statement_lines"]] == [7_000]
    assert report["unsettled_card_payments"] == []
    assert counted_pence(ledger) == 7_000 + 7_000


def test_a_statement_after_a_card_payment_of_the_same_amount_records_the_transfer(ledger):
    send(ledger, CARD_70)
    outcome = import_file(ledger, camt(PAYERS_TRANSFER), OFFICER, file_name="s.xml")
    (line,) = get_import(ledger, outcome.batch_id)["lines"]
    assert line["outcome"] == "recorded"
    (unsettled,) = exceptions(ledger)["unsettled_card_payments"]
    assert unsettled["amount_pence"] == 6_980


SUPERVISOR = CommandContext("supervisor:recon")


def _paid_in_then_unpaid(ledger) -> str:
    """A card receipt paid in by a statement that a supervisor then reversed (the wrong
    account's file): the receipt keeps that statement's "paid in" note but is unlinked."""
    paid = govuk_pay(ledger, 2_500, YESTERDAY, "pay-till", "card")
    # (with a line of its own: a statement whose lines all paid in others' receipts made
    # nothing to reverse)
    content = camt(entry("25.00", ref="W1"), entry("1.00", ref="W2", text="NOBODY"))
    wrong = import_file(ledger, content, OFFICER, file_name="wrong.xml")
    if get_import(ledger, wrong.batch_id)["lines"][0]["outcome"] != "reconciled":
        # Another statement's line waiting may pay the receipt in too: a person chose.
        choose_link(ledger, OFFICER, wrong.batch_id, 1, paid, "the remittance names it")
    reverse_import(ledger, wrong.batch_id, SUPERVISOR, "another account's statement")
    return paid


def test_a_receipt_paid_in_by_a_reversed_statement_is_linked_late_again(ledger):
    statement_id = import_file(
        ledger, camt(entry("25.00", ref="T1", text="CARD TAKINGS")), OFFICER, file_name="s.xml"
    ).batch_id
    paid = _paid_in_then_unpaid(ledger)
    (late,) = link_counted_twice(ledger, OFFICER)
    assert (late.batch_id, late.link.matched_payment_ids) == (str(statement_id), (paid,))
    history = ledger.payment_history(UUID(paid))
    notes = [entry["details"]["text"] for entry in history if entry["action"] == "Noted"]
    assert [note.split(" (")[0] for note in notes] == [
        "paid in by bank statement wrong.xml line 1",
        # (reversing the statement undid its link)
        "no longer paid in by bank statement wrong.xml line 1",
        "paid in by bank statement s.xml line 1",
    ]
    assert link_counted_twice(ledger, OFFICER) == []


def test_a_receipt_paid_in_by_a_reversed_statement_is_linked_by_the_next_import(ledger):
    paid = _paid_in_then_unpaid(ledger)
    outcome = import_file(ledger, camt(entry("25.00", ref="R1")), OFFICER, file_name="right.xml")
    (line,) = get_import(ledger, outcome.batch_id)["lines"]
    assert (line["outcome"], line["matched_payment_ids"]) == ("reconciled", [paid])


def test_a_reversed_statements_late_links_pay_nothing_in(ledger):
    statement_id = statement(ledger)
    allpay_batch = allpay(ledger)
    (late,) = link_counted_twice(ledger, OFFICER)
    assert late.link.matched_batch_id == str(allpay_batch)
    reverse_import(ledger, statement_id, SUPERVISOR, "another account's statement")
    # The Allpay money is waiting for its statement line again, and the right statement's
    # line pays it in.
    report = exceptions(ledger)
    assert sorted(row["amount_pence"] for row in report["unmatched_receipts"]) == [300, 400]
    right = import_file(
        ledger, camt(entry("7.00", ref="R7", text="ALLPAY LTD")), OFFICER, file_name="right.xml"
    )
    (line,) = get_import(ledger, right.batch_id)["lines"]
    assert (line["rule"], line["matched_batch_id"]) == ("import_total", str(allpay_batch))
    assert exceptions(ledger)["unmatched_receipts"] == []


def test_a_transfer_whose_reference_is_a_payers_account_is_never_linked_late(ledger):
    # A council-tax account number with one digit wrong: a payer's transfer, in suspense.
    typo = entry("70.00", ref="B9", text=CT_REF[:-1] + "0")
    outcome = import_file(ledger, camt(typo), OFFICER, file_name="s.xml")
    (line,) = get_import(ledger, outcome.batch_id)["lines"]
    receipt = ledger.get_payment(UUID(line["payment_id"]))
    assert receipt["suspense_reason"] == "invalid_check_digit"
    govuk_pay(ledger, 7_000, YESTERDAY, "till-70", "card")  # someone's card at a till
    assert link_counted_twice(ledger, OFFICER) == []
    report = exceptions(ledger)
    assert [row["amount_pence"] for row in report["unmatched_statement_lines"]] == [7_000]
    assert [row["amount_pence"] for row in report["unmatched_receipts"]] == [7_000]


# ---- the run after new money is recorded (link_after_recording) ----------------------------


def test_the_run_after_an_import_links_what_its_receipts_showed_counted_twice(ledger):
    statement(ledger)
    allpay_content = allpay_file(allpay_line(CT_REF, "3.00"), allpay_line(CT_REF, "4.00"))
    outcome = import_file(ledger, allpay_content, OFFICER, file_name="be.txt")
    assert outcome.link_from is not None and outcome.link_from <= TODAY
    (late,) = link_after_recording(ledger, outcome.link_from)
    assert (late.line, late.link.rule) == (1, "import_total")
    reversal = ledger.payment_history(UUID(late.reversed_payment_id))[-1]
    assert reversal["actor"] == "system:auto-link"
    assert counted_pence(ledger) == WITHOUT_GOVUK_PAY_PENCE
    assert link_after_recording(ledger, outcome.link_from) == []  # idempotent
    assert link_counted_twice(ledger, OFFICER) == []
    assert link_after_recording(ledger, None) == []


def test_a_statement_import_asks_for_no_run(ledger):
    outcome = import_file(ledger, camt(ALLPAY_PAYOUT), OFFICER, file_name="s.xml")
    assert outcome.recorded and outcome.link_from is None


def test_the_run_tries_only_lines_booked_from_the_day_of_the_new_money(ledger):
    statement(ledger)  # booked today
    allpay(ledger)
    assert link_after_recording(ledger, TODAY + timedelta(days=1)) == []
    (late,) = link_counted_twice(ledger, OFFICER)  # the whole history: the line is found
    assert late.line == 1


def test_a_failed_run_is_logged_and_raises_nothing(ledger, monkeypatch, caplog):
    statement(ledger)
    allpay(ledger)

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr("application.reconciliation._link_once", broken)
    with caplog.at_level(logging.ERROR, logger="application.reconciliation"):
        assert link_after_recording(ledger, TODAY - timedelta(days=1)) == []
    assert "run `income-ledger reconcile link`" in caplog.text
    monkeypatch.undo()
    (late,) = link_counted_twice(ledger, OFFICER)  # the manual command still links it
    assert late.line == 1


def _link_after_in_a_process(barrier, url: str) -> str:
    ledger = build_ledger(Settings(database_url=url))
    try:
        barrier.wait()
        return f"linked {len(link_after_recording(ledger, YESTERDAY - timedelta(days=5)))}"
    finally:
        ledger.close()


def test_two_runs_after_recording_at_once_link_each_line_once(ledger, settings):
    statement(ledger)
    allpay(ledger)
    card_day(ledger)
    results = Counter(_race(_link_after_in_a_process, [(settings.database_url,)] * 2))
    linked = [e for _, e in ledger.read_events() if type(e).__name__ == "LineLinked"]
    assert sorted(e.line for e in linked) == [1, 2], results
    assert counted_pence(ledger) == WITHOUT_GOVUK_PAY_PENCE


def test_books_read_from_a_position_hold_an_earlier_card_payments_clearing_whole(ledger):
    send(ledger, pay("card_payment_captured", "pay-old", fee=20))
    position = ledger.max_position()
    refund = pay("card_payment_refunded", "pay-old", refund_summary={"amount_submitted": 1_000})
    send(ledger, refund)
    whole, recent = read_books(ledger), read_books(ledger, position)
    assert recent.receipts == {}
    assert recent.clearing == whole.clearing and len(whole.clearing) == 1
    (payment_id,) = whole.clearing
    assert card_money_day(ledger, UUID(payment_id)) == YESTERDAY


def test_the_position_before_a_moment_is_found_by_recording_time(ledger):
    from application.reconciliation import _position_before

    statement(ledger)
    events = [(position, event.timestamp) for position, event in ledger.read_events()]
    later = events[-1][1] + timedelta(seconds=1)
    for _, moment in [*events[:: max(1, len(events) // 8)], (None, later)]:
        found = _position_before(ledger, moment)
        assert all((at < moment) == (position <= found) for position, at in events), moment


def test_only_a_line_in_suspense_or_a_kept_debit_makes_a_run_read_the_books(ledger):
    from application.reconciliation import _open_lines_from

    import_file(ledger, camt(PAYERS_OWN), OFFICER, file_name="own.xml")  # a fund took it
    assert not _open_lines_from(ledger, 0, TODAY)
    import_file(ledger, camt(ALLPAY_PAYOUT), OFFICER, file_name="s.xml")  # in suspense
    assert _open_lines_from(ledger, 0, TODAY)
    assert not _open_lines_from(ledger, 0, TODAY + timedelta(days=1))  # booked before


def test_two_people_at_once_link_one_card_payout_to_one_line_only(ledger, monkeypatch):
    """Two lines of the same payout amount (yesterday's and today's) wait for a person: the
    one payout is a candidate of both, so no run guesses which. Two people choose it, one
    for each line, and both read the books before either saves: the one who saves second
    finds the payout settled, is refused, and nothing is linked for them."""
    payout = "99.80"  # GOV.UK Pay's 100.00 less its 0.20 fee
    first = import_file(
        ledger,
        camt(entry(payout, ref="P1", text="GOVUK PAY", day=YESTERDAY)),
        OFFICER,
        file_name="s1.xml",
    ).batch_id
    second = import_file(
        ledger,
        camt(entry(payout, ref="P2", text="GOVUK PAY", day=TODAY)),
        OFFICER,
        file_name="s2.xml",
    ).batch_id
    send(ledger, pay("card_payment_captured", "pay-race", fee=20))
    assert link_counted_twice(ledger, OFFICER) == []
    (waiting,) = get_import(ledger, second)["lines"]
    ((paid,),) = [c["payment_ids"] for c in waiting["candidates"]]
    real_read = read_books
    other_choice: list = []

    def read_then_let_the_other_choose(ledger_, after=0, **options):
        books = real_read(ledger_, after, **options)
        if not other_choice:
            monkeypatch.setattr("application.reconciliation.read_books", real_read)
            other_choice.extend(choose_link(ledger_, OFFICER, first, 1, paid, "the slip"))
        return books

    monkeypatch.setattr("application.reconciliation.read_books", read_then_let_the_other_choose)
    with pytest.raises(NotACandidate):
        choose_link(ledger, OFFICER, second, 1, paid, "the bank's advice")
    (late,) = other_choice
    assert (late.batch_id, late.link.rule) == (str(first), "card_payout")
    late_links = [line["late_link"] for line in get_import(ledger, second)["lines"]]
    assert late_links == [None]
    assert counted_pence(ledger) == 10_000 + 9_980  # the payment and the second line, once
    unmatched = exceptions(ledger)["unmatched_statement_lines"]
    assert [(row["batch_id"], row["line"]) for row in unmatched] == [(str(second), 1)]
    assert unmatched[0]["candidates"] == []


@pytest.mark.parametrize(
    ("amounts", "rule"), [(("3.00", "4.00"), "import_total"), (("7.00",), "one_receipt")]
)
def test_reversing_a_file_a_statement_line_paid_in_counts_the_line_again(ledger, amounts, rule):
    statement_id = statement(ledger)
    content = allpay_file(*(allpay_line(CT_REF, amount) for amount in amounts))
    allpay_batch = import_file(ledger, content, OFFICER, file_name="be.txt").batch_id
    (late,) = link_counted_twice(ledger, OFFICER)
    assert (late.line, late.link.rule) == (1, rule)
    reverse_import(ledger, allpay_batch, SUPERVISOR, "the wrong day's file")
    # The bank's 7.00 is the statement line's own receipt again, counted once.
    assert counted_pence(ledger) == WITHOUT_GOVUK_PAY_PENCE
    (line, *_) = get_import(ledger, statement_id)["lines"]
    assert (line["late_link"], line["status"]) == (None, "suspense")
    restored = ledger.payment_history(UUID(late.reversed_payment_id))[-1]
    assert restored["action"] == "ReversalUndone"
    assert (
        f"import {allpay_batch} (be.txt), which they paid in, was reversed" in (restored["reason"])
    )
    report = exceptions(ledger)
    assert sorted(row["line"] for row in report["unmatched_statement_lines"]) == [1, 2]
    assert report["unmatched_receipts"] == []
    assert link_counted_twice(ledger, OFFICER) == []


def test_a_file_a_statement_paid_in_at_its_import_is_not_reversed(ledger):
    allpay_batch = allpay(ledger)
    statement_id = statement(ledger)
    before = counted_pence(ledger)
    with pytest.raises(
        LedgerError, match=f"line\\(s\\) 1 of statement s.xml \\(import {statement_id}"
    ):
        reverse_import(ledger, allpay_batch, SUPERVISOR, "the wrong day's file")
    assert counted_pence(ledger) == before == WITHOUT_GOVUK_PAY_PENCE
    assert get_import(ledger, allpay_batch)["reversed_by"] is None
