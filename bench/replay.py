"""Benchmark: the auditor's replay and the tamper-evidence chain over a million events (issue #5).

This is a measurement, not a test: it asserts nothing about speed. For each backend it fills a
fresh database (a temporary SQLite file; the PostgreSQL scratch database dropped and created
again) with at least --events events through `IncomeLedger.record_payments` in batches of
--batch receipts. Every receipt carries a valid reference and its fund as a hint, so each
records 2 events (Received, Allocated); received dates are spread over the past year. The
fill itself is timed. Then, in this order:

* raw SELECT        the rows of ledger_events (id, originator_id, originator_version, topic,
                    state) with the bare driver (sqlite3 / psycopg2) in keyset pages of
                    --page-size: the floor for reading the log;
* raw + SHA-256     the same rows, each hashed into the chain as `audit verify` does
                    (projections.chain.next_link): the floor for verification;
* notifications     `ledger.recorder.select_notifications` in the same pages (the event
                    store's SQLAlchemy ORM query, what both replay and verify read through);
* chain build       `AuditChain.catch_up()` from nothing (`income-ledger audit chain` on a
                    ledger never chained): read, decode each event's time, hash, insert one
                    link per event and a seal per day, one transaction per page; once;
* verify            `verify_chain` (`income-ledger audit verify`): read every row and every
                    link, recompute and compare; must find nothing;
* replay            `replay_balances(read_events(ledger, page_size))` as at now
                    (`income-ledger replay`): read, decode every event, post it.

Read-only sections run --repeats times; the median is quoted with the range.

    .venv/bin/python -m bench.replay [--events 1000000] [--batch 1000] [--page-size 5000]
        [--backends sqlite,postgresql] [--repeats 2] [--json results.json]

PostgreSQL: the scratch database (--pg-db, default income_ledger_bench_audit) is dropped and
created through an AUTOCOMMIT connection to --pg-admin-url, and dropped again at the end
(unless --keep). A million events take about 0.7 GB on SQLite.
"""

from __future__ import annotations

import argparse
import gc
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID

import psycopg2
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from application.ledger import CommandContext, IncomeLedger, RecordPayment
from bench.record_payments import CHANNELS, VALID_REFERENCES
from domain.sample_chart import SAMPLE_FUNDS
from income_ledger.bootstrap import (
    build_audit_chain,
    build_ledger,
    init_database,
    read_events,
    stored_event_source,
)
from income_ledger.settings import Settings
from projections.chain import GENESIS_LINK, next_link, verify_chain
from projections.replay import replay_balances

DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_PG_DB = "income_ledger_bench_audit"
# VALID_REFERENCES makes references for these funds, in this order.
HINTED_FUNDS = ("CT", "NNDR", "HRA", "PCN", "SUN")

console = Console(width=None if sys.stdout.isatty() else 160)
progress = Console(stderr=True)


class Row(NamedTuple):
    """A stored event row, as the bare driver returns it (the chain's StoredRow)."""

    id: int
    originator_id: str
    originator_version: int
    topic: str
    state: bytes


@dataclass
class Timing:
    name: str
    events: int
    seconds: list[float] = field(default_factory=list)

    @property
    def rates(self) -> list[float]:
        return [self.events / s for s in self.seconds]

    @property
    def median_rate(self) -> float:
        return statistics.median(self.rates)


@dataclass
class BackendResult:
    backend: str
    events: int
    receipts: int
    database_mb: float
    fill: Timing
    sections: list[Timing]


# ---- databases ----------------------------------------------------------------------------


@contextmanager
def scratch_database(backend: str, args: argparse.Namespace) -> Iterator[str]:
    if backend == "sqlite":
        directory = tempfile.mkdtemp(prefix="bench-audit-")
        try:
            yield f"sqlite:///{directory}/ledger.db"
        finally:
            if not args.keep:
                shutil.rmtree(directory, ignore_errors=True)
        return
    admin = create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{args.pg_db}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{args.pg_db}"'))
        url = make_url(args.pg_admin_url).set(database=args.pg_db)
        yield url.render_as_string(hide_password=False)
    finally:
        if not args.keep:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{args.pg_db}" WITH (FORCE)'))
        admin.dispose()


def settle(url: str) -> None:
    """Start each timed section on PostgreSQL without the previous one's dirty buffers."""
    if url.startswith("postgresql"):
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text("CHECKPOINT"))
        engine.dispose()
    gc.collect()


