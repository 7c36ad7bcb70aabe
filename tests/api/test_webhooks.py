"""GOV.UK Pay webhooks: signatures, repeats, out-of-order delivery, refunds, unknown types."""

from __future__ import annotations

from tests.api.conftest import auth, signed
from tests.domain.helpers import CT_REF, HRA_REF


def message(
    event_type: str,
    payment_id: str = "pay_abc",
    amount: int = 5_000,
    reference: str = CT_REF,
    metadata: dict | None = None,
    refunded: int | None = None,
) -> dict:
    resource = {
        "payment_id": payment_id,
        "amount": amount,
        "reference": reference,
        "description": "Council tax",
        "metadata": metadata or {"fund_code": "CT"},
        "created_date": "2026-11-20T09:30:00.000Z",
        "state": {"status": "success"},
    }
    if refunded is not None:
        resource["refund_summary"] = {
            "status": "available",
            "amount_submitted": refunded,
            "amount_available": amount - refunded,
        }
    return {
        "webhook_message_id": f"msg-{event_type}-{refunded}",
        "api_version": 1,
        "created_date": "2026-11-20T09:31:00.000Z",
        "resource_id": payment_id,
        "resource_type": "payment",
        "event_type": event_type,
        "resource": resource,
    }


def deliver(client, payload: dict, secret: str | None = None):
    body, headers = signed(payload, *(secret,) if secret else ())
    return client.post("/webhooks/govuk-pay", content=body, headers=headers)


def test_a_signed_payment_is_recorded_once_however_often_it_arrives(client, ledger) -> None:
    first = deliver(client, message("card_payment_succeeded"))
    assert first.status_code == 200 and first.json()["status"] == "recorded"
    for event_type in ("card_payment_succeeded", "card_payment_captured", "card_payment_succeeded"):
        again = deliver(client, message(event_type))
        assert again.json() == {
            "status": "duplicate",
            "payment_id": first.json()["payment_id"],
            "position": None,
        }
    payment = client.get(f"/payments/{first.json()['payment_id']}", headers=auth("officer"))
    body = payment.json()
    assert body["channel"] == "govuk_pay" and body["external_id"] == "pay_abc"
    assert body["received_at"].startswith("2026-11-20T09:30:00")
    assert body["allocations"][0]["fund_code"] == "CT"
    assert body["history"][0]["actor"] == "integration:govuk-pay"


def test_missing_or_wrong_signatures_have_no_effect(client, ledger) -> None:
    before = ledger.max_position()
    payload = message("card_payment_succeeded", payment_id="pay_forged")
    body, _ = signed(payload)
    missing = client.post("/webhooks/govuk-pay", content=body)
    wrong = deliver(client, payload, secret="not-the-secret")
    altered_body = body.replace(b"5000", b"9000")
    _, good_headers = signed(payload)
    altered = client.post("/webhooks/govuk-pay", content=altered_body, headers=good_headers)
    for response in (missing, wrong, altered):
        assert response.status_code == 401 and response.json()["code"] == "bad_signature"
    assert ledger.max_position() == before


def test_a_refund_arriving_first_records_the_payment_then_the_refund(client) -> None:
    refund = deliver(client, message("card_payment_refunded", payment_id="pay_r", refunded=1_500))
    assert refund.status_code == 200 and refund.json()["status"] == "refund_recorded"
    succeeded = deliver(client, message("card_payment_succeeded", payment_id="pay_r"))
    assert succeeded.json()["status"] == "duplicate"
    repeat = deliver(client, message("card_payment_refunded", payment_id="pay_r", refunded=1_500))
    assert repeat.json()["status"] == "duplicate"
    more = deliver(client, message("card_payment_refunded", payment_id="pay_r", refunded=2_000))
    assert more.json()["status"] == "refund_recorded"
    late = deliver(client, message("card_payment_refunded", payment_id="pay_r", refunded=1_500))
    assert late.json()["status"] == "duplicate"
    payment = client.get(f"/payments/{refund.json()['payment_id']}", headers=auth("officer"))
    assert payment.json()["refunded_pence"] == 2_000
    assert payment.json()["allocations"][0]["amount_pence"] == 3_000


def test_a_ledger_code_maps_to_a_fund_and_unknown_types_are_acknowledged(client) -> None:
    mapped = deliver(
        client,
        message(
            "card_payment_succeeded",
            payment_id="pay_m",
            reference=HRA_REF,
            metadata={"ledger_code": "R2010"},
        ),
    )
    payment = client.get(f"/payments/{mapped.json()['payment_id']}", headers=auth("officer"))
    assert payment.json()["fund_hint"] == "HRA"
    assert payment.json()["allocations"][0]["fund_code"] == "HRA"
    ignored = deliver(client, {"event_type": "card_payment_expired", "resource": {}})
    assert ignored.status_code == 200 and ignored.json() == {
        "status": "ignored",
        "payment_id": None,
        "position": None,
    }


def test_malformed_messages_are_422(client) -> None:
    body, headers = signed({"event_type": "card_payment_succeeded", "resource": {}})
    response = client.post("/webhooks/govuk-pay", content=body, headers=headers)
    assert response.status_code == 422 and "payment_id" in response.json()["detail"]
    body = b"not json"
    import hashlib
    import hmac

    from tests.api.conftest import WEBHOOK_SECRET

    signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = client.post(
        "/webhooks/govuk-pay", content=body, headers={"Pay-Signature": signature}
    )
    assert response.status_code == 422
