"""End of day, month and year over HTTP, on both backends."""

from __future__ import annotations

import csv
import io

from tests.api.conftest import auth
from tests.api.test_webhooks import deliver, message
from tests.domain.helpers import CT_REF


def test_a_closed_day_refuses_a_back_dated_receipt_with_a_problem_naming_it(client) -> None:
    closed = client.post(
        "/periods/closes",
        headers=auth("supervisor"),
        json={"kind": "day", "date": "2025-10-06", "reason": "cashed up"},
    )
    assert closed.status_code == 201 and closed.json()["period"] == "2025-10-06"
    assert closed.json()["closed_by"] == "supervisor:supervisor"
    refused = client.post(
        "/payments",
        headers=auth("officer"),
        json={
            "channel": "cash",
            "amount_pence": 500,
            "reference": CT_REF,
            "received_at": "2025-10-06T09:00:00Z",
        },
    )
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "period_closed"
    assert "day 2025-10-06" in refused.json()["detail"]
    late = {"channel": "cash", "amount_pence": 500, "reference": CT_REF}
    recorded = client.post(
        "/payments", headers=auth("officer"), json=late | {"relates_to_period": "2025-10-06"}
    )
    assert recorded.status_code == 201
    details = recorded.json()["payment"]["provider_details"]
    assert details == {"relates_to_period": "2025-10-06"}
    unknown = client.post(
        "/payments", headers=auth("officer"), json=late | {"relates_to_period": "2025-10-07"}
    )
    assert unknown.status_code == 422 and "not a closed period" in unknown.json()["detail"]
    listed = client.get("/periods/closes", headers=auth("reporting")).json()
    assert [c["period"] for c in listed] == ["2025-10-06"]
    bad = client.post(
        "/periods/closes",
        headers=auth("supervisor"),
        json={"kind": "week", "date": "2025-10-06", "reason": "x"},
    )
    assert bad.status_code == 422
    assert (
        client.post(
            "/periods/closes",
            headers=auth("officer"),
            json={"kind": "day", "date": "2025-10-07", "reason": "x"},
        ).status_code
        == 403
    )


def test_a_govuk_pay_payment_for_a_closed_day_is_recorded_today_with_its_date_kept(
    client,
) -> None:
    # The message says the payment was made on 2026-11-20 (tests/api/test_webhooks.py).
    client.post(
        "/periods/closes",
        headers=auth("supervisor"),
        json={"kind": "day", "date": "2026-11-20", "reason": "cashed up"},
    )
    answer = deliver(client, message("card_payment_succeeded", payment_id="pay_late"))
    assert answer.status_code == 200 and answer.json()["status"] == "recorded"
    payment = client.get(f"/payments/{answer.json()['payment_id']}", headers=auth("officer"))
    body = payment.json()
    assert body["received_at"][:10] != "2026-11-20"
    assert body["provider_details"]["originally_received_at"].startswith("2026-11-20T09:30")
    assert body["provider_details"]["relates_to_period"] == "2026-11-20"
    assert body["amount_pence"] == 5_000  # the money is kept


def test_gl_export_is_csv_the_same_every_time_and_for_supervisors(client) -> None:
    recorded = client.post(
        "/payments",
        headers=auth("officer"),
        json={
            "channel": "cheque",
            "amount_pence": 2_000,
            "reference": CT_REF,
            "received_at": "2025-10-13T09:00:00Z",
        },
    )
    position = recorded.json()["position"]
    first = client.get(
        f"/gl/export?date=2025-10-13&min_position={position}", headers=auth("supervisor")
    )
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(first.text)))
    assert sum(int(r["amount_pence"]) for r in rows) == 0 and len(rows) == 2
    again = client.get("/gl/export?date=2025-10-13", headers=auth("supervisor"))
    assert again.content == first.content
    assert again.headers["GL-Export-SHA256"] == first.headers["GL-Export-SHA256"]
    listed = client.get("/gl/exports", headers=auth("supervisor")).json()
    assert [e["export_date"] for e in listed] == ["2025-10-13"]
    assert client.get("/gl/export?date=2025-10-13", headers=auth("officer")).status_code == 403
    assert client.get("/gl/export?date=13/10/2025", headers=auth("supervisor")).status_code == 422
