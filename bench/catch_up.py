"""Benchmark: the read-model projection's catch-up throughput and live latency (issue #3).

This is a measurement, not a test: it asserts nothing about speed. For each backend it fills a
fresh database (a temporary SQLite file; the PostgreSQL scratch database dropped and created
again) with at least --events events through `IncomeLedger.record_payments` in batches of
1000 receipts (about 10% with references that match no fund: 1 event; the rest allocated
automatically: 2 events), plus a few allocations, refunds and transfers per batch. Then:

* raw SELECT     the rows of ledger_events (id, originator_id, originator_version, topic,
                 state) fetched with the bare driver (psycopg2 / sqlite3) in keyset pages of
                 --page-size: the floor for reading the log;
* notifications  `ledger.recorder.select_notifications` in the same pages (the event store's
                 SQLAlchemy ORM query, no decoding);
* event source   `event_source(ledger)(after, page_size)` in the same pages: the above plus
                 decoding each event (JSON state -> domain event object), not applied;
* catch-up       `Projection.catch_up()` from position 0 on empty read-model tables, the
                 page size as given: read, decode, apply in memory, upsert every table and
                 move the tracking position, one transaction per page; repeated --repeats
                 times (tables truncated and the position reset in between), median quoted;
* rebuild        `projections.maintenance.rebuild` once (fresh scratch tables, catch-up,
                 swap): what an operator's rebuild costs;
* what-if        PostgreSQL only (skip with --no-what-if): one more catch-up on an engine with
                 psycopg2 executemany_mode="values_plus_batch". Not the product's setting: it
                 shows what the upserts cost, which SQLAlchemy 2.0 sends one row per round
                 trip (insertmanyvalues is off for INSERT .. ON CONFLICT without RETURNING);
* live latency   a `ProjectionRunner` thread follows the log; one receipt is recorded at a
                 time with `record_payment`; t0 = just after it returns, t1 = when the tracked
                 position (polled every ~1 ms on one autocommit connection) reaches the
                 outcome's position. Random pauses of 10-210 ms between samples (one 0.2 s
                 period), so arrivals fall uniformly across the SQLite runner's polling sleep. Each sample is split
                 into t0 -> the runner starts the page that applies it (wake-up), that page's
                 transaction, and its commit -> the poller seeing it.

    .venv/bin/python -m bench.catch_up [--events 200000] [--backends sqlite,postgresql]
        [--page-size 5000] [--latency-samples 200] [--repeats 3] [--json results.json]

PostgreSQL: the scratch database (--pg-db, default income_ledger_bench_catchup) is dropped and
created through an AUTOCOMMIT connection to --pg-admin-url, and dropped again at the end.
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
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
from rich.table import Table
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from application.ledger import CommandContext, IncomeLedger, Outcome, RecordPayment
from bench.http_env import (
    CHANNELS,
    DEFAULT_PG_ADMIN_URL,
    FILL_BATCH,
    HISTORY_DAYS,
    INVALID_SHARE,
    console,
)
from domain.funds import Fund
from domain.sample_chart import (
    BUSINESS_RATES,
    COUNCIL_TAX,
    HOUSING_RENTS,
    PARKING_PCN,
    SAMPLE_FUNDS,
    SUNDRY_DEBTORS,
)
from income_ledger.bootstrap import build_ledger, event_source, init_database
from income_ledger.schema_versions import EVENTS_TABLE
from income_ledger.settings import Settings
from projections.maintenance import rebuild
from projections.runner import (
    Projection,
    ProjectionRunner,
    projection_engine,
    tracked_position,
)
from projections.schema import LIVE, PROJECTION_NAME, projection_tracking

DEFAULT_PG_DB = "income_ledger_bench_catchup"


# ---- the receipts ---------------------------------------------------------------------------

VALID: dict[str, tuple[Fund, Callable[[int], str]]] = {
    "CT": (COUNCIL_TAX, lambda i: COUNCIL_TAX.reference_rule.with_check_digit(f"{i % 10**7:07d}")),
    "NNDR": (
        BUSINESS_RATES,
        lambda i: BUSINESS_RATES.reference_rule.with_check_digit(f"{i % 10**8:08d}"),
    ),
    "HRA": (
        HOUSING_RENTS,
        lambda i: HOUSING_RENTS.reference_rule.with_check_digit(f"{i % 10**6:06d}"),
    ),
    "PCN": (
        PARKING_PCN,
        lambda i: PARKING_PCN.reference_rule.with_check_digit(f"PC{i % 10**7:07d}"),
    ),
    "SUN": (
        SUNDRY_DEBTORS,
        lambda i: SUNDRY_DEBTORS.reference_rule.with_check_digit(f"INV{i % 10**6:06d}"),
    ),
}
INVALID: tuple[Callable[[int], str], ...] = (lambda i: "JUNK", lambda i: f"UNKNOWN {i}")


def make_batch(rng: random.Random, n: int, tag: str, now: datetime) -> list[RecordPayment]:
    """N receipts spread over the last year, ~10% of them with references matching no fund."""
    makers = list(VALID.values())
    commands = []
    for i in range(n):
        if rng.random() < INVALID_SHARE:
            reference = rng.choice(INVALID)(i)
        else:
            reference = rng.choice(makers)[1](rng.randrange(10**9))
        commands.append(
            RecordPayment(
                channel=CHANNELS[i % len(CHANNELS)],
                amount_pence=rng.randrange(100, 250_000),
                reference=reference,
                received_at=now - timedelta(seconds=rng.randrange(HISTORY_DAYS * 86400)),
                # Dots keep digit runs apart: 13+ digits would look like a card number.
                external_id=f"cu.{tag}.{i}",
            )
        )
    return commands


def follow_ups(
    ledger: IncomeLedger, outcomes: list[Outcome], per_kind: int, rng: random.Random
) -> int:
    """A few later moves of money (one event each): allocate suspense, refund, transfer."""
    ctx = CommandContext("bench.clerk")
    suspense = [o for o in outcomes if o.payment["unallocated_pence"]]
    allocated = [o for o in outcomes if len(o.payment["allocations"]) == 1]
    rng.shuffle(allocated)
    recorded = 0
    for o in suspense[:per_kind]:
        reference = VALID["CT"][1](rng.randrange(10**7))
        ledger.allocate(
            o.payment_id, [("CT", reference, o.payment["unallocated_pence"])], ctx, "traced"
        )
        recorded += 1
    for o in allocated[:per_kind]:
        ledger.refund(o.payment_id, max(1, o.payment["amount_pence"] // 4), ctx, "overpaid")
        recorded += 1
    for o in allocated[per_kind : 2 * per_kind]:
        line = o.payment["allocations"][0]
        fund, make = VALID.get(line["fund_code"], VALID["CT"])
        target = make(rng.randrange(10**9))
        if target == line["reference"]:
            continue
        amount = max(1, line["amount_pence"] // 2)
        ledger.transfer(
            o.payment_id,
            (line["fund_code"], line["reference"]),
            (fund.code, target),
            amount,
            ctx,
            "wrong account",
        )
        recorded += 1
    return recorded


# ---- backends -------------------------------------------------------------------------------


class Backend:
    name: str
    url: str

    def fresh(self) -> str:
        raise NotImplementedError

    def settle(self) -> None:
        """Called just before each timed section: no pending writes left to flush."""

    def after_fill(self) -> None:
        """Called once after the fill."""

    def raw_reader(self) -> Callable[[int, int], list[tuple[Any, ...]]]:
        raise NotImplementedError

    def poll_engine(self) -> Engine:
        """A plain autocommit engine: every read sees the latest commit, takes no locks."""
        return create_engine(self.url, isolation_level="AUTOCOMMIT")

    def describe(self) -> str:
        raise NotImplementedError

    def size(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass


RAW_SELECT = (
    f"SELECT id, originator_id, originator_version, topic, state FROM {EVENTS_TABLE} "
    "WHERE id > {p} ORDER BY id LIMIT {p}"
)


class SQLiteBackend(Backend):
    name = "sqlite"

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="income-ledger-catchup-"))
        self.path = self.directory / "ledger.db"
        self.url = f"sqlite:///{self.path}"
        self._raw: sqlite3.Connection | None = None

    def fresh(self) -> str:
        for suffix in ("", "-wal", "-shm", "-journal", ".projection-lock"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        return self.url

    def settle(self) -> None:
        connection = sqlite3.connect(self.path, timeout=30)
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.close()

    def raw_reader(self) -> Callable[[int, int], list[tuple[Any, ...]]]:
        if self._raw is None:
            self._raw = sqlite3.connect(self.path, isolation_level=None)
        connection = self._raw
        query = RAW_SELECT.format(p="?")

        def read(after: int, limit: int) -> list[tuple[Any, ...]]:
            return connection.execute(query, (after, limit)).fetchall()

        return read

    def describe(self) -> str:
        connection = sqlite3.connect(self.path)
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
        connection.close()
        return f"SQLite {sqlite3.sqlite_version}, file in {self.directory}, journal_mode={mode}"

    def size(self) -> str:
        total = sum(
            Path(f"{self.path}{s}").stat().st_size
            for s in ("", "-wal")
            if Path(f"{self.path}{s}").exists()
        )
        return f"{total / 2**20:,.0f} MiB file"

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class PostgresBackend(Backend):
    name = "postgresql"

    def __init__(self, admin_url: str, database: str) -> None:
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.database = database
        url = make_url(admin_url).set(database=database)
        self.url = url.render_as_string(hide_password=False)
        self.dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._raw: Any = None

    def _execute(self, sql: str, url: str | None = None) -> list[Any]:
        engine = self.admin if url is None else create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                result = connection.execute(text(sql))
                return list(result) if result.returns_rows else []
        finally:
            if url is not None:
                engine.dispose()

    def fresh(self) -> str:
        self._execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        self._execute(f'CREATE DATABASE "{self.database}"')
        return self.url

    def settle(self) -> None:
        self._execute("CHECKPOINT")

    def after_fill(self) -> None:
        # Leave autovacuum nothing to do during the measurements.
        self._execute("VACUUM ANALYZE", url=self.url)

    def raw_reader(self) -> Callable[[int, int], list[tuple[Any, ...]]]:
        if self._raw is None:
            self._raw = psycopg2.connect(self.dsn)
            self._raw.autocommit = True
        connection = self._raw
        query = RAW_SELECT.format(p="%s")

        def read(after: int, limit: int) -> list[tuple[Any, ...]]:
            with connection.cursor() as cursor:
                cursor.execute(query, (after, limit))
                return cursor.fetchall()

        return read

    def describe(self) -> str:
        names = ("server_version", "shared_buffers", "synchronous_commit", "fsync")
        settings = {name: self._execute(f"SHOW {name}")[0][0] for name in names}
        return "PostgreSQL " + ", ".join(f"{k}={v}" for k, v in settings.items())

    def size(self) -> str:
        size = self._execute(f"SELECT pg_database_size('{self.database}')")[0][0]
        return f"{size / 2**20:,.0f} MiB database"

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
        self._execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        self.admin.dispose()


# ---- measurements ---------------------------------------------------------------------------


@dataclass
class Result:
    backend: str
    fill: dict[str, Any] = field(default_factory=dict)
    events: int = 0
    read_s: dict[str, list[float]] = field(default_factory=dict)  # path -> seconds per repeat
    catch_up: list[dict[str, float]] = field(default_factory=list)
    rebuild_s: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    save_ms: list[float] = field(default_factory=list)
    runner_errors: int = 0
    # Per live sample: runner starts the page - t0, the page's transaction, its end -> t1.
    wake_ms: list[float] = field(default_factory=list)
    page_ms: list[float] = field(default_factory=list)
    seen_ms: list[float] = field(default_factory=list)
    what_if_s: list[float] = field(default_factory=list)
    description: str = ""
    size: str = ""


def fill(
    ledger: IncomeLedger, target: int, per_kind: int, seed: int = 1
) -> tuple[dict[str, Any], int]:
    ctx = CommandContext("bench")
    for fund in SAMPLE_FUNDS:
        ledger.add_fund(fund, ctx)
    rng = random.Random(seed)
    now = datetime.now(UTC) - timedelta(minutes=5)
    receipts = follow = batches = 0
    position = ledger.max_position()
    started = time.perf_counter()
    last_report = started
    while position < target:
        commands = make_batch(rng, FILL_BATCH, f"b{batches}", now)
        outcomes = ledger.record_payments(commands, ctx)
        receipts += len(outcomes)
        follow += follow_ups(ledger, outcomes, per_kind, rng)
        batches += 1
        position = ledger.max_position()
        if time.perf_counter() - last_report > 15 or position >= target:
            last_report = time.perf_counter()
            elapsed = last_report - started
            rate = position / elapsed
            eta = max(0.0, (target - position) / rate)
            console.print(
                f"    fill: {position:,} events in {elapsed:,.0f}s "
                f"({rate:,.0f} events/s, ~{eta:,.0f}s to go)"
            )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "events": position,
        "receipts": receipts,
        "follow_up_commands": follow,
        "batches": batches,
        "events_per_s": position / seconds,
    }, position


def time_pages(read: Callable[[int, int], Sequence[Any]], page_size: int, expected: int) -> float:
    """Read every row in keyset pages; returns the seconds taken."""
    started = time.perf_counter()
    after, rows = 0, 0
    while True:
        page = read(after, page_size)
        if not page:
            break
        rows += len(page)
        after = page[-1][0]
    seconds = time.perf_counter() - started
    if rows != expected:
        raise RuntimeError(f"read {rows} rows, expected {expected}")
    return seconds


def notification_reader(ledger: IncomeLedger) -> Callable[[int, int], list[tuple[int]]]:
    def read(after: int, limit: int) -> list[tuple[int]]:
        notifications = ledger.recorder.select_notifications(
            start=after, limit=limit, inclusive_of_start=False
        )
        return [(n.id,) for n in notifications]

    return read


def reset_read_model(engine: Engine) -> None:
    """Empty every live read-model table and forget the tracked position."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{table.name}"' for table in LIVE.tables)
            connection.execute(text(f"TRUNCATE {names}"))
        else:
            for table in LIVE.tables:
                connection.execute(table.delete())
        connection.execute(
            projection_tracking.delete().where(
                projection_tracking.c.projection_name == PROJECTION_NAME
            )
        )


