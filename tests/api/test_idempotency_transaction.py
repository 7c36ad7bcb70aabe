"""A command's events and its stored idempotent response commit together or not at all."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import event, func, select

from application.idempotency import IdempotentRequest, StoredResponse, idempotency_table
from application.ledger import CommandContext, IncomeLedger, RecordPayment
from tests.api.conftest import auth
from tests.domain.helpers import CT_REF

BODY = {"channel": "cash", "amount_pence": 2_500, "reference": CT_REF}


class InjectedCrash(RuntimeError):
    pass


def receipts(ledger: IncomeLedger) -> int:
    return sum(type(e).__name__ == "Received" for _, e in ledger.read_events())


def stored_responses(ledger: IncomeLedger) -> int:
    with ledger.recorder.datastore.engine.connect() as connection:  # type: ignore[attr-defined]
        return connection.execute(select(func.count()).select_from(idempotency_table)).scalar_one()


class Crash:
    armed = True


@pytest.fixture
def crash_when_committing_a_response(ledger: IncomeLedger) -> Iterator[Crash]:
    """Fail, just before the commit, any transaction that stores an idempotent response: the
    moment between "the command is saved" and "its response is saved" where a crash used to
    leave the events without the response."""
    datastore = ledger.recorder.datastore  # type: ignore[attr-defined]
    switch = Crash()

    def note_insert(connection, cursor, statement, parameters, context, executemany) -> None:
        # Alone, or inside the statement of a group commit.
        if "INSERT INTO REQUEST_IDEMPOTENCY" in statement.upper():
            connection.info["stores_response"] = True

    def crash(session) -> None:
        if session.connection().info.pop("stores_response", False) and switch.armed:
            raise InjectedCrash("crashed while committing")

    def forget(connection) -> None:
        connection.info.pop("stores_response", None)

    event.listen(datastore.engine, "before_cursor_execute", note_insert)
    event.listen(datastore.engine, "rollback", forget)
    event.listen(datastore.session_maker, "before_commit", crash)
    yield switch
    event.remove(datastore.engine, "before_cursor_execute", note_insert)
    event.remove(datastore.engine, "rollback", forget)
    event.remove(datastore.session_maker, "before_commit", crash)


def test_a_crash_while_committing_the_response_leaves_no_events(
    client, ledger, crash_when_committing_a_response
) -> None:
    headers = auth("officer") | {"Idempotency-Key": "crash-1"}
    crashed = client.post("/payments", json=BODY, headers=headers)
    assert crashed.status_code == 500
    assert (receipts(ledger), stored_responses(ledger)) == (0, 0)


def test_a_retry_after_the_crash_gets_a_first_answer_and_records_once(
    client, ledger, crash_when_committing_a_response
) -> None:
    headers = auth("officer") | {"Idempotency-Key": "crash-2"}
    assert client.post("/payments", json=BODY, headers=headers).status_code == 500
    crash_when_committing_a_response.armed = False
    retried = client.post("/payments", json=BODY, headers=headers)
    assert retried.status_code == 201, retried.text
    assert retried.json()["recorded"] is True
    assert "Idempotent-Replayed" not in retried.headers
    replayed = client.post("/payments", json=BODY, headers=headers)
    assert replayed.json() == retried.json()
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert (receipts(ledger), stored_responses(ledger)) == (1, 1)


def test_a_failure_after_the_command_before_commit_stores_neither(ledger) -> None:
    request = IdempotentRequest("officer:k1", "0" * 64, "POST", "/payments")
    ctx = CommandContext("officer:test", idempotency_key="officer:k1")

    def record_then_fail() -> StoredResponse:
        ledger.record_payment(RecordPayment("cash", 2_500, CT_REF), ctx)
        raise InjectedCrash("after the command, before the commit")

    with pytest.raises(InjectedCrash):
        ledger.run_once(request, record_then_fail)
    assert (receipts(ledger), stored_responses(ledger)) == (0, 0)

    def record() -> StoredResponse:
        outcome = ledger.record_payment(RecordPayment("cash", 2_500, CT_REF), ctx)
        return StoredResponse(201, {"payment_id": str(outcome.payment_id)}, outcome.position)

    first, replayed = ledger.run_once(request, record)
    again, replayed_again = ledger.run_once(request, record)
    assert (replayed, replayed_again) == (False, True)
    assert again == first
    assert (receipts(ledger), stored_responses(ledger)) == (1, 1)
