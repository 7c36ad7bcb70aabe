"""Benchmark: recording receipts through the ledger, against raw driver INSERTs (issue #2).

This is a measurement, not a test: it asserts nothing about speed. For each backend, and on a
fresh database every time (a new SQLite file; the PostgreSQL scratch database dropped and
created again), it measures:

* app single   N receipts, one `IncomeLedger.record_payment` call (one transaction) each;
* app batched  N receipts in `IncomeLedger.record_payments` calls of --batch receipts each;
* raw single   the very rows the app run just recorded (same ids, versions, topics and state
               bytes) inserted with the bare driver (psycopg2 / sqlite3) into a table of the
               same shape: one single-row INSERT + COMMIT per row;
* raw batched  the same rows, one multi-row INSERT (execute_values / executemany) + COMMIT
               per app batch, so the raw run commits as often as the app did.

About 10% of the receipts carry references that match no fund and go to suspense (1 event);
the rest are allocated automatically (2 events: Received + Allocated). It prints medians over
--repeats, the app/raw ratios, and per-call latencies (median and p99).

    .venv/bin/python -m bench.record_payments [--n 2000] [--n-batched 10000] [--batch 100]
        [--backends sqlite,postgresql] [--repeats 3] [--json results.json]

PostgreSQL: the scratch database (--pg-db, default income_ledger_bench) is dropped and created
through an AUTOCOMMIT connection to --pg-admin-url, then dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg2
import psycopg2.extras
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from application.ledger import CommandContext, IncomeLedger, RecordPayment
from domain.sample_chart import (
    BUSINESS_RATES,
    COUNCIL_TAX,
    HOUSING_RENTS,
    PARKING_PCN,
    SAMPLE_FUNDS,
    SUNDRY_DEBTORS,
)
from income_ledger.bootstrap import build_ledger, init_database
from income_ledger.settings import Settings

DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_PG_DB = "income_ledger_bench"
RAW_TABLE = "raw_events"
CHANNELS = ("govuk_pay", "card", "allpay", "paypoint", "bank_transfer")
INVALID_SHARE = 0.10

# Wide enough for the tables when the output goes to a file.
console = Console(width=None if sys.stdout.isatty() else 160)


# ---- the receipts ---------------------------------------------------------------------------

VALID_REFERENCES: tuple[Callable[[int], str], ...] = (
    lambda i: COUNCIL_TAX.reference_rule.with_check_digit(f"{i % 10**7:07d}"),
    lambda i: BUSINESS_RATES.reference_rule.with_check_digit(f"{i % 10**8:08d}"),
    lambda i: HOUSING_RENTS.reference_rule.with_check_digit(f"{i % 10**6:06d}"),
    lambda i: PARKING_PCN.reference_rule.with_check_digit(f"PC{i % 10**7:07d}"),
    lambda i: SUNDRY_DEBTORS.reference_rule.with_check_digit(f"INV{i % 10**6:06d}"),
)


def _wrong_check_digit(i: int) -> str:
    valid = COUNCIL_TAX.reference_rule.with_check_digit(f"{i % 10**7:07d}")
    return valid[:-1] + str((int(valid[-1]) + 1) % 10)


INVALID_REFERENCES: tuple[Callable[[int], str], ...] = (
    lambda i: "JUNK",
    lambda i: f"UNKNOWN {i}",
    _wrong_check_digit,
)


def _letters(k: int = 8) -> str:
    """A run-unique token without digits."""
    return "".join(random.SystemRandom().choice("abcdefghijklmnopqrstuvwxyz") for _ in range(k))


def make_commands(n: int, tag: str, seed: int) -> list[RecordPayment]:
    """N receipts with unique external ids; about 10% with references that match no fund."""
    rng = random.Random(seed)
    commands = []
    for i in range(n):
        if rng.random() < INVALID_SHARE:
            reference = rng.choice(INVALID_REFERENCES)(i)
        else:
            reference = rng.choice(VALID_REFERENCES)(rng.randrange(10**9))
        commands.append(
            RecordPayment(
                channel=CHANNELS[i % len(CHANNELS)],
                amount_pence=rng.randrange(100, 250_000),
                reference=reference,
                # Dots keep digit runs apart: 13+ digits would look like a card number.
                external_id=f"bench.{tag}.{i}",
            )
        )
    return commands


# ---- backends: a fresh database for every measurement ---------------------------------------


@dataclass(frozen=True)
class Row:
    originator_id: UUID
    version: int
    topic: str
    state: bytes


class Backend:
    name: str

    def fresh(self) -> str:
        """Make an empty database and return its SQLAlchemy URL."""
        raise NotImplementedError

    def settle(self) -> None:
        """Called after the schema exists and just before timing starts."""

    def raw_connect(self) -> Any:
        raise NotImplementedError

    def raw_create_table(self, connection: Any) -> None:
        raise NotImplementedError

    def raw_insert_one(self, connection: Any, params: tuple[Any, ...]) -> None:
        raise NotImplementedError

    def raw_insert_many(self, connection: Any, params: Sequence[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def raw_params(self, row: Row) -> tuple[Any, ...]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SQLiteBackend(Backend):
    """A new database file per measurement, in WAL mode as eventsourcing-sqlalchemy sets it."""

    name = "sqlite"

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="income-ledger-bench-"))
        self.counter = 0
        self.path: Path | None = None

    def fresh(self) -> str:
        self._remove_current()
        self.counter += 1
        self.path = self.directory / f"bench-{self.counter}.db"
        return f"sqlite:///{self.path}"

    def _remove_current(self) -> None:
        if self.path is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def raw_connect(self) -> sqlite3.Connection:
        assert self.path is not None
        connection = sqlite3.connect(self.path)
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        assert mode == "wal", mode
        return connection

    def raw_create_table(self, connection: sqlite3.Connection) -> None:
        # The shape eventsourcing-sqlalchemy gives ledger_events on SQLite.
        connection.execute(
            f"CREATE TABLE {RAW_TABLE} (id INTEGER NOT NULL PRIMARY KEY, "
            "originator_id BINARY(16) NOT NULL, originator_version INTEGER NOT NULL, "
            "topic TEXT NOT NULL, state BLOB NOT NULL)"
        )
        connection.execute(
            f"CREATE UNIQUE INDEX {RAW_TABLE}_aggregate_idx "
            f"ON {RAW_TABLE} (originator_id, originator_version)"
        )
        connection.commit()

    def raw_params(self, row: Row) -> tuple[Any, ...]:
        return (row.originator_id.bytes, row.version, row.topic, row.state)

    def raw_insert_one(self, connection: sqlite3.Connection, params: tuple[Any, ...]) -> None:
        connection.execute(
            f"INSERT INTO {RAW_TABLE} (originator_id, originator_version, topic, state) "
            "VALUES (?, ?, ?, ?)",
            params,
        )

    def raw_insert_many(
        self, connection: sqlite3.Connection, params: Sequence[tuple[Any, ...]]
    ) -> None:
        connection.executemany(
            f"INSERT INTO {RAW_TABLE} (originator_id, originator_version, topic, state) "
            "VALUES (?, ?, ?, ?)",
            params,
        )

    def describe(self) -> str:
        probe = sqlite3.connect(":memory:")
        synchronous = probe.execute("PRAGMA synchronous").fetchone()[0]
        probe.close()
        return (
            f"SQLite {sqlite3.sqlite_version}, file in {self.directory}, journal_mode=WAL, "
            f"synchronous={synchronous} (2 = FULL)"
        )

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class PostgresBackend(Backend):
    """The scratch database dropped and created again for every measurement."""

    name = "postgresql"

    def __init__(self, admin_url: str, database: str) -> None:
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.database = database
        self.url = make_url(admin_url).set(database=database)
        # libpq's own URI form, for psycopg2.connect.
        self.dsn = self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def _execute(self, sql: str) -> list[Any]:
        with self.admin.connect() as connection:
            result = connection.execute(text(sql))
            return list(result) if result.returns_rows else []

    def fresh(self) -> str:
        self._execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        self._execute(f'CREATE DATABASE "{self.database}"')
        return self.url.render_as_string(hide_password=False)

    def settle(self) -> None:
        # Start every measurement with no dirty buffers waiting to be written.
        self._execute("CHECKPOINT")

    def raw_connect(self) -> Any:
        connection = psycopg2.connect(self.dsn)
        psycopg2.extras.register_uuid(conn_or_curs=connection)
        return connection

    def raw_create_table(self, connection: Any) -> None:
        # The shape eventsourcing-sqlalchemy gives ledger_events on PostgreSQL.
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE {RAW_TABLE} (id BIGSERIAL PRIMARY KEY, "
                "originator_id UUID NOT NULL, originator_version BIGINT NOT NULL, "
                "topic TEXT NOT NULL, state BYTEA NOT NULL)"
            )
            cursor.execute(
                f"CREATE UNIQUE INDEX {RAW_TABLE}_aggregate_idx "
                f"ON {RAW_TABLE} (originator_id, originator_version)"
            )
        connection.commit()

    def raw_params(self, row: Row) -> tuple[Any, ...]:
        return (row.originator_id, row.version, row.topic, psycopg2.Binary(row.state))

    def raw_insert_one(self, connection: Any, params: tuple[Any, ...]) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {RAW_TABLE} (originator_id, originator_version, topic, state) "
                "VALUES (%s, %s, %s, %s)",
                params,
            )

    def raw_insert_many(self, connection: Any, params: Sequence[tuple[Any, ...]]) -> None:
        with connection.cursor() as cursor:
            psycopg2.extras.execute_values(
                cursor,
                f"INSERT INTO {RAW_TABLE} (originator_id, originator_version, topic, state) "
                "VALUES %s",
                params,
                page_size=max(1, len(params)),
            )

    def describe(self) -> str:
        settings = {
            name: self._execute(f"SHOW {name}")[0][0]
            for name in ("server_version", "fsync", "synchronous_commit", "wal_sync_method")
        }
        return "PostgreSQL " + ", ".join(f"{k}={v}" for k, v in settings.items())

    def close(self) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        self.admin.dispose()


# ---- measurements ---------------------------------------------------------------------------


@dataclass
class Measurement:
    backend: str
    mode: str  # single | batched
    kind: str  # app | raw
    receipts: int
    rows: int  # events recorded (app) or rows inserted (raw)
    commits: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds

    @property
    def receipts_per_second(self) -> float:
        return self.receipts / self.seconds

    @property
    def commits_per_second(self) -> float:
        return self.commits / self.seconds


@contextmanager
def ledger_on(url: str) -> Iterator[IncomeLedger]:
    settings = Settings(database_url=url)
    init_database(settings)
    ledger = build_ledger(settings)
    try:
        ctx = CommandContext("bench")
        for fund in SAMPLE_FUNDS:
            ledger.add_fund(fund, ctx)
        yield ledger
    finally:
        ledger.close()


def run_app(
    backend: Backend, mode: str, commands: list[RecordPayment], batch: int
) -> tuple[Measurement, list[Row], list[int]]:
    """Record the commands through the application; return the measurement, the rows it
    recorded (read back afterwards, untimed) and the number of rows per transaction."""
    url = backend.fresh()
    ctx = CommandContext("bench")
    latencies: list[float] = []
    per_commit: list[int] = []
    with ledger_on(url) as ledger:
        backend.settle()
        before = ledger.max_position()
        clock = time.perf_counter
        if mode == "single":
            start = clock()
            for command in commands:
                t = clock()
                outcome = ledger.record_payment(command, ctx)
                latencies.append((clock() - t) * 1000)
                if not outcome.recorded:
                    raise RuntimeError(f"receipt {command.external_id} was not recorded")
                per_commit.append(outcome.payment["version"])
            seconds = clock() - start
        else:
            start = clock()
            for i in range(0, len(commands), batch):
                t = clock()
                outcomes = ledger.record_payments(commands[i : i + batch], ctx)
                latencies.append((clock() - t) * 1000)
                if not all(outcome.recorded for outcome in outcomes):
                    raise RuntimeError("part of a batch was not recorded")
                per_commit.append(sum(outcome.payment["version"] for outcome in outcomes))
            seconds = clock() - start
        after = ledger.max_position()
        events = after - before
        if events != sum(per_commit):
            raise RuntimeError(f"{events} events in the log, {sum(per_commit)} counted")
        rows = [
            Row(n.originator_id, n.originator_version, n.topic, n.state)
            for n in notifications_after(ledger, after=before)
        ]
    measurement = Measurement(
        backend.name, mode, "app", len(commands), events, len(per_commit), seconds, latencies
    )
    return measurement, rows, per_commit


def notifications_after(ledger: IncomeLedger, after: int) -> Iterator[Any]:
    while True:
        page = ledger.recorder.select_notifications(
            start=after, limit=1000, inclusive_of_start=False
        )
        yield from page
        if len(page) < 1000:
            return
        after = page[-1].id


def run_raw(
    backend: Backend, mode: str, receipts: int, rows: list[Row], per_commit: list[int]
) -> Measurement:
    """Insert the same rows with the bare driver: one row per commit, or one commit per
    app transaction's worth of rows."""
    backend.fresh()
    connection = backend.raw_connect()
    try:
        backend.raw_create_table(connection)
        params = [backend.raw_params(row) for row in rows]
        backend.settle()
        latencies: list[float] = []
        clock = time.perf_counter
        if mode == "single":
            start = clock()
            for p in params:
                t = clock()
                backend.raw_insert_one(connection, p)
                connection.commit()
                latencies.append((clock() - t) * 1000)
            seconds = clock() - start
            commits = len(params)
        else:
            groups = []
            offset = 0
            for size in per_commit:
                groups.append(params[offset : offset + size])
                offset += size
            start = clock()
            for group in groups:
                t = clock()
                backend.raw_insert_many(connection, group)
                connection.commit()
                latencies.append((clock() - t) * 1000)
            seconds = clock() - start
            commits = len(groups)
    finally:
        connection.close()
    return Measurement(backend.name, mode, "raw", receipts, len(rows), commits, seconds, latencies)


