"""Erasing a payer's personal data through HTTP: supervisors only, recorded, replay-safe."""

from __future__ import annotations

from tests.api.conftest import auth
from tests.domain.helpers import CT_REF


def test_a_supervisor_erases_payer_details_and_the_history_says_so(client) -> None:
    recorded = client.post(
        "/payments",
        headers=auth("officer"),
        json={
            "channel": "cheque",
            "amount_pence": 4_200,
            "reference": CT_REF,
            "payer": {"name": "A. Patel", "email": "a.patel@example.org"},
        },
    ).json()
    pid = recorded["payment"]["payment_id"]
    url = f"/payments/{pid}/payer-erasure"
    body = {"reason": "erasure request by the data subject"}
    assert client.post(url, headers=auth("officer"), json=body).status_code == 403
    assert client.post(url, headers=auth("supervisor"), json={}).status_code == 422
    assert client.get(f"/payments/{pid}", headers=auth("auditor")).json()["payer"] is not None

    headers = {**auth("supervisor"), "Idempotency-Key": "erase-1"}
    erased = client.post(url, headers=headers, json=body)
    assert erased.status_code == 201, erased.text
    assert erased.json()["recorded"] and erased.json()["position"] > recorded["position"]
    again = client.post(url, headers=headers, json=body)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == erased.json()
    fresh = client.post(url, headers=auth("supervisor"), json=body)
    assert fresh.status_code == 200 and fresh.json()["recorded"] is False  # nothing left

    shown = client.get(f"/payments/{pid}", headers=auth("auditor")).json()
    assert shown["payer"] is None
    last = shown["history"][-1]
    assert (last["action"], last["actor"], last["reason"]) == (
        "PayerDetailsErased",
        "supervisor:supervisor",
        body["reason"],
    )
    assert shown["allocations"] == recorded["payment"]["allocations"]  # the money is untouched
    trail = client.get(
        f"/audit?min_position={erased.json()['position']}", headers=auth("auditor")
    ).json()
    assert "PayerDetailsErased" in [row["action"] for row in trail["items"]]


def test_erasing_an_unknown_payment_is_404(client) -> None:
    response = client.post(
        "/payments/00000000-0000-4000-8000-000000000000/payer-erasure",
        headers=auth("supervisor"),
        json={"reason": "request"},
    )
    assert response.status_code == 404
