"""Income officers' work through HTTP: record, allocate, transfer, refund, reverse, query."""

from __future__ import annotations

import pytest

from tests.api.conftest import REFUND_LIMIT_PENCE, auth
from tests.domain.helpers import CT_REF, HRA_REF, SUN_REF

PROBLEM = "application/problem+json"


def record(client, who="officer", key=None, **body):
    payload = {"channel": "cash", "amount_pence": 10_000, "reference": "JUNK"} | body
    headers = auth(who) | ({"Idempotency-Key": key} if key else {})
    return client.post("/payments", json=payload, headers=headers)


def test_record_allocates_and_reads_back_with_read_your_writes(client) -> None:
    response = record(client, reference=CT_REF, channel="govuk_pay", external_id="pay_1")
    assert response.status_code == 201
    body = response.json()
    assert body["payment"]["status"] == "allocated" and body["recorded"] is True
    position = body["position"]
    assert response.headers["Ledger-Position"] == str(position)
    balances = client.get(f"/balances/funds?min_position={position}", headers=auth("reporting"))
    assert balances.status_code == 200
    ct = next(f for f in balances.json()["funds"] if f["fund_code"] == "CT")
    assert ct["balance_pence"] == 10_000
    account = client.get(
        f"/accounts/CT/{CT_REF}?min_position={position}", headers=auth("officer")
    ).json()
    assert account["balance_pence"] == 10_000
    assert [line["balance_pence"] for line in account["statement"]] == [10_000]
    detail = client.get(f"/payments/{body['payment']['payment_id']}", headers=auth("auditor"))
    assert [h["action"] for h in detail.json()["history"]] == ["Received", "Allocated"]


def test_a_later_page_of_a_statement_carries_the_running_balance_on(client) -> None:
    amounts = [1_000, 2_500, 400, 7_000, 1_100]
    for amount in amounts:
        position = record(client, reference=CT_REF, amount_pence=amount).json()["position"]
    url = f"/accounts/CT/{CT_REF}?min_position={position}"
    whole = client.get(url, headers=auth("officer")).json()
    page = client.get(f"{url}&limit=2&offset=2", headers=auth("officer")).json()
    running = [sum(amounts[: i + 1]) for i in range(len(amounts))]
    assert [line["balance_pence"] for line in whole["statement"]] == running
    assert [line["balance_pence"] for line in page["statement"]] == running[2:4]
    assert (page["total"], page["balance_pence"]) == (5, sum(amounts))
    past = client.get(f"{url}&limit=2&offset=5", headers=auth("officer")).json()
    assert (past["statement"], past["total"], past["balance_pence"]) == ([], 5, sum(amounts))
    none = client.get(f"/accounts/SUN/{SUN_REF}", headers=auth("officer")).json()
    assert (none["statement"], none["total"], none["balance_pence"]) == ([], 0, 0)


def test_a_statement_page_carries_the_accounts_vat_and_its_own_lines_vat(client) -> None:
    """SUN takes 20% VAT: each line says its VAT, the account its whole VAT, on every page."""
    for amount in (1_200, 600):
        position = record(client, reference=SUN_REF, amount_pence=amount).json()["position"]
    url = f"/accounts/SUN/{SUN_REF}?min_position={position}"
    whole = client.get(url, headers=auth("officer")).json()
    lines = [
        (line["amount_pence"], line["vat_pence"], line["balance_pence"])
        for line in whole["statement"]
    ]
    assert lines == [(1_200, 200, 1_200), (600, 100, 1_800)]
    page = client.get(f"{url}&limit=1&offset=1", headers=auth("officer")).json()
    assert [(line["vat_pence"], line["balance_pence"]) for line in page["statement"]] == [
        (100, 1_800)
    ]
    for figures in (whole, page):
        assert (figures["balance_pence"], figures["vat_pence"], figures["total"]) == (1_800, 300, 2)


def test_a_repeat_delivery_answers_200_with_the_first_payment(client) -> None:
    first = record(client, channel="govuk_pay", external_id="pay_2", reference=CT_REF)
    again = record(client, channel="govuk_pay", external_id="pay_2", reference=CT_REF)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["recorded"] is False
    assert again.json()["payment"]["payment_id"] == first.json()["payment"]["payment_id"]