def timed_catch_up(
    backend: Backend,
    ledger: IncomeLedger,
    page_size: int,
    expected: int,
    engine: Engine | None = None,
) -> dict[str, float]:
    """One catch-up from position 0, with the time spent reading+decoding and applying."""
    spent = {"source": 0.0, "apply": 0.0}
    source = event_source(ledger)

    def timed_source(after: int, limit: int) -> Any:
        started = time.perf_counter()
        try:
            return source(after, limit)
        finally:
            spent["source"] += time.perf_counter() - started

    engine = engine or projection_engine(backend.url)
    projection = Projection(engine, timed_source, page_size=page_size)
    apply = projection.projector.apply

    def timed_apply(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return apply(*args, **kwargs)
        finally:
            spent["apply"] += time.perf_counter() - started

    projection.projector.apply = timed_apply  # type: ignore[method-assign]
    try:
        reset_read_model(engine)
        backend.settle()
        started = time.perf_counter()
        applied = projection.catch_up()
        seconds = time.perf_counter() - started
        if applied != expected or projection.position() != expected:
            raise RuntimeError(f"catch-up applied {applied} events, expected {expected}")
    finally:
        engine.dispose()
    return {
        "seconds": seconds,
        "source": spent["source"],
        "apply": spent["apply"],
        "rest": seconds - spent["source"] - spent["apply"],
    }


def live_latency(
    backend: Backend, ledger: IncomeLedger, page_size: int, samples: int, seed: int = 2
) -> tuple[list[float], list[float], int, list[float], list[float], list[float]]:
    engine = projection_engine(backend.url)
    projection = Projection(engine, event_source(ledger), page_size=page_size)
    pages: list[tuple[float, float]] = []  # (start, end) of each page that applied events
    process_page = projection.process_page

    def timed_process_page(*args: Any, **kwargs: Any) -> int:
        started = time.perf_counter()
        count = process_page(*args, **kwargs)
        if count:
            pages.append((started, time.perf_counter()))
        return count

    projection.process_page = timed_process_page  # type: ignore[method-assign]
    runner = ProjectionRunner(projection)
    poll = backend.poll_engine()
    rng = random.Random(seed)
    ctx = CommandContext("bench.live")
    now = datetime.now(UTC) - timedelta(minutes=5)
    latencies: list[float] = []
    saves: list[float] = []
    wake: list[float] = []
    page: list[float] = []
    seen: list[float] = []
    thread: threading.Thread | None = None
    try:
        with poll.connect() as connection:

            def wait_for(position: int, timeout_s: float = 30.0) -> None:
                deadline = time.perf_counter() + timeout_s
                while tracked_position(connection) < position:
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"the runner did not reach {position}")
                    time.sleep(0.001)

            thread = runner.start_thread()
            wait_for(ledger.max_position())
            # Warm up: the first few samples open connections and fill caches.
            commands = make_batch(rng, samples + 10, "live", now)
            for i, command in enumerate(commands):
                # Spread over one 0.2 s polling period: arrivals fall uniformly across the
                # SQLite runner's sleep, as independent arrivals would.
                time.sleep(rng.uniform(0.010, 0.210))
                started = time.perf_counter()
                outcome = ledger.record_payment(command, ctx)
                t0 = time.perf_counter()
                assert outcome.position is not None
                wait_for(outcome.position)
                t1 = time.perf_counter()
                if i >= 10:
                    saves.append((t0 - started) * 1000)
                    latencies.append((t1 - t0) * 1000)
                    # The page that applied it: the last one to end before t1.
                    p0, p1 = [p for p in pages if p[1] <= t1][-1]
                    wake.append((p0 - t0) * 1000)
                    page.append((p1 - p0) * 1000)
                    seen.append((t1 - p1) * 1000)
    finally:
        runner.stop()
        if thread is not None:
            thread.join(timeout=10)
        poll.dispose()
        engine.dispose()
    return latencies, saves, runner.errors, wake, page, seen


