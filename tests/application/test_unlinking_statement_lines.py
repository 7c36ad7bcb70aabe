"""Undoing a wrong late link (application.reconciliation.unlink_line) and reversing a
statement whose lines were linked (application.imports.reverse_import), on SQLite and
PostgreSQL: each penny is counted once, in the events, the read model and the exceptions
report, and the audit chain verifies."""

from __future__ import annotations

import json
from uuid import UUID, uuid4

import pytest
from sqlalchemy import text

from application.imports import get_import, import_file, reverse_import
from application.ledger import CommandContext
from application.reconciliation import choose_link, exceptions, link_counted_twice, unlink_line
from domain.errors import (
    ImportBatchNotFound,
    ImportLineNotFound,
    LedgerError,
    LineNotAwaitingLink,
    LineNotLinked,
    ReasonRequired,
)
from income_ledger.bootstrap import build_ledger, build_projection, event_source
from income_ledger.settings import Settings
from projections.maintenance import verify
from tests.application.test_card_payouts import balances, pay, send
from tests.application.test_concurrency import _race
from tests.application.test_imports import allpay_file, allpay_line
from tests.application.test_late_statement_links import (
    ALLPAY_PAYOUT,
    CARD_PAYOUT,
    OFFICER,
    SUPERVISOR,
    WITHOUT_GOVUK_PAY_PENCE,
    allpay,
    card_day,
    counted_pence,
    govuk_pay_payment,
    statement,
    statement_with_split_payout,
)
from tests.application.test_statement_imports import camt, entry
from tests.conftest import cli_invoker
from tests.domain.helpers import CT_REF

# The statement's lines (statement()): 1 the Allpay payout (7.00), 2 a card day (11.50),
# 3 a payer's own transfer to a council-tax account (12.34, allocated by its reference).
LINE_PENCE = {1: 700, 2: 1_150, 3: 1_234}
ALLPAY_PENCE = 300 + 400


@pytest.fixture
def projection(ledger, settings):
    projection = build_projection(settings, ledger, page_size=50)
    yield projection
    projection.engine.dispose()


def read_model(projection) -> dict[str, int]:
    """The read model's figures a person reads: suspense, CT's balance, reversals."""
    projection.catch_up()
    with projection.engine.connect() as connection:
        rows = connection.execute(text("SELECT account, balance_pence FROM account_balances")).all()
        accounts = {row.account: row.balance_pence for row in rows}
        fund = connection.execute(
            text("SELECT balance_pence FROM fund_balances WHERE fund_code = 'CT'")
        ).scalar()
        suspense_items = connection.execute(
            text("SELECT coalesce(sum(unallocated_pence), 0) FROM payments")
        ).scalar()
        # the suspense ageing report's open items
        ageing = connection.execute(
            text("SELECT coalesce(sum(amount_pence), 0) FROM suspense_items")
        ).scalar()
        takings = connection.execute(
            text(
                "SELECT coalesce(sum(reversals_count), 0), coalesce(sum(reversals_pence), 0) "
                "FROM daily_takings"
            )
        ).one()
    return {
        "suspense": -accounts.get("suspense", 0),
        "suspense_items": int(suspense_items),
        "ageing": int(ageing),
        "ct": int(fund or 0),
        "reversals": -sum(p for a, p in accounts.items() if a.startswith("reversals:")),
        "reversals_count": int(takings[0]),
        "reversals_taken": int(takings[1]),
    }


def audit_verifies(monkeypatch, database_url: str, ledger) -> None:
    cli = cli_invoker(monkeypatch, database_url, actor="auditor:recon")
    cli("audit", "chain")
    report = json.loads(cli("audit", "verify", "--json").stdout)
    assert report["ok"] and report["events_checked"] == ledger.max_position()


def line_receipt(ledger, batch_id: UUID, line: int) -> dict:
    entry_ = next(e for e in get_import(ledger, batch_id)["lines"] if e["line"] == line)
    return ledger.get_payment(UUID(entry_["payment_id"]))


