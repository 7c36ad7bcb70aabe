"""`projections rebuild`: what it builds is what the live projector builds, and what it sets
for its scratch build (SQLite's commits, the garbage collector) is set back after."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import event, text

from application.ledger import CommandContext, RecordPayment
from income_ledger.bootstrap import event_source
from projections import maintenance
from projections.ledger_view import CarryingProjector
from projections.maintenance import compare_models, rebuild, verify
from projections.runner import Projection
from projections.schema import LIVE, new_index_tag, read_model
from tests.domain.helpers import SUN_REF
from tests.projections.conftest import random_workload

SQLITE_FULL, SQLITE_NORMAL = 2, 1
SQLITE_SECURE_DELETE_FAST = 2


def _page_by_page(projection: Projection):
    """The read model as the live projector builds it (pages of 7, no carrying)."""
    tag = new_index_tag()
    model = read_model(f"_live{tag}", tag)
    model.metadata.create_all(projection.engine)
    Projection(
        projection.engine, projection.source, model=model, name=f"live_copy{tag}", page_size=7
    ).catch_up()
    return model


def test_a_rebuild_equals_the_live_projectors_read_model(ledger, projection) -> None:
    """Receipts to funds with and without VAT and to suspense, then allocations, transfers,
    refunds and reversals: the rebuilt tables are the ones the live projector wrote."""
    ctx = CommandContext("officer:test")
    for n, amount in enumerate((120, 9_999, 1)):  # SUN carries VAT
        ledger.record_payment(
            RecordPayment("cash", amount, SUN_REF, fund_code="SUN", external_id=f"vat{n}"), ctx
        )
    random_workload(ledger, seed=21, receipts=40)
    projection.catch_up()
    expected = _page_by_page(projection)
    try:
        counts = {
            kind: n
            for kind, n in _rows(
                projection,
                "SELECT action, COUNT(*) FROM audit_trail GROUP BY action",
            )
        }
        for kind in ("Allocated", "Transferred", "Refunded", "Reversed"):
            assert counts.get(kind), f"the workload made no {kind} event: {counts}"
        assert _rows(projection, "SELECT COUNT(*) FROM suspense_items")[0][0] > 0
        assert _rows(projection, "SELECT SUM(vat_pence) FROM fund_balances")[0][0] != 0
        assert compare_models(projection.engine, expected, LIVE) == []  # the live one
        assert rebuild(projection.engine, event_source(ledger), page_size=9) == (
            ledger.max_position()
        )
        assert compare_models(projection.engine, expected, LIVE) == []
        assert verify(projection.engine, event_source(ledger)).ok
    finally:
        expected.metadata.drop_all(projection.engine)


def test_the_scratch_build_settings_hold_during_the_build_only(
    ledger, projection, monkeypatch
) -> None:
    """SQLite commits the scratch tables without waiting for the disk (synchronous NORMAL)
    and the cyclic garbage collector is off during the build; the connection
    goes back to the pool, and the process carries on, as they were."""
    random_workload(ledger, seed=22, receipts=10)
    projection.catch_up()
    engine = projection.engine
    sqlite = engine.dialect.name == "sqlite"
    seen: dict[str, object] = {}
    create_indexes = maintenance._create_indexes

    def watching(connection, model, tables=None, **kwargs) -> None:
        seen["collecting"] = gc.isenabled()
        if sqlite:
            seen["synchronous"] = _pragma(connection, "synchronous")
        create_indexes(connection, model, tables, **kwargs)

    monkeypatch.setattr(maintenance, "_create_indexes", watching)
    rebuild(engine, event_source(ledger))
    assert seen["collecting"] is False
    assert gc.isenabled()
    if sqlite:
        assert seen["synchronous"] == SQLITE_NORMAL
        # Every connection the pool holds is back to the database's usual durability.
        held = [engine.connect() for _ in range(engine.pool.size() + 1)]
        try:
            for connection in held:
                assert _pragma(connection, "synchronous") == SQLITE_FULL
                assert _pragma(connection, "temp_store") == 0
        finally:
            for connection in held:
                connection.close()


def test_the_build_and_the_swap_leave_freed_pages_as_they_are(
    ledger, projection, monkeypatch
) -> None:
    """SQLite built with SECURE_DELETE (Debian's) zeroed every page of the old read model
    that the swap's DROP frees, and wrote each twice more: the build and the swap use
    secure_delete FAST (zeros only where no page more is written), and every connection
    goes back to the pool as it was."""
    engine = projection.engine
    if engine.dialect.name != "sqlite":
        pytest.skip("a SQLite setting")
    random_workload(ledger, seed=23, receipts=10)
    projection.catch_up()
    with engine.connect() as connection:
        usual = _pragma(connection, "secure_delete")
    seen: dict[str, object] = {}
    create_indexes, swap = maintenance._create_indexes, maintenance._swap

    def watching_the_build(connection, model, tables=None, **kwargs) -> None:
        seen["build"] = _pragma(connection, "secure_delete")
        create_indexes(connection, model, tables, **kwargs)

    def watching_the_swap(connection, scratch, live) -> None:
        seen["swap"] = _pragma(connection, "secure_delete")
        swap(connection, scratch, live)

    monkeypatch.setattr(maintenance, "_create_indexes", watching_the_build)
    monkeypatch.setattr(maintenance, "_swap", watching_the_swap)
    assert rebuild(engine, event_source(ledger)) == ledger.max_position()
    assert seen == {"build": SQLITE_SECURE_DELETE_FAST, "swap": SQLITE_SECURE_DELETE_FAST}
    held = [engine.connect() for _ in range(engine.pool.size() + 1)]
    try:
        for connection in held:
            assert _pragma(connection, "secure_delete") == usual
    finally:
        for connection in held:
            connection.close()
    assert verify(engine, event_source(ledger)).ok


# Run in a fresh interpreter by the test below: a warm rebuild, then the count.
_COUNT_REBUILD_GARBAGE = """
import collections, gc, sys
from income_ledger.bootstrap import build_ledger, build_projection, event_source
from income_ledger.settings import Settings
from projections.maintenance import rebuild
settings = Settings(database_url=sys.argv[1])
ledger = build_ledger(settings)
projection = build_projection(settings, ledger)
source = event_source(ledger)
rebuild(projection.engine, source, page_size=9)  # caches and pools warm
gc.collect()
gc.disable()
rebuild(projection.engine, source, page_size=9)
gc.set_debug(gc.DEBUG_SAVEALL)
found = gc.collect()
kinds = collections.Counter(type(thing).__qualname__ for thing in gc.garbage)
print(found, ", ".join(f"{name} x{count}" for name, count in kinds.most_common(12)))
"""


def test_a_rebuild_leaves_no_reference_cycles_behind(ledger, projection, database_url) -> None:
    """The collector is off during a build (see the test above): what the build throws away
    must be freed by reference counting alone, or a long rebuild would hold it to the end.

    The count is taken in a fresh interpreter on the same database. In this process, after a
    long test run, state other tests leave behind makes garbage of its own during the build
    (threads still running; process-wide caches that are full and let go of an older
    rebuild's scratch tables, a fixed amount per rebuild): the full suite saw 540-1,412
    objects that a run of this file alone never sees, even in a forked child."""
    random_workload(ledger, seed=25, receipts=30)
    projection.catch_up()
    done = subprocess.run(
        [sys.executable, "-c", _COUNT_REBUILD_GARBAGE, database_url],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found, _, kinds = done.stdout.strip().splitlines()[-1].partition(" ")
    assert int(found) == 0, f"garbage after a rebuild: {kinds}"


def test_a_sqlite_build_commits_many_pages_at_once(ledger, projection, monkeypatch) -> None:
    """On SQLite the scratch build's pages are committed together, up to a bound of events
    a commit (each commit was a WAL checkpoint); on PostgreSQL, a page a commit, as before.
    The rebuilt tables are the same either way."""
    random_workload(ledger, seed=24, receipts=30)
    projection.catch_up()
    events = ledger.max_position()
    engine = projection.engine
    monkeypatch.setattr(maintenance, "SQLITE_BUILD_EVENTS_PER_COMMIT", 20)
    commits: list[int] = []
    listener = lambda _connection: commits.append(1)  # noqa: E731
    event.listen(engine, "commit", listener)
    try:
        assert rebuild(engine, event_source(ledger), page_size=9) == events
    finally:
        event.remove(engine, "commit", listener)
    pages = -(-events // 9)
    # Besides the pages: the fresh tables, the old position's removal, the carried rows,
    # the indexes (with the carried rows on SQLite) and the swap.
    others = 5
    if engine.dialect.name == "sqlite":
        others = 4
        batches = -(-events // 27)  # three pages of 9 make the first 20 events or more
        assert batches + others <= len(commits) <= batches + 1 + others, (events, commits)
        assert len(commits) < pages
    else:
        assert len(commits) >= pages + others
    assert verify(engine, event_source(ledger)).ok


def test_a_build_stopped_part_way_sets_everything_back(ledger, projection, monkeypatch) -> None:
    random_workload(ledger, seed=23, receipts=10)
    projection.catch_up()

    def interrupt(*_args, **_kwargs) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(maintenance, "_create_indexes", interrupt)
    with pytest.raises(KeyboardInterrupt):
        rebuild(projection.engine, event_source(ledger))
    assert gc.isenabled()
    if projection.engine.dialect.name == "sqlite":
        with projection.engine.connect() as connection:
            assert _pragma(connection, "synchronous") == SQLITE_FULL
    assert verify(projection.engine, event_source(ledger)).ok  # the live tables untouched


def test_a_build_stopped_during_a_statement_ends_with_the_interrupt(ledger, projection) -> None:
    """Ctrl-C while one of the build's statements runs (an index being created): SQLAlchemy
    closes the connection it ran on, and the rebuild ends with the KeyboardInterrupt (the
    CLI's "Aborted!"), not with an error from setting back a closed connection; nothing else
    in the pool has the build's settings, the live tables are untouched, and the next
    rebuild builds them all."""
    random_workload(ledger, seed=24, receipts=10)
    projection.catch_up()
    engine = projection.engine

    def interrupt(_cursor, statement: str, _parameters, _context) -> None:
        if statement.lstrip().startswith("CREATE INDEX"):
            raise KeyboardInterrupt

    event.listen(engine, "do_execute", interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            rebuild(engine, event_source(ledger))
    finally:
        event.remove(engine, "do_execute", interrupt)
    assert gc.get_freeze_count() == 0
    if engine.dialect.name == "sqlite":
        held = [engine.connect() for _ in range(engine.pool.size() + 1)]
        try:
            assert {_pragma(connection, "synchronous") for connection in held} == {SQLITE_FULL}
        finally:
            for connection in held:
                connection.close()
    assert verify(engine, event_source(ledger)).ok  # the live tables untouched
    assert rebuild(engine, event_source(ledger)) == ledger.max_position()
    report = verify(engine, event_source(ledger))
    assert report.ok, report.differences


def test_sqlite_indexes_the_paged_tables_beside_the_carried_rows(
    ledger, projection, monkeypatch
) -> None:
    """SQLite: the tables written page by page are indexed by another thread while this one
    makes the carried rows ready, the other tables' indexes after their rows; every index is
    there after the swap, and the tables are the live projector's."""
    if projection.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only: PostgreSQL creates the indexes after the carried rows")
    random_workload(ledger, seed=26, receipts=20)
    projection.catch_up()
    create_indexes = maintenance._create_indexes
    calls: list[tuple[bool, set[str]]] = []

    def watching(connection, model, tables=None, **kwargs) -> None:
        names = {table.name for table in (model.tables if tables is None else tables)}
        calls.append((threading.current_thread() is threading.main_thread(), names))
        create_indexes(connection, model, tables, **kwargs)

    monkeypatch.setattr(maintenance, "_create_indexes", watching)
    expected = _page_by_page(projection)
    try:
        assert rebuild(projection.engine, event_source(ledger), page_size=9) == (
            ledger.max_position()
        )
        paged = {"postings", "audit_trail", "import_batches"}
        assert [(main, {name.split("_rebuild")[0] for name in names}) for main, names in calls] == [
            (False, paged),
            (True, {table.name for table in LIVE.tables} - paged),
        ]
        assert compare_models(projection.engine, expected, LIVE) == []
    finally:
        expected.metadata.drop_all(projection.engine)
    with projection.engine.connect() as connection:
        indexes = {
            row[0]
            for row in connection.exec_driver_sql(
                "SELECT tbl_name FROM sqlite_master WHERE type = 'index' AND name LIKE 'ix_%'"
            )
        }
    assert indexes == {table.name for table in LIVE.tables if table.indexes}


def test_a_failure_beside_the_indexing_thread_stops_it_and_leaves_the_live_tables(
    ledger, projection, monkeypatch
) -> None:
    """An error (or Ctrl-C) while the carried rows are made, with the indexing thread at
    work: the thread is interrupted and waited for, the error is the rebuild's, and the live
    tables are untouched."""
    if projection.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only: PostgreSQL indexes on one thread")
    random_workload(ledger, seed=27, receipts=20)
    projection.catch_up()

    def failing(*_args) -> None:
        raise ValueError("made up")

    monkeypatch.setattr(CarryingProjector, "take_first_flush", failing)
    threads = set(threading.enumerate())
    with pytest.raises(ValueError, match="made up"):
        rebuild(projection.engine, event_source(ledger), page_size=9)
    assert set(threading.enumerate()) <= threads
    assert gc.isenabled()
    monkeypatch.undo()
    assert verify(projection.engine, event_source(ledger)).ok  # the live tables untouched
    assert rebuild(projection.engine, event_source(ledger)) == ledger.max_position()
    assert verify(projection.engine, event_source(ledger)).ok


def test_a_ctrl_c_while_waiting_for_the_indexing_thread_stops_it_first(
    ledger, projection, monkeypatch
) -> None:
    """Ctrl-C where the main thread usually is when the indexes take longer than the carried
    rows: waiting for the indexing thread (issue #9). The thread is stopped, even between two
    indexes where SQLite ignores an interrupt, and has ended before the transaction rolls
    back and the connection goes back to the pool (so the rebuild ends with the
    KeyboardInterrupt and leaves no thread running); the live tables are untouched."""
    if projection.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only: PostgreSQL indexes on one thread")
    random_workload(ledger, seed=28, receipts=20)
    projection.catch_up()
    engine = projection.engine
    main = threading.main_thread()
    assert threading.current_thread() is main  # the one a SIGINT raises KeyboardInterrupt in
    # One interrupt only: the thread must stop without being interrupted again.
    monkeypatch.setattr(maintenance, "_STOP_POLL_S", 10.0)
    seen: list[tuple[str, int]] = []  # what happened, and to which sqlite3 connection
    first_index_began: list[bool] = []

    def main_is_waiting() -> bool:
        frame = sys._current_frames().get(main.ident)
        while frame is not None:
            code = frame.f_code
            if code.co_name == "wait" and code.co_filename == maintenance.__file__:
                return True
            frame = frame.f_back
        return False

    def ctrl_c_at_the_first_index(_connection, cursor, statement: str, *_args) -> None:
        """The first index waits for the main thread to wait for it, then Ctrl-C; each
        index spends a while before its statement, where SQLite ignores an interrupt."""
        if threading.current_thread() is main or not statement.lstrip().startswith("CREATE"):
            return
        if not first_index_began:
            first_index_began.append(True)
            deadline = time.monotonic() + 60
            while not main_is_waiting() and time.monotonic() < deadline:
                time.sleep(0.01)
            signal.pthread_kill(main.ident, signal.SIGINT)
        time.sleep(0.3)
        seen.append(("index", id(cursor.connection)))

    def checkin(dbapi_connection, _record) -> None:
        seen.append(("checkin", id(dbapi_connection)))

    create_indexes = maintenance._create_indexes

    def indexing(connection, model, tables=None, **kwargs) -> None:
        driver = connection.connection.driver_connection
        try:
            create_indexes(connection, model, tables, **kwargs)
        finally:
            if threading.current_thread() is not main:
                seen.append(("indexing ended", id(driver)))

    monkeypatch.setattr(maintenance, "_create_indexes", indexing)
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    event.listen(engine, "before_cursor_execute", ctrl_c_at_the_first_index)
    event.listen(engine.pool, "checkin", checkin)
    try:
        with pytest.raises(KeyboardInterrupt):
            rebuild(engine, event_source(ledger), page_size=9)
    finally:
        signal.signal(signal.SIGINT, handler)
        deadline = time.monotonic() + 60  # the thread, if the rebuild left it running
        while not any(kind == "indexing ended" for kind, _ in seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        event.remove(engine, "before_cursor_execute", ctrl_c_at_the_first_index)
        event.remove(engine.pool, "checkin", checkin)
    indexed = [connection for kind, connection in seen if kind == "index"]
    assert len(indexed) == 1, seen  # stopped before its second index
    # It ended before its connection went back to the pool, and used it no more.
    ended = seen.index(("indexing ended", indexed[0]))
    assert seen.index(("checkin", indexed[0])) > ended, seen
    monkeypatch.undo()
    assert verify(engine, event_source(ledger)).ok  # the live tables untouched
    assert rebuild(engine, event_source(ledger)) == ledger.max_position()
    assert verify(engine, event_source(ledger)).ok


def test_an_indexing_thread_stopped_by_an_error_reports_its_own_error_too() -> None:
    """The thread failed on its own (not the interrupt) while the main thread stopped with
    another error: the error the rebuild ends with names the thread's, not swallowed."""

    class Invalidated:  # a connection SQLAlchemy closed: nothing to interrupt
        invalidated = True

    def work(stopping: threading.Event) -> None:
        stopping.wait(60)
        raise ValueError("disk full")

    indexing = maintenance._Background(work)
    cause = KeyboardInterrupt()
    indexing.stop(Invalidated(), cause)
    assert indexing.ended.is_set()
    assert "ValueError('disk full')" in " ".join(cause.__notes__)


# In a process of its own (its peak memory is the measure): an index built on the scratch
# build's connection over a table whose sort is ten times its page cache (made 2 MB here to
# keep the table small). Prints the growth of the process's peak memory, in MB.
_INDEX_BIGGER_THAN_THE_CACHE = """
import random, sqlite3, sys
from projections import maintenance
from projections.runner import projection_engine
path = sys.argv[1]
raw = sqlite3.connect(path, isolation_level=None)
raw.execute("PRAGMA journal_mode=WAL")
raw.execute("CREATE TABLE sorted (id INTEGER PRIMARY KEY, fund TEXT, ref TEXT, at TEXT)")
rng = random.Random(1)
raw.execute("BEGIN")
raw.executemany(
    "INSERT INTO sorted (fund, ref, at) VALUES (?, ?, ?)",
    ((f"F{rng.randrange(50)}", f"REF{rng.randrange(10**8):08d}", f"2026-01-01 {i:015d}")
     for i in range(300_000)),
)
raw.execute("COMMIT")
raw.close()
maintenance._SCRATCH_PRAGMAS["cache_size"] = "-2000"
engine = projection_engine(f"sqlite:///{path}")
with engine.connect() as connection:
    connection.exec_driver_sql("SELECT 1")
def peak_kb():  # this process's own peak (ru_maxrss would start at the parent's)
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0])
before = peak_kb()
with maintenance._scratch_build(engine) as connection, connection.begin():
    connection.exec_driver_sql("CREATE INDEX ix_sorted ON sorted (fund, ref, at)")
print((peak_kb() - before) // 1024)
"""


def test_the_scratch_builds_sorts_beyond_its_page_cache_go_to_disk(tmp_path) -> None:
    """SQLite only (PostgreSQL's build sets nothing). Creating an index sorts the whole
    table: a sort bigger than the page cache must spill to temporary files, not be held in
    memory, or a large ledger's rebuild needs memory in proportion to its postings (a
    3,000,000-row index: 354 MB with temp_store=MEMORY, 144 MB without, docs/performance.md)."""
    done = subprocess.run(
        [sys.executable, "-c", _INDEX_BIGGER_THAN_THE_CACHE, str(tmp_path / "sorts.db")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    grown_mb = int(done.stdout.split()[-1])
    assert grown_mb < 12, f"the index's sort grew the process by {grown_mb} MB"


def _rows(projection: Projection, sql: str) -> list:
    with projection.engine.connect() as connection:
        return list(connection.execute(text(sql)))


def _pragma(connection, name: str) -> object:
    """A SQLite setting of the connection, read outside any transaction."""
    return connection.connection.driver_connection.execute(f"PRAGMA {name}").fetchone()[0]
