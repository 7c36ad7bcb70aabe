"""Refund approval through HTTP: the same domain rule as everywhere, 201 or 202."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.api.conftest import REFUND_LIMIT_PENCE, auth
from tests.domain.helpers import CT_REF

RACERS = 6


def _payment(client, amount_pence: int = 50_000, reference: str = CT_REF) -> str:
    made = client.post(
        "/payments",
        headers=auth("officer"),
        json={"channel": "cash", "amount_pence": amount_pence, "reference": reference},
    )
    assert made.status_code == 201, made.text
    return made.json()["payment"]["payment_id"]


def _refund(client, pid: str, amount_pence: int, **source):
    return client.post(
        f"/payments/{pid}/refunds",
        headers=auth("officer"),
        json={"amount_pence": amount_pence, "reason": "overpaid", **source},
    )


def test_splitting_a_refund_under_the_limit_still_needs_approval(client) -> None:
    pid = _payment(client)
    half = REFUND_LIMIT_PENCE // 2
    assert _refund(client, pid, half).status_code == 201
    assert _refund(client, pid, half).status_code == 201
    third = _refund(client, pid, 1)
    assert third.status_code == 202, third.text
    assert third.json()["payment"]["refunded_pence"] == 2 * half
    [pending] = third.json()["payment"]["pending_refunds"]
    assert pending["amount_pence"] == 1 and pending["requested_by"] == "officer:officer"


def test_an_approval_after_the_money_moved_is_refused_as_stale(client) -> None:
    pid = _payment(client, reference="JUNK")
    waiting = _refund(client, pid, REFUND_LIMIT_PENCE + 1)
    assert waiting.status_code == 202
    [pending] = waiting.json()["payment"]["pending_refunds"]
    assert pending["fund_code"] is None
    client.post(
        f"/payments/{pid}/allocations",
        headers=auth("officer"),
        json={"lines": [{"fund_code": "CT", "reference": CT_REF, "amount_pence": 50_000}]},
    )
    url = f"/payments/{pid}/refunds/{pending['request_id']}"
    stale = client.post(f"{url}/approve", headers=auth("supervisor"))
    assert stale.status_code == 409 and stale.json()["code"] == "refund_request_stale"
    declined = client.post(f"{url}/decline", headers=auth("supervisor"), json={"reason": "stale"})
    assert declined.status_code == 201
    again = client.post(f"{url}/approve", headers=auth("supervisor2"))
    assert again.status_code == 409 and again.json()["code"] == "refund_request_already_decided"
    assert "declined by supervisor:supervisor" in again.json()["detail"]
    payment = client.get(f"/payments/{pid}", headers=auth("auditor")).json()
    assert payment["allocated_pence"] == 50_000 and payment["refunded_pence"] == 0


def test_supervisors_racing_to_approve_over_http_get_one_201_and_409s(base_url) -> None:
    with httpx.Client(base_url=base_url) as http:
        made = http.post(
            "/payments",
            headers=auth("officer"),
            json={"channel": "cash", "amount_pence": 50_000, "reference": CT_REF},
        )
        pid = made.json()["payment"]["payment_id"]
        waiting = http.post(
            f"/payments/{pid}/refunds",
            headers=auth("officer"),
            json={"amount_pence": REFUND_LIMIT_PENCE + 1, "reason": "overpaid"},
        )
        assert waiting.status_code == 202, waiting.text
        request_id = waiting.json()["payment"]["pending_refunds"][0]["request_id"]
    url = f"{base_url}/payments/{pid}/refunds/{request_id}/approve"
    barrier = threading.Barrier(RACERS)

    def approve(who: str) -> tuple[int, str]:
        with httpx.Client() as http:
            barrier.wait()
            response = http.post(url, headers=auth(who))
            return response.status_code, response.json().get("code", "")

    with ThreadPoolExecutor(RACERS) as pool:
        results = Counter(pool.map(approve, ["supervisor", "supervisor2"] * (RACERS // 2)))
    assert results[(201, "")] == 1, results
    assert sum(n for (status, _), n in results.items() if status == 409) == RACERS - 1, results


def test_a_vat_rate_change_can_be_dated(client) -> None:
    body = {
        "vat_rate_basis_points": 0,
        "vat_rate_effective_from": "2027-04-01T00:00:00+01:00",
        "reason": "zero-rated from April",
    }
    amended = client.patch("/funds/SUN", headers=auth("supervisor"), json=body)
    assert amended.status_code == 200, amended.text
    rates = amended.json()["fund"]["vat_rates"]
    assert rates[-1] == {"effective_from": "2027-03-31T23:00:00+00:00", "vat_rate_basis_points": 0}
    alone = {"vat_rate_effective_from": "2027-04-01T00:00:00Z", "reason": "no rate"}
    refused = client.patch("/funds/SUN", headers=auth("supervisor"), json=alone)
    assert refused.status_code == 422 and "give both" in refused.json()["detail"]
