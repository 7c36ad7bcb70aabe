"""Walks the role x endpoint table of the README: each role gets exactly its rights."""

from __future__ import annotations

import pytest

from tests.api.conftest import TOKENS, auth, signed
from tests.domain.helpers import CT_REF, HRA_REF

ALL = {"officer", "supervisor", "auditor", "reporting", "integration"}
READERS = {"officer", "supervisor", "auditor", "reporting"}
AUDIT = {"officer", "supervisor", "auditor"}
STAFF = {"officer", "supervisor"}
RECORDERS = {"officer", "supervisor", "integration"}
SUPERVISOR = {"supervisor"}
FUND = {
    "code": "LIC",
    "name": "Licensing",
    "cost_centre": "L1",
    "ledger_code": "R9",
    "reference_rule": {"min_length": 6, "max_length": 6, "pattern": "LI[0-9]{4}"},
}

# (method, path, body, roles allowed). {pid} is a payment with money allocated to CT.
TABLE = [
    ("GET", "/funds", None, ALL),
    ("GET", "/funds/CT", None, ALL),
    ("POST", "/funds", FUND, SUPERVISOR),
    ("PATCH", "/funds/CT", {"name": "Council Tax", "reason": "tidy"}, SUPERVISOR),
    ("POST", "/payments", {"channel": "cash", "amount_pence": 1, "reference": "X"}, RECORDERS),
    ("GET", "/payments", None, READERS),
    ("GET", "/payments/{pid}", None, READERS),
    (
        "POST",
        "/payments/{pid}/allocations",
        {"lines": [{"fund_code": "CT", "reference": CT_REF, "amount_pence": 1}]},
        STAFF,
    ),
    (
        "POST",
        "/payments/{pid}/transfers",
        {
            "from": {"fund_code": "CT", "reference": CT_REF},
            "to": {"fund_code": "HRA", "reference": HRA_REF},
            "amount_pence": 1,
            "reason": "r",
        },
        STAFF,
    ),
    ("POST", "/payments/{pid}/refunds", {"amount_pence": 1, "reason": "r"}, STAFF),
    ("POST", "/payments/{pid}/refunds/{rid}/approve", None, SUPERVISOR),
    ("POST", "/payments/{pid}/refunds/{rid}/decline", {"reason": "no"}, SUPERVISOR),
    ("POST", "/payments/{pid}/payer-erasure", {"reason": "erasure request"}, SUPERVISOR),
    ("POST", "/payments/{pid}/notes", {"text": "hello"}, STAFF),
    ("POST", "/payments/{pid}/reversals", {"kind": "chargeback", "reason": "r"}, STAFF),
    ("GET", "/balances/funds", None, READERS),
    ("GET", "/balances/funds/CT", None, READERS),
    ("GET", f"/accounts/CT/{CT_REF}", None, READERS),
    ("GET", "/suspense", None, READERS),
    ("GET", "/reports/daily-takings", None, READERS),
    ("POST", "/imports", None, RECORDERS),
    ("GET", "/imports", None, READERS),
    ("GET", "/imports/00000000-0000-0000-0000-000000000000", None, READERS),
    (
        "POST",
        "/imports/00000000-0000-0000-0000-000000000000/reversal",
        {"reason": "r"},
        SUPERVISOR,
    ),
    ("GET", "/reconciliation/exceptions", None, READERS),
    ("POST", "/reconciliation/links", None, RECORDERS),
    ("POST", "/reconciliation/links/00000000-0000-0000-0000-000000000000/1", None, STAFF),
    (
        "POST",
        "/reconciliation/unlinks",
        {"batch_id": "00000000-0000-0000-0000-000000000000", "line": 1, "reason": "r"},
        STAFF,
    ),
    (
        "POST",
        "/reconciliation/choices",
        {
            "batch_id": "00000000-0000-0000-0000-000000000000",
            "line": 1,
            "payment_id": "p",
            "reason": "r",
        },
        STAFF,
    ),
    (
        "POST",
        "/reconciliation/checks",
        {"batch_id": "00000000-0000-0000-0000-000000000000", "line": 1, "reason": "r"},
        STAFF,
    ),
    (
        "POST",
        "/reconciliation/unchecks",
        {"batch_id": "00000000-0000-0000-0000-000000000000", "line": 1, "reason": "r"},
        STAFF,
    ),
    ("GET", "/reconciliation/provider-lines", None, READERS),
    ("POST", "/periods/closes", {"kind": "day", "date": "2025-01-02", "reason": "r"}, SUPERVISOR),
    ("GET", "/periods/closes", None, READERS),
    ("GET", "/gl/export?date=2025-01-02", None, SUPERVISOR),
    ("GET", "/gl/exports", None, SUPERVISOR),
    ("GET", "/audit", None, AUDIT),
    ("GET", "/audit/balances?as_at=2026-03-31T23:59:59Z", None, AUDIT),
    ("GET", "/metrics", None, ALL),
]
ROLES = ["officer", "supervisor", "auditor", "reporting", "integration"]


@pytest.fixture
def ids(client) -> dict[str, str]:
    made = client.post(
        "/payments",
        headers=auth("officer"),
        json={"channel": "cash", "amount_pence": 100_000, "reference": "JUNK"},
    ).json()
    pid = made["payment"]["payment_id"]
    client.post(
        f"/payments/{pid}/allocations",
        headers=auth("officer"),
        json={"lines": [{"fund_code": "CT", "reference": CT_REF, "amount_pence": 90_000}]},
    )
    requested = client.post(
        f"/payments/{pid}/refunds",
        headers=auth("officer"),
        json={"amount_pence": 20_000, "reason": "large", "fund_code": "CT", "reference": CT_REF},
    ).json()
    rid = requested["payment"]["pending_refunds"][0]["request_id"]
    return {"pid": pid, "rid": rid}


def call(client, method: str, path: str, body, headers: dict[str, str]):
    return client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_can_do_exactly_what_the_table_says(client, ids, role) -> None:
    for method, template, body, allowed in TABLE:
        path = template.format(**ids)
        response = call(client, method, path, body, auth(role))
        if role in allowed:
            assert response.status_code not in (401, 403), (role, method, path, response.text)
        else:
            assert response.status_code == 403, (role, method, path, response.status_code)
            assert response.json()["code"] == "forbidden"


def test_no_key_or_a_wrong_key_gets_401_everywhere_but_health(client, ids) -> None:
    for method, template, body, _ in TABLE:
        path = template.format(**ids)
        for headers in (
            {},
            {"Authorization": "Bearer not-a-real-key-at-all"},
            {"Authorization": f"Basic {TOKENS['officer']}"},
        ):
            response = call(client, method, path, body, headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/health").status_code == 200


def test_the_webhook_is_authenticated_by_its_signature_not_a_key(client) -> None:
    body, headers = signed({"event_type": "card_payment_expired", "resource": {}})
    assert client.post("/webhooks/govuk-pay", content=body, headers=headers).status_code == 200
    assert (
        client.post("/webhooks/govuk-pay", content=body, headers=auth("officer")).status_code == 401
    )


def test_the_actor_recorded_is_the_key_s_user(client, ids) -> None:
    history = client.get(f"/payments/{ids['pid']}", headers=auth("auditor")).json()["history"]
    assert history[0]["actor"] == "officer:officer"