def test_an_undone_link_counts_the_line_again_and_no_run_makes_it_again(
    ledger, projection, monkeypatch, database_url
):
    statement_id = statement(ledger)
    allpay_batch = allpay(ledger)
    before = read_model(projection)
    (late,) = link_counted_twice(ledger, OFFICER)
    assert late.line == 1 and late.link.matched_batch_id == str(allpay_batch)
    linked = read_model(projection)
    assert linked["suspense"] == before["suspense"] - LINE_PENCE[1]
    assert (linked["reversals"], linked["reversals_count"]) == (700, 1)

    (undone,) = unlink_line(ledger, statement_id, 1, OFFICER, "the Allpay money came on line 9")
    assert undone.restored_payment_id == late.reversed_payment_id
    assert set(undone.link.matched_payment_ids) == set(late.link.matched_payment_ids)
    # The line's money is counted again, once: its own receipt is back in suspense.
    receipt = ledger.get_payment(UUID(late.reversed_payment_id))
    assert (receipt["status"], receipt["unallocated_pence"], receipt["reversed_pence"]) == (
        "suspense",
        700,
        0,
    )
    history = ledger.payment_history(UUID(late.reversed_payment_id))
    assert [h["action"] for h in history[-2:]] == ["Reversed", "ReversalUndone"]
    assert history[-1]["reason"] == (
        f"link undone: s.xml line 1 does not pay in the total of import {allpay_batch} "
        "(the Allpay money came on line 9)"
    )
    for payment_id in late.link.matched_payment_ids:
        note = ledger.payment_history(UUID(payment_id))[-1]["details"]["text"]
        assert note == (
            "no longer paid in by bank statement s.xml line 1 "
            "(link undone: the Allpay money came on line 9)"
        )
    assert counted_pence(ledger) == sum(LINE_PENCE.values()) + ALLPAY_PENCE
    report = exceptions(ledger)
    # (line 3, the payer's own transfer a fund took, is no exception)
    assert sorted(row["line"] for row in report["unmatched_statement_lines"]) == [1, 2]
    assert sorted(row["amount_pence"] for row in report["unmatched_receipts"]) == [300, 400]
    # The read model agrees: as before the link, with the reversal and its undoing kept.
    after = read_model(projection)
    assert after == before | {"reversals_count": 0}
    assert after["suspense"] == after["suspense_items"] == after["ageing"] == 700 + 1_150
    assert verify(projection.engine, event_source(ledger)).ok

    (shown,) = [e for e in get_import(ledger, statement_id)["lines"] if e["line"] == 1]
    assert shown["late_link"] is None
    assert [undone["matched_batch_id"] for undone in shown["undone_links"]] == [str(allpay_batch)]

    # The next run does not make the rejected pairing again; nothing is saved.
    position = ledger.max_position()
    assert link_counted_twice(ledger, OFFICER) == []
    assert ledger.max_position() == position
    audit_verifies(monkeypatch, database_url, ledger)
    cli = cli_invoker(monkeypatch, database_url, actor="auditor:recon")
    trace = json.loads(cli("audit", "trace", late.reversed_payment_id, "--json").stdout)
    # The trace's postings agree with the receipt's state (else the command fails).
    assert [(w["place"], w["amount_pence"]) for w in trace["now"]] == [("suspense", 700)]


def test_an_unlinked_line_is_linked_to_other_receipts_and_counted_once(ledger, projection):
    statement_id = statement(ledger)
    allpay(ledger)
    link_counted_twice(ledger, OFFICER)
    unlink_line(ledger, statement_id, 1, OFFICER, "not this file")
    # Another 7.00 Allpay file arrives: the line may pay in either file (the one undone
    # included), so no run links it by elimination; a person chooses the new one.
    other = import_file(
        ledger,
        allpay_file(allpay_line(CT_REF, "5.00"), allpay_line(CT_REF, "2.00")),
        OFFICER,
        file_name="be2.txt",
    ).batch_id
    assert link_counted_twice(ledger, OFFICER) == []
    (row,) = [r for r in exceptions(ledger)["unmatched_statement_lines"] if r["line"] == 1]
    assert len(row["candidates"]) == 2
    chosen = next(c for c in row["candidates"] if c["matched_batch_id"] == str(other))
    (late,) = choose_link(ledger, OFFICER, statement_id, 1, chosen["payment_ids"][0], "be2")
    assert (late.line, late.link.matched_batch_id) == (1, str(other))
    # The line's money counted once (by the second file); the first file's receipts wait.
    assert counted_pence(ledger) == sum(LINE_PENCE.values()) - 700 + ALLPAY_PENCE + 700
    report = exceptions(ledger)
    assert sorted(row["line"] for row in report["unmatched_statement_lines"]) == [2]
    assert sorted(row["amount_pence"] for row in report["unmatched_receipts"]) == [300, 400]
    figures = read_model(projection)
    assert figures["suspense"] == figures["suspense_items"] == 1_150
    assert (figures["reversals"], figures["reversals_count"]) == (700, 1)
    assert verify(projection.engine, event_source(ledger)).ok


