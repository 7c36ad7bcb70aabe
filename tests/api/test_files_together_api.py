"""A weekend's three Allpay files paid in by one Monday credit line, through HTTP: offered on
the import's view and the exceptions report, never linked by the runs after uploads, chosen
by a person (POST /reconciliation/choices) and undone (POST /reconciliation/unlinks)."""

from __future__ import annotations

import time
from datetime import timedelta

from tests.api.conftest import auth
from tests.api.test_reconciliation_api import _upload
from tests.application.test_imports import allpay_file, allpay_line
from tests.application.test_statement_imports import TODAY, camt, entry
from tests.domain.helpers import CT_REF


def test_a_weekends_files_are_chosen_for_the_monday_line_over_http(client) -> None:
    files = []
    for days_before, amounts in ((3, ("3.00", "4.00")), (2, ("5.00",)), (1, ("2.50",))):
        day = (TODAY - timedelta(days=days_before)).strftime("%d/%m/%Y")
        content = allpay_file(*(allpay_line(CT_REF, amount, day=day) for amount in amounts))
        files.append(_upload(client, f"allpay-{days_before}.txt", content)["batch"]["batch_id"])
    statement = camt(entry("14.50", ref="B1", text="ALLPAY LTD"))
    batch = _upload(client, "monday.xml", statement)["batch"]["batch_id"]
    # A further upload runs a linking run afterwards: it links nothing of this.
    _upload(client, "other.xml", camt(entry("1.23", ref="B9", text="SOMEONE")))
    time.sleep(0.5)

    view = client.get(f"/imports/{batch}", headers=auth("auditor")).json()
    (line,) = view["lines"]
    assert line["outcome"] == "recorded" and line["late_link"] is None
    (candidate,) = line["candidates"]
    assert candidate["rule"] == "imports_together"
    assert [f["batch_id"] for f in candidate["files"]] == files
    assert [f["file_name"] for f in candidate["files"]] == [
        "allpay-3.txt",
        "allpay-2.txt",
        "allpay-1.txt",
    ]
    assert [f["day"] for f in candidate["files"]] == candidate["days"]
    report = client.get("/reconciliation/exceptions", headers=auth("reporting")).json()
    rows = {row["batch_id"]: row for row in report["unmatched_statement_lines"]}
    assert rows[batch]["candidates"] == [candidate]
    as_csv = client.get(
        "/reconciliation/exceptions", headers=auth("auditor") | {"Accept": "text/csv"}
    ).text
    assert "files allpay-3.txt, allpay-2.txt, allpay-1.txt;" in as_csv and "together" in as_csv
    needs = client.post(f"/reconciliation/links/{batch}/1", headers=auth("officer"))
    assert needs.status_code == 409 and needs.json()["code"] == "line_needs_a_choice"

    choice = {
        "batch_id": batch,
        "line": 1,
        "payment_id": candidate["payment_id"],
        "reason": "the weekend's files",
    }
    chosen = client.post("/reconciliation/choices", json=choice, headers=auth("officer"))
    assert chosen.status_code == 200, chosen.text
    (link,) = chosen.json()["links"]
    assert link["rule"] == "imports_together" and link["matched_batch_ids"] == files
    assert sorted(link["matched_payment_ids"]) == sorted(candidate["payment_ids"])
    report = client.get("/reconciliation/exceptions", headers=auth("officer")).json()
    assert batch not in {row["batch_id"] for row in report["unmatched_statement_lines"]}
    assert report["unmatched_receipts"] == []

    undo = {"batch_id": batch, "line": 1, "reason": "they went in on Tuesday"}
    undone = client.post("/reconciliation/unlinks", json=undo, headers=auth("officer"))
    assert undone.status_code == 200, undone.text
    (item,) = undone.json()["undone"]
    assert item["rule"] == "imports_together" and item["matched_batch_ids"] == files
    again = client.get(f"/imports/{batch}", headers=auth("officer")).json()["lines"][0]
    assert [c["payment_ids"] for c in again["candidates"]] == [candidate["payment_ids"]]


def test_three_files_of_one_total_are_chosen_by_a_candidate_key_over_http(client) -> None:
    """Three files of 5.00 on three days and a line of 10.00: three pairs, no receipt of its
    own to name one; POST /reconciliation/choices takes the pair's `candidate` key. Naming
    neither or both of a key and a receipt is a 422, a key offered for nothing a 409."""
    files = []
    for days_before in (3, 2, 1):
        day = (TODAY - timedelta(days=days_before)).strftime("%d/%m/%Y")
        content = allpay_file(allpay_line(CT_REF, "5.00", day=day))
        files.append(_upload(client, f"allpay-{days_before}.txt", content)["batch"]["batch_id"])
    statement = camt(entry("10.00", ref="B1", text="ALLPAY LTD"))
    batch = _upload(client, "monday.xml", statement)["batch"]["batch_id"]
    (line,) = client.get(f"/imports/{batch}", headers=auth("auditor")).json()["lines"]
    assert [c["payment_id"] for c in line["candidates"]] == [None, None, None]
    report = client.get("/reconciliation/exceptions", headers=auth("reporting")).json()
    (row,) = [row for row in report["unmatched_statement_lines"] if row["batch_id"] == batch]
    assert row["candidates"] == line["candidates"]
    last = line["candidates"][-1]
    assert [f["batch_id"] for f in last["files"]] == files[1:]

    choice = {"batch_id": batch, "line": 1, "reason": "Saturday's and Sunday's files"}
    for wrong in ({}, {"candidate": last["candidate"], "payment_id": last["payment_ids"][0]}):
        refused = client.post(
            "/reconciliation/choices", json=choice | wrong, headers=auth("officer")
        )
        assert refused.status_code == 422, refused.text
        assert "one of the two" in refused.json()["detail"]
    unknown = client.post(
        "/reconciliation/choices",
        json=choice | {"candidate": "0123456789ab"},
        headers=auth("officer"),
    )
    assert unknown.status_code == 409 and unknown.json()["code"] == "not_a_candidate"
    assert last["candidate"] in unknown.json()["detail"]

    chosen = client.post(
        "/reconciliation/choices",
        json=choice | {"candidate": last["candidate"]},
        headers=auth("officer"),
    )
    assert chosen.status_code == 200, chosen.text
    (link,) = chosen.json()["links"]
    assert link["rule"] == "imports_together" and link["matched_batch_ids"] == files[1:]
