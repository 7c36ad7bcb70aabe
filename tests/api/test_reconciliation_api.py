"""A bank statement uploaded through HTTP, then the reconciliation exceptions report."""

from __future__ import annotations

from tests.api.conftest import auth
from tests.application.test_imports import allpay_file, allpay_line
from tests.application.test_statement_imports import camt, entry
from tests.domain.helpers import CT_REF


def test_a_statement_upload_and_the_exceptions_report_in_json_and_csv(client) -> None:
    card = client.post(
        "/payments",
        headers=auth("officer"),
        json={"channel": "card", "amount_pence": 4_321, "reference": "JUNK"},
    )
    assert card.status_code == 201, card.text
    statement = camt(entry("25.00", ref="B1"), entry("43.21", ref="B2"))
    uploaded = client.post(
        "/imports",
        files={"file": ("stmt.xml", statement, "application/xml")},
        headers=auth("integration"),
    )
    assert uploaded.status_code == 201, uploaded.text
    batch = uploaded.json()["batch"]
    assert batch["file_format"] == "camt053" and batch["receipts_pence"] == 2_500
    lines = client.get(f"/imports/{batch['batch_id']}", headers=auth("officer")).json()["lines"]
    assert [line["outcome"] for line in lines] == ["recorded", "reconciled"]
    assert lines[1]["matched_payment_ids"] == [card.json()["payment"]["payment_id"]]

    report = client.get("/reconciliation/exceptions", headers=auth("reporting"))
    assert report.status_code == 200, report.text
    (line,) = report.json()["unmatched_statement_lines"]
    assert line["amount_pence"] == 2_500 and line["age_band"] == "0-3 days"
    assert report.json()["unmatched_receipts"] == []
    as_csv = client.get(
        "/reconciliation/exceptions", headers=auth("auditor") | {"Accept": "text/csv"}
    )
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = as_csv.text.splitlines()
    assert rows[0].startswith("kind,age_band,age_days,date,amount")
    assert rows[1].startswith("statement_line,0-3 days,0,") and ",25.00,bank_transfer," in rows[1]
    assert client.get("/reconciliation/exceptions", headers=auth("integration")).status_code == 403


def test_an_allpay_file_uploaded_after_the_statement_is_linked_over_http(client) -> None:
    statement = camt(entry("7.00", ref="B1", text="ALLPAY LTD"))
    for name, content in (
        ("stmt.xml", statement),
        ("be.txt", allpay_file(allpay_line(CT_REF, "3.00"), allpay_line(CT_REF, "4.00"))),
    ):
        uploaded = client.post(
            "/imports", files={"file": (name, content)}, headers=auth("integration")
        )
        assert uploaded.status_code == 201, uploaded.text
    assert client.post("/reconciliation/links", headers=auth("auditor")).status_code == 403
    linked = client.post("/reconciliation/links", headers=auth("officer"))
    assert linked.status_code == 200, linked.text
    (link,) = linked.json()["links"]
    assert (link["file_name"], link["line"], link["rule"]) == ("stmt.xml", 1, "import_total")
    reversed_receipt = client.get(
        f"/payments/{link['reversed_payment_id']}", headers=auth("officer")
    ).json()
    assert reversed_receipt["status"] == "reversed"
    again = client.post("/reconciliation/links", headers=auth("integration"))
    assert again.json() == {"links": []}
    report = client.get("/reconciliation/exceptions", headers=auth("officer")).json()
    assert report["unmatched_statement_lines"] == [] and report["unmatched_receipts"] == []