def test_the_whole_life_of_a_payment(client) -> None:
    pid = record(client).json()["payment"]["payment_id"]
    allocated = client.post(
        f"/payments/{pid}/allocations",
        headers=auth("officer"),
        json={
            "lines": [
                {"fund_code": "CT", "reference": CT_REF, "amount_pence": 6_000},
                {"fund_code": "SUN", "reference": SUN_REF, "amount_pence": 4_000},
            ],
            "reason": "remittance advice",
        },
    )
    assert allocated.status_code == 201, allocated.text
    transfer = client.post(
        f"/payments/{pid}/transfers",
        headers=auth("officer"),
        json={
            "from": {"fund_code": "CT", "reference": CT_REF},
            "to": {"fund_code": "HRA", "reference": HRA_REF},
            "amount_pence": 1_000,
            "reason": "wrong account",
        },
    )
    assert transfer.status_code == 201, transfer.text
    refund = client.post(
        f"/payments/{pid}/refunds",
        headers=auth("officer"),
        json={"amount_pence": 500, "reason": "overpaid", "fund_code": "SUN", "reference": SUN_REF},
    )
    assert refund.status_code == 201, refund.text
    note = client.post(
        f"/payments/{pid}/notes", headers=auth("officer"), json={"text": "payer called"}
    )
    assert note.status_code == 201
    reversal = client.post(
        f"/payments/{pid}/reversals",
        headers=auth("supervisor"),
        json={"kind": "returned_cheque", "reason": "returned unpaid"},
    )
    assert reversal.status_code == 201
    payment = reversal.json()["payment"]
    assert payment["status"] == "reversed" and payment["reversed_pence"] == 9_500
    refused = client.post(
        f"/payments/{pid}/refunds",
        headers=auth("officer"),
        json={"amount_pence": 1, "reason": "again"},
    )
    assert refused.status_code == 409
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["code"] == "payment_already_reversed"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"channel": "pigeon"}, 422, "validation_error"),
        ({"amount_pence": 0}, 422, "validation_error"),
        ({"amount_pence": 12.5}, 422, "validation_error"),
        ({"amount_pence": "100"}, 422, "validation_error"),
        ({"reference": "4111 1111 1111 1111"}, 422, "card_number_rejected"),
        ({"received_at": "2026-01-01T10:00:00"}, 422, "validation_error"),
        ({"received_at": "2999-01-01T10:00:00Z"}, 422, "invalid_effective_date"),
        ({"surprise": 1}, 422, "validation_error"),
    ],
)
def test_bad_input_is_a_clear_problem_and_stores_nothing(client, ledger, body, status, code):
    before = ledger.max_position()
    response = record(client, **body)
    assert response.status_code == status, response.text
    problem = response.json()
    assert response.headers["content-type"] == PROBLEM
    assert problem["code"] == code and problem["detail"] and problem["title"]
    assert "Traceback" not in response.text
    assert ledger.max_position() == before


def test_rule_violations_and_missing_things(client) -> None:
    pid = record(client, amount_pence=100).json()["payment"]["payment_id"]
    over = client.post(
        f"/payments/{pid}/allocations",
        headers=auth("officer"),
        json={"lines": [{"fund_code": "CT", "reference": CT_REF, "amount_pence": 101}]},
    )
    assert over.status_code == 409 and over.json()["code"] == "allocation_exceeds_unallocated"
    assert "allocating £1.01 but only £1.00 of this" in over.json()["detail"]
    missing = client.get("/payments/00000000-0000-0000-0000-000000000000", headers=auth("officer"))
    assert missing.status_code == 404 and missing.json()["code"] == "payment_not_found"
    assert client.get("/funds/NOPE", headers=auth("officer")).status_code == 404
    bad_id = client.get("/payments/not-a-uuid", headers=auth("officer"))
    assert bad_id.status_code == 422


