"""`make bench`: issue #9's table in one run, every path against its raw baseline.

This is a measurement, not a test: it asserts nothing about speed. For each backend it fills a
fresh scratch ledger (a temporary SQLite file; the PostgreSQL database --pg-db, dropped and
created again) with at least --events events the way `bench.catch_up` does (record_payments in
batches of 1,000, ~10% to suspense, a few allocations, refunds and transfers per batch), then
runs every registered row. A row times our path and its raw baseline in the same run,
--repeats times each, and prints the median rate, the range, the ratio ours / baseline and
the issue's goal. Rows that write have databases of their own, so that the rows reading the
filled ledger count exactly what was filled: bulk (--pg-db + `_bulk`) and import (`_imp`)
start empty; POST /payments and save -> visible write into a copy of the filled ledger
(`<its database>_write`, PostgreSQL's CREATE DATABASE ... TEMPLATE).

    .venv/bin/python -m bench.table [--events N] [--backends sqlite,postgresql] [--repeats 3]
        [--page-size 5000] [--pg-admin-url URL] [--pg-db NAME] [--import-lines N]
        [--rows WORDS] [--json results.json]

Every option can also be set in the environment, which is how `make bench` takes them:
LEDGER_BENCH_EVENTS (default 20000; the issue's figures are at about 95000),
LEDGER_BENCH_BACKENDS, LEDGER_BENCH_REPEATS, LEDGER_BENCH_PAGE_SIZE,
LEDGER_BENCH_PG_ADMIN_URL (default postgresql://postgres@127.0.0.1:5432/postgres) and
LEDGER_BENCH_PG_DB (default income_ledger_bench_table; dropped!) and LEDGER_BENCH_ROWS (only
the rows whose path contains one of these comma-separated words, like "rebuild,verify";
default all), LEDGER_BENCH_IMPORT_LINES (the import rows' file size; default 0: --events;
issue #10's size is 100000, e.g. `--rows import --import-lines 100000 --events 1000`).

A new row is one registration: `@row("path", "goal")` on a function that takes the `Bench`
and returns a `Figure`; `not_measured("path", "goal", "why")` holds a row's place until then.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from application import event_store
from application.ledger import IncomeLedger
from bench import catch_up, imports, record_payments, write_path
from bench.http_env import Database
from bench.replay import raw_pages, raw_select_sha256, scratch_database, settle
from income_ledger.bootstrap import (
    build_audit_chain,
    build_ledger,
    event_source,
    init_database,
    store_address,
    stored_event_source,
)
from income_ledger.bootstrap import (
    replay as replay_store,
)
from income_ledger.settings import Settings
from projections.chain import verify_chain
from projections.maintenance import rebuild
from projections.runner import projection_engine
from projections.schema import LIVE, ReadModel, new_index_tag, read_model

DEFAULTS = {
    "events": 20_000,
    "backends": "sqlite,postgresql",
    "repeats": 3,
    "page_size": 5000,
    "pg_admin_url": "postgresql://postgres@127.0.0.1:5432/postgres",
    "pg_db": "income_ledger_bench_table",
    "rows": "",
    "import_lines": 0,
}
HELP = {
    "rows": "only the rows whose path contains one of these comma-separated words",
    "import_lines": "lines of the import rows' files (0: --events; issue #10's size: 100000)",
}
FOLLOW_UPS_PER_KIND = 5  # allocations, refunds and transfers after each batch of 1,000
BULK_BATCH = 1000

console = Console(width=None if sys.stdout.isatty() else 170)
progress = Console(stderr=True)


@dataclass
class Figure:
    """One row's measurement: our rate and the baseline's, one per repeat."""

    ours: list[float]
    baseline: list[float]
    unit: str = "events/s"
    note: str = ""

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.baseline)


@dataclass(frozen=True)
class Row:
    path: str
    goal: str
    measure: Callable[[Bench], Figure] | None
    why_not: str = ""
    backends: tuple[str, ...] = ("sqlite", "postgresql")


ROWS: list[Row] = []


def row(
    path: str, goal: str, backends: tuple[str, ...] = ("sqlite", "postgresql")
) -> Callable[[Callable[[Bench], Figure]], Callable[[Bench], Figure]]:
    """Register a measured row of the table (in the order registered)."""

    def register(measure: Callable[[Bench], Figure]) -> Callable[[Bench], Figure]:
        ROWS.append(Row(path, goal, measure, backends=backends))
        return measure

    return register


def not_measured(path: str, goal: str, why: str) -> None:
    """Hold a row's place in the table until something measures it."""
    ROWS.append(Row(path, goal, None, why))