def measure(backend: Backend, args: argparse.Namespace) -> Result:
    result = Result(backend.name)
    url = backend.fresh()
    settings = Settings(database_url=url)
    init_database(settings)
    ledger = build_ledger(settings)
    try:
        console.print(f"  [bold]{backend.name}[/]")
        result.fill, events = fill(ledger, args.events, args.follow_ups)
        result.events = events
        backend.after_fill()
        result.description = backend.describe()
        console.print(f"    {result.description}")
        f = result.fill
        console.print(
            f"    filled: {events:,} events ({f['receipts']:,} receipts in {f['batches']} "
            f"batches of {FILL_BATCH}, {f['follow_up_commands']:,} follow-up commands) in "
            f"{f['seconds']:,.0f}s = {f['events_per_s']:,.0f} events/s"
        )

        readers: dict[str, Callable[[int, int], Sequence[Any]]] = {
            "raw SELECT": backend.raw_reader(),
            "notifications": notification_reader(ledger),
            "event source": event_source(ledger),
        }
        # Untimed warm-up: one full pass brings the table into the caches; a page of each
        # of the others opens their connections and compiles their statements.
        time_pages(readers["raw SELECT"], args.page_size, events)
        for read in readers.values():
            read(0, args.page_size)
        for repeat in range(args.repeats):
            for name, read in readers.items():
                backend.settle()
                seconds = time_pages(read, args.page_size, events)
                result.read_s.setdefault(name, []).append(seconds)
            console.print(
                f"    read {repeat + 1}/{args.repeats}: "
                + ", ".join(f"{name} {events / s[-1]:,.0f}/s" for name, s in result.read_s.items())
            )

        for repeat in range(args.repeats):
            run = timed_catch_up(backend, ledger, args.page_size, events)
            result.catch_up.append(run)
            console.print(
                f"    catch-up {repeat + 1}/{args.repeats}: {events:,} events in "
                f"{run['seconds']:.1f}s = {events / run['seconds']:,.0f} events/s "
                f"(read+decode {run['source']:.1f}s, apply {run['apply']:.1f}s, "
                f"tracking+commit {run['rest']:.1f}s)"
            )

        engine = projection_engine(url)
        try:
            for _ in range(args.rebuilds):
                backend.settle()
                started = time.perf_counter()
                position = rebuild(engine, event_source(ledger), page_size=args.page_size)
                seconds = time.perf_counter() - started
                if position != events:
                    raise RuntimeError(f"rebuild reached {position}, expected {events}")
                result.rebuild_s.append(seconds)
                console.print(f"    rebuild: {seconds:.1f}s = {events / seconds:,.0f} events/s")
        finally:
            engine.dispose()

        if args.what_if and backend.name == "postgresql":
            # Not the product's configuration: the same catch-up with psycopg2's execute_batch
            # for executemany, to show what the row-by-row upserts cost.
            engine = create_engine(url, pool_pre_ping=True, executemany_mode="values_plus_batch")
            run = timed_catch_up(backend, ledger, args.page_size, events, engine=engine)
            result.what_if_s.append(run["seconds"])
            console.print(
                f"    what-if catch-up (executemany_mode=values_plus_batch): "
                f"{run['seconds']:.1f}s = {events / run['seconds']:,.0f} events/s "
                f"(apply {run['apply']:.1f}s)"
            )

        if args.latency_samples:
            live = live_latency(backend, ledger, args.page_size, args.latency_samples)
            result.latency_ms, result.save_ms, result.runner_errors = live[:3]
            result.wake_ms, result.page_ms, result.seen_ms = live[3:]
            console.print(
                f"    live: median {statistics.median(result.latency_ms):.1f} ms, "
                f"p99 {percentile(result.latency_ms, 99):.1f} ms over "
                f"{len(result.latency_ms)} samples"
            )
        result.size = backend.size()
    finally:
        ledger.close()
    return result