def test_refunds_above_the_limit_need_a_second_person(client) -> None:
    pid = record(client, amount_pence=50_000, reference=CT_REF).json()["payment"]["payment_id"]
    small = client.post(
        f"/payments/{pid}/refunds",
        headers=auth("officer"),
        json={"amount_pence": REFUND_LIMIT_PENCE, "reason": "overpaid"},
    )
    assert small.status_code == 201
    large = client.post(
        f"/payments/{pid}/refunds",
        headers=auth("supervisor"),
        json={"amount_pence": REFUND_LIMIT_PENCE + 1, "reason": "overpaid"},
    )
    assert large.status_code == 202, large.text
    [pending] = large.json()["payment"]["pending_refunds"]
    assert large.json()["payment"]["refunded_pence"] == REFUND_LIMIT_PENCE
    url = f"/payments/{pid}/refunds/{pending['request_id']}/approve"
    assert client.post(url, headers=auth("officer")).status_code == 403
    own = client.post(url, headers=auth("supervisor"))
    assert own.status_code == 409 and own.json()["code"] == "second_person_required"
    approved = client.post(url, headers=auth("supervisor2"))
    assert approved.status_code == 201
    assert approved.json()["payment"]["refunded_pence"] == 2 * REFUND_LIMIT_PENCE + 1
    history = client.get(f"/payments/{pid}", headers=auth("auditor")).json()["history"]
    assert history[-1]["actor"] == "supervisor:supervisor2"
    assert history[-1]["details"]["requested_by"] == "supervisor:supervisor"


def test_queries_search_suspense_and_takings(client) -> None:
    record(client, reference="JUNK", amount_pence=700)
    last = record(client, reference=CT_REF, channel="card", amount_pence=300).json()["position"]
    found = client.get(
        f"/payments?reference={CT_REF}&min_position={last}", headers=auth("reporting")
    ).json()
    assert found["total"] == 1 and found["items"][0]["channel"] == "card"
    by_fund = client.get("/payments?fund_code=CT&status=allocated", headers=auth("officer"))
    assert by_fund.json()["total"] == 1
    suspense = client.get("/suspense", headers=auth("reporting")).json()
    assert suspense["total_pence"] == 700 and suspense["items"][0]["age_days"] == 0
    takings = client.get("/reports/daily-takings", headers=auth("reporting")).json()
    assert takings["by_channel"] == {"cash": 700, "card": 300}
    assert client.get("/payments?limit=501", headers=auth("officer")).status_code == 422


def test_a_query_waits_for_min_position_and_then_says_so(client, services) -> None:
    services.config = type(services.config)(read_wait_seconds=0.2)
    response = client.get("/balances/funds?min_position=999999", headers=auth("officer"))
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.json()["code"] == "read_model_behind"


def test_audit_trail_as_json_pages_and_csv(client, ledger) -> None:
    for n in range(3):
        position = record(client, external_id=f"a{n}", channel="allpay").json()["position"]
    first = client.get(f"/audit?limit=2&min_position={position}", headers=auth("auditor"))
    page = first.json()
    assert len(page["items"]) == 2 and page["next_after_position"] is not None
    rest = client.get(
        f"/audit?after_position={page['next_after_position']}", headers=auth("auditor")
    ).json()
    assert rest["items"][0]["position"] > page["items"][-1]["position"]
    csv = client.get(
        f"/audit?min_position={position}", headers=auth("auditor") | {"Accept": "text/csv"}
    )
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0].startswith("position,event_id,recorded_at")
    assert len(lines) - 1 == len(list(ledger.read_events()))
    assert client.get("/audit", headers=auth("reporting")).status_code == 403


def test_replayed_balances_for_auditors(client) -> None:
    record(client, reference=CT_REF, received_at="2026-03-31T10:00:00Z", amount_pence=1_234)
    replay = client.get("/audit/balances?as_at=2026-03-31T23:59:59Z", headers=auth("auditor"))
    assert replay.status_code == 200, replay.text
    assert replay.json()["funds"]["CT"] == 1_234
    earlier = client.get("/audit/balances?as_at=2026-03-30T00:00:00Z", headers=auth("auditor"))
    assert earlier.json()["funds"].get("CT", 0) == 0


def test_health_needs_no_key_and_metrics_do(client) -> None:
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["database"] == "ok"
    assert client.get("/metrics").status_code == 401
    metrics = client.get("/metrics", headers=auth("reporting"))
    assert "ledger_projection_lag_events" in metrics.text
    assert "ledger_http_requests_total" in metrics.text


def test_bodies_are_bounded(client) -> None:
    response = client.post(
        "/payments",
        headers=auth("officer") | {"Content-Type": "application/json"},
        content=b"{" + b" " * 70_000 + b"}",
    )
    assert response.status_code == 413 and response.json()["code"] == "body_too_large"


