"""The linking runs after a GOV.UK Pay message or a receipt recorded through HTTP, made by the
process's own worker (application.auto_link): no request and no connection waits for one."""

from __future__ import annotations

import asyncio
import logging
import threading

import httpx

from application import reconciliation
from application.auto_link import MAX_CARD_PAYMENTS_WAITING, LinkingWorker
from tests.api.conftest import auth, eventually, signed, upload_statement
from tests.api.test_webhook_card_money import post
from tests.application.test_card_payouts import pay
from tests.application.test_statement_imports import YESTERDAY, camt, entry


def _unmatched_lines(client) -> list[dict]:
    report = client.get("/reconciliation/exceptions", headers=auth("reporting"))
    assert report.status_code == 200, report.text
    return report.json()["unmatched_statement_lines"]


def test_a_webhook_s_request_ends_with_its_answer_not_with_the_run_after_it(
    base_url, monkeypatch, caplog
) -> None:
    """GOV.UK Pay sends its messages one after another on a keep-alive connection: a run
    held up (here until released) delays neither the answer nor the next message, and the
    request itself ends with its answer (the old background task kept it going, timed,
    logged and counted as in flight, until the run ended)."""
    caplog.set_level(logging.INFO, logger="api.access")
    release, finished = threading.Event(), threading.Event()
    real_run = reconciliation.link_after_recording

    def held_run(ledger, since):
        release.wait(5)
        try:
            return real_run(ledger, since)
        finally:
            finished.set()

    def webhook_logged() -> bool:
        return any("/webhooks/govuk-pay" in r.getMessage() for r in caplog.records)

    with httpx.Client(base_url=base_url, timeout=30) as client:
        (line,) = upload_statement(client, camt(entry("99.80", ref="PAYOUT", text="GOVUK PAY")))
        assert line["outcome"] == "recorded"  # nothing to pay in yet: a receipt of its own
        monkeypatch.setattr(reconciliation, "link_after_recording", held_run)
        body, headers = signed(pay("card_payment_captured", "pay-held", fee=20))
        answer = client.post("/webhooks/govuk-pay", content=body, headers=headers)
        assert answer.status_code == 200 and answer.json()["status"] == "recorded"
        assert client.get("/health").status_code == 200  # the same connection, at once
        assert len(_unmatched_lines(client)) == 1
        assert eventually(webhook_logged, timeout_s=3)  # the request is over
        assert not finished.is_set()  # while the run is still held
        release.set()
        assert eventually(finished.is_set)
        assert eventually(lambda: _unmatched_lines(client) == [])
        own = client.get(f"/payments/{line['payment_id']}", headers=auth("officer")).json()
        assert own["status"] == "reversed" and own["history"][-1]["actor"] == "system:auto-link"


def _receipt(client, amount_pence: int, channel: str = "cheque", **more) -> dict:
    recorded = client.post(
        "/payments",
        headers=auth("officer"),
        json={"channel": channel, "amount_pence": amount_pence, "reference": "JUNK"} | more,
    )
    assert recorded.status_code == 201, recorded.text
    return recorded.json()["payment"]


def test_a_receipt_recorded_after_its_statement_line_is_linked_by_itself(client) -> None:
    """A cheque banked yesterday, recorded at the counter today after the bank statement
    was imported: the statement's line pays it in, and the money is counted once."""
    (line,) = upload_statement(client, camt(entry("43.21", ref="B2", day=YESTERDAY)))
    assert line["outcome"] == "recorded"
    assert len(_unmatched_lines(client)) == 1
    cheque = _receipt(client, 4_321, received_at=f"{YESTERDAY}T11:00:00Z")
    assert eventually(lambda: _unmatched_lines(client) == [])
    report = client.get("/reconciliation/exceptions", headers=auth("reporting")).json()
    assert report["unmatched_receipts"] == []
    own = client.get(f"/payments/{line['payment_id']}", headers=auth("officer")).json()
    assert own["status"] == "reversed" and own["history"][-1]["actor"] == "system:auto-link"
    paid_in = client.get(f"/payments/{cheque['payment_id']}", headers=auth("officer")).json()
    assert paid_in["status"] != "reversed"
    assert client.post("/reconciliation/links", headers=auth("officer")).json() == {"links": []}


def test_a_webhook_the_worker_is_behind_on_reads_its_card_day_off_the_event_loop(
    client, services, monkeypatch
) -> None:
    """With MAX_CARD_PAYMENTS_WAITING card payments waiting for the worker, the message's
    own request reads its payment's card day: in a thread, never on the event loop, which
    every other request of the process waits on meanwhile."""
    read_on_loop: list[bool] = []

    def card_day(self, payment_id):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            read_on_loop.append(False)
        else:
            read_on_loop.append(True)
        return None

    monkeypatch.setattr(LinkingWorker, "_card_day", card_day)
    waiting = {f"waiting-{n}" for n in range(MAX_CARD_PAYMENTS_WAITING)}
    monkeypatch.setattr(services.linking, "_card_payments", waiting)  # no thread drains it
    answer = post(client, pay("card_payment_captured", "pay-behind", fee=20))
    assert answer.status_code == 200 and answer.json()["status"] == "recorded"
    assert read_on_loop == [False]