# ---- output ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summarise(result: Result) -> dict[str, Any]:
    n = result.events
    rates = {name: [n / s for s in seconds] for name, seconds in result.read_s.items()}
    rates["catch-up"] = [n / run["seconds"] for run in result.catch_up]
    rates["rebuild"] = [n / s for s in result.rebuild_s]
    rates["catch-up, what-if"] = [n / s for s in result.what_if_s]
    summary: dict[str, Any] = {
        "events": n,
        "fill": result.fill,
        "size": result.size,
        "description": result.description,
        "events_per_s": {k: statistics.median(v) for k, v in rates.items() if v},
        "events_per_s_range": {k: [min(v), max(v)] for k, v in rates.items() if v},
    }
    if result.catch_up:
        summary["catch_up_split_s"] = {
            k: statistics.median(run[k] for run in result.catch_up)
            for k in ("seconds", "source", "apply", "rest")
        }
    if result.latency_ms:
        summary["latency_ms"] = {
            "samples": len(result.latency_ms),
            "median": statistics.median(result.latency_ms),
            "p90": percentile(result.latency_ms, 90),
            "p99": percentile(result.latency_ms, 99),
            "max": max(result.latency_ms),
            "wake_median": statistics.median(result.wake_ms),
            "page_median": statistics.median(result.page_ms),
            "page_p99": percentile(result.page_ms, 99),
            "seen_median": statistics.median(result.seen_ms),
            "save_median": statistics.median(result.save_ms),
            "save_p99": percentile(result.save_ms, 99),
            "runner_errors": result.runner_errors,
        }
    return summary