class SqlCensus:
    """Counts and times what SQLAlchemy sends: statements, COMMITs, ROLLBACKs and pool
    pre-pings (not the NOTIFY that eventsourcing-sqlalchemy sends on a raw cursor; its time
    counts as other)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()
        self._started: list[float] = []

    def before(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self._started.append(time.perf_counter())

    def after(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        kind = statement.split(None, 1)[0].upper()
        self.counts[kind] += 1
        self.seconds[kind] += time.perf_counter() - self._started.pop()

    def _timed(self, kind: str, call: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def wrapper(dbapi_connection: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(dbapi_connection)
            finally:
                self.counts[kind] += 1
                self.seconds[kind] += time.perf_counter() - started

        return wrapper

    @contextmanager
    def listening(self, engine: Any) -> Iterator[None]:
        event.listen(engine, "before_cursor_execute", self.before)
        event.listen(engine, "after_cursor_execute", self.after)
        # COMMIT, ROLLBACK and the pool's pre-ping (if enabled) go through the dialect, not
        # a SQLAlchemy cursor: time them there.
        dialect = engine.dialect
        dialect.do_commit = self._timed("COMMIT", dialect.do_commit)
        dialect.do_rollback = self._timed("ROLLBACK", dialect.do_rollback)
        dialect.do_ping = self._timed("PING", dialect.do_ping)
        try:
            yield
        finally:
            del dialect.do_commit, dialect.do_rollback, dialect.do_ping
            event.remove(engine, "before_cursor_execute", self.before)
            event.remove(engine, "after_cursor_execute", self.after)


def sql_per_receipt(backend: Backend, batch: int) -> dict[str, dict[str, Any]]:
    """Untimed diagnosis: what each path sends to the database per receipt, and how much of
    its wall time is spent waiting for the database (the rest is Python)."""
    result: dict[str, dict[str, Any]] = {}
    for mode, n in (("single", 200), ("batched", 5 * batch)):
        url = backend.fresh()
        census = SqlCensus()
        commands = make_commands(n, f"census.{mode}.{_letters()}", seed=99)
        ctx = CommandContext("bench")
        with ledger_on(url) as ledger:
            engine = ledger.recorder.datastore.engine  # type: ignore[attr-defined]
            with census.listening(engine):
                start = time.perf_counter()
                if mode == "single":
                    for command in commands:
                        ledger.record_payment(command, ctx)
                else:
                    for i in range(0, n, batch):
                        ledger.record_payments(commands[i : i + batch], ctx)
                total = time.perf_counter() - start
        result[mode] = {
            "statements": {k: round(c / n, 3) for k, c in sorted(census.counts.items())},
            "statement_ms": {k: round(1000 * t / n, 3) for k, t in sorted(census.seconds.items())},
            "total_ms": round(1000 * total / n, 3),
            "other_ms": round(1000 * (total - sum(census.seconds.values())) / n, 3),
        }
    return result


def print_census(census: dict[str, dict[str, dict[str, Any]]], batch: int) -> None:
    table = Table(title="Per receipt, what the app sends to the database (untimed diagnostic run)")
    for column in (
        "backend",
        "path",
        "statements per receipt",
        "ms waiting on them",
        "ms other (Python)",
        "ms total",
    ):
        table.add_column(column, justify="right" if column.startswith("ms ") else "left")
    for backend, modes in census.items():
        for mode, c in modes.items():
            table.add_row(
                backend,
                "one receipt per call" if mode == "single" else f"batches of {batch}",
                ", ".join(f"{k} {v:g}" for k, v in c["statements"].items()),
                ", ".join(f"{k} {v:.3f}" for k, v in c["statement_ms"].items()),
                f"{c['other_ms']:.3f}",
                f"{c['total_ms']:.3f}",
            )
    console.print(table)


# ---- statistics and output ------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summarise(measurements: list[Measurement]) -> dict[str, Any]:
    by_key: dict[tuple[str, str, str], list[Measurement]] = {}
    for m in measurements:
        by_key.setdefault((m.backend, m.mode, m.kind), []).append(m)
    summary: dict[str, Any] = {}
    for (backend, mode, kind), ms in by_key.items():
        latencies = [x for m in ms for x in m.latencies_ms]
        summary[f"{backend}/{mode}/{kind}"] = {
            "repeats": len(ms),
            "receipts": ms[0].receipts,
            "rows": statistics.median(m.rows for m in ms),
            "commits": statistics.median(m.commits for m in ms),
            "seconds": statistics.median(m.seconds for m in ms),
            "rows_per_s": statistics.median(m.rows_per_second for m in ms),
            "rows_per_s_min": min(m.rows_per_second for m in ms),
            "rows_per_s_max": max(m.rows_per_second for m in ms),
            "receipts_per_s": statistics.median(m.receipts_per_second for m in ms),
            "commits_per_s": statistics.median(m.commits_per_second for m in ms),
            "latency_ms_p50": statistics.median(latencies),
            "latency_ms_p99": percentile(latencies, 99),
            "latency_ms_max": max(latencies),
        }
    return summary


def print_tables(summary: dict[str, Any], backends: list[str], batch: int) -> None:
    throughput = Table(title="Throughput (medians over repeats; range of events/s in brackets)")
    for column in (
        "backend",
        "path",
        "receipts",
        "app events/s",
        "app receipts/s",
        "raw rows/s",
        "app/raw rows",
        "app/raw commits",
    ):
        throughput.add_column(column, justify="left" if column in ("backend", "path") else "right")
    latency = Table(title="Latency per call (all calls of all repeats)")
    for column in ("backend", "call", "median ms", "p99 ms", "max ms"):
        latency.add_column(column, justify="left" if column in ("backend", "call") else "right")
    for backend in backends:
        for mode in ("single", "batched"):
            app = summary.get(f"{backend}/{mode}/app")
            raw = summary.get(f"{backend}/{mode}/raw")
            if app is None or raw is None:
                continue
            path = "one receipt per call" if mode == "single" else f"batches of {batch}"
            throughput.add_row(
                backend,
                path,
                f"{app['receipts']:,}",
                f"{app['rows_per_s']:,.0f} [{app['rows_per_s_min']:,.0f}-"
                f"{app['rows_per_s_max']:,.0f}]",
                f"{app['receipts_per_s']:,.0f}",
                f"{raw['rows_per_s']:,.0f} [{raw['rows_per_s_min']:,.0f}-"
                f"{raw['rows_per_s_max']:,.0f}]",
                f"{app['rows_per_s'] / raw['rows_per_s']:.2f}",
                f"{app['commits_per_s'] / raw['commits_per_s']:.2f}",
            )
            app_call = "record_payment" if mode == "single" else f"record_payments({batch})"
            raw_call = "raw INSERT+COMMIT (1 row)" if mode == "single" else "raw batch+COMMIT"
            for call, s in ((app_call, app), (raw_call, raw)):
                latency.add_row(
                    backend,
                    call,
                    f"{s['latency_ms_p50']:.2f}",
                    f"{s['latency_ms_p99']:.2f}",
                    f"{s['latency_ms_max']:.1f}",
                )
    console.print(throughput)
    console.print(latency)
    console.print(
        "app/raw rows: app events/s over raw rows/s, the same rows. app/raw commits: "
        "transactions/s; in the single path the app commits one receipt (1-2 events) per "
        "transaction and raw one row, in the batched path both commit one batch's rows."
    )


# ---- main -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.record_payments", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--n", type=int, default=2000, help="receipts, one per call")
    parser.add_argument(
        "--n-batched", type=int, default=None, help="receipts in batches (default 5 x --n)"
    )
    parser.add_argument("--batch", type=int, default=100, help="receipts per batch")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN_URL)
    parser.add_argument("--pg-db", default=DEFAULT_PG_DB, help="scratch database (dropped!)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    if args.n_batched is None:
        args.n_batched = 5 * args.n
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backends) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    return args


def make_backend(name: str, args: argparse.Namespace) -> Backend:
    if name == "sqlite":
        return SQLiteBackend()
    return PostgresBackend(args.pg_admin_url, args.pg_db)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    backends = {name: make_backend(name, args) for name in args.backends}
    console.print(
        f"[bold]record_payments benchmark[/]: N={args.n:,} single, N={args.n_batched:,} "
        f"in batches of {args.batch}, {args.repeats} repeats; Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs"
    )
    measurements: list[Measurement] = []
    explain: dict[str, Any] = {}
    try:
        for name, backend in backends.items():
            console.print(f"  {name}: {backend.describe()}")
            # Untimed warm-up (imports, caches, the server's catalogue), then the SQL census.
            for mode in ("single", "batched"):
                commands = make_commands(3 * args.batch, f"warm-{mode}", seed=7)
                app, rows, per_commit = run_app(backend, mode, commands, args.batch)
                run_raw(backend, mode, len(commands), rows, per_commit)
            explain[name] = sql_per_receipt(backend, args.batch)
        for repeat in range(args.repeats):
            for name, backend in backends.items():
                for mode, n in (("single", args.n), ("batched", args.n_batched)):
                    tag = f"r{repeat}.{mode}.{_letters()}"
                    commands = make_commands(n, tag, seed=repeat)
                    app, rows, per_commit = run_app(backend, mode, commands, args.batch)
                    raw = run_raw(backend, mode, n, rows, per_commit)
                    measurements += [app, raw]
                    console.print(
                        f"  repeat {repeat + 1}/{args.repeats} {name:<10} {mode:<7} "
                        f"app {app.rows:,} events in {app.seconds:.2f}s "
                        f"({app.rows_per_second:,.0f} events/s, "
                        f"{app.receipts_per_second:,.0f} receipts/s); "
                        f"raw {raw.rows_per_second:,.0f} rows/s"
                    )
    finally:
        for backend in backends.values():
            backend.close()
    summary = summarise(measurements)
    print_census(explain, args.batch)
    print_tables(summary, args.backends, args.batch)
    console.print(f"total {time.perf_counter() - started:.0f}s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {
                        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                    },
                    "summary": summary,
                    "sql_per_receipt": explain,
                    "measurements": [
                        {k: v for k, v in asdict(m).items() if k != "latencies_ms"}
                        for m in measurements
                    ],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
