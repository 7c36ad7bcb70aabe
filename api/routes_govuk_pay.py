"""The GOV.UK Pay webhook: authenticate the message, then hand it to the application."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from api.deps import ServicesDep
from api.problems import ApiProblem
from api.schemas import WebhookOut
from api.services import ApiConfig
from application import govuk_pay
from application.govuk_pay import SigningSecret
from domain.errors import InvalidRequest

log = logging.getLogger(__name__)
router = APIRouter()
# Answers of a message that moved card money a payout may pay in (or take back).
CARD_MONEY_MOVED = frozenset(
    {"recorded", "refund_recorded", "details_recorded", "cancelled", "dispute_lost"}
)


@router.post(
    "/webhooks/govuk-pay",
    tags=["integrations"],
    response_model=WebhookOut,
    responses={
        401: {"description": "missing or wrong Pay-Signature: no effect"},
        404: {"description": "a dispute of a payment not recorded: no effect (Pay retries)"},
        422: {"description": "not a GOV.UK Pay payment message: no effect"},
    },
)
async def govuk_pay_webhook(request: Request, svc: ServicesDep) -> Any:
    """GOV.UK Pay webhook messages, authenticated by their `Pay-Signature` header (the
    lower-case hex HMAC-SHA256 of the raw body with one of the configured signing secrets)
    instead of an API key. Money is recorded once it is taken (captured), once whatever the
    order or number of deliveries, keyed by `resource.payment_id`; `card_payment_refunded`
    brings the payment's refunds up to `resource.refund_summary.amount_submitted`;
    `card_payment_failed` undoes a payment recorded before capture. Pay's `fee` is charged
    once, out of the clearing account. Dispute messages (`dispute_created`,
    `dispute_evidence_submitted`, `dispute_won`, `dispute_lost`; `resource` is the dispute
    with its `payment_id`, `amount` and `fee`) follow the payment's dispute; a lost one
    reverses the payment and charges the fee; 404 when the payment is not recorded (Pay
    retries). A message is applied whole or not at all; `status` says what happened. Other
    event types are acknowledged. After a message that moved card money, statement lines
    imported before it that pay it in are linked by a run of the process's own, which
    neither the answer nor the connection waits for (LEDGER_AUTO_LINK_STATEMENTS; as
    `reconcile link` does)."""
    failures = svc.metrics.webhook_failures
    raw = await request.body()
    try:
        _check_signature(svc.config, raw, request.headers.get("Pay-Signature"))
    except ApiProblem as problem:
        failures.labels(problem.code).inc()
        raise
    try:
        message = govuk_pay.parse_message(raw)
        command = govuk_pay.to_command(message, svc.config.govuk_pay_ledger_codes)
    except InvalidRequest:
        failures.labels("invalid").inc()
        raise
    if command is None:
        log.info("GOV.UK Pay webhook %r acknowledged and ignored", message.get("event_type"))
        return {"status": "ignored"}
    answer = await run_in_threadpool(govuk_pay.apply_message, svc.ledger, command)
    if answer["status"] == "refused":
        failures.labels("refused").inc()
    if svc.config.auto_link_statements and answer["status"] in CARD_MONEY_MOVED:
        # Off the request: Pay waits for the answer, and the money is recorded either way.
        # In a thread: with the worker behind, the ask reads the payment from the store.
        await run_in_threadpool(svc.linking.after_card_money, answer["payment_id"])
    return answer


def _check_signature(config: ApiConfig, raw: bytes, signature: str | None) -> None:
    secrets = config.govuk_pay_webhook_secrets
    if config.govuk_pay_webhook_secret:
        secrets = (SigningSecret("", config.govuk_pay_webhook_secret), *secrets)
    if not secrets:
        raise ApiProblem(
            503,
            "Webhook not configured",
            "set LEDGER_GOVUK_PAY_WEBHOOK_SECRETS (or LEDGER_GOVUK_PAY_WEBHOOK_SECRET) to "
            "accept GOV.UK Pay webhooks",
            "webhook_not_configured",
        )
    matched = govuk_pay.matching_secret(secrets, raw, signature)
    if matched is not None:
        log.debug("GOV.UK Pay message signed with a secret of %s", matched.service or "-")
        return
    raise ApiProblem(
        401,
        "Signature check failed",
        "the Pay-Signature header is missing or does not match the body under any "
        "configured signing secret",
        "bad_signature",
    )
