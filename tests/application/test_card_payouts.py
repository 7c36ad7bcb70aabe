"""GOV.UK Pay money through clearing: fees, payouts matched on the bank statement, disputes
and the exceptions report, on SQLite and PostgreSQL (messages applied as the webhook does)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, timedelta
from uuid import UUID

import pytest
from pydantic import ValidationError

from application.govuk_pay import apply_message, to_command
from application.imports import get_import, import_file, reverse_import
from application.ledger import CommandContext
from application.reconciliation import exceptions, exceptions_csv, link_counted_twice
from domain.errors import ImportRefused, LedgerError
from domain.limits import uk_day_start
from domain.postings import postings_for
from domain.statements import names_payout, payout_patterns
from income_ledger.bootstrap import build_ledger
from income_ledger.settings import Settings
from tests.application.test_statement_imports import TODAY, YESTERDAY, camt, entry
from tests.domain.helpers import CT_REF


@pytest.fixture
def importer() -> CommandContext:
    return CommandContext("officer:importer")


def pay(event_type: str, payment_id: str, **resource) -> dict:
    """A GOV.UK Pay message of a council-tax payment; `resource` overrides its fields."""
    return {
        "webhook_message_id": f"{event_type}-{payment_id}-{len(resource)}",
        "api_version": 1,
        "created_date": f"{YESTERDAY}T10:00:01.000Z",
        "resource_id": payment_id,
        "resource_type": "payment",
        "event_type": event_type,
        "resource": {
            "payment_id": payment_id,
            "amount": 10_000,
            "reference": CT_REF,
            "metadata": {"fund_code": "CT"},
            "created_date": f"{YESTERDAY}T10:00:00.000Z",
            "state": {"status": "success", "finished": True},
            "settlement_summary": {"captured_date": YESTERDAY.isoformat()},
        }
        | resource,
    }


def dispute(event_type: str, payment_id: str, amount: int = 10_000, fee: int = 2_000) -> dict:
    return {
        "webhook_message_id": f"{event_type}-{payment_id}",
        "api_version": 1,
        "created_date": f"{YESTERDAY}T18:00:00.000Z",
        "resource_id": f"dsp-{payment_id}",
        "resource_type": "dispute",
        "event_type": event_type,
        "resource": {
            "dispute_id": f"dsp-{payment_id}",
            "payment_id": payment_id,
            "amount": amount,
            "fee": fee,
            "reason": "fraudulent",
            "status": event_type.removeprefix("dispute_"),
            "created_date": f"{YESTERDAY}T17:59:00.000Z",
        },
    }


def send(ledger, message: dict) -> dict:
    return apply_message(ledger, to_command(message, {}))


def balances(ledger) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for _, event in ledger.read_events():
        for posting in postings_for(event):
            totals[posting.account.split(":")[0]] += posting.amount_pence
    return {role: pence for role, pence in totals.items() if pence}


def test_a_payout_net_of_fees_and_refunds_moves_clearing_to_the_bank(ledger, importer) -> None:
    # Yesterday: two payments (fees 20 and 30). Today: a third (fee 25) and a refund of
    # £10 of the first, which today's payout deducts.
    send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    send(ledger, pay("card_payment_captured", "pay-2", amount=5_000, fee=30))
    today = {"captured_date": TODAY.isoformat()}
    send(
        ledger,
        pay("card_payment_captured", "pay-3", amount=5_000, fee=25, settlement_summary=today),
    )
    refund = pay("card_payment_refunded", "pay-1", refund_summary={"amount_submitted": 1_000})
    assert send(ledger, refund)["status"] == "refund_recorded"
    assert send(ledger, pay("card_payment_captured", "pay-1", fee=20))["status"] == "duplicate"
    assert balances(ledger)["card_fees"] == 75

    statement = camt(entry("149.50", ref="PAYOUT1"), entry("39.75", ref="PAYOUT2"))
    outcome = import_file(ledger, statement, importer, file_name="s.xml")
    lines = get_import(ledger, outcome.batch_id)["lines"]
    assert [(line["rule"], line["settled_day"]) for line in lines] == [
        ("card_payout", YESTERDAY.isoformat()),
        ("card_payout", TODAY.isoformat()),
    ]
    assert outcome.batch["receipts_count"] == 0
    totals = balances(ledger)
    assert totals["bank"] == 14_950 + 3_975
    assert "clearing" not in totals and "refunds" not in totals
    report = exceptions(ledger)
    assert report["unsettled_card_payments"] == report["unmatched_statement_lines"] == []
    first = ledger.get_payment(UUID(lines[0]["matched_payment_ids"][0]))
    assert first["card_provider"]["unsettled_pence"] == 0
    assert [h["action"] for h in first["history"]].count("Settled") == 2


def test_unmatched_payouts_and_unsettled_payments_are_exceptions(ledger, importer) -> None:
    send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    outcome = import_file(ledger, camt(entry("99.00", ref="P")), importer, file_name="s.xml")
    (line,) = get_import(ledger, outcome.batch_id)["lines"]
    assert line["outcome"] == "recorded"
    report = exceptions(ledger)
    assert [row["amount_pence"] for row in report["unmatched_statement_lines"]] == [9_900]
    (unsettled,) = report["unsettled_card_payments"]
    assert unsettled["kind"] == "unsettled_payment" and unsettled["amount_pence"] == 9_980
    assert unsettled["date"] == YESTERDAY.isoformat()
    assert "unsettled_payment,0-3 days,1," in exceptions_csv(report)
    assert balances(ledger)["clearing"] == 9_980


def test_a_dispute_shows_money_at_risk_and_a_lost_one_is_a_chargeback_and_a_fee(ledger) -> None:
    send(ledger, pay("card_payment_captured", "pay-1"))
    send(ledger, pay("card_payment_captured", "pay-2"))
    assert send(ledger, dispute("dispute_created", "pay-1"))["status"] == "dispute_open"
    assert send(ledger, dispute("dispute_created", "pay-1"))["status"] == "duplicate"
    assert send(ledger, dispute("dispute_created", "pay-2"))["status"] == "dispute_open"
    report = exceptions(ledger)
    assert sorted(row["amount_pence"] for row in report["open_disputes"]) == [10_000, 10_000]
    assert send(ledger, dispute("dispute_won", "pay-2"))["status"] == "dispute_won"
    lost = send(ledger, dispute("dispute_lost", "pay-1"))
    assert lost["status"] == "dispute_lost"
    assert send(ledger, dispute("dispute_won", "pay-1"))["status"] == "duplicate"
    payment = ledger.get_payment(UUID(lost["payment_id"]))
    assert payment["status"] == "reversed" and payment["reversed_pence"] == 10_000
    assert payment["card_provider"]["fees_pence"] == 2_000
    assert payment["card_provider"]["disputes"][0]["status"] == "lost"
    totals = balances(ledger)
    assert totals["dispute_fees"] == 2_000 and totals["reversals"] == -10_000
    report = exceptions(ledger)
    assert report["open_disputes"] == []
    deduction = [r for r in report["unsettled_card_payments"] if r["kind"] == "unsettled_deduction"]
    assert [row["amount_pence"] for row in deduction] == [-12_000]


def test_a_payment_cancelled_before_capture_leaves_nothing_in_clearing(ledger) -> None:
    send(ledger, pay("card_payment_succeeded", "pay-1", settlement_summary={}))
    failed = pay(
        "card_payment_failed",
        "pay-1",
        state={"status": "failed", "code": "P0040"},
        settlement_summary={},
    )
    assert send(ledger, failed)["status"] == "cancelled"
    assert "clearing" not in balances(ledger)
    assert exceptions(ledger)["unsettled_card_payments"] == []


def test_a_dispute_of_a_payment_never_recorded_is_not_found(ledger) -> None:
    from domain.errors import PaymentNotFound

    with pytest.raises(PaymentNotFound, match="has not recorded"):
        send(ledger, dispute("dispute_created", "pay-unknown"))


def test_a_later_days_receipts_are_not_taken_by_an_earlier_payout(ledger, importer) -> None:
    send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    old = {"captured_date": (TODAY - timedelta(days=10)).isoformat()}
    send(ledger, pay("card_payment_captured", "pay-2", fee=20, settlement_summary=old))
    outcome = import_file(ledger, camt(entry("99.80", ref="P")), importer, file_name="s.xml")
    (line,) = get_import(ledger, outcome.batch_id)["lines"]
    assert line["rule"] == "card_payout" and line["settled_day"] == YESTERDAY.isoformat()
    (left,) = exceptions(ledger)["unsettled_card_payments"]
    assert left["age_days"] == 10


def test_a_payout_split_over_two_lines_is_linked_whole(ledger, importer) -> None:
    send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    split = camt(
        entry("50.00", ref="P1", text="GOVUK PAY"), entry("49.80", ref="P2", text="GOVUK PAY")
    )
    outcome = import_file(ledger, split, importer, file_name="s.xml")
    lines = get_import(ledger, outcome.batch_id)["lines"]
    assert [(line["outcome"], line["rule"]) for line in lines] == [
        ("reconciled", "card_payout"),
        ("reconciled", "card_payout_part"),
    ]
    assert lines[0]["matched"] == f"the govuk_pay payout of {YESTERDAY} (lines 1, 2)"
    assert lines[1]["matched_payment_ids"] == []
    assert balances(ledger)["bank"] == 9_980 and "clearing" not in balances(ledger)
    report = exceptions(ledger)
    assert report["unsettled_card_payments"] == report["unmatched_statement_lines"] == []


def test_a_split_payout_imported_before_its_payments_is_linked_afterwards(ledger, importer):
    split = camt(
        entry("50.00", ref="P1", text="GOVUK PAY"), entry("49.80", ref="P2", text="GOVUK PAY")
    )
    outcome = import_file(ledger, split, importer, file_name="s.xml")
    assert outcome.batch["receipts_count"] == 2  # nothing to pay in yet: suspense
    send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    links = link_counted_twice(ledger, importer)
    assert [(link.line, link.link.rule) for link in links] == [
        (1, "card_payout"),
        (2, "card_payout_part"),
    ]
    totals = balances(ledger)
    assert totals["bank"] == 9_980 and "clearing" not in totals
    report = exceptions(ledger)
    assert report["unsettled_card_payments"] == report["unmatched_statement_lines"] == []


def test_a_negative_payout_is_a_debit_line_linked_to_the_days_refunds(ledger, importer) -> None:
    send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    import_file(ledger, camt(entry("99.80", ref="P1")), importer, file_name="s1.xml")
    refund = pay("card_payment_refunded", "pay-1", refund_summary={"amount_submitted": 6_000})
    assert send(ledger, refund)["status"] == "refund_recorded"
    assert exceptions(ledger)["unsettled_card_payments"][0]["amount_pence"] == -6_000
    # Today Pay took the refund back from the account: a debit, beside a payer's credit.
    statement = camt(entry("60.00", ref="P2", debit=True, family="ICDT"), entry("12.34", ref="B1"))
    outcome = import_file(ledger, statement, importer, file_name="s2.xml")
    lines = get_import(ledger, outcome.batch_id)["lines"]
    assert [(line["kind"], line["outcome"], line.get("rule")) for line in lines] == [
        ("payout_debit", "reconciled", "card_payout"),
        ("receipt", "recorded", None),
    ]
    assert outcome.batch["receipts_pence"] == 1_234
    assert exceptions(ledger)["unsettled_card_payments"] == []
    totals = balances(ledger)
    assert "clearing" not in totals and "refunds" not in totals
    assert totals["bank"] == 9_980 - 6_000


def test_a_negative_payout_before_its_refunds_is_kept_and_linked_afterwards(ledger, importer):
    send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    import_file(ledger, camt(entry("99.80", ref="P1")), importer, file_name="s1.xml")
    # Pay took a refund back from the account before the ledger heard of the refund.
    debit = entry("60.00", ref="P2", debit=True, family="ICDT", text="GOVUK PAY")
    outcome = import_file(
        ledger, camt(debit, entry("12.34", ref="B1")), importer, file_name="s2.xml"
    )
    lines = get_import(ledger, outcome.batch_id)["lines"]
    assert [(line["kind"], line["outcome"], line["payment_id"]) for line in lines[:1]] == [
        ("payout_debit", "unmatched", None)
    ]
    assert outcome.batch["receipts_pence"] == 1_234
    (waiting,) = exceptions(ledger)["unmatched_statement_lines"][:1]
    assert (waiting["kind"], waiting["line"], waiting["amount_pence"]) == (
        "statement_debit",
        1,
        -6_000,
    )
    assert f"statement_debit,0-3 days,0,{TODAY},-60.00," in exceptions_csv(exceptions(ledger))
    assert link_counted_twice(ledger, importer) == []  # nothing it pays yet
    refund = pay("card_payment_refunded", "pay-1", refund_summary={"amount_submitted": 6_000})
    assert send(ledger, refund)["status"] == "refund_recorded"
    (late,) = link_counted_twice(ledger, importer)
    assert (late.line, late.link.rule, late.reversed_payment_id) == (1, "card_payout", None)
    assert late.link.settled_day == TODAY.isoformat()
    report = exceptions(ledger)
    assert [row["kind"] for row in report["unmatched_statement_lines"]] == ["statement_line"]
    assert report["unsettled_card_payments"] == []
    totals = balances(ledger)
    assert "clearing" not in totals and "refunds" not in totals
    assert totals["bank"] == 9_980 - 6_000
    assert link_counted_twice(ledger, importer) == []


def test_a_debit_that_is_no_payout_is_left_out_and_a_file_of_debits_is_refused(ledger, importer):
    outcome = import_file(
        ledger,
        camt(entry("60.00", ref="P2", debit=True, family="ICDT"), entry("12.34", ref="B1")),
        importer,
        file_name="s.xml",
    )
    assert [line["kind"] for line in get_import(ledger, outcome.batch_id)["lines"]] == ["receipt"]
    with pytest.raises(ImportRefused, match="no money lines"):
        import_file(ledger, camt(entry("5.00", ref="D", debit=True)), importer, file_name="d.xml")


# One payer's two transfers of the same day and reference, adding up by chance to what
# GOV.UK Pay owes for yesterday (100.00 less a 0.20 fee): no payout, for they do not name it.
PAYERS_TWO_TRANSFERS = (
    entry("50.00", ref="T1", text="PARKING PN123"),
    entry("49.80", ref="T2", text="PARKING PN123"),
)


def test_lines_not_naming_the_payout_are_not_taken_for_a_split_payout(ledger, importer):
    send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    outcome = import_file(ledger, camt(*PAYERS_TWO_TRANSFERS), importer, file_name="s.xml")
    lines = get_import(ledger, outcome.batch_id)["lines"]
    assert [line["outcome"] for line in lines] == ["recorded", "recorded"]
    assert exceptions(ledger)["unsettled_card_payments"][0]["amount_pence"] == 9_980


def test_lines_not_naming_the_payout_are_not_linked_to_one_afterwards(ledger, importer):
    import_file(ledger, camt(*PAYERS_TWO_TRANSFERS), importer, file_name="s.xml")
    send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    assert link_counted_twice(ledger, importer) == []
    report = exceptions(ledger)
    assert sorted(row["amount_pence"] for row in report["unmatched_statement_lines"]) == [
        4_980,
        5_000,
    ]
    assert report["unsettled_card_payments"][0]["amount_pence"] == 9_980


WORLDPAY_SPLIT = camt(
    entry("50.00", ref="P1", text="Worldpay 1234"), entry("49.80", ref="P2", text="Worldpay 1234")
)


def test_the_narratives_naming_a_payout_are_a_setting(ledger, settings, importer):
    send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    outcome = import_file(ledger, WORLDPAY_SPLIT, importer, file_name="s.xml")
    lines = get_import(ledger, outcome.batch_id)["lines"]
    assert [line["outcome"] for line in lines] == ["recorded", "recorded"]  # GOVUKPAY only
    assert link_counted_twice(ledger, importer) == []
    worldpay = build_ledger(
        settings.model_copy(update={"payout_narratives": "GOV.UK PAY,Worldpay"})
    )
    try:
        assert worldpay.payout_narratives == ("GOVUKPAY", "WORLDPAY")
        links = link_counted_twice(worldpay, importer)
        assert [(link.line, link.link.rule) for link in links] == [
            (1, "card_payout"),
            (2, "card_payout_part"),
        ]
        report = exceptions(worldpay)
        assert report["unsettled_card_payments"] == report["unmatched_statement_lines"] == []
    finally:
        worldpay.close()


def test_payout_patterns_are_compared_by_their_letters() -> None:
    patterns = payout_patterns([" gov.uk pay", "", "World-Pay "])
    assert patterns == ("GOVUKPAY", "WORLDPAY")
    assert names_payout("GOVUK PAY 30NOV", patterns) and names_payout("worldpay ltd", patterns)
    assert not names_payout("PARKING PN123", patterns) and not names_payout(None, patterns)
    with pytest.raises(LedgerError, match="has no letter"):
        payout_patterns(["GOVUKPAY", "1234"])
    assert payout_patterns([""]) == ()


def test_a_payout_pattern_without_a_letter_is_refused_in_the_settings() -> None:
    with pytest.raises(ValidationError, match="has no letter"):
        Settings(payout_narratives="GOVUKPAY, 1234")
    assert Settings().payout_narratives == "GOVUKPAY"


def test_statements_of_one_file_name_each_undo_only_their_own_settlement(ledger, importer):
    """Banks reuse daily file names: a payout and, on the next file of that name, the same
    day's refund taken back, each on line 1. Reversing the first statement leaves the
    second's settlement of the refund standing."""
    # Just after the UK day's start: a later hour is in the future before it comes.
    start = uk_day_start(TODAY) + timedelta(seconds=1)
    today = {"created_date": start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")}
    captured = pay(
        "card_payment_captured",
        "pay-1",
        fee=20,
        settlement_summary={"captured_date": TODAY.isoformat()},
        **today,
    )
    send(ledger, captured)
    first = import_file(
        ledger, camt(entry("99.80", ref="P1", day=TODAY)), importer, file_name="daily.xml"
    )
    refund = pay("card_payment_refunded", "pay-1", refund_summary={"amount_submitted": 6_000})
    assert send(ledger, refund)["status"] == "refund_recorded"
    debit = entry("60.00", ref="P2", debit=True, family="ICDT", day=TODAY)
    second = import_file(
        ledger, camt(debit, entry("12.34", ref="B1")), importer, file_name="daily.xml"
    )
    assert get_import(ledger, second.batch_id)["lines"][0]["rule"] == "card_payout"
    assert exceptions(ledger)["unsettled_card_payments"] == []
    reverse_import(ledger, first.batch_id, importer, "the wrong account's statement")
    (unsettled,) = exceptions(ledger)["unsettled_card_payments"]
    assert unsettled["amount_pence"] == 9_980  # the payout's, not the refund's
    assert balances(ledger)["bank"] == -6_000  # the refund taken back stays settled


def test_a_settlement_named_by_its_line_alone_as_before_is_still_undone(
    ledger, importer, monkeypatch
):
    # Settlements recorded before payouts named their import were named `FILE line N`.
    monkeypatch.setattr("application.reconciliation.payout_name", lambda where, _: where)
    send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    outcome = import_file(ledger, camt(entry("99.80", ref="P1")), importer, file_name="s1.xml")
    settled = [e for _, e in ledger.read_events() if type(e).__name__ == "Settled"]
    assert [e.payout for e in settled] == ["s1.xml line 1"]
    monkeypatch.undo()
    reverse_import(ledger, outcome.batch_id, importer, "the wrong account's statement")
    (unsettled,) = exceptions(ledger)["unsettled_card_payments"]
    assert unsettled["amount_pence"] == 9_980
