"""An import holds no write lock while its lines are checked (issue #10).

Checking a large file's lines takes most of an import's time. If the import's transaction
were open meanwhile (2bc8114, reverted by d7913f7), every other writer would wait for the
whole check: on PostgreSQL behind the event store's LOCK TABLE ... IN EXCLUSIVE MODE taken by
an early COPY, on SQLite behind eventsourcing-sqlalchemy's write lock taken as the
transaction opens. Here the check of the file's last chunk of lines is held until the test
says go (in this process, or in a forked worker), and a payment recorded meanwhile from
another thread of the same ledger (as the API's threads share one) must be stored at once.

The file is several chunks (CHUNK_LINES, the unit in which checked lines come back to the
importing process) and a part, so that a store ahead of the check would have happened by its
last chunk (2bc8114 stored every 2,000 lines: four chunks), whatever the chunk size becomes.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable

import pytest

from application.imports import CHUNK_LINES, _LineJob, import_file
from application.ledger import CommandContext, IncomeLedger, RecordPayment
from tests.application.test_imports import allpay_file, allpay_line
from tests.domain.helpers import CT_REF, HRA_REF, SUN_REF

CHUNKS_BEFORE_LAST = 5
LINES = CHUNKS_BEFORE_LAST * CHUNK_LINES + CHUNK_LINES // 5  # 2,600 lines of 500-line chunks
# Long enough for a payment on a loaded machine (two test workers, a fork), far shorter
# than a check held for the test.
PAYMENT_SECONDS = 10
HELD_SECONDS = 120
IMPORTER = CommandContext("officer:importer")
OFFICER = CommandContext("officer:till")


def a_days_file() -> bytes:
    references = [CT_REF, SUN_REF, HRA_REF, "NOSUCH"]
    return allpay_file(
        *(
            allpay_line(references[n % len(references)], f"{10 + n % 90}.{n % 100:02d}")
            for n in range(LINES)
        )
    )


def hold_last_chunk(monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    """The check of the chunk holding the file's last line waits for `go` once it has
    set `reached`. Events of a forked context: the check may run in a forked worker."""
    context = multiprocessing.get_context("fork")
    reached, go = context.Event(), context.Event()
    encode = _LineJob.encode

    def held(job: _LineJob, start: int, stop: int):
        if stop == len(job.lines):
            reached.set()
            go.wait(HELD_SECONDS)
        return encode(job, start, stop)

    monkeypatch.setattr(_LineJob, "encode", held)
    return reached, go


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """`work` run in a thread; the list gets its result, or the exception it raised."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as error:  # the test asserts on it
            result.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


@pytest.mark.parametrize("processes", [1, 2], ids=["in_process", "forked_workers"])
def test_a_payment_is_recorded_while_an_import_checks_its_lines(
    ledger: IncomeLedger, monkeypatch: pytest.MonkeyPatch, processes: int
) -> None:
    assert (LINES - 1) // CHUNK_LINES == CHUNKS_BEFORE_LAST  # the last chunk comes after five
    ledger.import_processes = processes
    # A file this size is checked in this process, or in workers from 2 processes on.
    monkeypatch.setattr("application.imports.PARALLEL_FROM_LINES", 1 if processes > 1 else 10**9)
    reached, go = hold_last_chunk(monkeypatch)
    # Workers check chunks side by side: the last one may be reached before the import has
    # taken in those before it (and stored them, had it stored them early).
    others_taken_in = threading.Event()
    last_chunk_start = (LINES - 1) // CHUNK_LINES * CHUNK_LINES

    def progress(stage: str, done: int, total: int | None) -> None:
        if stage == "checking lines" and done >= last_chunk_start:
            others_taken_in.set()

    content = a_days_file()
    importing, imported = in_thread(
        lambda: import_file(ledger, content, IMPORTER, file_name="allpay.txt", progress=progress)
    )
    try:
        assert reached.wait(HELD_SECONDS), imported
        assert others_taken_in.wait(HELD_SECONDS), imported
        command = RecordPayment("cheque", 1_234, CT_REF, external_id="cheque-while-importing")
        paying, paid = in_thread(lambda: ledger.record_payment(command, OFFICER))
        paying.join(PAYMENT_SECONDS)
        blocked = paying.is_alive()
    finally:
        go.set()
    importing.join(HELD_SECONDS)
    paying.join(HELD_SECONDS)
    assert not blocked, (
        f"a payment waited over {PAYMENT_SECONDS} s while the import checked its lines: "
        "the import held a write lock (or transaction) during the check"
    )
    (outcome,) = imported
    (payment,) = paid
    assert not isinstance(outcome, BaseException), outcome
    assert not isinstance(payment, BaseException), payment
    assert outcome.recorded and payment.recorded
    assert ledger.get_payment(payment.payment_id)["amount_pence"] == 1_234
    assert outcome.batch["receipts_count"] == LINES
    stored = {
        notification.originator_id
        for notification in ledger.recorder.select_notifications(start=1, limit=10 * LINES)
    }
    batch = ledger.repository.get(outcome.batch_id)
    receipts = {line.payment_id for line in batch.lines if line.outcome == "recorded"}
    assert len(receipts) == LINES
    assert {str(pid) for pid in stored} >= receipts | {str(payment.payment_id)}
