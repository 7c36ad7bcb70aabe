"""The limits of accepted input, through HTTP: refused at the edge with a clear problem,
never a 500 and never a value that the read model cannot hold."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.limits import uk_today
from tests.api.conftest import auth, signed
from tests.domain.helpers import CT_REF

PROBLEM = "application/problem+json"
FAR_DATES = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "1999-12-31T23:59:59Z",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-01:00",
]


def _refused(response) -> dict:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    return response.json()


@pytest.mark.parametrize("moment", FAR_DATES)
def test_a_receipt_dated_outside_the_business_range_is_refused(client, ledger, moment) -> None:
    before = ledger.max_position()
    response = client.post(
        "/payments",
        json={"channel": "cash", "amount_pence": 100, "reference": "X", "received_at": moment},
        headers=auth("officer"),
    )
    assert _refused(response)["code"] in {"invalid_effective_date", "validation_error"}
    assert ledger.max_position() == before


@pytest.mark.parametrize("moment", FAR_DATES)
def test_a_webhook_created_outside_the_business_range_is_refused(client, ledger, moment) -> None:
    message = {
        "event_type": "card_payment_succeeded",
        "resource_type": "payment",
        "resource": {
            "payment_id": "pay_far",
            "amount": 100,
            "reference": CT_REF,
            "created_date": moment,
            "state": {"status": "success"},
        },
    }
    before = ledger.max_position()
    body, headers = signed(message)
    response = client.post("/webhooks/govuk-pay", content=body, headers=headers)
    assert "2000-01-01" in _refused(response)["detail"]
    assert ledger.max_position() == before


@pytest.mark.parametrize(
    "query",
    [
        *(f"/audit?from={m.replace('+', '%2B')}" for m in FAR_DATES),
        "/audit?to=0001-01-01",
        "/audit?to=9999-12-31",
        "/audit?from=2026-03-31T10:00:00",
        "/audit?from=yesterday",
        "/audit/balances?as_at=0001-01-01T00:00:00Z",
        "/audit/balances?as_at=2026-03-31&known_at=9999-12-31T23:59:59Z",
        "/payments?from=0001-01-01",
        "/payments?to=9999-12-31",
        "/reports/daily-takings?date=0001-01-01",
        "/reports/daily-takings?date=9999-12-31",
    ],
)
def test_query_dates_outside_2000_to_2100_are_a_clear_problem(client, query) -> None:
    problem = _refused(client.get(query, headers=auth("auditor")))
    assert problem["detail"] and "Traceback" not in problem["detail"]


def test_audit_accepts_a_bare_date_as_the_uk_business_day(client) -> None:
    recorded = client.post(
        "/payments",
        json={"channel": "cash", "amount_pence": 100, "reference": "X"},
        headers=auth("officer"),
    )
    position = recorded.json()["position"]
    today, yesterday = uk_today(), uk_today() - timedelta(days=1)
    found = client.get(
        f"/audit?from={today}&to={today}&min_position={position}&after_position={position - 1}",
        headers=auth("auditor"),
    )
    assert found.status_code == 200, found.text
    assert [item["position"] for item in found.json()["items"]] == [position]
    for query in (f"to={yesterday}", f"from={today + timedelta(days=1)}"):
        none = client.get(f"/audit?{query}", headers=auth("auditor"))
        assert none.status_code == 200 and none.json()["items"] == [], query
    as_at = client.get(f"/audit/balances?as_at={today}", headers=auth("auditor"))
    assert as_at.status_code in {200, 501}, as_at.text


NBSP_CARD = "4111\u00a01111\u00a01111\u00a01111"


@pytest.mark.parametrize(
    "body",
    [
        {"external_id": NBSP_CARD},
        {"reference": NBSP_CARD},
        {"payer": {"name": f"A Payer {NBSP_CARD}"}},
        {"payer": {"address": "1 High St\u2028card 4111\u20111111\u20111111\u20111111"}},
    ],
)
def test_card_numbers_with_unicode_separators_are_refused(client, ledger, body) -> None:
    before = ledger.max_position()
    response = client.post(
        "/payments",
        json={"channel": "cash", "amount_pence": 100} | body,
        headers=auth("officer"),
    )
    assert _refused(response)["code"] == "card_number_rejected"
    assert ledger.max_position() == before


def test_uuid_keys_and_ids_that_once_looked_like_cards_are_recorded(client) -> None:
    uuid_like = "f23e86e1-0646-4773-8447-c469d07d8b49"  # 1-0646-4773-8447 passes Luhn
    response = client.post(
        "/payments",
        json={
            "channel": "govuk_pay",
            "amount_pence": 100,
            "external_id": uuid_like,
            "reference": CT_REF,
        },
        headers=auth("officer") | {"Idempotency-Key": uuid_like},
    )
    assert response.status_code == 201, response.text
    pid = response.json()["payment"]["payment_id"]
    note = client.post(
        f"/payments/{pid}/notes",
        json={"text": f"payer quoted payment {uuid_like}"},
        headers=auth("officer"),
    )
    assert note.status_code == 201, note.text
