"""A large file's lines are checked and encoded in forked worker processes (#10, speed). What
they store must be exactly what one process stores, and a bad line in any worker's chunk must
refuse the whole file as one process does, on both backends. The thresholds are lowered here
so that a file of a few dozen lines is split over several chunks and workers."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest

from application import event_store, imports
from application.access import FundAccess
from application.imports import _LineJob, get_import, import_file
from application.ledger import CommandContext, IncomeLedger
from domain.imports import ImportBatch, ImportRefused, LineProblem
from domain.sample_chart import SAMPLE_FUNDS
from income_ledger.bootstrap import build_ledger
from income_ledger.settings import Settings
from tests.application.test_fast_import import (
    CARD,
    IMPORTER,
    stored_rows,
    twin_settings,  # noqa: F401 (a fixture)
)
from tests.application.test_fast_import import import_all as import_all_files
from tests.application.test_imports import allpay_file, allpay_line
from tests.domain.helpers import CT_REF, CT_REF_2, HRA_REF, SUN_REF

CHUNK = 7  # lines per chunk here: a 60-line file is 9 chunks


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("application.imports.CHUNK_LINES", CHUNK)
    monkeypatch.setattr("application.imports.PARALLEL_FROM_LINES", 20)


@pytest.fixture
def workers_seen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A directory where each worker process that starts leaves a file named by its pid."""
    started = _LineJob.in_worker

    def in_worker(job: _LineJob) -> None:
        started(job)
        (tmp_path / str(os.getpid())).touch()

    monkeypatch.setattr(_LineJob, "in_worker", in_worker)
    return tmp_path


@pytest.fixture
def one_process(twin_settings: Settings) -> Iterator[IncomeLedger]:  # noqa: F811
    """The same kind of ledger on a second database, importing in this process only."""
    ledger = build_ledger(twin_settings)
    ledger.import_processes = 1
    for fund in SAMPLE_FUNDS:
        ledger.add_fund(fund, CommandContext("test:setup"))
    yield ledger
    ledger.close()


def every_kind_of_line(count: int) -> list[str]:
    """Allocated, with VAT, suspense, rewritten by a rule, held by a rule, a masked card
    number and a cash adjustment, over and over."""
    kinds = [
        (CT_REF, "12.00", "P"),
        (SUN_REF, "120.00", "P"),
        ("NOSUCH", "3.00", "P"),
        (f"CT{CT_REF_2}", "25.00", "P"),
        ("BIG", "700.00", "P"),
        (CARD, "4.00", "P"),
        (HRA_REF, "1.50", "C"),
    ]
    return [allpay_line(*kinds[n % len(kinds)], source=f"{n:06d}") for n in range(count)]


def test_a_large_file_stores_in_workers_exactly_what_one_process_stores(
    ledger: IncomeLedger, one_process: IncomeLedger, small_chunks: None, workers_seen: Path
) -> None:
    ledger.import_processes = 2
    big = allpay_file(*every_kind_of_line(60))
    # The rules and the files of test_fast_import first (every kind of receipt and line),
    # then the large file, on each side.
    parallel = [*import_all_files(ledger), import_file(ledger, big, IMPORTER, file_name="big")]
    single = [
        *import_all_files(one_process),
        import_file(one_process, big, IMPORTER, file_name="big"),
    ]
    assert {path.name for path in workers_seen.iterdir()} - {str(os.getpid())}, "no worker ran"
    assert stored_rows(ledger) == stored_rows(one_process)
    big_id = parallel[-1].batch_id
    assert big_id == single[-1].batch_id
    lines = get_import(ledger, big_id)["lines"]
    assert lines == get_import(one_process, big_id)["lines"]
    assert [line["line"] for line in lines] == list(range(1, 61))
    # Imported again: recorded once, on each side.
    assert not import_file(ledger, big, IMPORTER, file_name="big").recorded
    assert stored_rows(ledger) == stored_rows(one_process)


def test_bad_lines_in_any_workers_chunk_refuse_the_whole_file(
    ledger: IncomeLedger, small_chunks: None, workers_seen: Path
) -> None:
    """Lines the file's shape allows but the ledger's rules refuse (found in the workers):
    here an officer of revenues and sundry debtors imports rent payments too."""
    ledger.import_processes = 2
    officer = CommandContext(
        "officer:revenues", access=FundAccess(frozenset({"REVENUES", "SUNDRY"}))
    )
    lines = every_kind_of_line(60)
    bad = [1, 9, 30, 31, 60]  # the first line, inside chunks, across a chunk's end, the last
    for number in bad:
        lines[number - 1] = allpay_line(HRA_REF, "1.00", source=f"{number:06d}")
    before = ledger.max_position()
    with pytest.raises(ImportRefused) as refused:
        import_file(ledger, allpay_file(*lines), officer, file_name="bad")
    assert [problem.line_number for problem in refused.value.problems] == bad
    assert all("HRA" in problem.reason for problem in refused.value.problems)
    assert {path.name for path in workers_seen.iterdir()} - {str(os.getpid())}, "no worker ran"
    assert ledger.max_position() == before

    # The same refusal, word for word, as in one process.
    ledger.import_processes = 1
    with pytest.raises(ImportRefused) as alone:
        import_file(ledger, allpay_file(*lines), officer, file_name="bad")
    assert alone.value.problems == refused.value.problems
    assert alone.value.message == refused.value.message
    assert ledger.max_position() == before

    # Without the bad lines, the same officer's file is imported (in workers).
    good = [line for number, line in enumerate(lines, 1) if number not in bad]
    assert import_file(ledger, allpay_file(*good), officer, file_name="good").recorded


