"""Rebuild the read model from position zero, and verify the live one against a rebuild.

Both fill fresh tables beside the live ones. A rebuild holds the runner lock, then swaps its
tables in with the tracking position in one transaction (DDL is transactional on PostgreSQL
and SQLite), so readers see the old read model or the new one, never a half-built one; the
swap waits at most a lock timeout for readers, and keeps the live tables' GRANTs.

Scratch tables are loaded without their secondary indexes; a rebuild creates them before the
swap, a verification (which only compares) never needs them.

A verification needs no lock: it builds scratch tables up to the live position, then, in one
snapshot (REPEATABLE READ on PostgreSQL, a write transaction on SQLite), brings them up to
the live position as the snapshot sees it and compares every table; it drops them after.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Table, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.schema import CreateTable

from projections.ledger_view import CarryingProjector, write_carried_columns
from projections.runner import EventSource, LockTimeout, Projection, RunnerLock, tracked_position
from projections.schema import (
    LIVE,
    PROJECTION_NAME,
    ReadModel,
    new_index_tag,
    projection_tracking,
    read_model,
)
from projections.status import stuck_projections
from runtime.collector import collector_paused

# Surrogate keys differ between two builds of the same history; they are not compared.
IGNORED_COLUMNS = {"posting_id"}
SAMPLE_DIFFERENCES = 5


@dataclass
class TableDifference:
    table: str
    missing: list[tuple[Any, ...]] = field(default_factory=list)  # in the rebuild, not live
    unexpected: list[tuple[Any, ...]] = field(default_factory=list)  # live, not in the rebuild
    missing_count: int = 0
    unexpected_count: int = 0


class SwapTimedOut(LockTimeout):
    """Readers held the live tables for longer than the swap's lock timeout."""


@dataclass
class VerifyReport:
    position: int
    tables: dict[str, int]  # table -> rows compared
    differences: list[TableDifference]
    stuck: list[dict[str, Any]] = field(default_factory=list)  # projections.status
    event_store_position: int | None = None  # set by a caller that knows it
    # Events stored after `position` (and whether counted to the end), set by a caller that
    # can count them: PostgreSQL positions skip numbers for good, so it is not
    # `event_store_position - position`.
    behind_events: int = 0
    behind_events_exact: bool = True

    @property
    def ok(self) -> bool:
        return not self.differences


def rebuild(
    engine: Engine,
    source: EventSource,
    *,
    page_size: int = 5000,
    progress: Callable[[int], None] | None = None,
    lock_wait_s: float | None = None,
    swap_lock_timeout_s: float = 30.0,
) -> int:
    """Rebuild every read-model table from the events and swap them in; returns the position.

    `lock_wait_s` bounds the wait for the runner lock (None: wait, saying who holds it);
    `swap_lock_timeout_s` bounds the swap's wait for readers of the live tables.
    """
    scratch = read_model("_rebuild", new_index_tag())
    name = f"{PROJECTION_NAME}_rebuild"
    # A build makes millions of objects and no reference cycles among them (none in a
    # 21,062-event rebuild; tests/projections/test_rebuild.py checks a smaller one).
    with RunnerLock(engine, "projections rebuild").held(timeout_s=lock_wait_s), collector_paused():
        builder = Projection(
            engine, source, model=scratch, name=name, page_size=page_size, carry=True
        )
        with _scratch_build(engine) as connection:
            _fresh(connection, scratch)
            # A rebuild stopped part way (Ctrl-C, a crash, a swap that timed out) left its
            # position ahead of these empty tables: this one builds from position zero.
            with connection.begin():
                connection.execute(
                    projection_tracking.delete().where(
                        projection_tracking.c.projection_name == name
                    )
                )
            _build_pages(builder, connection, progress)
            _flush_and_index(builder, connection, scratch)
        try:
            with _swap_connection(engine) as connection, connection.begin():
                _limit_lock_waits(connection, swap_lock_timeout_s)
                # Events recorded while the build ran: apply them inside the swap transaction.
                while builder.process_page(connection=connection):
                    pass
                builder.flush(connection)
                position = tracked_position(connection, builder.name)
                grants = _grants(connection, LIVE)
                _swap(connection, scratch, LIVE)
                _grant(connection, grants)
                connection.execute(
                    projection_tracking.delete().where(
                        projection_tracking.c.projection_name == builder.name
                    )
                )
                _set_position(connection, PROJECTION_NAME, position)
        except OperationalError as error:
            if not _is_lock_timeout(error):
                raise
            raise SwapTimedOut(
                f"the swap waited {swap_lock_timeout_s:g} s for readers of the live read-model "
                "tables and gave up; nothing changed. Retry when reports are quieter, or with a "
                "longer --lock-timeout"
            ) from None
    return position


