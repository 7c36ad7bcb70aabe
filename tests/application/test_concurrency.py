"""Real processes racing on one database: duplicates collide, writers of one payment conflict."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from uuid import UUID

from application.ledger import CommandContext, RecordPayment
from domain.errors import LedgerError
from income_ledger.bootstrap import build_ledger, init_database, is_initialised
from income_ledger.settings import Settings
from tests.domain.helpers import CT_REF

PROCESSES = 4


def _racing_context():
    """Fresh processes forked from a server that has already imported the ledger: no state
    (connections, pools) is inherited from the test process, as with "spawn", but without
    each racer importing the application afresh (about a second apiece on a loaded machine)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["income_ledger.bootstrap", "application.ledger"])
    return context


def _race(target, args_list) -> list:
    """Start one process per argument tuple; they wait at a barrier, then all go at once."""
    context = _racing_context()
    barrier = context.Barrier(len(args_list))
    results = context.Queue()
    processes = [
        context.Process(target=_report, args=(results, target, barrier, *args))
        for args in args_list
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    return outcomes


def _report(results, target, *args) -> None:
    try:
        results.put(target(*args))
    except Exception as error:  # the parent asserts on it; a traceback would be lost
        results.put(f"error: {type(error).__name__}: {error}")


def _record_same_payment(barrier, url: str) -> str:
    ledger = build_ledger(Settings(database_url=url))
    try:
        command = RecordPayment("govuk_pay", 2_500, CT_REF, external_id="pay_race")
        barrier.wait()
        outcome = ledger.record_payment(command, CommandContext("integration:test"))
        return "recorded" if outcome.recorded else "duplicate"
    except LedgerError as error:
        return error.code
    finally:
        ledger.close()


def _allocate_everything(barrier, url: str, payment_id: str) -> str:
    ledger = build_ledger(Settings(database_url=url))
    try:
        ledger.repository.get(UUID(payment_id))  # warm up: load before the race starts
        barrier.wait()
        ledger.allocate(
            UUID(payment_id), [("CT", CT_REF, 10_000)], CommandContext("officer:race"), "race"
        )
        return "allocated"
    except LedgerError as error:
        return error.code
    finally:
        ledger.close()


def _init(barrier, url: str) -> bool:
    barrier.wait()
    init_database(Settings(database_url=url))
    return True


def test_the_same_payment_delivered_to_racing_processes_is_recorded_once(ledger, settings):
    results = Counter(_race(_record_same_payment, [(settings.database_url,)] * PROCESSES))
    assert results["recorded"] == 1
    assert results["recorded"] + results["duplicate"] + results["concurrent_update"] == PROCESSES
    events = [event for _, event in ledger.read_events()]
    receipts = [e for e in events if type(e).__name__ == "Received"]
    assert len(receipts) == 1


def test_racing_writers_of_one_payment_cannot_both_succeed(ledger, settings, officer):
    pid = ledger.record_payment(RecordPayment("cheque", 10_000, "UNKNOWN"), officer).payment_id
    results = Counter(_race(_allocate_everything, [(settings.database_url, str(pid))] * PROCESSES))
    assert results["allocated"] == 1, results
    losers = results["concurrent_update"] + results["allocation_exceeds_unallocated"]
    assert losers == PROCESSES - 1, results
    payment = ledger.get_payment(pid)
    assert payment["allocated_pence"] == 10_000
    assert [h["action"] for h in payment["history"]] == ["Received", "Allocated"]


def test_processes_initialising_one_database_together_do_not_race(settings):
    assert all(_race(_init, [(settings.database_url,)] * 3))
    assert is_initialised(settings)
