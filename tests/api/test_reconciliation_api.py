"""A bank statement uploaded through HTTP, then the reconciliation exceptions report."""

from __future__ import annotations

from tests.api.conftest import auth
from tests.application.test_statement_imports import camt, entry


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
