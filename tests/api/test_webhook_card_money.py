"""GOV.UK Pay fees, disputes and payouts end to end through HTTP: webhook bodies in Pay's
format (the real samples from ../shared/realdata when present), then a bank statement
upload whose payout line moves the money from clearing to the bank."""

from __future__ import annotations

import json
from datetime import date

from tests.api.conftest import auth, eventually, upload_statement
from tests.api.test_webhooks import needs_samples, post_raw, sample, show, statuses
from tests.application.test_card_payouts import dispute, pay
from tests.application.test_statement_imports import YESTERDAY, camt, entry


def post(client, message: dict):
    return post_raw(client, json.dumps(message, separators=(",", ":")).encode())


def accounts(history_entry: dict) -> dict[str, int]:
    return {p["account"]: p["amount_pence"] for p in history_entry["postings"]}


def _linked(client, leaving: int = 0) -> dict | None:
    """The exceptions report once no more than `leaving` statement lines wait for a link."""
    report = client.get("/reconciliation/exceptions", headers=auth("reporting")).json()
    return report if len(report["unmatched_statement_lines"]) <= leaving else None


def test_the_fee_is_charged_once_and_a_payout_settles_the_payment(client) -> None:
    captured = pay("card_payment_captured", "pay-http", fee=45)
    first = post(client, captured)
    assert first.status_code == 200 and first.json()["status"] == "recorded"
    assert post(client, captured).json()["status"] == "duplicate"
    payment = show(client, first.json()["payment_id"])
    fee = [h for h in payment["history"] if h["action"] == "FeeCharged"]
    assert len(fee) == 1 and accounts(fee[0]) == {
        "card_fees:govuk_pay": 45,
        "clearing:govuk_pay": -45,
    }
    assert payment["card_provider"]["unsettled_pence"] == 9_955
    (line,) = upload_statement(client, camt(entry("99.55", ref="PAYOUT")))
    assert line["outcome"] == "reconciled" and line["rule"] == "card_payout"
    settled = show(client, first.json()["payment_id"])
    assert settled["card_provider"]["unsettled_pence"] == 0
    payout, note = settled["history"][-2:]
    assert payout["action"] == "Settled" and note["action"] == "Noted"
    assert accounts(payout) == {"bank": 9_955, "clearing:govuk_pay": -9_955}
    report = client.get("/reconciliation/exceptions", headers=auth("reporting")).json()
    assert report["unsettled_card_payments"] == report["unmatched_statement_lines"] == []


def test_a_dispute_workflow_through_the_webhook(client) -> None:
    paid = post(client, pay("card_payment_captured", "pay-d")).json()["payment_id"]
    answers = [
        post(client, dispute(kind, "pay-d")).json()["status"]
        for kind in (
            "dispute_created",
            "dispute_created",
            "dispute_evidence_submitted",
            "dispute_evidence_submitted",
        )
    ]
    assert answers == ["dispute_open", "duplicate", "dispute_evidence_submitted", "duplicate"]
    at_risk = show(client, paid)["card_provider"]
    assert at_risk["disputed_pence"] == 10_000 and at_risk["disputes"][0]["status"] == (
        "evidence_submitted"
    )
    report = client.get("/reconciliation/exceptions", headers=auth("auditor")).json()
    assert [row["kind"] for row in report["open_disputes"]] == ["open_dispute"]
    lost = post(client, dispute("dispute_lost", "pay-d", fee=1_500))
    assert lost.json()["status"] == "dispute_lost"
    assert post(client, dispute("dispute_lost", "pay-d")).json()["status"] == "duplicate"
    payment = show(client, paid)
    assert payment["status"] == "reversed" and payment["card_provider"]["disputed_pence"] == 0
    chargeback, fee = payment["history"][-2:]
    assert chargeback["action"] == "Reversed" and chargeback["details"]["kind"] == "chargeback"
    assert accounts(fee) == {"dispute_fees:govuk_pay": 1_500, "clearing:govuk_pay": -1_500}


