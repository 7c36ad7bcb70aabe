"""A following runner: what it does between a receipt's commit and the read model having it
(issue #9, save -> visible), on both backends. PostgreSQL announces new events (NOTIFY), so
there the runner neither reads without cause nor lets the audit chain's backlog hold up the
read model; SQLite announces nothing, so there it polls, and only the outcome is checked."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.exc import OperationalError

from application import event_store
from application.ledger import RecordPayment
from income_ledger.bootstrap import build_audit_chain
from projections import read_position
from projections.chain import CHAIN_NAME
from projections.read_position import ReadModelWatch
from projections.runner import READ_MODEL_CHANNEL, ProjectionRunner, wait_for_position
from tests.domain.helpers import CT_REF

FOLLOW_TIMEOUT_S = 30


class Logged:
    """A projection or chain whose pages are written in a shared log as (name, events)."""

    def __init__(self, target: Any, log: list[tuple[str, int]], after: Callable[[], None]):
        self.target = target
        self.log = log
        self.after = after
        self.name = target.name
        self.engine = target.engine
        self.source = target.source
        self.page_size = target.page_size

    def position(self) -> int:
        return int(self.target.position())

    def process_page(self) -> int:
        count = int(self.target.process_page())
        self.log.append((self.name, count))
        self.after()
        return count

    def catch_up(self) -> int:
        applied = 0
        while count := self.process_page():
            applied += count
        return applied


def follow(runner: ProjectionRunner) -> Callable[[], None]:
    thread = runner.start_thread()

    def stop() -> None:
        runner.stop()
        thread.join(timeout=FOLLOW_TIMEOUT_S)
        assert not thread.is_alive()

    return stop


def until(reached: Callable[[], bool]) -> None:
    deadline = time.monotonic() + FOLLOW_TIMEOUT_S
    while not reached():
        assert time.monotonic() < deadline, "the runner did not catch up"
        time.sleep(0.02)


def test_a_new_receipt_reaches_the_read_model_before_the_chains_backlog(
    ledger, projection, settings, officer
) -> None:
    for amount in range(1, 6):
        ledger.record_payment(RecordPayment("cash", amount, CT_REF), officer)
    chain = build_audit_chain(settings, ledger, page_size=1)  # one page per event of backlog
    log: list[tuple[str, int]] = []
    late: list[int] = []

    def receipt_during_the_chains_first_page() -> None:
        if late:
            return
        late.append(ledger.record_payment(RecordPayment("cash", 99, CT_REF), officer).position)
        time.sleep(0.2)  # its NOTIFY reaches the runner's connection before the next page

    logged_chain = Logged(chain, log, receipt_during_the_chains_first_page)
    logged_projection = Logged(projection, log, lambda: None)
    runner = ProjectionRunner(
        logged_projection,
        companions=[logged_chain],
        idle_wait_s=0.2,  # type: ignore[arg-type]
    )
    stop = follow(runner)
    try:
        until(lambda: bool(late) and chain.position() >= late[0])
        assert wait_for_position(projection.engine, late[0], timeout_s=FOLLOW_TIMEOUT_S)
    finally:
        stop()
        chain.engine.dispose()
    assert projection.position() == chain.position() == ledger.max_position()
    if settings.is_postgres:
        first_chain_page = log.index((CHAIN_NAME, 1))
        assert log[first_chain_page + 1][0] == projection.name, log


def test_a_receipt_costs_the_following_runner_no_empty_transactions(
    ledger, projection, settings, officer
) -> None:
    ledger.record_payment(RecordPayment("cash", 1, CT_REF), officer)
    chain = build_audit_chain(settings, ledger)
    log: list[tuple[str, int]] = []
    runner = ProjectionRunner(
        Logged(projection, log, lambda: None),  # type: ignore[arg-type]
        companions=[Logged(chain, log, lambda: None)],
        idle_wait_s=2.0,  # no read for lack of news while the test watches
    )
    stop = follow(runner)
    try:
        until(lambda: chain.position() == ledger.max_position())
        log.clear()
        position = ledger.record_payment(RecordPayment("cash", 2, CT_REF), officer).position
        until(lambda: chain.position() >= position)
        assert wait_for_position(projection.engine, position, timeout_s=FOLLOW_TIMEOUT_S)
        time.sleep(0.3)  # what the runner does after
        seen = list(log)
    finally:
        stop()
        chain.engine.dispose()
    assert {name for name, count in seen if count} == {projection.name, CHAIN_NAME}
    if settings.is_postgres:
        assert [page for page in seen if page[1] == 0] == [], seen


def test_the_read_model_announces_each_page_it_commits(
    ledger, projection, settings, officer
) -> None:
    ledger.record_payment(RecordPayment("cash", 3, CT_REF), officer)
    if not settings.is_postgres:  # SQLite announces nothing: its readers poll
        projection.catch_up()
        assert projection.position() == ledger.max_position()
        return
    raw = projection.engine.raw_connection()
    try:
        listener = raw.driver_connection
        listener.autocommit = True
        with listener.cursor() as cursor:
            cursor.execute(f"LISTEN {READ_MODEL_CHANNEL}")
        projection.catch_up()  # one page: fewer events than its size
        until(lambda: bool(listener.poll() or listener.notifies))
        heard = [(n.channel, n.payload) for n in listener.notifies]
    finally:
        raw.invalidate()
    assert heard == [(READ_MODEL_CHANNEL, str(ledger.max_position()))]


def test_a_reader_waiting_for_a_position_is_woken_by_its_announcement(
    ledger, projection, settings, officer, monkeypatch
) -> None:
    # Only the announcement can wake it in time: a lost one would be read again this late.
    monkeypatch.setattr(read_position, "WAIT_SLOW_POLL_S", 60.0)
    projection.catch_up()
    watch = ReadModelWatch(projection.engine)
    try:
        assert watch.wait(projection.position(), timeout_s=1)
        if settings.is_postgres:
            until(lambda: watch.listening)
        position = ledger.record_payment(RecordPayment("cash", 4, CT_REF), officer).position
        assert not watch.wait(position, timeout_s=0.2)
        applying = threading.Timer(0.3, projection.catch_up)
        applying.start()
        started = time.monotonic()
        assert watch.wait(position, timeout_s=FOLLOW_TIMEOUT_S)
        waited_s = time.monotonic() - started
        applying.join()
    finally:
        watch.close()
    assert waited_s < FOLLOW_TIMEOUT_S / 2


def test_the_chain_keeps_up_while_new_events_keep_coming(
    ledger, projection, settings, officer
) -> None:
    # A receipt is announced during every read-model page: the chain must still advance
    # (audit verify must see it), not give way before its first page on every round.
    for amount in range(1, 4):
        ledger.record_payment(RecordPayment("cash", amount, CT_REF), officer)
    chain = build_audit_chain(settings, ledger, page_size=1)
    log: list[tuple[str, int]] = []
    writes: list[int] = []
    chain_during_writes: list[int] = []

    def a_receipt_after_each_read_model_page() -> None:
        if len(writes) == 8:
            if not chain_during_writes:
                chain_during_writes.append(chain.position())
            return
        writes.append(ledger.record_payment(RecordPayment("cash", 7, CT_REF), officer).position)
        time.sleep(0.05)  # its NOTIFY reaches the runner's connection before the chain's turn

    runner = ProjectionRunner(
        Logged(projection, log, a_receipt_after_each_read_model_page),  # type: ignore[arg-type]
        companions=[Logged(chain, log, lambda: None)],  # type: ignore[list-item]
        idle_wait_s=0.2,
    )
    stop = follow(runner)
    try:
        until(lambda: bool(chain_during_writes))
        until(lambda: chain.position() == projection.position() == ledger.max_position())
    finally:
        stop()
        chain.engine.dispose()
    assert chain_during_writes[0] > 0, log


def test_a_watch_that_cannot_reach_the_database_stops_with_its_readers_and_logs_once(
    settings, monkeypatch, caplog
) -> None:
    if not settings.is_postgres:  # SQLite: no listener, readers poll
        return
    monkeypatch.setattr(read_position, "IDLE_LISTEN_S", 0.5)
    monkeypatch.setattr(read_position, "RECONNECT_S", 0.05)
    unreachable = create_engine("postgresql://postgres@127.0.0.1:1/nowhere")
    watch = ReadModelWatch(unreachable)
    try:
        with pytest.raises(OperationalError):  # the reader is told (the API says 503)
            watch.wait(1, timeout_s=0.1)
        thread = watch._thread
        assert thread is not None
        thread.join(timeout=5)
        assert not thread.is_alive(), "the watch kept retrying with no reader waiting"
    finally:
        watch.close()
        unreachable.dispose()
    warnings = [r for r in caplog.records if r.name == read_position.__name__]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "\n" not in warnings[0].getMessage()
    assert warnings[0].exc_info is None


def test_a_page_reads_its_events_on_its_own_connection(
    ledger, projection, settings, officer
) -> None:
    # The read model's and the chain's pages read the events in their own transaction: a
    # second pooled connection cost each page its pre-ping, BEGIN and ROLLBACK (issue #9).
    chain = build_audit_chain(settings, ledger, page_size=50)
    store = event_store.engine(ledger.recorder)
    assert store is not None
    checkouts: list[object] = []

    def checkout(*_: object) -> None:
        checkouts.append(None)

    ledger.record_payment(RecordPayment("cash", 5, CT_REF), officer)
    event.listen(store, "checkout", checkout)
    try:
        assert projection.process_page() > 0
        assert chain.process_page() > 0
    finally:
        event.remove(store, "checkout", checkout)
        chain.engine.dispose()
    assert checkouts == []
    assert projection.position() == chain.position() == ledger.max_position()


def test_a_listening_reader_waits_for_the_announcement_without_reading_the_position(
    ledger, projection, settings, officer, monkeypatch
) -> None:
    # The watch's listener read the position after its LISTEN, so a reader needs no read of
    # its own before waiting: neither for a position applied before it asked, nor for one
    # the projector applies while it waits (each read was a pooled connection's round trips).
    if not settings.is_postgres:  # SQLite announces nothing: its readers poll
        return
    monkeypatch.setattr(read_position, "WAIT_SLOW_POLL_S", 60.0)
    before = ledger.record_payment(RecordPayment("cash", 6, CT_REF), officer).position
    projection.catch_up()
    watch = ReadModelWatch(projection.engine)
    reads: list[object] = []
    reader = threading.current_thread()

    def checkout(*_: object) -> None:
        if threading.current_thread() is reader:
            reads.append(None)

    event.listen(projection.engine, "checkout", checkout)
    try:
        watch.wait(0, timeout_s=1)  # starts the listener
        until(lambda: watch.listening)
        reads.clear()
        assert watch.wait(before, timeout_s=1)
        position = ledger.record_payment(RecordPayment("cash", 7, CT_REF), officer).position
        applying = threading.Timer(0.2, projection.catch_up)
        applying.start()
        assert watch.wait(position, timeout_s=FOLLOW_TIMEOUT_S)
        applying.join()
    finally:
        watch.close()
        event.remove(projection.engine, "checkout", checkout)
    assert reads == [], "a reader read the position itself"
