"""The business figures on /metrics, through HTTP on both backends: money and receipts by
channel, open suspense by age band, imported files, import uploads and webhook failures."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from prometheus_client.parser import text_string_to_metric_families

from domain.limits import uk_today
from tests.api.conftest import WEBHOOK_SECRET, auth, signed
from tests.application.test_imports import csv_file
from tests.domain.helpers import CT_REF


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", headers=auth("reporting"))
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def received_days_ago(days: int) -> str:
    """Noon UTC of the UK date `days` ago: the same UK date whatever the season."""
    return datetime.combine(uk_today() - timedelta(days=days), time(12), UTC).isoformat()


def record(client, channel: str, amount_pence: int, reference: str, days_ago: int = 0) -> int:
    body = {"channel": channel, "amount_pence": amount_pence, "reference": reference}
    if days_ago:
        body["received_at"] = received_days_ago(days_ago)
    response = client.post("/payments", json=body, headers=auth("officer"))
    assert response.status_code == 201, response.text
    return response.json()["position"]


def wait_for_read_model(client, position: int) -> None:
    response = client.get(f"/suspense?min_position={position}", headers=auth("reporting"))
    assert response.status_code == 200, response.text


def test_money_by_channel_and_suspense_by_age_band(client) -> None:
    record(client, "cash", 10_000, CT_REF)
    record(client, "cash", 700, "JUNK-0")
    record(client, "cash", 71, "JUNK-7", days_ago=7)  # the last day of 0-7
    record(client, "card", 300, "JUNK-8", days_ago=8)
    record(client, "card", 301, "JUNK-30", days_ago=30)
    record(client, "cheque", 200, "JUNK-31", days_ago=31)
    record(client, "cheque", 202, "JUNK-90", days_ago=90)
    last = record(client, "cash", 100, "JUNK-91", days_ago=91)
    wait_for_read_model(client, last)
    figures = scrape(client)

    def channel(name: str, value: str) -> float:
        return figures[(name, (("channel", value),))]

    assert channel("ledger_receipts_total", "cash") == 4
    assert channel("ledger_received_pence_total", "cash") == 10_871
    assert channel("ledger_receipts_total", "card") == 2
    assert channel("ledger_received_pence_total", "cheque") == 402
    assert channel("ledger_refunded_pence_total", "cash") == 0
    bands = {
        label: (
            figures[("ledger_suspense_items", (("age_days", label),))],
            figures[("ledger_suspense_pence", (("age_days", label),))],
        )
        for label in ("0-7", "8-30", "31-90", "91+")
    }
    assert bands == {"0-7": (2, 771), "8-30": (2, 601), "31-90": (2, 402), "91+": (1, 100)}


def test_an_empty_ledger_reports_every_suspense_band_as_zero(client) -> None:
    figures = scrape(client)
    for label in ("0-7", "8-30", "31-90", "91+"):
        assert figures[("ledger_suspense_items", (("age_days", label),))] == 0
    assert figures[("ledger_imported_files_total", ())] == 0


def test_imports_by_result_and_files_imported(client) -> None:
    day = (uk_today() - timedelta(days=1)).isoformat()
    content = csv_file(f"cash,12.50,{CT_REF},{day},till-1,")
    params = {"expect_total_pence": 1250, "expect_count": 1}

    def upload(body: bytes, **query: int):
        return client.post(
            "/imports",
            content=body,
            params={"file_name": "day.csv", **query},
            headers=auth("officer") | {"Content-Type": "text/plain"},
        )

    first = upload(content, **params)
    assert first.status_code == 201, first.text
    assert upload(content, **params).status_code == 200
    other = content.replace(b"till-1", b"till-2")
    assert upload(other, expect_total_pence=999, expect_count=1).status_code == 422
    wait_for_read_model(client, first.json()["position"])
    figures = scrape(client)
    for result, count in (("imported", 1), ("duplicate", 1), ("refused", 1)):
        assert figures[("ledger_import_uploads_total", (("result", result),))] == count
    assert figures[("ledger_imported_files_total", ())] == 1
    assert figures[("ledger_imported_files_reversed_total", ())] == 0
    assert figures[("ledger_receipts_total", (("channel", "cash"),))] == 1


def test_webhook_failures_by_reason(client) -> None:
    def deliver(message: dict, secret: str = WEBHOOK_SECRET):
        body, headers = signed(message, secret)
        return client.post("/webhooks/govuk-pay", content=body, headers=headers)

    impossible = {
        "webhook_message_id": "msg-1",
        "event_type": "card_payment_refunded",
        "resource_type": "payment",
        "resource": {
            "payment_id": "pay_over",
            "amount": 100,
            "reference": CT_REF,
            "created_date": "2026-11-20T09:30:00.000Z",
            "refund_summary": {"amount_submitted": 1_000, "amount_available": 0},
        },
    }
    not_a_payment = impossible | {"resource": 3}
    assert deliver(impossible, secret="not-the-secret").status_code == 401
    assert deliver(not_a_payment).status_code == 422
    refused = deliver(impossible)
    assert refused.json()["status"] == "refused", refused.text
    figures = scrape(client)
    for reason in ("bad_signature", "invalid", "refused"):
        assert figures[("ledger_govuk_pay_webhook_failures_total", (("reason", reason),))] == 1