def test_a_lost_dispute_arriving_first_opens_and_loses_it_and_unknown_payments_are_404(
    client,
) -> None:
    post(client, pay("card_payment_captured", "pay-e"))
    assert post(client, dispute("dispute_lost", "pay-e")).json()["status"] == "dispute_lost"
    assert post(client, dispute("dispute_created", "pay-e")).json()["status"] == "duplicate"
    assert post(client, dispute("dispute_won", "pay-e")).json()["status"] == "duplicate"
    unknown = post(client, dispute("dispute_created", "pay-never-seen"))
    assert unknown.status_code == 404 and unknown.json()["code"] == "payment_not_found"
    assert "has not recorded" in unknown.json()["detail"]
    bad = dispute("dispute_created", "pay-e")
    bad["resource"]["amount"] = 0
    assert post(client, bad).status_code == 422


@needs_samples
def test_real_captured_payments_keep_fees_and_a_payout_of_their_day_settles_them(client) -> None:
    assert statuses(client, sample("03"), sample("06")) == ["recorded", "recorded"]
    surcharge = show(client, post_raw(client, sample("06")).json()["payment_id"])
    assert surcharge["amount_pence"] == 4_000
    assert surcharge["card_provider"]["fees_pence"] == 200
    assert surcharge["card_provider"]["settles_on"] == "2019-07-12"
    assert surcharge["card_provider"]["unsettled_pence"] == 3_800  # Pay's net_amount
    council_tax = show(client, post_raw(client, sample("03")).json()["payment_id"])
    assert council_tax["card_provider"]["unsettled_pence"] == 8_983
    # The 2019 payout of the surcharged payment, as the bank shows it: net of the fee.
    (line,) = upload_statement(client, camt(entry("38.00", ref="PAYOUT", day=date(2019, 7, 12))))
    assert line["rule"] == "card_payout" and line["matched_payment_ids"] == [
        surcharge["payment_id"]
    ]
    assert show(client, surcharge["payment_id"])["card_provider"]["unsettled_pence"] == 0
    # The full refund including the surcharge still works, and the next payout deducts it.
    assert statuses(client, sample("13")) == ["refund_recorded"]
    refunded = show(client, surcharge["payment_id"])
    assert refunded["refunded_pence"] == 4_000
    assert refunded["card_provider"]["unsettled_pence"] == -4_000


def test_an_unmatched_payout_line_is_an_exception_in_csv(client) -> None:
    post(client, pay("card_payment_captured", "pay-u", fee=20))
    (line,) = upload_statement(client, camt(entry("12.34", ref="PAYOUT")))
    assert line["outcome"] == "recorded"
    as_csv = client.get(
        "/reconciliation/exceptions", headers=auth("auditor") | {"Accept": "text/csv"}
    ).text
    assert ",12.34,bank_transfer," in as_csv
    assert f"unsettled_payment,0-3 days,1,{YESTERDAY},99.80,govuk_pay," in as_csv


def test_a_payout_on_a_statement_before_the_payment_is_linked_by_the_webhook(client) -> None:
    (line,) = upload_statement(client, camt(entry("99.80", ref="PAYOUT", text="GOVUK PAY")))
    assert line["outcome"] == "recorded"  # nothing to pay in yet: a receipt of its own
    assert post(client, pay("card_payment_captured", "pay-late", fee=20)).status_code == 200
    report = eventually(lambda: _linked(client))  # the run after the message, off it
    assert report["unmatched_statement_lines"] == report["unsettled_card_payments"] == []
    line_receipt = show(client, line["payment_id"])
    assert line_receipt["status"] == "reversed"
    assert line_receipt["history"][-1]["actor"] == "system:auto-link"


def test_a_negative_payout_before_its_refund_is_linked_by_the_refund_webhook(client) -> None:
    post(client, pay("card_payment_captured", "pay-r", fee=20))
    upload_statement(client, camt(entry("99.80", ref="P1")))
    debit = entry("60.00", ref="P2", debit=True, family="ICDT", text="GOVUK PAY")
    lines = upload_statement(client, camt(debit, entry("12.34", ref="B1")))
    assert (lines[0]["kind"], lines[0]["outcome"]) == ("payout_debit", "unmatched")
    report = client.get("/reconciliation/exceptions", headers=auth("reporting")).json()
    assert [row["kind"] for row in report["unmatched_statement_lines"]] == [
        "statement_debit",
        "statement_line",
    ]
    refund = pay("card_payment_refunded", "pay-r", refund_summary={"amount_submitted": 6_000})
    assert post(client, refund).json()["status"] == "refund_recorded"
    report = eventually(lambda: _linked(client, leaving=1))
    assert [row["kind"] for row in report["unmatched_statement_lines"]] == ["statement_line"]
    assert report["unsettled_card_payments"] == []