def verify(
    engine: Engine,
    source: EventSource,
    *,
    page_size: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Rebuild into scratch tables up to the live position and compare every table.

    Takes no lock: a running projector carries on, and the comparison is made in one snapshot
    at the live position that snapshot sees.
    """
    tag = new_index_tag()
    scratch = read_model(f"_verify{tag}", tag)
    name = f"{PROJECTION_NAME}_verify{tag}"
    with engine.connect() as connection:
        _fresh(connection, scratch)
    try:
        builder = Projection(
            engine, source, model=scratch, name=name, page_size=page_size, carry=True
        )
        with engine.connect() as connection:
            live_position = tracked_position(connection)
        builder.catch_up(stop=live_position, progress=progress)
        with _snapshot(engine) as connection:
            position = tracked_position(connection)
            # The live read model moved on while the scratch one was built: follow it.
            while builder.process_page(stop=position, connection=connection):
                pass
            builder.flush(connection)
            counts, differences = _compare_all(connection, LIVE, scratch)
            stuck = [health.to_dict() for health in stuck_projections(connection)]
    finally:
        scratch.metadata.drop_all(engine)
        with engine.begin() as connection:
            connection.execute(
                projection_tracking.delete().where(projection_tracking.c.projection_name == name)
            )
    return VerifyReport(position, counts, differences, stuck)


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """One transaction that sees the live tables at one moment, and may write scratch tables."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            yield connection


def _limit_lock_waits(connection: Connection, timeout_s: float) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SET LOCAL lock_timeout = '{int(timeout_s * 1000)}ms'"))


def _is_lock_timeout(error: OperationalError) -> bool:
    return getattr(error.orig, "pgcode", None) == "55P03"  # lock_not_available


def _grants(connection: Connection, model: ReadModel) -> list[tuple[str, str, str, bool]]:
    """The live tables' privileges granted to others (PostgreSQL), to grant again after a swap."""
    if connection.dialect.name != "postgresql":
        return []
    rows = connection.execute(
        text(
            "SELECT c.relname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
            "ELSE quote_ident(pg_get_userbyid(a.grantee)) END, a.privilege_type, a.is_grantable "
            "FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a "
            "WHERE c.relname = ANY(:tables) AND c.relnamespace = to_regnamespace(current_schema()) "
            "AND a.grantee <> c.relowner"
        ),
        {"tables": [table.name for table in model.tables]},
    )
    return [(row[0], row[1], row[2], row[3]) for row in rows]


def _grant(connection: Connection, grants: list[tuple[str, str, str, bool]]) -> None:
    preparer = connection.dialect.identifier_preparer
    for table, grantee, privilege, grantable in grants:
        option = " WITH GRANT OPTION" if grantable else ""
        connection.execute(
            text(f"GRANT {privilege} ON {preparer.quote(table)} TO {grantee}{option}")
        )


def compare_models(engine: Engine, expected: ReadModel, actual: ReadModel) -> list[TableDifference]:
    """Every table of `actual` compared with the same table of `expected`."""
    with engine.connect() as connection:
        return _compare_all(connection, expected, actual)[1]


def _compare_all(
    connection: Connection, live: ReadModel, scratch: ReadModel
) -> tuple[dict[str, int], list[TableDifference]]:
    counts, differences = {}, []
    for live_table, scratch_table in zip(live.tables, scratch.tables, strict=True):
        difference, rows = _compare(connection, live_table, scratch_table)
        counts[live_table.name] = rows
        if difference is not None:
            differences.append(difference)
    return counts, differences


# SQLite settings for a rebuild's scratch tables, and what they are set back to after. Not
# temp_store=MEMORY: it holds every sort bigger than the page cache (an index's, the size
# of its table) in memory instead of temporary files, in proportion to the ledger.
_SCRATCH_PRAGMAS = {"synchronous": "NORMAL", "cache_size": "-65536", "secure_delete": "FAST"}
# The swap's: it drops the old read model's tables. SQLite built with SECURE_DELETE (as
# Debian's is) overwrites every page a DROP frees with zeros, writes them to the WAL and
# copies them to the database again at the checkpoint: the old read model written twice
# more, most of a SQLite swap (issue #9). FAST zeros what is deleted from pages still in
# use and leaves freed pages as they are, which the next rebuild reuses. What they hold is
# the events' own figures, which the event store keeps, and the new tables hold again;
# erasing payer details (another table, other connections) is untouched.
_SWAP_PRAGMAS = {"secure_delete": "FAST"}


@contextmanager
def _scratch_build(engine: Engine) -> Iterator[Connection]:
    """One connection, outside any transaction, for building scratch tables.

    On SQLite its commits do not wait for the disk (synchronous NORMAL: in WAL mode the
    database stays consistent through a crash or power cut, and only the last commits can
    be lost, which is only scratch tables, begun again from empty by the next rebuild),
    with a larger page cache, and freed pages (a stopped build's scratch tables dropped)
    not overwritten (_SWAP_PRAGMAS says why). Set back before the connection goes back
    to the pool: the swap commits with the database's usual durability, and it is the one
    that writes the live tables."""
    with _connection_set(engine, _SCRATCH_PRAGMAS) as connection:
        yield connection


@contextmanager
def _swap_connection(engine: Engine) -> Iterator[Connection]:
    """The swap's connection, outside any transaction: on SQLite, one that does not
    overwrite the pages it frees (_SWAP_PRAGMAS), set back before it goes back to the pool."""
    with _connection_set(engine, _SWAP_PRAGMAS) as connection:
        yield connection


@contextmanager
def _connection_set(engine: Engine, pragmas: dict[str, str]) -> Iterator[Connection]:
    """A connection with these SQLite settings (none on PostgreSQL), as it was after."""
    with engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            yield connection
            return
        driver = connection.connection.driver_connection
        saved = {name: driver.execute(f"PRAGMA {name}").fetchone()[0] for name in pragmas}
        try:
            for name, value in pragmas.items():
                driver.execute(f"PRAGMA {name} = {value}")
            yield connection
        finally:
            _set_back(connection, driver, saved)


def _set_back(connection: Connection, driver: Any, saved: dict[str, Any]) -> None:
    """The scratch build's connection as it was. One that SQLAlchemy invalidated (an error or
    a Ctrl-C during a statement) is closed, never to be used again: nothing to set back, and
    trying would replace that error with "Cannot operate on a closed database"."""
    if connection.invalidated:
        return
    if connection.in_transaction():
        connection.rollback()
    for name, value in saved.items():
        driver.execute(f"PRAGMA {name} = {value}")


# Events a SQLite scratch build applies per transaction: its pages' commits (each with a
# WAL checkpoint) were a tenth of a rebuild; the bound keeps the WAL to about 25 MB.
SQLITE_BUILD_EVENTS_PER_COMMIT = 50_000


def _build_pages(
    builder: Projection, connection: Connection, progress: Callable[[int], None] | None
) -> None:
    """Catch the scratch tables up, page by page: on PostgreSQL a transaction a page, on
    SQLite pages of up to SQLITE_BUILD_EVENTS_PER_COMMIT events together."""
    per_commit = builder.page_size
    if connection.dialect.name == "sqlite":
        per_commit = max(per_commit, SQLITE_BUILD_EVENTS_PER_COMMIT)
    while True:
        with connection.begin():
            applied = 0
            while applied < per_commit:
                count = builder.process_page(connection=connection)
                if count == 0:
                    return
                applied += count
                if progress is not None:
                    progress(count)


def _fresh(connection: Connection, model: ReadModel) -> None:
    """Empty scratch tables with their keys but without their other indexes: loading first
    and indexing once after costs less than keeping every index up to date row by row."""
    with connection.begin():
        model.metadata.drop_all(connection)
        for table in model.tables:
            connection.execute(CreateTable(table))


def _flush_and_index(builder: Projection, connection: Connection, model: ReadModel) -> None:
    """The carried rows, then the secondary indexes. On SQLite, in one transaction, with the
    tables written page by page (postings, audit trail, import batches) indexed by a thread
    while this one makes the carried rows ready to write: each CREATE INDEX is one sqlite3
    call that lets go of the GIL, so the two share the cores (issue #9). A carrying build
    that has flushed part way upserts instead, which needs the connection: the indexes
    come first then."""
    projector = builder.projector
    if connection.dialect.name != "sqlite" or not isinstance(projector, CarryingProjector):
        with connection.begin():
            builder.flush(connection)
        _create_indexes(connection, model)
        return
    paged = [model.postings, model.audit_trail, model.import_batches]
    with connection.begin():
        indexing = _Background(
            lambda stopping: _create_indexes(connection, model, tables=paged, stopping=stopping)
        )
        # The wait is inside: it is where a Ctrl-C usually finds this thread, and the
        # transaction must not roll back, nor the connection go back to the pool, while
        # the other thread still uses it.
        try:
            carried = projector.take_first_flush(connection.dialect)
            indexing.wait()
        except BaseException as error:
            indexing.stop(connection, error)
            raise
        if carried is None:
            builder.flush(connection)
        else:
            write_carried_columns(connection, carried)
        rest = [table for table in model.tables if table not in paged]
        _create_indexes(connection, model, tables=rest)


class _Background:
    """One piece of work on a thread of its own, given an Event that asks it to stop;
    `wait` raises what it raised.

    Whether the work has ended is an Event of its own, not Thread.join/is_alive: on Python
    3.11 a join that a KeyboardInterrupt cuts short marks the thread stopped while it still
    runs (threading._wait_for_tstate_lock releases the thread's lock, bpo-45274), and every
    join after returns at once."""

    def __init__(self, work: Callable[[threading.Event], None]) -> None:
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(work,), name="rebuild indexes")
        self.thread.start()

    def _run(self, work: Callable[[threading.Event], None]) -> None:
        try:
            work(self.stopping)
        except BaseException as error:  # raised again in the waiting thread
            self.error = error
        finally:
            self.ended.set()

    def wait(self) -> None:
        self.ended.wait()
        if self.error is not None:
            raise self.error

    def stop(self, connection: Connection, cause: BaseException) -> None:
        """This thread is stopping with `cause` (an error, Ctrl-C): ask the work to stop
        before its next statement, interrupt the one it is running, and wait for it to end,
        before the caller's transaction rolls back. SQLite ignores an interrupt that finds
        no statement running (the work between two), hence the loop. What the work raised,
        other than the interrupt, is noted on `cause`."""
        self.stopping.set()
        driver = None if connection.invalidated else connection.connection.driver_connection
        while not self.ended.is_set():
            try:
                if driver is not None:
                    with contextlib.suppress(sqlite3.ProgrammingError):  # closed
                        driver.interrupt()
                self.ended.wait(_STOP_POLL_S)
            except KeyboardInterrupt:  # a second Ctrl-C: the first is on its way out
                continue
        if self.error is not None and self.error is not cause and not _interrupted(self.error):
            cause.add_note(f"the rebuild's indexing thread failed too: {self.error!r}")


