"""Keys limited to fund groups, and the partial-refund role, end to end through HTTP on both
backends. The sample chart: CT and NNDR in REVENUES, HRA and BOP in HOUSING, PCN in PARKING."""

from __future__ import annotations

import pytest

from api.auth import ApiKeys, Role
from income_ledger.server import build_services
from tests.domain.helpers import CT_REF, HRA_REF

TOKENS = {
    "housing": ("officer@HOUSING", "housing-token-0123456789"),
    "revenues": ("supervisor@REVENUES+PARKING", "revenues-token-0123456789"),
    "anyone": ("officer", "anyone-token-0123456789"),
    "cashier": ("integration", "cashier-token-0123456789"),
    "auditor": ("auditor@HOUSING", "auditor-token-0123456789"),
}


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who][1]}"}


@pytest.fixture
def services(ledger, settings):
    """The conftest's client serves these keys: limited ones, and partial refunds for
    supervisors only."""
    keys = ApiKeys.parse(
        ",".join(f"{name}:{role}:{token}" for name, (role, token) in TOKENS.items()),
        partial_refund_roles={Role.SUPERVISOR},
    )
    services = build_services(settings, ledger, keys)
    yield services
    services.read_engine.dispose()


def _record(client, who: str, reference: str, pence: int = 10_000):
    body = {"channel": "cash", "amount_pence": pence, "reference": reference}
    return client.post("/payments", json=body, headers=auth(who))


def test_a_limited_key_sees_its_groups_funds_only(client) -> None:
    codes = [f["code"] for f in client.get("/funds", headers=auth("housing")).json()]
    assert codes == ["BOP", "HRA"]
    assert len(client.get("/funds", headers=auth("anyone")).json()) == 7
    refused = client.get("/funds/CT", headers=auth("housing"))
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "outside_fund_groups"
    assert "HOUSING" in refused.json()["detail"]
    recorded = _record(client, "anyone", CT_REF).json()
    _record(client, "anyone", HRA_REF, 2_500)
    position = recorded["position"] + 1
    balances = client.get(
        f"/balances/funds?min_position={position}", headers=auth("housing")
    ).json()
    assert [f["fund_code"] for f in balances["funds"]] == ["BOP", "HRA"]
    assert balances["total_pence"] == 2_500
    assert client.get(f"/accounts/CT/{CT_REF}", headers=auth("housing")).status_code == 403
    assert client.get(f"/accounts/HRA/{HRA_REF}", headers=auth("housing")).status_code == 200
    takings = client.get("/reports/daily-takings", headers=auth("housing")).json()
    # Suspense has no fund, so every officer sees its rows.
    assert {row["fund_code"] for row in takings["rows"]} <= {"HRA", "SUSPENSE"}
    assert takings["total_net_pence"] == 2_500


def test_payments_of_other_groups_are_neither_found_nor_shown(client) -> None:
    council_tax = _record(client, "anyone", CT_REF).json()
    rent = _record(client, "anyone", HRA_REF).json()
    held = _record(client, "anyone", "NOBODY").json()
    last = held["position"]
    found = client.get(f"/payments?min_position={last}", headers=auth("housing")).json()
    ids = {item["payment_id"] for item in found["items"]}
    assert ids == {rent["payment"]["payment_id"], held["payment"]["payment_id"]}
    assert found["total"] == 2
    assert client.get("/payments?fund_code=CT", headers=auth("housing")).status_code == 403
    other = f"/payments/{council_tax['payment']['payment_id']}"
    assert client.get(other, headers=auth("housing")).status_code == 403
    assert client.get(other, headers=auth("revenues")).status_code == 200


def test_commands_that_would_move_money_outside_the_groups_are_refused(client) -> None:
    refused = _record(client, "housing", CT_REF)
    assert refused.status_code == 403 and refused.json()["code"] == "outside_fund_groups"
    held = _record(client, "housing", "NOBODY").json()["payment"]["payment_id"]
    allocate = {
        "lines": [{"fund_code": "CT", "reference": CT_REF, "amount_pence": 10_000}],
        "reason": "caller said council tax",
    }
    answer = client.post(f"/payments/{held}/allocations", json=allocate, headers=auth("housing"))
    assert answer.status_code == 403
    shown = client.get(f"/payments/{held}", headers=auth("housing")).json()
    assert shown["unallocated_pence"] == 10_000 and len(shown["history"]) == 1
    allocate["lines"][0] |= {"fund_code": "HRA", "reference": HRA_REF}
    answer = client.post(f"/payments/{held}/allocations", json=allocate, headers=auth("housing"))
    assert answer.status_code == 201, answer.text


def test_whole_ledger_reports_need_a_key_without_limits(client) -> None:
    for path in ("/audit", "/audit/balances?as_at=2026-01-01", "/imports"):
        answer = client.get(path, headers=auth("auditor"))
        assert answer.status_code == 403, path
        assert "key without fund-group limits" in answer.json()["detail"]


def test_only_the_partial_refund_roles_refund_part_of_an_allocation(client) -> None:
    payment = _record(client, "anyone", CT_REF).json()["payment"]["payment_id"]
    part = {"amount_pence": 2_500, "reason": "overpaid"}
    refused = client.post(f"/payments/{payment}/refunds", json=part, headers=auth("anyone"))
    assert refused.status_code == 403
    assert refused.json()["code"] == "partial_refund_not_permitted"
    done = client.post(f"/payments/{payment}/refunds", json=part, headers=auth("revenues"))
    assert done.status_code == 201, done.text
    rest = {"amount_pence": 7_500, "reason": "the rest"}
    done = client.post(f"/payments/{payment}/refunds", json=rest, headers=auth("anyone"))
    assert done.status_code == 201, done.text
    assert done.json()["payment"]["refunded_pence"] == 10_000
