"""A person's check of a statement line an import rule sent to a fund, over HTTP: POST
/reconciliation/checks takes it off the exceptions report, POST /reconciliation/unchecks
puts it back; officers and supervisors only; refusals are problem details, storing nothing.
And GET /reconciliation/provider-lines, read-only."""

from __future__ import annotations

from domain.statements import COLLECTOR_NARRATIVES, PAYOUT_NARRATIVES, ProviderNames
from tests.api.conftest import auth
from tests.application.test_statement_imports import YESTERDAY, camt, entry
from tests.domain.helpers import CT_REF, CT_REF_2

PROBLEM = "application/problem+json"
RULE = {
    "name": "till deposits",
    "narrative_contains": "TILL DEPOSIT",
    "fund_code": "CT",
    "rewrite_pattern": "[A-Z ]+",
    "rewrite_to": CT_REF_2,
}


def _statement(client) -> str:
    body = {"rule": RULE, "reason": "the counter's cash goes to council tax"}
    assert client.post("/import-rules", json=body, headers=auth("supervisor")).status_code == 201
    statement = camt(
        entry("13.00", day=YESTERDAY, ref="B1", text="TILL DEPOSIT"),
        entry("14.00", day=YESTERDAY, ref="B2", text=CT_REF),
    )
    uploaded = client.post(
        "/imports", files={"file": ("day.xml", statement)}, headers=auth("integration")
    )
    assert uploaded.status_code == 201, uploaded.text
    return uploaded.json()["batch"]["batch_id"]


def _listed(client) -> list[int]:
    report = client.get("/reconciliation/exceptions", headers=auth("officer")).json()
    return [row["line"] for row in report["unmatched_statement_lines"]]


def test_a_line_is_checked_and_unchecked_over_http(client) -> None:
    batch_id = _statement(client)
    assert _listed(client) == [1]
    body = {"batch_id": batch_id, "line": 1, "reason": "the till's paying-in slip matches"}
    for role in ("integration", "auditor", "reporting"):
        refused = client.post("/reconciliation/checks", json=body, headers=auth(role))
        assert refused.status_code == 403, role
    checked = client.post("/reconciliation/checks", json=body, headers=auth("officer"))
    assert checked.status_code == 200, checked.text
    assert checked.json()["checked"] is True and checked.json()["amount_pence"] == 1_300
    assert checked.json()["on_report"] is False
    assert _listed(client) == []
    line = client.get(f"/imports/{batch_id}", headers=auth("auditor")).json()["lines"][0]
    assert line["checked"]["reason"] == "the till's paying-in slip matches"
    assert line["checked"]["checked_by"] and line["checked"]["checked_at"]

    again = client.post("/reconciliation/checks", json=body, headers=auth("supervisor"))
    assert again.status_code == 409 and again.json()["code"] == "line_not_to_check"
    assert again.headers["content-type"].startswith(PROBLEM)

    undo = {"batch_id": batch_id, "line": 1, "reason": "the slip was another day's"}
    undone = client.post("/reconciliation/unchecks", json=undo, headers=auth("supervisor"))
    assert undone.status_code == 200, undone.text
    assert undone.json()["checked"] is False and undone.json()["on_report"] is True
    assert _listed(client) == [1]
    line = client.get(f"/imports/{batch_id}", headers=auth("officer")).json()["lines"][0]
    assert line["checked"] is None and line["checks_undone"][0]["undo_reason"] == undo["reason"]
    twice = client.post("/reconciliation/unchecks", json=undo, headers=auth("officer"))
    assert twice.status_code == 409 and twice.json()["code"] == "line_not_checked"


def test_a_check_is_refused_with_a_problem(client) -> None:
    batch_id = _statement(client)
    payers_own = {"batch_id": batch_id, "line": 2, "reason": "fine"}
    refused = client.post("/reconciliation/checks", json=payers_own, headers=auth("officer"))
    assert refused.status_code == 409 and refused.json()["code"] == "line_not_to_check"
    no_line = payers_own | {"line": 9}
    missing = client.post("/reconciliation/checks", json=no_line, headers=auth("officer"))
    assert missing.status_code == 404, missing.text
    no_reason = {"batch_id": batch_id, "line": 1, "reason": ""}
    invalid = client.post("/reconciliation/checks", json=no_reason, headers=auth("officer"))
    assert invalid.status_code == 422
    assert _listed(client) == [1]


def test_provider_lines_a_fund_took_are_listed_read_only(client, services) -> None:
    statement = camt(entry("10.00", day=YESTERDAY, ref="B1", text=CT_REF, info="WORLDPAYLTD"))
    uploaded = client.post(
        "/imports", files={"file": ("day.xml", statement)}, headers=auth("integration")
    )
    assert uploaded.status_code == 201, uploaded.text
    path = "/reconciliation/provider-lines"
    assert client.get(path, headers=auth("officer")).json() == {"total": 0, "lines": []}
    services.ledger.provider_narratives = ProviderNames.of(
        PAYOUT_NARRATIVES, (*COLLECTOR_NARRATIVES, "WORLDPAY")
    )
    found = client.get(path, headers=auth("auditor"))
    assert found.status_code == 200, found.text
    (line,) = found.json()["lines"]
    assert (line["line"], line["narrative"], line["funds"][0]["fund_code"]) == (
        1,
        "WORLDPAYLTD",
        "CT",
    )
    assert client.get(path, headers=auth("integration")).status_code == 403
    assert client.get(f"{path}?limit=0", headers=auth("officer")).status_code == 422