def test_the_openapi_document_describes_roles_and_errors(client) -> None:
    spec = client.get("/openapi.json").json()
    assert "supervisor" in spec["info"]["description"]
    operation = spec["paths"]["/payments"]["post"]
    assert {"401", "403", "409", "422"} <= set(operation["responses"])
    assert "Roles:" in operation["description"]


@pytest.mark.parametrize(
    ("raw", "said"),
    [(b'{"channel": "\xff"}', "UTF-8"), (b"{not json", "JSON decode error")],
)
def test_a_body_that_is_not_json_text_says_so_and_stores_nothing(client, ledger, raw, said):
    """Bytes that are not UTF-8 were FastAPI's bare 400 'There was an error parsing the
    body' (a status the schema does not list); now the 422 a body that is not JSON gets."""
    before = ledger.max_position()
    response = client.post(
        "/payments",
        content=raw,
        headers=auth("officer") | {"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["code"] == "validation_error" and said in problem["detail"]
    assert ledger.max_position() == before


def test_a_reference_pasted_with_full_width_digits_or_a_zero_width_space_finds_its_account(
    client,
) -> None:
    """Both went to suspense (no fund's pattern takes them) for an officer to clear by hand."""
    wide = "".join(chr(ord(digit) - ord("0") + 0xFF10) for digit in CT_REF)
    for external_id, reference in (("pay_w", wide), ("pay_z", f"{CT_REF[:4]}\u200b{CT_REF[4:]}")):
        response = record(client, reference=reference, channel="govuk_pay", external_id=external_id)
        assert response.status_code == 201, response.text
        payment = response.json()["payment"]
        assert payment["status"] == "allocated" and payment["reference"] == CT_REF
    position = response.json()["position"]
    account = client.get(f"/accounts/CT/{wide}?min_position={position}", headers=auth("officer"))
    assert account.status_code == 200 and account.json()["balance_pence"] == 20_000


def test_a_malformed_date_or_amount_says_how_to_write_it(client) -> None:
    # Found in the day-close walkthrough: "Input should be a valid datetime or date, invalid
    # character in year" said what was wrong but not what a right value looks like.
    cases = [
        ({"received_at": "30/11/2026"}, "write it like 2026-03-31T10:00:00Z"),
        ({"received_at": "2026-11-30T10:00:00"}, "with its zone, like 2026-03-31T10:00:00Z"),
        ({"amount_pence": 12.345}, "amounts are whole pence, like 1250 for £12.50"),
        ({"amount_pence": "12.50"}, "amounts are whole pence, like 1250 for £12.50"),
    ]
    for changed, hint in cases:
        body = {"channel": "cash", "amount_pence": 100, "reference": CT_REF, **changed}
        answer = client.post("/payments", headers=auth("officer"), json=body)
        assert answer.status_code == 422 and hint in answer.json()["detail"], answer.json()
    assert client.get("/payments", headers=auth("officer")).json()["total"] == 0
    closes = client.post(
        "/periods/closes",
        headers=auth("supervisor"),
        json={"kind": "day", "date": "30/11/2026", "reason": "x"},
    )
    assert closes.status_code == 422 and "write it like 2026-03-31" in closes.json()["detail"]
    takings = client.get("/reports/daily-takings?date=2026-13-01", headers=auth("reporting"))
    assert "write it like 2026-03-31" in takings.json()["detail"]


def test_daily_takings_refuses_a_query_it_does_not_know(client) -> None:
    # Found in the day-close walkthrough: ?from=2026-11-30&to=2026-11-30 was ignored and
    # today's takings came back, looking like the answer for the day asked.
    answer = client.get(
        "/reports/daily-takings?from=2026-11-30&to=2026-11-30", headers=auth("reporting")
    )
    assert answer.status_code == 422 and answer.json()["code"] == "invalid_request"
    assert "unknown query parameter 'from', 'to'" in answer.json()["detail"]
    assert "date=2026-03-31" in answer.json()["detail"]
    assert client.get("/reports/daily-takings?from=x").status_code == 401  # the key first
    asked = client.get("/reports/daily-takings?date=2026-11-30", headers=auth("reporting"))
    assert asked.status_code == 200 and asked.json()["business_date"] == "2026-11-30"
