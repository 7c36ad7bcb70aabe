"""A statement uploaded through HTTP whose provider's lines quote payout numbers that pass
(or nearly pass) a fund's reference rule: paid in, or waiting on the exceptions report, never
a payer's own transfer in a fund."""

from __future__ import annotations

from tests.api.conftest import auth, upload_statement
from tests.application.test_imports import allpay_file, allpay_line
from tests.application.test_provider_lines import PAYOUT_NUMBER, PAYOUT_NUMBER_2
from tests.application.test_statement_imports import camt, entry
from tests.domain.helpers import CT_REF


def test_provider_lines_uploaded_are_paid_in_or_wait_on_the_report(client) -> None:
    allpay = client.post(
        "/imports",
        files={
            "file": (
                "be.txt",
                allpay_file(allpay_line(CT_REF, "3.00"), allpay_line(CT_REF, "4.00")),
            )
        },
        headers=auth("integration"),
    )
    assert allpay.status_code == 201, allpay.text
    statement = camt(
        entry("7.00", ref="B1", text=PAYOUT_NUMBER_2, info="ALLPAY LTD"),
        entry("149.50", ref="B2", text=PAYOUT_NUMBER, info="GOVUK PAY"),
        entry("12.00", ref="B3", text=PAYOUT_NUMBER, info="A PAYER"),
    )
    lines = upload_statement(client, statement)
    assert [(line["outcome"], line["rule"], line["status"]) for line in lines] == [
        ("reconciled", "import_total", None),  # the Allpay file paid in
        ("recorded", None, "suspense"),  # a payout whose payments are not recorded yet
        ("recorded", None, "allocated"),  # a payer's own transfer, to business rates
    ]
    assert lines[0]["matched_batch_id"] == allpay.json()["batch"]["batch_id"]
    assert lines[2]["fund_code"] == "NNDR"
    payout = client.get(f"/payments/{lines[1]['payment_id']}", headers=auth("officer")).json()
    assert payout["status"] == "suspense" and payout["suspense_reason"] == "provider_payout"

    report = client.get("/reconciliation/exceptions", headers=auth("reporting")).json()
    (row,) = report["unmatched_statement_lines"]
    assert (row["line"], row["amount_pence"]) == (2, 14_950)
    assert report["unmatched_receipts"] == []
