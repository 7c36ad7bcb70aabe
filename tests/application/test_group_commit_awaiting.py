"""Receipts recorded from an event loop (`record_payment_awaiting`, what POST /payments runs).

On PostgreSQL a receipt that needs no database read is built on the loop and its group
commit awaited: no thread is used. Whatever the group cannot take (a repeat, a chart changed
by another process) and everything on SQLite runs through the thread hand-off, as
`record_payment_once` runs it, with the same answers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from application.grouped_writes import Write
from application.ledger import CommandContext, IncomeLedger, RecordPayment
from income_ledger.bootstrap import build_ledger
from income_ledger.group_commit import _Pending
from income_ledger.settings import Settings
from tests.application.test_group_commit import receipts_per_payment, record, respond
from tests.domain.helpers import CT_REF

CONCURRENT = 16


class Threads:
    """The thread hand-off a route gives: counts what is sent to a thread."""

    def __init__(self) -> None:
        self.sent = 0

    async def __call__(self, call: Callable[[], Any]) -> Any:
        self.sent += 1
        return await asyncio.to_thread(call)


def awaiting(ledger: IncomeLedger, commands: list[RecordPayment], threads: Threads) -> list[Any]:
    """Record the commands concurrently from one event loop, without an Idempotency-Key."""
    ctx = CommandContext("officer:test")

    async def all_at_once() -> list[Any]:
        calls = [
            ledger.record_payment_awaiting(None, command, ctx, respond, threads)
            for command in commands
        ]
        return await asyncio.gather(*calls)

    return asyncio.run(all_at_once())


def test_receipts_from_an_event_loop_are_recorded_once_each_in_position_order(ledger) -> None:
    record(ledger, None, RecordPayment("card", 100, CT_REF, external_id="warm"))  # holds the chart
    threads = Threads()
    commands = [RecordPayment("card", 500 + i, CT_REF) for i in range(CONCURRENT)]
    results = awaiting(ledger, commands, threads)
    assert [stored.status_code for stored, _ in results] == [201] * CONCURRENT
    assert not any(replayed for _, replayed in results)
    positions = [stored.body["position"] for stored, _ in results]
    assert None not in positions and len(set(positions)) == CONCURRENT
    by_id = {stored.body["payment"]["payment_id"]: stored.body for stored, _ in results}
    assert len(by_id) == CONCURRENT
    logged = receipts_per_payment(ledger)
    assert set(logged.values()) == {1} and len(logged) == CONCURRENT + 1
    assert all(
        body["payment"]["allocated_pence"] == body["payment"]["amount_pence"]
        for body in by_id.values()
    )
    if ledger.group_writer is not None:
        assert threads.sent == 0  # built on the loop, the commit awaited
    else:
        assert threads.sent == CONCURRENT  # SQLite: each in a thread, as before


def test_a_repeat_from_an_event_loop_answers_the_first_payment(ledger) -> None:
    first, _ = record(ledger, None, RecordPayment("card", 500, CT_REF, external_id="pay_1"))
    threads = Threads()
    repeat = RecordPayment("card", 500, CT_REF, external_id="pay_1")
    news = [RecordPayment("card", 700, CT_REF, external_id=f"n{i}") for i in range(6)]
    results = awaiting(ledger, [repeat, repeat, *news], threads)
    assert [stored.status_code for stored, _ in results] == [200, 200] + [201] * 6
    first_id = first.body["payment"]["payment_id"]
    assert {stored.body["payment"]["payment_id"] for stored, _ in results[:2]} == {first_id}
    logged = receipts_per_payment(ledger)
    assert set(logged.values()) == {1} and len(logged) == 7
    if ledger.group_writer is not None:
        assert threads.sent == 2  # the repeats clash, and run alone in a thread


def test_a_receipt_from_an_event_loop_sees_a_chart_changed_by_another_process(
    ledger, settings: Settings
) -> None:
    record(ledger, None, RecordPayment("card", 500, CT_REF, external_id="before"))
    other_process = build_ledger(settings)
    try:
        other_process.disable_fund("CT", CommandContext("supervisor:test"), "closing it")
    finally:
        other_process.close()
    [(after, _)] = awaiting(ledger, [RecordPayment("card", 500, CT_REF)], Threads())
    assert after.status_code == 201
    assert after.body["payment"]["allocated_pence"] == 0, after.body
    assert after.body["payment"]["suspense_reason"], after.body


def test_a_group_whose_every_write_was_cancelled_sends_the_database_nothing(
    ledger, monkeypatch
) -> None:
    """A request that gave up before the writer took its group (its wait limit during an
    outage, a shutdown) is left out; a group left with nothing opens no transaction (it used
    to send an empty, failing statement)."""
    writer = ledger.group_writer
    if writer is None:
        pytest.skip("SQLite has no group writer: each receipt has its own transaction")
    opened = []
    transaction = writer._recorder.transaction
    monkeypatch.setattr(
        writer._recorder, "transaction", lambda **kw: opened.append(kw) or transaction(**kw)
    )
    pending = _Pending(Write([], [], []))
    assert pending.answer.cancel()
    writer._commit([pending])
    assert opened == []
    assert pending.answer.cancelled()


def test_a_fault_in_the_writer_fails_its_group_only_and_the_writer_goes_on(
    ledger, monkeypatch
) -> None:
    """A defect of ours in the writer thread (not the database's error) is the group's
    answer at once, and the next receipts are written: the thread used to die, and every
    request after it waited out its limit and failed."""
    if ledger.group_writer is None:
        pytest.skip("SQLite has no group writer: each receipt has its own transaction")
    from income_ledger import group_commit

    monkeypatch.setattr(group_commit, "WAIT_LIMIT_S", 5.0)  # the old code's wait, shortened
    real = group_commit._one_write_per_aggregate
    faults = []

    def faulty(group):
        if not faults:
            faults.append(1)
            raise RuntimeError("a defect in the writer")
        return real(group)

    monkeypatch.setattr(group_commit, "_one_write_per_aggregate", faulty)
    with pytest.raises(RuntimeError, match="a defect in the writer"):
        record(ledger, None, RecordPayment("card", 500, CT_REF, external_id="first"))
    stored, _ = record(ledger, None, RecordPayment("card", 600, CT_REF, external_id="second"))
    assert stored.status_code == 201
    assert receipts_per_payment(ledger) and len(receipts_per_payment(ledger)) == 1


def group_sizes(ledger: IncomeLedger, monkeypatch) -> tuple[list[int], list[int]]:
    """(writes per queue entry, writes per group statement) of the ledger's group writer."""
    writer = ledger.group_writer
    entries: list[int] = []
    groups: list[int] = []
    put = writer._waiting.put  # put_nowait calls it too

    def counted_put(item, *args, **kwargs):
        entries.append(len(item) if isinstance(item, list) else 1)
        return put(item, *args, **kwargs)

    monkeypatch.setattr(writer._waiting, "put", counted_put)
    write_group = writer._recorder.write_group
    monkeypatch.setattr(
        writer._recorder,
        "write_group",
        lambda session, writes: groups.append(len(writes)) or write_group(session, writes),
    )
    return entries, groups


def test_the_receipts_of_one_loop_iteration_reach_the_writer_together(ledger, monkeypatch) -> None:
    """The writes an event loop makes in one iteration are handed to the writer thread in
    one queue entry, so they wake it once and commit in one group (each request used to
    put its own, each waking the writer)."""
    if ledger.group_writer is None:
        pytest.skip("SQLite has no group writer: each receipt has its own transaction")
    from income_ledger import group_commit

    record(ledger, None, RecordPayment("card", 100, CT_REF, external_id="warm"))  # holds the chart
    entries, groups = group_sizes(ledger, monkeypatch)
    threads = Threads()
    results = awaiting(ledger, [RecordPayment("card", 500 + i, CT_REF) for i in range(10)], threads)
    assert [stored.status_code for stored, _ in results] == [201] * 10
    assert threads.sent == 0
    assert entries == [10] and groups == [10]

    monkeypatch.setattr(group_commit, "MAX_GROUP", 4)  # a larger iteration is split
    entries.clear(), groups.clear()
    results = awaiting(ledger, [RecordPayment("card", 600 + i, CT_REF) for i in range(10)], threads)
    assert [stored.status_code for stored, _ in results] == [201] * 10
    assert entries == [10] and groups == [4, 4, 2]
    positions = sorted(stored.body["position"] for stored, _ in results)
    assert len(set(positions)) == 10
    logged = receipts_per_payment(ledger)
    assert set(logged.values()) == {1} and len(logged) == 21


def test_a_receipt_whose_group_never_answers_gives_up_saved_unknown_and_is_left_out(
    ledger, monkeypatch
) -> None:
    """A write waiting past its limit (the database hangs) answers `database_outcome_unknown`
    on the loop, and a write whose group was not taken yet is then left out; the loop's one
    watch stops once nothing waits."""
    writer = ledger.group_writer
    if writer is None:
        pytest.skip("SQLite has no group writer: each receipt has its own transaction")
    from application.outages import DatabaseUnavailable
    from income_ledger import group_commit

    record(ledger, None, RecordPayment("card", 100, CT_REF, external_id="warm"))  # holds the chart
    monkeypatch.setattr(group_commit, "WAIT_LIMIT_S", 0.3)
    monkeypatch.setattr(group_commit, "WATCH_EVERY_S", 0.05)
    release = threading.Event()
    taken: list[bool] = []
    commit = writer._commit
    monkeypatch.setattr(
        writer, "_commit", lambda group: release.wait(10) and taken.extend(p.take() for p in group)
    )
    ctx = CommandContext("officer:test")

    async def hung() -> tuple[BaseException | None, float, dict]:
        started = asyncio.get_running_loop().time()
        try:
            await ledger.record_payment_awaiting(
                None, RecordPayment("card", 500, CT_REF), ctx, respond, Threads()
            )
        except DatabaseUnavailable as error:
            return error, asyncio.get_running_loop().time() - started, dict(writer._watched)
        return None, 0.0, {}

    error, waited_s, watched = asyncio.run(hung())
    release.set()
    assert isinstance(error, DatabaseUnavailable) and error.saved_unknown
    assert 0.3 <= waited_s < 2.0, waited_s
    assert watched == {}  # the watch stopped with nothing left to wait for
    monkeypatch.setattr(writer, "_commit", commit)
    deadline = time.monotonic() + 10
    while not taken and time.monotonic() < deadline:
        time.sleep(0.01)
    assert taken == [False]  # given up before its group was taken: left out
    assert len(receipts_per_payment(ledger)) == 1
    stored, _ = record(ledger, None, RecordPayment("card", 600, CT_REF, external_id="after"))
    assert stored.status_code == 201
