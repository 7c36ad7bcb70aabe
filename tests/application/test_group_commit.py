"""Receipts recorded by concurrent requests of one process (`record_payment_once`).

On PostgreSQL they share transactions (group commit, income_ledger/group_commit.py); on SQLite
each has its own. Either way: positions become visible in order, a clash is answered alone
without failing its neighbours, and one Idempotency-Key records once and answers alike.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from application.idempotency import IdempotentRequest, StoredResponse, request_hash
from application.ledger import CommandContext, IncomeLedger, Outcome, RecordPayment
from income_ledger.bootstrap import build_ledger
from income_ledger.settings import Settings
from tests.domain.helpers import CT_REF

WRITERS = 8
RECEIPTS_PER_WRITER = 12


def respond(outcome: Outcome) -> StoredResponse:
    body = {"recorded": outcome.recorded, "position": outcome.position, "payment": outcome.payment}
    return StoredResponse(201 if outcome.recorded else 200, body, outcome.position)


def record(
    ledger: IncomeLedger, key: str | None, command: RecordPayment
) -> tuple[StoredResponse, bool]:
    scope = f"officer:{key}" if key else None
    request = None
    if scope:
        hashed = request_hash("POST", "/payments", repr(command).encode())
        request = IdempotentRequest(scope, hashed, "POST", "/payments")
    ctx = CommandContext("officer:test", idempotency_key=scope)
    return ledger.record_payment_once(request, command, ctx, respond)


def all_at_once(calls: list[Callable[[], object]]) -> list[object]:
    """Run each call in its own thread, released together; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as error:  # the test asserts on it
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def receipts_per_payment(ledger: IncomeLedger) -> Counter:
    return Counter(
        event.originator_id
        for _, event in ledger.read_events()
        if type(event).__name__ == "Received"
    )


def test_concurrent_receipts_become_visible_in_position_order(ledger) -> None:
    """A reader following the log while writers commit never skips a position that commits
    late: what it saw, page after page, is exactly the whole log at the end."""
    start = ledger.max_position()
    seen: list[int] = []
    writing = threading.Event()
    writing.set()

    def follow() -> None:
        while True:
            still_writing = writing.is_set()
            after = seen[-1] if seen else start
            seen.extend(position for position, _ in ledger.read_events(after=after))
            if not still_writing:
                return

    def writer(w: int) -> list[int | None]:
        return [
            record(ledger, f"w{w}-{i}", RecordPayment("card", 100 + i, CT_REF))[0].position
            for i in range(RECEIPTS_PER_WRITER)
        ]

    reader = threading.Thread(target=follow)
    reader.start()
    answered = all_at_once([lambda w=w: writer(w) for w in range(WRITERS)])
    writing.clear()
    reader.join(timeout=60)
    positions = [p for positions in answered for p in positions]  # type: ignore[attr-defined]
    whole_log = [position for position, _ in ledger.read_events(after=start)]
    assert seen == whole_log
    assert len(whole_log) == 2 * WRITERS * RECEIPTS_PER_WRITER  # Received and Allocated
    assert set(positions) <= set(whole_log) and None not in positions


def test_a_receipt_that_clashes_is_answered_alone_and_its_neighbours_are_recorded(
    ledger,
) -> None:
    first, _ = record(ledger, None, RecordPayment("card", 500, CT_REF, external_id="pay_1"))
    repeats = [
        lambda i=i: record(
            ledger, f"again-{i}", RecordPayment("card", 500, CT_REF, external_id="pay_1")
        )
        for i in range(4)
    ]
    news = [
        lambda i=i: record(
            ledger, f"new-{i}", RecordPayment("card", 700, CT_REF, external_id=f"n{i}")
        )
        for i in range(8)
    ]
    results = all_at_once(repeats + news)
    statuses = [result[0].status_code for result in results]  # type: ignore[index]
    assert statuses == [200] * 4 + [201] * 8, results
    repeat_ids = {r[0].body["payment"]["payment_id"] for r in results[:4]}  # type: ignore[index]
    assert repeat_ids == {first.body["payment"]["payment_id"]}
    assert set(receipts_per_payment(ledger).values()) == {1}
    assert len(receipts_per_payment(ledger)) == 9


def test_one_key_sent_at_once_records_once_and_answers_alike(ledger) -> None:
    command = RecordPayment("cash", 1_250, CT_REF)
    results = all_at_once([lambda: record(ledger, "same-key", command) for _ in range(6)])
    assert not [r for r in results if isinstance(r, Exception)], results
    bodies = [r[0].body for r in results]  # type: ignore[index]
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["recorded"] is True and bodies[0]["position"] is not None
    assert sorted(r[1] for r in results) == [False] + [True] * 5  # type: ignore[index]
    assert list(receipts_per_payment(ledger).values()) == [1]


def test_a_receipt_is_checked_against_a_chart_changed_by_another_process(
    ledger, settings: Settings
) -> None:
    """A process keeps the chart of funds it read; another process changing it must still
    be seen by the next receipt here (the group's statement checks the chart's version)."""
    first, _ = record(ledger, None, RecordPayment("card", 500, CT_REF, external_id="before"))
    assert first.body["payment"]["allocated_pence"] == 500
    other_process = build_ledger(settings)
    try:
        other_process.disable_fund("CT", CommandContext("supervisor:test"), "closing it")
    finally:
        other_process.close()
    after, _ = record(ledger, None, RecordPayment("card", 500, CT_REF, external_id="after"))
    assert after.status_code == 201
    assert after.body["payment"]["allocated_pence"] == 0, after.body
    assert after.body["payment"]["suspense_reason"], after.body