def test_unlinking_what_is_not_a_standing_late_link_is_refused_and_stores_nothing(ledger):
    statement_id = statement(ledger)
    allpay(ledger)
    link_counted_twice(ledger, OFFICER)
    position = ledger.max_position()
    refusals = [
        (uuid4(), 1, "x", ImportBatchNotFound, "no import with id"),
        (statement_id, 7, "x", ImportLineNotFound, "has no money line 7"),
        (statement_id, 2, "x", LineNotLinked, "line 2 of import .* is not linked$"),
        (statement_id, 1, " ", ReasonRequired, "reason"),
    ]
    for batch_id, line, reason, error, message in refusals:
        with pytest.raises(error, match=message):
            unlink_line(ledger, batch_id, line, OFFICER, reason)
    assert ledger.max_position() == position
    unlink_line(ledger, statement_id, 1, OFFICER, "wrong file")
    position = ledger.max_position()
    with pytest.raises(LineNotLinked, match="its link was undone already"):
        unlink_line(ledger, statement_id, 1, OFFICER, "again")
    assert ledger.max_position() == position


def test_a_line_linked_at_import_is_undone_by_reversing_the_statement_only(ledger):
    allpay(ledger)
    statement_id = statement(ledger)
    assert get_import(ledger, statement_id)["lines"][0]["outcome"] == "reconciled"
    with pytest.raises(LineNotLinked, match="linked when the statement was imported"):
        unlink_line(ledger, statement_id, 1, OFFICER, "wrong")


def test_an_undone_card_payout_puts_the_payments_back_in_clearing(ledger):
    """A GOV.UK Pay payout split over two lines, linked late (its payment recorded after
    the statement), then undone: the payment waits for its payout again."""
    statement_id = statement_with_split_payout(ledger)
    govuk_pay_payment(ledger)
    links = link_counted_twice(ledger, OFFICER)
    assert sorted(late.line for late in links if late.line >= 4) == [4, 5]
    assert exceptions(ledger)["unsettled_card_payments"] == []
    settled = balances(ledger)
    with pytest.raises(LineNotLinked, match="part of the payout linked on line 4"):
        unlink_line(ledger, statement_id, 5, OFFICER, "wrong")
    undone = unlink_line(ledger, statement_id, 4, OFFICER, "not our payout")
    assert [item.line for item in undone] == [4, 5]
    (waiting,) = exceptions(ledger)["unsettled_card_payments"]
    assert waiting["amount_pence"] == 9_980
    unsettled = balances(ledger)
    assert unsettled.get("bank", 0) == settled["bank"] - 9_980
    assert unsettled["clearing"] == settled.get("clearing", 0) + 9_980
    lines = exceptions(ledger)["unmatched_statement_lines"]
    assert {row["line"] for row in lines} >= {4, 5}
    assert link_counted_twice(ledger, OFFICER) == []  # the payout's pairing was rejected