# How often `_Background.stop` interrupts the work again while it waits for it.
_STOP_POLL_S = 0.05


def _interrupted(error: BaseException) -> bool:
    """The error SQLite raises in a statement that `interrupt()` stopped."""
    orig = getattr(error, "orig", error)
    return getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_INTERRUPT


def _create_indexes(
    connection: Connection,
    model: ReadModel,
    tables: Sequence[Table] | None = None,
    *,
    stopping: threading.Event | None = None,
) -> None:
    """The secondary indexes of the model's tables (or of `tables`), in a transaction of
    their own unless the connection is in one; none more once `stopping` is set."""
    with contextlib.nullcontext() if connection.in_transaction() else connection.begin():
        for table in model.tables if tables is None else tables:
            for index in table.indexes:
                if stopping is not None and stopping.is_set():
                    return
                index.create(connection)


def _swap(connection: Connection, scratch: ReadModel, live: ReadModel) -> None:
    preparer = connection.dialect.identifier_preparer
    for new, old in zip(scratch.tables, live.tables, strict=True):
        connection.execute(text(f"DROP TABLE IF EXISTS {preparer.quote(old.name)}"))
        connection.execute(
            text(f"ALTER TABLE {preparer.quote(new.name)} RENAME TO {preparer.quote(old.name)}")
        )