@dataclass
class Bench:
    """A filled scratch ledger on one backend, and what the rows need to measure it."""

    backend: str
    url: str
    settings: Settings
    ledger: IncomeLedger
    events: int
    args: argparse.Namespace

    @property
    def page_size(self) -> int:
        return int(self.args.page_size)

    @property
    def import_lines(self) -> int:
        return int(self.args.import_lines) or self.events

    def rates(
        self, name: str, run: Callable[[], int], *, prepare: Callable[[], Any] | None = None
    ) -> list[float]:
        """Events/s of `run` over --repeats runs; each must count every event."""
        rates = []
        for _ in range(self.args.repeats):
            if prepare is not None:
                prepare()
            settle(self.url)
            started = time.perf_counter()
            count = run()
            seconds = time.perf_counter() - started
            if count != self.events:
                raise RuntimeError(f"{name} counted {count} events, expected {self.events}")
            rates.append(count / seconds)
            progress.print(f"  {self.backend} {name}: {rates[-1]:,.0f} events/s", highlight=False)
        return rates


# ---- the rows -------------------------------------------------------------------------------
# Write paths (group commit, HTTP, bulk) belong to bench/http_api.py and bench/record_payments.py.


@row(
    "POST /payments, 32 keep-alive clients, serve --workers 2 + project",
    ">= 1.0",
    backends=("postgresql",),
)
def post_payments(bench: Bench) -> Figure:
    """bench.write_path on the filled ledger: receipts/s over HTTP against one psycopg2
    connection's 1-row INSERT + COMMIT, measured after each run."""
    runs = _write_path_runs(bench)
    return Figure(
        [run["payments_per_s"] for run in runs],
        [run["raw_rows_per_s"] for run in runs],
        unit="receipts/s",
        note="baseline: 1-row INSERT + COMMIT, one connection",
    )