def test_a_statement_whose_lines_were_all_linked_late_is_reversed(
    ledger, projection, monkeypatch, database_url
):
    statement_id = import_file(
        ledger, camt(ALLPAY_PAYOUT, CARD_PAYOUT), OFFICER, file_name="s.xml"
    ).batch_id
    allpay(ledger)
    card_day(ledger)
    assert len(link_counted_twice(ledger, OFFICER)) == 2
    outcome = reverse_import(ledger, statement_id, SUPERVISOR, "another account's statement")
    batch = outcome.batch
    assert batch["reversed"] and batch["reversed_pence"] == 700 + 1_150
    # The lines' receipts: counted again, then reversed with the import.
    for line in (1, 2):
        receipt = line_receipt(ledger, statement_id, line)
        assert receipt["status"] == "reversed"
        actions = [h["action"] for h in ledger.payment_history(UUID(receipt["payment_id"]))]
        assert actions[-3:] == ["Reversed", "ReversalUndone", "Reversed"]
    assert counted_pence(ledger) == ALLPAY_PENCE + 500 + 650
    report = exceptions(ledger)
    assert report["unmatched_statement_lines"] == []
    assert sorted(row["amount_pence"] for row in report["unmatched_receipts"]) == [
        300,
        400,
        500,
        650,
    ]
    figures = read_model(projection)
    assert figures["suspense"] == figures["suspense_items"] == figures["ageing"] == 0
    assert figures["reversals"] == 700 + 1_150 and figures["reversals_count"] == 2
    assert verify(projection.engine, event_source(ledger)).ok
    audit_verifies(monkeypatch, database_url, ledger)


def test_a_statement_whose_lines_were_all_linked_at_import_is_reversed(ledger):
    paid = card_day(ledger)
    allpay(ledger)
    content = camt(ALLPAY_PAYOUT, CARD_PAYOUT)
    statement_id = import_file(ledger, content, OFFICER, file_name="s.xml").batch_id
    assert exceptions(ledger)["unmatched_receipts"] == []
    outcome = reverse_import(ledger, statement_id, SUPERVISOR, "another account's statement")
    assert outcome.batch["reversed"] and outcome.batch["reversed_pence"] == 0
    assert counted_pence(ledger) == ALLPAY_PENCE + 500 + 650
    report = exceptions(ledger)
    assert len(report["unmatched_receipts"]) == 4
    notes = [h["details"]["text"] for h in ledger.payment_history(UUID(paid[0]))[-2:]]
    assert notes[-1].startswith("no longer paid in by bank statement s.xml line 2")
    # The right statement pays them in again.
    import_file(ledger, camt(ALLPAY_PAYOUT, CARD_PAYOUT, entry("0.01")), OFFICER, file_name="r")
    assert exceptions(ledger)["unmatched_receipts"] == []
    with pytest.raises(LineNotLinked, match="was reversed"):
        unlink_line(ledger, statement_id, 1, OFFICER, "again")


def test_a_statement_whose_card_payout_was_linked_at_import_is_reversed(ledger):
    govuk_pay_payment(ledger)
    statement_id = import_file(
        ledger, camt(entry("99.80", ref="P1", text="GOVUK PAY")), OFFICER, file_name="p.xml"
    ).batch_id
    assert exceptions(ledger)["unsettled_card_payments"] == []
    reverse_import(ledger, statement_id, SUPERVISOR, "another account's statement")
    (waiting,) = exceptions(ledger)["unsettled_card_payments"]
    assert waiting["amount_pence"] == 9_980
    assert "bank" not in balances(ledger)
    assert counted_pence(ledger) == 10_000


def test_each_penny_once_after_link_unlink_and_a_statement_reversal(ledger):
    statement_id = statement(ledger)
    allpay(ledger)
    card_day(ledger)
    link_counted_twice(ledger, OFFICER)
    assert counted_pence(ledger) == WITHOUT_GOVUK_PAY_PENCE
    unlink_line(ledger, statement_id, 2, OFFICER, "a deposit, not the card day")
    assert counted_pence(ledger) == WITHOUT_GOVUK_PAY_PENCE + 1_150
    reverse_import(ledger, statement_id, SUPERVISOR, "another account's statement")
    assert counted_pence(ledger) == ALLPAY_PENCE + 500 + 650
    report = exceptions(ledger)
    assert report["unmatched_statement_lines"] == []
    assert len(report["unmatched_receipts"]) == 4


