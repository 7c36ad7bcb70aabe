"""Import rules through HTTP, end to end: supervisors change them, officers list them, an
upload is decided by them and each receipt says which rule decided it."""

from __future__ import annotations

from tests.api.conftest import auth
from tests.api.test_imports_api import upload
from tests.application.test_imports import allpay_file, allpay_line
from tests.domain.helpers import CT_REF

PROBLEM = "application/problem+json"
RULE = {
    "name": "CT prefix",
    "reference_pattern": "CT[0-9]{8}",
    "fund_code": "CT",
    "strip_prefix": "CT",
}


def test_rules_are_added_by_supervisors_listed_by_officers_and_decide_uploads(client) -> None:
    body = {"rule": RULE, "reason": "Allpay sends CT references with a prefix"}
    assert client.post("/import-rules", json=body, headers=auth("officer")).status_code == 403
    added = client.post("/import-rules", json=body, headers=auth("supervisor"))
    assert added.status_code == 201, added.text
    assert added.json()["rule"]["rule_id"] == "R1" and added.json()["rule"]["order"] == 1
    listed = client.get("/import-rules", headers=auth("officer")).json()
    assert [rule["rule_id"] for rule in listed["rules"]] == ["R1"]
    assert client.get("/import-rules", headers=auth("integration")).status_code == 403

    created = upload(client, allpay_file(allpay_line(f"CT{CT_REF}", "12.00"))).json()
    detail = client.get(f"/imports/{created['batch']['batch_id']}", headers=auth("officer"))
    line = detail.json()["lines"][0]
    assert line["import_rule"]["rule_id"] == "R1" and line["import_rule"]["rule_version"] == 1
    payment = client.get(f"/payments/{line['payment_id']}", headers=auth("officer")).json()
    assert payment["status"] == "allocated" and payment["reference"] == CT_REF
    assert payment["import_rule"]["file_reference"] == f"CT{CT_REF}"
    allocated = [event for event in payment["history"] if event["action"] == "Allocated"]
    assert allocated[0]["details"]["import_rule"]["rule_id"] == "R1"

    reason = {"reason": "the prefix has gone"}
    assert (
        client.post("/import-rules/R1/disable", json=reason, headers=auth("officer")).status_code
        == 403
    )
    disabled = client.post("/import-rules/R1/disable", json=reason, headers=auth("supervisor"))
    assert disabled.status_code == 200 and disabled.json()["rule"]["enabled"] is False
    assert disabled.json()["rule"]["version"] == 2
    again = upload(client, allpay_file(allpay_line(f"CT{CT_REF}", "13.00")), name="b.txt").json()
    detail = client.get(f"/imports/{again['batch']['batch_id']}", headers=auth("officer"))
    assert detail.json()["lines"][0]["import_rule"] is None


def test_bad_rules_are_refused_as_problems(client) -> None:
    bad = {"rule": RULE | {"reference_pattern": "(CT+)+"}, "reason": "x"}
    response = client.post("/import-rules", json=bad, headers=auth("supervisor"))
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "invalid_import_rule"
    assert "repeat inside a repeat" in response.json()["detail"]
    # An unknown group name in the rewrite was an IndexError the rule did not expect: a 500.
    rewrite = RULE | {"rewrite_pattern": "CT(?P<n>[0-9]{8})", "rewrite_to": r"\g<number>"}
    response = client.post(
        "/import-rules", json={"rule": rewrite, "reason": "x"}, headers=auth("supervisor")
    )
    assert response.status_code == 422 and response.json()["code"] == "invalid_import_rule"
    assert "unknown group name 'number'" in response.json()["detail"]
    unknown = {"rule": RULE | {"fund_code": "NOPE"}, "reason": "x"}
    response = client.post("/import-rules", json=unknown, headers=auth("supervisor"))
    assert response.status_code == 404 and response.json()["code"] == "unknown_fund"
    missing = client.post(
        "/import-rules/R9/move", json={"order": 1, "reason": "x"}, headers=auth("supervisor")
    )
    assert missing.status_code == 404 and missing.json()["code"] == "import_rule_not_found"


def test_a_rule_is_amended_by_a_supervisor_with_patch(client) -> None:
    body = {"rule": RULE, "reason": "prefix"}
    assert client.post("/import-rules", json=body, headers=auth("supervisor")).status_code == 201
    change = {"changes": {"reference_pattern": "CX[0-9]{8}"}, "reason": "new prefix"}
    assert client.patch("/import-rules/R1", json=change, headers=auth("officer")).status_code == 403
    amended = client.patch("/import-rules/R1", json=change, headers=auth("supervisor"))
    assert amended.status_code == 200, amended.text
    rule = amended.json()["rule"]
    assert (rule["version"], rule["order"], rule["reference_pattern"]) == (2, 1, "CX[0-9]{8}")
    assert rule["strip_prefix"] == "CT"
    bad = {"changes": {"reference_pattern": "(A+)+"}, "reason": "slow"}
    refused = client.patch("/import-rules/R1", json=bad, headers=auth("supervisor"))
    assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM
    missing = client.patch("/import-rules/R9", json=change, headers=auth("supervisor"))
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    listed = client.get("/import-rules", headers=auth("officer")).json()["rules"]
    assert [(r["rule_id"], r["version"]) for r in listed] == [("R1", 2)]
