"""GOV.UK Pay webhooks: signatures, repeats, out-of-order delivery, refunds, unknown types."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from itertools import permutations
from pathlib import Path
from uuid import UUID

import pytest

from application.govuk_pay import (
    CAPTURED,
    REFUNDED,
    SigningSecret,
    apply_message,
    matching_secret,
    nested_too_deeply,
    parse_message,
    parse_signing_secrets,
    to_command,
)
from application.ledger import CommandContext, RecordPayment
from domain.errors import InvalidRequest
from income_ledger.server import ConfigurationError, api_config
from income_ledger.settings import Settings
from tests.api.conftest import WEBHOOK_SECRET, auth, signed
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
    captured = deliver(client, message("card_payment_captured"))
    assert captured.json()["status"] == "details_recorded"
    for event_type in ("card_payment_succeeded", "card_payment_captured", "card_payment_succeeded"):
        again = deliver(client, message(event_type))
        assert again.json() == {
            "status": "duplicate",
            "payment_id": first.json()["payment_id"],
            "position": None,
            "detail": None,
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
        "detail": None,
    }


def test_malformed_messages_are_422(client) -> None:
    body, headers = signed({"event_type": "card_payment_succeeded", "resource": {}})
    response = client.post("/webhooks/govuk-pay", content=body, headers=headers)
    assert response.status_code == 422 and "payment_id" in response.json()["detail"]
    body = b"not json"
    signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = client.post(
        "/webhooks/govuk-pay", content=body, headers={"Pay-Signature": signature}
    )
    assert response.status_code == 422


# ---- real GOV.UK Pay message bodies ---------------------------------------------------------
# Read from the shared folder beside the project (never copied in); each is signed here with
# the test secret exactly as sent (the bytes are what GOV.UK Pay signs).

SAMPLES = Path(
    os.environ.get(
        "LEDGER_TEST_GOVUK_PAY_SAMPLES",
        Path(__file__).resolve().parents[3] / "shared" / "realdata" / "govukpay",
    )
)
needs_samples = pytest.mark.skipif(
    not SAMPLES.is_dir(),
    reason=f"real GOV.UK Pay samples not found at {SAMPLES}: set LEDGER_TEST_GOVUK_PAY_SAMPLES",
)


def sample(prefix: str) -> bytes:
    (path,) = SAMPLES.glob(f"{prefix}_*.json")
    return path.read_bytes()


def altered(prefix: str, **changes: object) -> bytes:
    """A real sample with some fields changed: top-level keys, or resource keys as r_<key>."""
    body = json.loads(sample(prefix))
    for key, value in changes.items():
        target, name = (body["resource"], key[2:]) if key.startswith("r_") else (body, key)
        target[name] = value
    return json.dumps(body).encode()


def post_raw(client, body: bytes, secret: str = WEBHOOK_SECRET):
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return client.post("/webhooks/govuk-pay", content=body, headers={"Pay-Signature": signature})


def show(client, payment_id: str) -> dict:
    response = client.get(f"/payments/{payment_id}", headers=auth("officer"))
    assert response.status_code == 200, response.text
    return response.json()


def statuses(client, *bodies: bytes) -> list[str]:
    answers = [post_raw(client, body) for body in bodies]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    return [a.json()["status"] for a in answers]


@needs_samples
def test_real_payment_succeeded_captured_then_refunded_in_two_parts(client, ledger) -> None:
    assert statuses(client, sample("02"), sample("03"), sample("12")) == [
        "recorded",
        "details_recorded",
        "duplicate",
    ]
    payment_id = post_raw(client, sample("02")).json()["payment_id"]
    assert statuses(client, sample("04"), sample("05"), sample("04")) == [
        "refund_recorded",
        "refund_recorded",
        "duplicate",
    ]
    payment = show(client, payment_id)
    assert payment["amount_pence"] == 9_000 and payment["refunded_pence"] == 9_000
    assert payment["received_at"] == "2024-11-04T09:12:31.481000+00:00"
    details = payment["provider_details"]
    assert details["fee_pence"] == 17 and details["net_amount_pence"] == 8_983
    assert details["captured_date"] == "2024-11-04" and details["captured"] is True
    assert details["capture_submit_time"] == "2024-11-04T09:13:03+00:00"
    # The read model follows every event of it, the details-only ones included.
    latest = client.get(f"/payments?min_position={ledger.max_position()}", headers=auth("auditor"))
    assert latest.status_code == 200, latest.text
    (row,) = [p for p in latest.json()["items"] if p["payment_id"] == payment_id]
    assert row["refunded_pence"] == 9_000


@needs_samples
def test_a_delayed_capture_is_recorded_only_when_captured_in_any_order(client, ledger) -> None:
    before = ledger.max_position()
    authorised, cancelled = sample("09"), sample("10")
    assert statuses(client, authorised, cancelled) == ["authorised", "ignored"]
    assert statuses(client, cancelled, authorised) == ["ignored", "authorised"]
    assert ledger.max_position() == before
    assert ledger.find_payment("govuk_pay", "r1t3v5x7z9b1d3f5h7j9l1n3p5") is None

    # The same kind of payment, captured: recorded at capture, whatever came before or after.
    captured = altered(
        "09",
        event_type="card_payment_captured",
        r_payment_id="delayed-captured",
        r_state={"status": "success", "finished": True},
        r_settlement_summary={
            "capture_submit_time": "2024-11-06T13:00:00.000Z",
            "captured_date": "2024-11-06",
        },
    )
    late_authorisation = altered("09", r_payment_id="delayed-captured")
    failed_after_capture = altered("10", r_payment_id="delayed-captured")
    assert statuses(client, captured, late_authorisation, captured) == [
        "recorded",
        "duplicate",
        "duplicate",
    ]
    assert statuses(client, failed_after_capture, failed_after_capture) == ["noted", "duplicate"]
    payment = show(client, post_raw(client, captured).json()["payment_id"])
    assert payment["amount_pence"] == 12_000 and payment["reversed_pence"] == 0
    assert payment["history"][-1]["action"] == "Noted"


@needs_samples
def test_a_payment_recorded_at_authorisation_is_reversed_when_the_service_cancels(
    client, ledger
) -> None:
    # As recorded by the ledger before it waited for the capture: money in at authorisation.
    recorded = ledger.record_payment(
        RecordPayment("govuk_pay", 12_000, "TW123456", external_id="r1t3v5x7z9b1d3f5h7j9l1n3p5"),
        CommandContext("integration:govuk-pay"),
    )
    assert statuses(client, sample("10"), sample("10"), sample("09")) == [
        "cancelled",
        "duplicate",
        "duplicate",
    ]
    payment = show(client, str(recorded.payment_id))
    assert payment["status"] == "reversed" and payment["reversed_pence"] == 12_000
    reversal, closed = payment["history"][-2:]
    assert reversal["action"] == "Reversed" and reversal["details"]["kind"] == "cancelled"
    assert "P0040" in reversal["reason"]
    assert {p["account"]: p["amount_pence"] for p in reversal["postings"]}[
        "reversals:govuk_pay"
    ] == -12_000
    # Never captured, never paid out: its clearing closes at nothing to the bank.
    assert closed["action"] == "Settled"
    assert {p["account"]: p["amount_pence"] for p in closed["postings"]} == {
        "reversals:govuk_pay": 12_000,
        "clearing:govuk_pay": -12_000,
    }


@needs_samples
def test_a_declined_payment_records_nothing(client, ledger) -> None:
    before = ledger.max_position()
    assert statuses(client, sample("11")) == ["ignored"]
    assert ledger.max_position() == before


@needs_samples
def test_the_payer_s_surcharge_is_recorded_and_can_be_refunded_in_full(client) -> None:
    assert statuses(client, sample("06"), sample("13"), sample("13")) == [
        "recorded",
        "refund_recorded",
        "duplicate",
    ]
    payment = show(client, post_raw(client, sample("06")).json()["payment_id"])
    assert payment["amount_pence"] == 4_000 and payment["refunded_pence"] == 4_000
    assert payment["status"] == "refunded"
    details = payment["provider_details"]
    assert details["amount_pence"] == 3_750 and details["corporate_card_surcharge_pence"] == 250
    assert details["total_amount_pence"] == 4_000
    assert (details["fee_pence"], details["net_amount_pence"]) == (200, 3_800)
    assert details["settled_date"] == "2019-07-12" and details["captured_date"] == "2019-07-12"


@needs_samples
def test_a_refund_arriving_before_the_capture_records_both_once(client) -> None:
    assert statuses(client, sample("07"), sample("08")) == ["refund_recorded", "duplicate"]
    payment = show(client, post_raw(client, sample("08")).json()["payment_id"])
    assert payment["amount_pence"] == 45_050 and payment["refunded_pence"] == 5_000
    assert payment["allocations"][0]["fund_code"] == "HRA"


@needs_samples
def test_long_references_and_card_numbers_never_lose_the_payment(client, ledger) -> None:
    payment = show(client, post_raw(client, sample("14")).json()["payment_id"])
    assert payment["amount_pence"] == 14_500
    assert payment["reference"] == "CT-12345679-COUNCIL-TAX-2024-25-INSTALMENT-03-OF-10"
    assert payment["suspense_reason"] == "no_matching_fund"

    cases = {
        "ref-255": ("R" * 255, "R" * 255, "no_matching_fund"),
        "ref-300": ("R" * 300, "R" * 255, "unusable_reference"),
        "ref-control": ("12345679\x00", "12345679", "unusable_reference"),
        "ref-card": (
            "Council tax 4111 1111 1111 1111 thanks",
            "COUNCILTAX411111******1111THANKS",
            "unusable_reference",
        ),
    }
    for payment_id, (given, kept, reason) in cases.items():
        body = altered("14", r_payment_id=payment_id, r_reference=given)
        answer = post_raw(client, body)
        assert answer.status_code == 200 and answer.json()["status"] == "recorded", answer.text
        payment = show(client, answer.json()["payment_id"])
        assert payment["amount_pence"] == 14_500 and payment["status"] == "suspense"
        assert (payment["reference"], payment["suspense_reason"]) == (kept, reason), payment_id
    assert "4111111111111111" not in json.dumps(payment)
    assert "4111 1111 1111 1111" not in json.dumps(payment)
    # The read model holds every one of them in suspense, with its reason.
    listed = client.get(
        f"/suspense?min_position={ledger.max_position()}&limit=500", headers=auth("officer")
    )
    assert listed.status_code == 200, listed.text
    held = {(item["reference"], item["reason"]) for item in listed.json()["items"]}
    assert {(kept, reason) for given, kept, reason in cases.values()} <= held


@needs_samples
def test_a_zero_amount_payment_is_acknowledged_and_moves_no_money(client, ledger) -> None:
    before = ledger.max_position()
    answer = post_raw(client, sample("15"))
    assert answer.status_code == 200
    assert answer.json()["status"] == "ignored" and "0 pence" in answer.json()["detail"]
    assert ledger.max_position() == before


@needs_samples
def test_receipts_are_dated_when_paid_and_refunds_when_processed(client) -> None:
    started = datetime.now(UTC)
    payment_id = post_raw(client, sample("16")).json()["payment_id"]
    payment = show(client, payment_id)
    assert payment["received_at"] == "2024-11-30T23:50:12+00:00"
    assert payment["provider_details"]["captured_date"] == "2024-12-01"

    post_raw(client, sample("03"))
    refund = post_raw(client, sample("04"))
    history = show(client, refund.json()["payment_id"])["history"]
    refunded = next(entry for entry in history if entry["action"] == "Refunded")
    assert datetime.fromisoformat(refunded["effective_at"]) >= started  # not 2024-11-06


@needs_samples
def test_the_signature_of_pay_s_own_test_vector(client) -> None:
    vector = json.loads((SAMPLES / "signature_test_vector.json").read_text())
    secret = SigningSecret("test", vector["signing_key"])
    body = vector["body"].encode()
    assert matching_secret([secret], body, vector["expected_signature"]) == secret
    assert matching_secret([secret], body, vector["expected_signature"].upper()) == secret
    assert matching_secret([secret], body + b" ", vector["expected_signature"]) is None


# ---- signing secrets, metadata, bad messages ------------------------------------------------


def test_several_services_secrets_and_rotation(client, services) -> None:
    services.config = replace(
        services.config,
        govuk_pay_webhook_secret="",
        govuk_pay_webhook_secrets=parse_signing_secrets(
            '{"parking": ["webhook_live_old", "webhook_live_new"], "rents": "webhook_live_r"}'
        ),
    )
    for number, secret in enumerate(("webhook_live_old", "webhook_live_new", "webhook_live_r")):
        answer = deliver(client, message("card_payment_captured", f"pay_{number}"), secret)
        assert answer.status_code == 200 and answer.json()["status"] == "recorded"
    refused = deliver(client, message("card_payment_captured", "pay_x"), WEBHOOK_SECRET)
    assert refused.status_code == 401


def test_the_secrets_setting_takes_a_list_or_json_and_the_old_setting_still_works() -> None:
    listed = api_config(
        Settings(govuk_pay_webhook_secret="single", govuk_pay_webhook_secrets="a, b==,")
    )
    assert listed.govuk_pay_webhook_secret == "single"
    assert listed.govuk_pay_webhook_secrets == (SigningSecret("", "a"), SigningSecret("", "b=="))
    as_json = api_config(Settings(govuk_pay_webhook_secrets='{"rents": ["x", "y"]}'))
    assert [s.secret for s in as_json.govuk_pay_webhook_secrets] == ["x", "y"]
    for bad in ('{"rents": [1]}', "{not json", '["x"]', '{"rents": [""]}'):
        with pytest.raises(ConfigurationError, match="LEDGER_GOVUK_PAY_WEBHOOK_SECRETS"):
            api_config(Settings(govuk_pay_webhook_secrets=bad))


def test_metadata_keys_match_in_any_case(client) -> None:
    by_fund = deliver(
        client, message("card_payment_captured", "pay_f", metadata={"Fund_Code": "CT"})
    )
    by_code = deliver(
        client,
        message(
            "card_payment_captured", "pay_l", reference=HRA_REF, metadata={"LEDGER_CODE": "r2010"}
        ),
    )
    assert show(client, by_fund.json()["payment_id"])["allocations"][0]["fund_code"] == "CT"
    assert show(client, by_code.json()["payment_id"])["allocations"][0]["fund_code"] == "HRA"


def test_bad_messages_get_a_4xx_problem_never_a_500(client, ledger) -> None:
    before = ledger.max_position()
    body, _ = signed(message("card_payment_captured"))
    non_ascii = client.post(
        "/webhooks/govuk-pay", content=body, headers={"Pay-Signature": "é£💷".encode()}
    )
    assert non_ascii.status_code == 401
    deep = b"[" * 30_000 + b"]" * 30_000
    surrogate = json.dumps(message("card_payment_captured", payment_id="pay_\ud800")).encode()
    assert b"\\ud800" in surrogate
    not_a_type = json.dumps({"event_type": ["card_payment_captured"], "resource": {}}).encode()
    huge_number = (
        b'{"event_type": "card_payment_captured", "resource": {"amount": ' + b"9" * 5000 + b"}}"
    )
    year_one = json.dumps(
        message("card_payment_captured")
        | {"resource": {**message("x")["resource"], "created_date": "0001-01-01T00:00:00Z"}}
    ).encode()
    far_future = year_one.replace(b"0001-01-01", b"9999-12-31")
    bad_capture = json.dumps(
        message("card_payment_captured")
        | {
            "resource": {
                **message("x")["resource"],
                "settlement_summary": {"capture_submit_time": "yesterday"},
            }
        }
    ).encode()
    for body in (deep, surrogate, huge_number, year_one, far_future, bad_capture):
        answer = post_raw(client, body)
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
    assert post_raw(client, not_a_type).json()["status"] == "ignored"
    assert ledger.max_position() == before


def test_a_message_that_can_never_apply_changes_nothing_and_stops_the_retries(
    client, ledger
) -> None:
    before = ledger.max_position()
    impossible = message("card_payment_refunded", "pay_over", amount=100, refunded=1_000)
    for _ in range(2):
        answer = deliver(client, impossible)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "refused" and "£10.00" in answer.json()["detail"]
    assert ledger.max_position() == before
    assert ledger.find_payment("govuk_pay", "pay_over") is None


def test_a_numeric_provider_id_that_passes_luhn_is_recorded(client) -> None:
    answer = deliver(client, message("card_payment_captured", payment_id="4111111111111111"))
    assert answer.status_code == 200 and answer.json()["status"] == "recorded", answer.text
    assert show(client, answer.json()["payment_id"])["external_id"] == "4111111111111111"


@needs_samples
def test_the_same_message_delivered_at_once_is_applied_once(ledger) -> None:
    command = to_command(parse_message(sample("07")), {"R2010": "HRA"})
    assert command is not None
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: apply_message(ledger, command), range(8)))
    assert sorted(a["status"] for a in answers) == ["duplicate"] * 7 + ["refund_recorded"]
    payment = ledger.get_payment(UUID(answers[0]["payment_id"]))
    assert (payment["amount_pence"], payment["refunded_pence"]) == (45_050, 5_000)


def test_a_later_message_with_another_amount_changes_no_money_and_is_logged(client, caplog) -> None:
    first = deliver(client, message("card_payment_succeeded", "pay_amount", amount=5_000))
    with caplog.at_level(logging.ERROR, logger="application.govuk_pay"):
        later = deliver(client, message("card_payment_captured", "pay_amount", amount=6_000))
    assert later.status_code == 200
    assert show(client, first.json()["payment_id"])["amount_pence"] == 5_000
    assert "the ledger recorded 5000 pence" in caplog.text


@needs_samples
def test_every_delivery_order_of_a_delayed_capture_ends_the_same(client, ledger) -> None:
    def messages(payment_id: str) -> dict[str, bytes]:
        captured_state = {
            "r_state": {"status": "success", "finished": True},
            "r_settlement_summary": {"captured_date": "2024-11-06"},
        }
        return {
            "authorised": altered("09", r_payment_id=payment_id),
            "captured": altered(
                "09", event_type=CAPTURED, r_payment_id=payment_id, **captured_state
            ),
            "refunded": altered(
                "09",
                event_type=REFUNDED,
                r_payment_id=payment_id,
                r_refund_summary={"status": "available", "amount_submitted": 3_000},
                **captured_state,
            ),
            "cancelled": altered("10", r_payment_id=payment_id),
        }

    # A capture is final in GOV.UK Pay: a failure message beside it (a stale or contradictory
    # delivery) never takes the captured money away.
    taken = ["authorised", "captured", "refunded", "cancelled"]
    for number, order in enumerate(permutations(taken)):
        bodies = messages(f"taken-{number}")
        for name in (*order, *reversed(order)):
            assert post_raw(client, bodies[name]).status_code == 200
        payment = show(client, str(ledger.find_payment("govuk_pay", f"taken-{number}")))
        assert (payment["amount_pence"], payment["refunded_pence"]) == (12_000, 3_000), order
    before = ledger.max_position()
    for number, order in enumerate(permutations(["authorised", "cancelled"])):
        bodies = messages(f"cancelled-{number}")
        for name in (*order, *order):
            assert post_raw(client, bodies[name]).status_code == 200
    assert ledger.max_position() == before


def test_a_body_nested_too_deeply_is_refused_before_it_is_parsed() -> None:
    """json.loads of a body 30,000 levels deep recursed to the interpreter's limit, where a
    garbage collection running at that moment failed its finalizers (pytest reported them as
    unraisable errors at random). Bodies deeper than MAX_MESSAGE_DEPTH are refused without
    recursion; brackets inside strings do not count."""
    assert not nested_too_deeply(b"[" * 64 + b"]" * 64)
    assert nested_too_deeply(b"[" * 65 + b"]" * 65)
    assert nested_too_deeply(b'{"a": ' * 65 + b"1" + b"}" * 65)
    in_strings = json.dumps({"reference": "[" * 500 + '\\"{' * 100}).encode()
    assert not nested_too_deeply(in_strings)
    with pytest.raises(InvalidRequest, match="nested too deeply"):
        parse_message(b"[" * 30_000 + b"]" * 30_000)
    assert parse_message(in_strings) == json.loads(in_strings)