def database_mb(url: str) -> float:
    if url.startswith("sqlite"):
        path = make_url(url).database or ""
        return sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p)) / 1e6
    engine = create_engine(url)
    with engine.connect() as connection:
        size = connection.execute(text("SELECT pg_database_size(current_database())")).scalar()
    engine.dispose()
    return int(size or 0) / 1e6


# ---- fill ---------------------------------------------------------------------------------


def fill(ledger: IncomeLedger, target: int, batch: int, seed: int) -> tuple[Timing, int]:
    """Record receipts in batches until the store holds at least `target` events."""
    rng = random.Random(seed)
    ctx = CommandContext("bench:audit-fill")
    now = datetime.now(UTC)
    year_s = 365 * 24 * 3600
    receipts = 0
    start_position = ledger.max_position()
    started = last_report = time.perf_counter()
    while (position := ledger.max_position()) < target:
        commands = []
        for _ in range(batch):
            kind = rng.randrange(len(HINTED_FUNDS))
            commands.append(
                RecordPayment(
                    channel=CHANNELS[receipts % len(CHANNELS)],
                    amount_pence=rng.randrange(100, 250_000),
                    reference=VALID_REFERENCES[kind](rng.randrange(10**9)),
                    fund_code=HINTED_FUNDS[kind],
                    received_at=now - timedelta(seconds=rng.randrange(year_s)),
                    # Dots keep digit runs apart: 13+ digits would look like a card number.
                    external_id=f"bench.audit.{seed}.{receipts}",
                )
            )
            receipts += 1
        ledger.record_payments(commands, ctx)
        if time.perf_counter() - last_report > 30:
            last_report = time.perf_counter()
            elapsed = last_report - started
            progress.print(
                f"  filled {position:,} of {target:,} events "
                f"({(position - start_position) / elapsed:,.0f} events/s)",
                highlight=False,
            )
    elapsed = time.perf_counter() - started
    events = ledger.max_position() - start_position
    return Timing("fill (record_payments)", events, [elapsed]), receipts


# ---- sections -------------------------------------------------------------------------------


def raw_pages(url: str, page_size: int) -> Iterator[list[Row]]:
    """Keyset pages of the stored rows through the bare driver."""
    if url.startswith("sqlite"):
        connection: Any = sqlite3.connect(make_url(url).database or "")
        sql = (
            "SELECT id, originator_id, originator_version, topic, state FROM ledger_events "
            "WHERE id > ? ORDER BY id LIMIT ?"
        )
    else:
        connection = psycopg2.connect(make_url(url).render_as_string(hide_password=False))
        sql = (
            "SELECT id, originator_id, originator_version, topic, state FROM ledger_events "
            "WHERE id > %s ORDER BY id LIMIT %s"
        )
    try:
        after = 0
        while True:
            cursor = connection.cursor()
            cursor.execute(sql, (after, page_size))
            page = cursor.fetchall()
            cursor.close()
            if not page:
                return
            yield page
            after = page[-1][0]
    finally:
        connection.close()


def raw_select(url: str, page_size: int) -> int:
    return sum(len(page) for page in raw_pages(url, page_size))


def raw_select_sha256(url: str, page_size: int) -> int:
    """The rows hashed into the chain exactly as verification does (same encoding)."""
    sqlite = url.startswith("sqlite")
    link = bytes.fromhex(GENESIS_LINK)
    count = 0
    for page in raw_pages(url, page_size):
        for id_, originator, version, topic, state in page:
            # The column is a 16-byte blob on SQLite and text from psycopg2 on PostgreSQL.
            originator_id = str(UUID(bytes=originator)) if sqlite else originator
            link = next_link(link, Row(id_, originator_id, version, topic, bytes(state)))
            count += 1
    return count


def notifications(ledger: IncomeLedger, page_size: int) -> int:
    read = stored_event_source(ledger)
    after = count = 0
    while page := read(after, page_size):
        count += len(page)
        after = page[-1].id
    return count


def timed(
    timing: Timing, url: str, repeats: int, run: Callable[[], int], check: int | None = None
) -> Timing:
    for _ in range(repeats):
        settle(url)
        started = time.perf_counter()
        count = run()
        timing.seconds.append(time.perf_counter() - started)
        if check is not None and count != check:
            raise RuntimeError(f"{timing.name} saw {count} events, expected {check}")
        progress.print(
            f"  {timing.name}: {timing.events / timing.seconds[-1]:,.0f} events/s", highlight=False
        )
    return timing