def test_a_worker_cannot_use_the_parents_database(ledger: IncomeLedger) -> None:
    """What a worker runs first: the parent's pooled connections are forgotten, not closed,
    and any new one is refused; the parent's own go on working."""
    _forked_with["ledger"] = ledger  # a forked process finds it here, as workers do theirs
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
            answer = pool.submit(_use_database_after_leaving).result()
    finally:
        _forked_with.clear()
    assert "must not use the database" in answer
    assert ledger.max_position() > 0  # the parent's connection still works


_forked_with: dict[str, IncomeLedger] = {}


def _use_database_after_leaving() -> str:
    ledger = _forked_with["ledger"]
    event_store.leave_to_parent(ledger.recorder)
    try:
        ledger.max_position()
    except RuntimeError as error:
        return str(error)
    return "the worker read the database"


def test_a_worker_killed_mid_import_fails_it_at_once_storing_nothing(
    ledger: IncomeLedger, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed mid-import (kill -9, the out-of-memory killer) fails the import and
    stores nothing, also in a process that handles SIGTERM itself as the API server does
    (uvicorn: it sets a flag and returns). The pool ends the other workers with SIGTERM; a
    worker that inherited such a handler lived on, and the import waited for it forever."""
    ledger.import_processes = 2
    importer = os.getpid()
    encode = _LineJob.encode

    def encode_or_die(job: _LineJob, start: int, stop: int) -> Any:
        """The second chunk's worker is killed while the first chunk's is still at work on
        a result larger than a pipe holds (as 500 lines' are)."""
        if os.getpid() == importer:
            return encode(job, start, stop)
        if start == CHUNK:
            os.kill(os.getpid(), signal.SIGKILL)
        receipts, problems = encode(job, start, stop)
        time.sleep(2)
        return receipts, [*problems, LineProblem(0, "x" * 200_000)]

    monkeypatch.setattr(_LineJob, "encode", encode_or_die)
    before = ledger.max_position()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            import_file(ledger, allpay_file(*every_kind_of_line(60)), IMPORTER, file_name="x")
        except BaseException as error:  # asserted below
            failed.append(error)

    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        importing = threading.Thread(target=run, daemon=True)
        importing.start()
        importing.join(30)
        hung = importing.is_alive()
    finally:
        signal.signal(signal.SIGTERM, previous)
        for worker in multiprocessing.active_children():  # a hung one, not to outlive the test
            worker.kill()
        importing.join(30)
    assert not hung, "the import still waited for its workers 30 s after one was killed"
    assert len(failed) == 1 and isinstance(failed[0], BrokenProcessPool), failed
    assert ledger.max_position() == before
    assert not multiprocessing.active_children()


IMPORTER_KILLED = """
import os, sys, time
from application.forked import run_chunks

def work(start, stop):
    time.sleep(60)
    return start

def in_worker():
    open(os.path.join(sys.argv[1], str(os.getpid())), "w").close()

run_chunks(work, 4, 1, 2, in_worker, lambda done: None)
"""


def test_workers_end_with_the_importing_process(tmp_path: Path) -> None:
    """The importing process killed mid-import (kill -9, the out-of-memory killer): its
    workers end too. They lived on for ever, blocked on the pool's pipes, holding copies of
    the importing process's sockets: the API's port (a restarted server could not listen)
    and the client's connection (its request never ended)."""
    importing = subprocess.Popen(
        [sys.executable, "-c", IMPORTER_KILLED, str(tmp_path)], cwd=Path(__file__).parents[2]
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            workers = [int(path.name) for path in tmp_path.iterdir()]
        assert len(workers) == 2, "the workers did not start"
        importing.kill()
        importing.wait()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if _alive(pid)], "workers outlived the importer"
    finally:
        importing.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """True while the process runs (not a zombie waiting for its new parent to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_the_workers_send_each_lines_entry_as_the_batch_stores_it(
    ledger: IncomeLedger, small_chunks: None, workers_seen: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each receipt line's batch entry comes back from its worker as the dict the batch event
    stores, which the importing process passes on as it is (no ImportedLine made, sent and
    taken apart again there)."""
    ledger.import_processes = 2
    sent: list[Any] = []
    run_chunks = imports.run_chunks

    def kept(*args: Any) -> Any:
        results = run_chunks(*args)
        sent.extend(entry for receipts, _ in results for _, entry in receipts)
        return results

    monkeypatch.setattr(imports, "run_chunks", kept)
    outcome = import_file(ledger, allpay_file(*every_kind_of_line(60)), IMPORTER, file_name="x")
    assert {path.name for path in workers_seen.iterdir()} - {str(os.getpid())}, "no worker ran"
    (event,) = [
        event
        for event in ledger.events_of(ImportBatch.Imported)
        if event.originator_id == outcome.batch_id
    ]
    receipts = {entry["line"]: entry for entry in event.lines if entry["payment_id"]}
    assert len(sent) == len(receipts) > 50
    assert all(type(entry) is dict for entry in sent)
    assert sent == [receipts[entry["line"]] for entry in sent]