@row("bulk: record_payments in batches of 1,000", ">= 0.5")
def bulk_record_payments(bench: Bench) -> Figure:
    """bench.record_payments' batched path in its own scratch database: the app against
    execute_values / executemany of the same rows, committed where the app committed."""
    backend = record_payments.make_backend(
        bench.backend,
        argparse.Namespace(pg_admin_url=bench.args.pg_admin_url, pg_db=f"{bench.args.pg_db}_bulk"),
    )
    receipts = max(BULK_BATCH, bench.events // 2)
    ours, baseline = [], []
    try:
        for repeat in range(bench.args.repeats):
            commands = record_payments.make_commands(receipts, f"table{repeat}", seed=repeat)
            app, rows, per_commit = record_payments.run_app(
                backend, "batched", commands, BULK_BATCH
            )
            raw = record_payments.run_raw(backend, "batched", receipts, rows, per_commit)
            ours.append(app.rows_per_second)
            baseline.append(raw.rows_per_second)
            progress.print(
                f"  {bench.backend} bulk: {ours[-1]:,.0f} vs raw {baseline[-1]:,.0f} events/s",
                highlight=False,
            )
    finally:
        backend.close()
    return Figure(ours, baseline, note=f"{receipts:,} receipts; baseline: execute_values")


@row("import one file (Allpay, --import-lines lines, 20 rules)", ">= 0.5")
def import_file_row(bench: Bench) -> Figure:
    """bench.imports in its own scratch database: import_file on one file of
    --import-lines lines (--events unless given) against execute_values / executemany of as
    many of its rows in one transaction."""
    return _import_figure(bench, "import", imports.measure)


@row("import a bank statement (camt.053, --import-lines lines, matched, 20 rules)", ">= 0.5")
def import_statement_row(bench: Bench) -> Figure:
    """bench.imports.measure_statement in its own scratch database: import_file on a
    camt.053 statement's day of --import-lines credit lines (payers' transfers, lines in
    suspense, and bankings linked to cheques, telephone payments and an Allpay file recorded
    before it, untimed) against execute_values / executemany of as many rows in one
    transaction."""
    return _import_figure(bench, "statement", imports.measure_statement)


def _import_figure(
    bench: Bench, name: str, measure: Callable[[record_payments.Backend, int, int], Any]
) -> Figure:
    backend = record_payments.make_backend(
        bench.backend,
        argparse.Namespace(pg_admin_url=bench.args.pg_admin_url, pg_db=f"{bench.args.pg_db}_imp"),
    )
    lines = bench.import_lines
    ours, baseline = [], []
    try:
        for _ in range(bench.args.repeats):
            run = measure(backend, lines, 20)
            ours.append(lines / run["app_seconds"])
            baseline.append(lines / run["raw_seconds"])
            progress.print(
                f"  {bench.backend} {name}: {ours[-1]:,.0f} vs raw {baseline[-1]:,.0f} lines/s",
                highlight=False,
            )
    finally:
        backend.close()
    return Figure(ours, baseline, "lines/s", f"{lines:,} lines; baseline: execute_values")


@row("projections rebuild", ">= 0.5")
def projections_rebuild(bench: Bench) -> Figure:
    """`projections rebuild` against a raw SELECT of the events plus a COPY (PostgreSQL) or
    executemany (SQLite) of exactly the read-model rows that rebuild produced, into tables of
    the same shape and indexes."""
    engine = projection_engine(bench.url)
    source = event_source(bench.ledger)
    try:
        ours = bench.rates(
            "rebuild",
            lambda: rebuild(engine, source, page_size=bench.page_size),
        )
        produced = {table.name: _table_rows(bench.url, table) for table in LIVE.tables}
        target = read_model("_raw", new_index_tag())

        def fresh_target() -> None:
            target.metadata.drop_all(engine)
            target.metadata.create_all(engine)

        try:
            baseline = bench.rates(
                "raw SELECT + COPY of the rows",
                lambda: _raw_select_and_copy(bench, target, produced),
                prepare=fresh_target,
            )
        finally:
            target.metadata.drop_all(engine)
    finally:
        engine.dispose()
    rows = sum(len(r) for _, r in produced.values())
    return Figure(ours, baseline, note=f"{rows:,} read-model rows; baseline: SELECT + COPY")


@row("audit verify", ">= 0.5")
def audit_verify(bench: Bench) -> Figure:
    """`audit verify` (the chain built untimed first) against a raw SELECT + SHA-256 chain."""
    chain = build_audit_chain(bench.settings, bench.ledger, page_size=bench.page_size)
    try:
        chain.catch_up()

        def verify() -> int:
            report = verify_chain(
                chain.engine,
                stored_event_source(bench.ledger),
                store_position=bench.events,
                page_size=bench.page_size,
                processes=bench.settings.read_processes,
                store=store_address(bench.ledger),
            )
            if not report.ok:
                raise RuntimeError(f"verification found {report.findings_count} problems")
            return report.events_checked

        ours = bench.rates("audit verify", verify)
    finally:
        chain.engine.dispose()
    baseline = bench.rates(
        "raw SELECT + SHA-256", lambda: raw_select_sha256(bench.url, bench.page_size)
    )
    return Figure(ours, baseline, note="baseline: SELECT + SHA-256 chain")


@row("replay", ">= 0.5")
def replay(bench: Bench) -> Figure:
    """`replay` (every event decoded and posted) against a raw SELECT + json.loads of each
    event's state."""

    def ours() -> int:
        result = replay_store(
            bench.settings,
            bench.ledger,
            as_at=datetime.now(UTC),
            page_size=bench.page_size,
            processes=bench.settings.read_processes,
        )
        if result.trial_balance_pence != 0:
            raise RuntimeError("the replay does not balance")
        return result.events_read

    def raw() -> int:
        count = 0
        for page in raw_pages(bench.url, bench.page_size):
            for _, _, _, _, state in page:
                json.loads(bytes(state))
                count += 1
        return count

    return Figure(
        bench.rates("replay", ours),
        bench.rates("raw SELECT + json.loads", raw),
        note="baseline: SELECT + json.loads",
    )


@row(
    "read p99 (/balances/funds, /accounts/{fund}/{ref})",
    "<= 5 ms at 1M events",
    backends=("postgresql",),
)
def read_p99(bench: Bench) -> Figure:
    """READ_REQUESTS sequential GETs of each read over HTTP to an idle `serve` worker (one
    keep-alive connection, bench.http_load's bare client), the slower read's p99 per run,
    against the p99 of the same reads' SQL through bare psycopg2 in the same run. The goal
    is at 1M events: `LEDGER_BENCH_EVENTS=1000000 make bench`, or bench.http_reads on a
    ledger of that size; at the table's default size this row shows the HTTP layer's part."""
    from bench.http_api import sample_accounts
    from bench.http_env import Server
    from bench.http_reads import raw_reads, sequential_reads

    copy = _ledger_copy(bench, "read")  # the projector's chain rows stay off the filled ledger
    ours: list[float] = []
    raw: list[float] = []
    try:
        write_path.run_cli(copy.url, "project", "--once")
        sample = sample_accounts(copy, 500, seed=9)
        with tempfile.TemporaryDirectory() as logs:
            server = Server(copy.url, Path(logs), workers=1)
            server.start()
            try:
                for repeat in range(bench.args.repeats):
                    http = sequential_reads(
                        server.base, sample, READ_REQUESTS, 100, repeat, server.pids()["server"]
                    )
                    sql = raw_reads(copy, sample, READ_REQUESTS, 100, repeat)
                    ours.append(max(read["p99_ms"] for read in http.values()))
                    raw.append(max(read["p99_ms"] for read in sql.values()))
                    progress.print(
                        f"  {bench.backend} reads p99: "
                        + ", ".join(f"{k} {v['p99_ms']:.1f} ms" for k, v in http.items())
                        + f" vs bare SQL {raw[-1]:.1f} ms",
                        highlight=False,
                    )
            finally:
                server.stop()
    finally:
        copy.drop()
    return Figure(
        ours,
        raw,
        unit="ms",
        note=f"at {bench.events:,} events; baseline: the same reads' SQL, bare psycopg2",
    )


READ_REQUESTS = 1000


@row(
    "save -> visible in the read model (POST, GET ?min_position) p99",
    "<= 25 ms",
    backends=("postgresql",),
)
def save_to_visible(bench: Bench) -> Figure:
    """From sending POST /payments to the answer of GET /balances/funds?min_position=<its
    position>, one client, p99 per run, against the p99 of the HTTP row's POSTs alone."""
    runs = _write_path_runs(bench)
    return Figure(
        [run["post_to_visible"]["p99_ms"] for run in runs],
        [run["single_post"]["p99_ms"] for run in runs],
        unit="ms",
        note="baseline: the POST alone, same client (ratio: >= 1)",
    )


def _write_path_runs(bench: Bench) -> list[dict[str, Any]]:
    """bench.write_path's runs, measured once per ledger for both rows that use them, on a
    copy of the filled ledger: the receipts they POST must not reach the ledger that the
    later rows count (rebuild once counted 24,405 events of 21,062 that way)."""
    if bench.url not in _WRITE_RUNS:
        args = write_path.parse_args(["--repeats", str(bench.args.repeats)])
        copy = _ledger_copy(bench, "write")
        try:
            _WRITE_RUNS[bench.url] = write_path.measure(copy, args)
        finally:
            copy.drop()
    return _WRITE_RUNS[bench.url]


def _ledger_copy(bench: Bench, suffix: str) -> Database:
    """A new PostgreSQL database holding what the filled ledger holds, for a row that writes."""
    source = make_url(bench.url).database or ""
    # A template database must have no other sessions: close the ledger's pooled ones (it
    # opens new ones when next used).
    engine = event_store.engine(bench.ledger.recorder)
    if engine is not None:
        engine.dispose()
    copy = Database(bench.args.pg_admin_url, f"{source}_{suffix}")
    copy.drop()
    copy.admin_sql(f'CREATE DATABASE "{copy.name}" TEMPLATE "{source}"')
    return copy


_WRITE_RUNS: dict[str, list[dict[str, Any]]] = {}


# ---- baselines --------------------------------------------------------------------------------


def _columns(table: Any) -> list[str]:
    # The surrogate key is the database's to number, as it is for the projection.
    return [column.name for column in table.columns if column.name != "posting_id"]


def _table_rows(url: str, table: Any) -> tuple[list[str], list[tuple[Any, ...]]]:
    """A read-model table's rows as the bare driver returns them (untimed)."""
    columns = _columns(table)
    with _raw_connection(url) as connection:
        cursor = connection.cursor()
        cursor.execute(f"SELECT {', '.join(columns)} FROM {table.name}")
        rows = cursor.fetchall()
        cursor.close()
    return columns, rows


@contextmanager
def _raw_connection(url: str) -> Iterator[Any]:
    if url.startswith("sqlite"):
        connection: Any = sqlite3.connect(make_url(url).database or "")
    else:
        connection = psycopg2.connect(make_url(url).render_as_string(hide_password=False))
    try:
        yield connection
    finally:
        connection.close()


def _raw_select_and_copy(
    bench: Bench, target: ReadModel, produced: dict[str, tuple[list[str], list[tuple[Any, ...]]]]
) -> int:
    events = sum(len(page) for page in raw_pages(bench.url, bench.page_size))
    with _raw_connection(bench.url) as connection:
        cursor = connection.cursor()
        for live, scratch in zip(LIVE.tables, target.tables, strict=True):
            columns, rows = produced[live.name]
            if not rows:
                continue
            if bench.backend == "sqlite":
                marks = ", ".join("?" for _ in columns)
                cursor.executemany(
                    f"INSERT INTO {scratch.name} ({', '.join(columns)}) VALUES ({marks})", rows
                )
            else:
                buffer = io.StringIO()
                csv.writer(buffer).writerows(rows)
                buffer.seek(0)
                cursor.copy_expert(
                    f"COPY {scratch.name} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)",
                    buffer,
                )
        connection.commit()
        cursor.close()
    return events


# ---- running and printing ---------------------------------------------------------------------


@dataclass
class Result:
    backend: str
    events: int
    fill_events_per_s: float
    rows: list[dict[str, Any]] = field(default_factory=list)


def run_backend(backend: str, url: str, args: argparse.Namespace) -> Result:
    settings = Settings(database_url=url, aggregate_cache_size=1000)
    init_database(settings)
    ledger = build_ledger(settings)
    try:
        progress.print(f"[bold]{backend}[/]: filling to {args.events:,} events", highlight=False)
        filled, events = catch_up.fill(ledger, args.events, FOLLOW_UPS_PER_KIND)
        if backend == "postgresql":
            with _raw_connection(url) as connection:
                connection.autocommit = True
                connection.cursor().execute("VACUUM ANALYZE")
        bench = Bench(backend, url, settings, ledger, events, args)
        result = Result(backend, events, filled["events_per_s"])
        wanted = [word for word in args.rows.split(",") if word]
        for entry in ROWS:
            if wanted and not any(word in entry.path for word in wanted):
                continue
            measure = entry.measure if backend in entry.backends else None
            figure = measure(bench) if measure is not None else None
            why_not = entry.why_not or f"measured on {', '.join(entry.backends)} only"
            result.rows.append(
                {"path": entry.path, "goal": entry.goal, "why_not": why_not}
                | ({"figure": asdict(figure), "ratio": figure.ratio} if figure else {})
            )
        return result
    finally:
        ledger.close()


def _rate(values: Sequence[float], unit: str) -> str:
    digits = 1 if unit == "ms" else 0  # a read's p99 is a few ms: keep a decimal
    text = f"{statistics.median(values):,.{digits}f} {unit}"
    if len(values) > 1:
        text += f" [{min(values):,.{digits}f}-{max(values):,.{digits}f}]"
    return text


def report(results: list[Result], args: argparse.Namespace) -> None:
    table = Table(
        "backend",
        "path",
        "ours: median \\[range]",
        "baseline, same run",
        "ratio",
        "goal",
        title=f"Issue #9 over about {args.events:,} events, {args.repeats} repeats, "
        f"pages of {args.page_size:,}",
    )
    for result in results:
        for entry in result.rows:
            if "figure" not in entry:
                table.add_row(
                    result.backend,
                    entry["path"],
                    "not measured",
                    entry["why_not"],
                    "",
                    entry["goal"],
                )
                continue
            figure = entry["figure"]
            table.add_row(
                result.backend,
                entry["path"],
                _rate(figure["ours"], figure["unit"]),
                f"{_rate(figure['baseline'], figure['unit'])}; {figure['note']}",
                f"{entry['ratio']:.2f}",
                entry["goal"],
            )
    console.print(table)
    for result in results:
        console.print(
            f"{result.backend}: {result.events:,} events, filled at "
            f"{result.fill_events_per_s:,.0f} events/s",
            highlight=False,
        )
    console.print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, sqlite "
        f"{sqlite3.sqlite_version}",
        highlight=False,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.table", description=__doc__.splitlines()[0]
    )
    for name, default in DEFAULTS.items():
        value = os.environ.get(f"LEDGER_BENCH_{name.upper()}", default)
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=type(default),
            default=type(default)(value),
            help=HELP.get(name),
        )
    parser.add_argument("--keep", action="store_true", help="Keep the scratch databases.")
    parser.add_argument("--json", help="Also write the results to this file.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    results = []
    for backend in args.backends.split(","):
        with scratch_database(backend.strip(), args) as url:
            results.append(run_backend(backend.strip(), url, args))
    report(results, args)
    console.print(f"total {time.perf_counter() - started:,.0f} s", highlight=False)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump([asdict(result) for result in results], handle, indent=2)


if __name__ == "__main__":
    main()
