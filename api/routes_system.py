"""Integrations (GOV.UK Pay webhooks) and operations (health, metrics)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from api.app import AnyUser, ServicesDep
from api.problems import ApiProblem
from api.schemas import HealthOut, WebhookOut
from api.services import Services
from application.ledger import CommandContext, RecordPayment
from domain.errors import InvalidRequest
from projections import queries

log = logging.getLogger(__name__)
router = APIRouter()
GOVUK_PAY_ACTOR = "integration:govuk-pay"
RECEIPT_EVENTS = {"card_payment_succeeded", "card_payment_captured"}
REFUND_EVENTS = {"card_payment_refunded"}


@router.post(
    "/webhooks/govuk-pay",
    tags=["integrations"],
    response_model=WebhookOut,
    responses={
        401: {"description": "missing or wrong Pay-Signature: no effect"},
        422: {"description": "not a GOV.UK Pay payment message"},
    },
)
async def govuk_pay_webhook(request: Request, svc: ServicesDep) -> Any:
    """GOV.UK Pay webhook messages, authenticated by their `Pay-Signature` header (the
    lower-case hex HMAC-SHA256 of the raw body with the signing secret) instead of an API key.
    Payments are recorded once whatever the order or number of deliveries, keyed by
    `resource.payment_id`; `card_payment_refunded` brings the payment's refunds up to
    `resource.refund_summary.amount_submitted`. Other event types are acknowledged and
    logged."""
    raw = await request.body()
    _check_signature(svc, raw, request.headers.get("Pay-Signature"))
    message = _parse(raw)
    event_type = message.get("event_type")
    if event_type not in RECEIPT_EVENTS | REFUND_EVENTS:
        log.info("GOV.UK Pay webhook %s acknowledged and ignored", event_type)
        return {"status": "ignored"}
    return await run_in_threadpool(_apply_govuk_pay, svc, message, event_type)


def _check_signature(svc: Services, raw: bytes, signature: str | None) -> None:
    secret = svc.config.govuk_pay_webhook_secret
    if not secret:
        raise ApiProblem(
            503,
            "Webhook not configured",
            "set LEDGER_GOVUK_PAY_WEBHOOK_SECRET to accept GOV.UK Pay webhooks",
            "webhook_not_configured",
        )
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    if not signature or not hmac.compare_digest(signature.strip().lower(), expected):
        raise ApiProblem(
            401,
            "Signature check failed",
            "the Pay-Signature header is missing or does not match the body",
            "bad_signature",
        )


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        message = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidRequest("the webhook body is not JSON") from None
    if not isinstance(message, dict):
        raise InvalidRequest("the webhook body is not a JSON object")
    return message


def _apply_govuk_pay(svc: Services, message: dict[str, Any], event_type: str) -> dict[str, Any]:
    resource = message.get("resource")
    if not isinstance(resource, dict) or not resource.get("payment_id"):
        raise InvalidRequest("a payment message needs resource.payment_id")
    amount = resource.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidRequest("resource.amount must be a whole number of pence")
    metadata = resource.get("metadata") if isinstance(resource.get("metadata"), dict) else {}
    fund_hint = metadata.get("fund_code") or svc.config.govuk_pay_ledger_codes.get(
        str(metadata.get("ledger_code", ""))
    )
    payment_id = str(resource["payment_id"])
    ctx = CommandContext(GOVUK_PAY_ACTOR, idempotency_key=f"govuk-pay:{payment_id}")
    outcome = svc.ledger.record_payment(
        RecordPayment(
            channel="govuk_pay",
            amount_pence=amount,
            reference=str(resource.get("reference", "")),
            received_at=_when(resource.get("created_date") or message.get("created_date")),
            fund_code=str(fund_hint) if fund_hint else None,
            external_id=payment_id,
        ),
        ctx,
    )
    status, position = ("recorded" if outcome.recorded else "duplicate"), outcome.position
    if event_type in REFUND_EVENTS:
        summary = resource.get("refund_summary") or {}
        submitted = summary.get("amount_submitted") if isinstance(summary, dict) else None
        if isinstance(submitted, int) and not isinstance(submitted, bool) and submitted > 0:
            refund_ctx = CommandContext(
                GOVUK_PAY_ACTOR, idempotency_key=f"govuk-pay-refund:{payment_id}:{submitted}"
            )
            refunded = svc.ledger.settle_external_refunds(
                outcome.payment_id, submitted, refund_ctx, "refunded on GOV.UK Pay"
            )
            if refunded.recorded:
                status, position = "refund_recorded", refunded.position
    return {"status": status, "payment_id": str(outcome.payment_id), "position": position}


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"created_date {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise InvalidRequest("created_date needs a time zone")
    return moment


@router.get(
    "/health",
    tags=["operations"],
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "the database is unreachable"}},
)
def health(svc: ServicesDep) -> Any:
    """Liveness and database reachability. No authentication."""
    try:
        with svc.read_engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            read_position = queries.read_model_position(connection)
        event_position = svc.ledger.max_position()
    except Exception as error:  # any failure here means: report unhealthy, do not crash
        log.warning("health check failed: %s", str(error).splitlines()[0])
        return JSONResponse(
            {
                "status": "degraded",
                "database": "unreachable",
                "event_position": None,
                "read_model_position": None,
            },
            status_code=503,
        )
    return {
        "status": "ok",
        "database": "ok",
        "event_position": event_position,
        "read_model_position": read_position,
    }


@router.get(
    "/metrics",
    tags=["operations"],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
def metrics(svc: ServicesDep, user: AnyUser) -> Response:
    """Prometheus metrics: requests, latencies, latest event position, projection lag.
    Roles: all."""
    with svc.read_engine.connect() as connection:
        read_position = queries.read_model_position(connection)
    event_position = svc.ledger.max_position()
    svc.metrics.event_position.set(event_position)
    svc.metrics.read_model_position.set(read_position)
    svc.metrics.projection_lag.set(max(0, event_position - read_position))
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
