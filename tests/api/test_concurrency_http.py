"""Against a real uvicorn: retries with an Idempotency-Key and concurrent duplicates."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.api.conftest import auth
from tests.domain.helpers import CT_REF


def test_a_retry_with_the_same_key_returns_the_first_response(base_url, ledger) -> None:
    body = {"channel": "cash", "amount_pence": 2_500, "reference": CT_REF}
    headers = auth("officer") | {"Idempotency-Key": "retry-1"}
    with httpx.Client(base_url=base_url) as http:
        first = http.post("/payments", json=body, headers=headers)
        second = http.post("/payments", json=body, headers=headers)
        other = http.post("/payments", json=body | {"amount_pence": 1}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    receipts = [e for _, e in ledger.read_events() if type(e).__name__ == "Received"]
    assert len(receipts) == 1


@pytest.mark.parametrize("with_key", [True, False])
def test_concurrent_duplicates_cannot_both_apply(base_url, ledger, with_key) -> None:
    body = {
        "channel": "govuk_pay",
        "amount_pence": 4_000,
        "reference": CT_REF,
        "external_id": f"race-{with_key}",
    }
    headers = auth("integration") | ({"Idempotency-Key": "race"} if with_key else {})
    with httpx.Client(base_url=base_url, timeout=30) as http, ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(lambda h: http.post("/payments", json=body, headers=h), [headers] * 8)
        )
    statuses = Counter(r.status_code for r in responses)
    assert statuses[201] >= 1 and set(statuses) <= {200, 201, 409}, statuses
    assert (
        sum(r.json().get("recorded") is True for r in responses if r.status_code in (200, 201)) >= 1
    )
    receipts = [e for _, e in ledger.read_events() if type(e).__name__ == "Received"]
    assert len(receipts) == 1
    ids = {r.json()["payment"]["payment_id"] for r in responses if r.status_code != 409}
    assert len(ids) == 1


def test_concurrent_allocations_of_the_same_money_cannot_both_succeed(base_url, ledger) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        pid = http.post(
            "/payments",
            headers=auth("officer"),
            json={"channel": "cheque", "amount_pence": 1_000, "reference": "JUNK"},
        ).json()["payment"]["payment_id"]
        body = {"lines": [{"fund_code": "CT", "reference": CT_REF, "amount_pence": 1_000}]}
        with ThreadPoolExecutor(6) as pool:
            responses = list(
                pool.map(
                    lambda n: http.post(
                        f"/payments/{pid}/allocations",
                        json=body,
                        headers=auth("officer") | {"Idempotency-Key": f"k{n}"},
                    ),
                    range(6),
                )
            )
    statuses = Counter(r.status_code for r in responses)
    assert statuses[201] == 1, statuses
    assert statuses[409] == 5
    codes = {r.json()["code"] for r in responses if r.status_code == 409}
    assert codes <= {"concurrent_update", "allocation_exceeds_unallocated"}


def test_concurrent_retries_with_one_key_all_get_the_first_answer(base_url, ledger) -> None:
    """The README's example: the same POST, no external_id, sent 8 times at once (issue #14.3).
    Exactly one records; every other gets its response, marked as a replay."""
    body = {"channel": "cash", "amount_pence": 4_200, "reference": CT_REF}
    for round_number in range(3):
        headers = auth("officer") | {"Idempotency-Key": f"till-3-{round_number}"}
        with httpx.Client(base_url=base_url, timeout=30) as http, ThreadPoolExecutor(8) as pool:
            responses = list(
                pool.map(lambda h: http.post("/payments", json=body, headers=h), [headers] * 8)
            )
        assert [r.status_code for r in responses] == [201] * 8, [r.text for r in responses]
        assert len({r.text for r in responses}) == 1
        replayed = [r.headers.get("Idempotent-Replayed") for r in responses]
        assert sorted(replayed, key=str) == [None] + ["true"] * 7, replayed
    receipts = [e for _, e in ledger.read_events() if type(e).__name__ == "Received"]
    assert len(receipts) == 3