def run_backend(backend: str, url: str, args: argparse.Namespace) -> BackendResult:
    settings = Settings(database_url=url, aggregate_cache_size=1000)
    init_database(settings)
    ledger = build_ledger(settings)
    try:
        ctx = CommandContext("bench:setup")
        for fund in SAMPLE_FUNDS:
            ledger.add_fund(fund, ctx)
        progress.print(f"[bold]{backend}[/]: filling to {args.events:,} events", highlight=False)
        settle(url)
        fill_timing, receipts = fill(ledger, args.events, args.batch, args.seed)
        events = ledger.max_position()
        progress.print(
            f"  fill: {fill_timing.median_rate:,.0f} events/s ({events:,} events)", highlight=False
        )
        page = args.page_size
        sections = [
            timed(
                Timing("raw SELECT", events),
                url,
                args.repeats,
                lambda: raw_select(url, page),
                events,
            ),
            timed(
                Timing("raw SELECT + SHA-256 chain", events),
                url,
                args.repeats,
                lambda: raw_select_sha256(url, page),
                events,
            ),
            timed(
                Timing("notifications (recorder)", events),
                url,
                args.repeats,
                lambda: notifications(ledger, page),
                events,
            ),
        ]
        chain = build_audit_chain(settings, ledger, page_size=page)
        try:
            sections.append(
                timed(
                    Timing("chain build (audit chain)", events),
                    url,
                    1,
                    lambda: chain.catch_up(),
                    events,
                )
            )

            def verify() -> int:
                report = verify_chain(
                    chain.engine,
                    stored_event_source(ledger),
                    store_position=events,
                    page_size=page,
                )
                if not report.ok:
                    raise RuntimeError(f"verification found {report.findings_count} problems")
                return report.events_checked

            sections.append(
                timed(Timing("verify (audit verify)", events), url, args.repeats, verify, events)
            )
        finally:
            chain.engine.dispose()

        def replay() -> int:
            result = replay_balances(read_events(ledger, page_size=page), as_at=datetime.now(UTC))
            if result.trial_balance_pence != 0 or result.events_counted != events:
                raise RuntimeError("replay does not balance or missed events")
            return result.events_read

        sections.append(timed(Timing("replay (replay)", events), url, args.repeats, replay, events))
        return BackendResult(backend, events, receipts, database_mb(url), fill_timing, sections)
    finally:
        ledger.close()


# ---- report ---------------------------------------------------------------------------------


def report(results: list[BackendResult], args: argparse.Namespace) -> None:
    table = Table(
        "backend",
        "section",
        "events",
        "events/s (median)",
        "range",
        "seconds (median)",
        "vs raw SELECT",
        title=f"Replay and chain over >= {args.events:,} events, pages of {args.page_size}",
    )
    for result in results:
        raw = result.sections[0].median_rate
        for timing in [result.fill, *result.sections]:
            rates = timing.rates
            table.add_row(
                result.backend,
                timing.name,
                f"{timing.events:,}",
                f"{timing.median_rate:,.0f}",
                f"{min(rates):,.0f}-{max(rates):,.0f}" if len(rates) > 1 else "",
                f"{statistics.median(timing.seconds):,.1f}",
                "" if timing is result.fill else f"{timing.median_rate / raw:.2f}",
            )
    console.print(table)
    for result in results:
        console.print(
            f"{result.backend}: {result.receipts:,} receipts, {result.events:,} events, "
            f"database {result.database_mb:,.0f} MB after the chain",
            highlight=False,
        )
    console.print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, sqlite "
        f"{sqlite3.sqlite_version}, repeats {args.repeats}",
        highlight=False,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--page-size", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN_URL)
    parser.add_argument("--pg-db", default=DEFAULT_PG_DB)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="Keep the scratch databases.")
    parser.add_argument("--json", help="Also write the results to this file.")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = []
    for backend in args.backends.split(","):
        with scratch_database(backend, args) as url:
            results.append(run_backend(backend, url, args))
    report(results, args)
    console.print(f"total {time.perf_counter() - started:,.0f} s", highlight=False)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump([asdict(r) for r in results], handle, indent=2)


if __name__ == "__main__":
    main()