def test_an_undone_negative_payout_puts_the_refund_back_and_the_debit_on_the_report(ledger):
    send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    import_file(ledger, camt(entry("99.80", ref="P1")), OFFICER, file_name="s1.xml")
    debit = entry("60.00", ref="P2", debit=True, family="ICDT", text="GOVUK PAY")
    content = camt(debit, entry("12.34", ref="B1"))
    statement_id = import_file(ledger, content, OFFICER, file_name="s2.xml").batch_id
    refund = pay("card_payment_refunded", "pay-1", refund_summary={"amount_submitted": 6_000})
    send(ledger, refund)
    (late,) = link_counted_twice(ledger, OFFICER)
    assert late.reversed_payment_id is None
    (undone,) = unlink_line(ledger, statement_id, 1, OFFICER, "another council's refund")
    assert undone.restored_payment_id is None
    report = exceptions(ledger)
    waiting = [(row["kind"], row["line"]) for row in report["unmatched_statement_lines"]]
    assert sorted(waiting) == [("statement_debit", 1), ("statement_line", 2)]
    (deduction,) = report["unsettled_card_payments"]
    assert (deduction["kind"], deduction["amount_pence"]) == ("unsettled_deduction", -6_000)
    totals = balances(ledger)
    assert totals["bank"] == 9_980 and totals["refunds"] == -6_000
    assert link_counted_twice(ledger, OFFICER) == []


def _unlink_in_a_process(barrier, url: str, batch_id: str) -> str:
    ledger = build_ledger(Settings(database_url=url))
    try:
        barrier.wait()
        unlink_line(ledger, UUID(batch_id), 1, CommandContext("officer:race"), "wrong")
        return "undone"
    except LedgerError as error:
        return error.code
    finally:
        ledger.close()


def test_two_people_undoing_one_link_at_once_undo_it_once(ledger, settings):
    statement_id = statement(ledger)
    allpay(ledger)
    link_counted_twice(ledger, OFFICER)
    args = (settings.database_url, str(statement_id))
    results = _race(_unlink_in_a_process, [args] * 2)
    assert results.count("undone") == 1, results
    assert set(results) - {"undone"} <= {"concurrent_update", "line_not_linked"}, results
    undone = [e for _, e in ledger.read_events() if type(e).__name__ == "ReversalUndone"]
    assert len(undone) == 1
    assert counted_pence(ledger) == sum(LINE_PENCE.values()) + ALLPAY_PENCE


def test_a_person_links_an_undone_pairing_again_and_it_is_counted_once(ledger, projection):
    statement_id = statement(ledger)
    allpay_batch = allpay(ledger)
    (first,) = link_counted_twice(ledger, OFFICER)
    linked = read_model(projection)
    unlink_line(ledger, statement_id, 1, OFFICER, "looked wrong")
    assert link_counted_twice(ledger, OFFICER) == []  # no run makes it again
    position = ledger.max_position()
    refusals = [
        ((uuid4(), 1), ImportBatchNotFound),
        ((statement_id, 9), ImportLineNotFound),
        ((statement_id, 3), LineNotAwaitingLink),  # allocated by its reference
    ]
    for line, error in refusals:
        with pytest.raises(error):
            link_counted_twice(ledger, OFFICER, line)
    assert ledger.max_position() == position
    # A person checked the Allpay file after all: they link the line to it again.
    (again,) = link_counted_twice(ledger, SUPERVISOR, (statement_id, 1))
    assert (again.line, again.link.matched_batch_id) == (1, str(allpay_batch))
    shown = get_import(ledger, statement_id)["lines"][0]
    assert shown["late_link"]["matched_batch_id"] == str(allpay_batch)
    assert len(shown["undone_links"]) == 1
    assert again.reversed_payment_id == first.reversed_payment_id
    with pytest.raises(LineNotAwaitingLink):
        link_counted_twice(ledger, OFFICER, (statement_id, 1))
    assert counted_pence(ledger) == sum(LINE_PENCE.values())
    report = exceptions(ledger)
    assert sorted(row["line"] for row in report["unmatched_statement_lines"]) == [2]
    assert report["unmatched_receipts"] == []
    figures = read_model(projection)
    assert figures == linked | {"reversals_count": 1}
    assert verify(projection.engine, event_source(ledger)).ok