def _set_position(connection: Connection, name: str, position: int) -> None:
    result = connection.execute(
        update(projection_tracking)
        .where(projection_tracking.c.projection_name == name)
        .values(position=position)
    )
    if result.rowcount == 0:
        connection.execute(
            projection_tracking.insert().values(projection_name=name, position=position)
        )


def _rows(connection: Connection, table: Table) -> Counter[tuple[Any, ...]]:
    columns = [c for c in table.columns if c.name not in IGNORED_COLUMNS]
    return Counter(tuple(_normal(v) for v in row) for row in connection.execute(select(*columns)))


def _normal(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _compare(
    connection: Connection, live: Table, scratch: Table
) -> tuple[TableDifference | None, int]:
    live_rows = _rows(connection, live)
    expected_rows = _rows(connection, scratch)
    missing = expected_rows - live_rows
    unexpected = live_rows - expected_rows
    rows = sum(expected_rows.values())
    if not missing and not unexpected:
        return None, rows
    return TableDifference(
        table=live.name,
        missing=sorted(missing, key=repr)[:SAMPLE_DIFFERENCES],
        unexpected=sorted(unexpected, key=repr)[:SAMPLE_DIFFERENCES],
        missing_count=sum(missing.values()),
        unexpected_count=sum(unexpected.values()),
    ), rows