def print_tables(summaries: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    paths = (
        "raw SELECT",
        "notifications",
        "event source",
        "catch-up",
        "rebuild",
        "catch-up, what-if",
    )
    what = {
        "raw SELECT": "driver fetch of the rows",
        "notifications": "event store's ORM query",
        "event source": "query + decode to events",
        "catch-up": "read, decode, apply, commit",
        "rebuild": "scratch tables, catch-up, swap",
        "catch-up, what-if": "same, executemany_mode=values_plus_batch",
    }
    throughput = Table(
        title=f"Reading and projecting the whole log, pages of {args.page_size:,} "
        f"(median of {args.repeats}; rebuild: {args.rebuilds} run)"
    )
    for column in ("backend", "path", "what", "events", "events/s", "range", "vs raw", "µs/event"):
        throughput.add_column(
            column, justify="left" if column in ("backend", "path", "what") else "right"
        )
    for backend, s in summaries.items():
        raw = s["events_per_s"].get("raw SELECT")
        for path in paths:
            rate = s["events_per_s"].get(path)
            if rate is None:
                continue
            low, high = s["events_per_s_range"][path]
            throughput.add_row(
                backend,
                path,
                what[path],
                f"{s['events']:,}",
                f"{rate:,.0f}",
                f"{low:,.0f}-{high:,.0f}",
                f"{rate / raw:.3f}" if raw else "",
                f"{1e6 / rate:,.1f}",
            )
    console.print(throughput)

    split = Table(title="Where catch-up time goes (median of the runs, seconds)")
    for column in (
        "backend",
        "total",
        "read+decode",
        "apply (in-memory + upserts)",
        "tracking+commit",
        "catch-up / event source",
        "fill",
        "fill events/s",
        "size",
    ):
        split.add_column(column, justify="left" if column == "backend" else "right")
    for backend, s in summaries.items():
        c = s.get("catch_up_split_s")
        if not c:
            continue
        es = s["events_per_s"]
        split.add_row(
            backend,
            f"{c['seconds']:.1f}",
            f"{c['source']:.1f} ({c['source'] / c['seconds']:.0%})",
            f"{c['apply']:.1f} ({c['apply'] / c['seconds']:.0%})",
            f"{c['rest']:.1f} ({c['rest'] / c['seconds']:.0%})",
            f"{es['catch-up'] / es['event source']:.3f}",
            f"{s['fill']['seconds']:,.0f}s",
            f"{s['fill']['events_per_s']:,.0f}",
            s["size"],
        )
    console.print(split)

    latency = Table(
        title="Live latency: record_payment returns -> tracked position reaches it (ms)"
    )
    for column in (
        "backend",
        "wake-up",
        "samples",
        "median",
        "p90",
        "p99",
        "max",
        "to page start (median)",
        "page txn (median/p99)",
        "page end to seen (median)",
        "record_payment median/p99",
    ):
        latency.add_column(column, justify="left" if column in ("backend", "wake-up") else "right")
    for backend, s in summaries.items():
        lat = s.get("latency_ms")
        if not lat:
            continue
        latency.add_row(
            backend,
            "LISTEN/NOTIFY" if backend == "postgresql" else "poll every 0.2 s",
            str(lat["samples"]),
            f"{lat['median']:.1f}",
            f"{lat['p90']:.1f}",
            f"{lat['p99']:.1f}",
            f"{lat['max']:.1f}",
            f"{lat['wake_median']:.1f}",
            f"{lat['page_median']:.1f} / {lat['page_p99']:.1f}",
            f"{lat['seen_median']:.1f}",
            f"{lat['save_median']:.1f} / {lat['save_p99']:.1f}",
        )
    console.print(latency)


# ---- main -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.catch_up", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--events", type=int, default=200_000, help="at least this many events")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--page-size", type=int, default=5000)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="catch-up and read repeats")
    parser.add_argument("--rebuilds", type=int, default=1)
    parser.add_argument(
        "--follow-ups",
        type=int,
        default=5,
        help="per batch of 1000 receipts: this many allocations, refunds and transfers each",
    )
    parser.add_argument(
        "--no-what-if",
        dest="what_if",
        action="store_false",
        help="skip the extra PostgreSQL catch-up with executemany_mode=values_plus_batch",
    )
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN_URL)
    parser.add_argument("--pg-db", default=DEFAULT_PG_DB, help="scratch database (dropped!)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backends) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    console.print(
        f"[bold]catch-up benchmark[/]: >= {args.events:,} events, pages of {args.page_size:,}, "
        f"{args.repeats} repeats, {args.latency_samples} latency samples; Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs"
    )
    summaries: dict[str, dict[str, Any]] = {}
    for name in args.backends:
        backend: Backend = (
            SQLiteBackend() if name == "sqlite" else PostgresBackend(args.pg_admin_url, args.pg_db)
        )
        try:
            summaries[name] = summarise(measure(backend, args))
        finally:
            backend.close()
    print_tables(summaries, args)
    console.print(f"total {time.perf_counter() - started:,.0f}s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {
                        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                    },
                    "summary": summaries,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
