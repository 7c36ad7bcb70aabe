"""Benchmark: importing one large day's file, against raw driver INSERTs (issue #10).

A measurement, not a test: it asserts nothing about speed. For each backend, on a fresh
database every time, it measures:

* app   `application.imports.import_file` on an Allpay file of --lines lines (90% with a
        valid council tax reference, allocated at once: 2 events; 10% to suspense: 1 event),
        with the import rules of --rules rules none of which matches (so every line is tried
        against all of them before the funds' reference rules), from the bytes to the commit:
        parsing, checking every line, the receipts' events and the batch event, in one
        transaction;
* raw   --lines rows (the same number as the file's lines: the app's own Received event
        rows, read back untimed) inserted with the bare driver into a table of the
        ledger_events shape in one transaction: psycopg2 `execute_values` on PostgreSQL,
        sqlite3 `executemany` on SQLite;
* raw all events   every row the app recorded for the file, inserted the same way (for
        the cost per stored row).

It prints medians over --repeats and the ratio app lines/s over raw rows/s (the issue's
goal: >= 0.5).

    .venv/bin/python -m bench.imports [--lines 100000] [--repeats 3] [--rules 20]
        [--backends sqlite,postgresql] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from application.import_rules import add_rule
from application.imports import import_file
from application.ledger import CommandContext
from bench.record_payments import (
    DEFAULT_PG_ADMIN_URL,
    DEFAULT_PG_DB,
    Backend,
    PostgresBackend,
    Row,
    SQLiteBackend,
    console,
    ledger_on,
    notifications_after,
)
from bench.record_payments import run_raw as record_payments_raw
from domain.limits import uk_today
from domain.sample_chart import COUNCIL_TAX

SUSPENSE_EVERY = 10  # one line in ten has a reference no fund takes


def allpay_file(lines: int, days_back: int = 1, tag: int = 0) -> bytes:
    """An Allpay file of `lines` £1.00 lines of one UK day (`days_back` days ago, yesterday by
    default), with its trailers; files of different `tag`s share no reference."""
    day = (uk_today() - timedelta(days=days_back)).strftime("%d/%m/%Y")
    rows = []
    for n in range(lines):
        if n % SUSPENSE_EVERY:
            number = (tag * lines + n) % 10**7
            reference = COUNCIL_TAX.reference_rule.with_check_digit(f"{number:07d}")
        else:
            reference = f"X{tag:02d}{n:07d}"
        rows.append(f"{'335610':>7}{reference:<16}{'1.00':>9}P{day}")
    trailer = [
        f"Total Amount Updated onto System: {f'{lines}.00':>17}",
        f"Total Transactions updated onto System: {lines:>17}",
    ]
    return "\r\n".join([*rows, "", *trailer, ""]).encode()


def add_rules(ledger: Any, count: int) -> None:
    """Rules a line of the file never matches (narrative text no line carries)."""
    ctx = CommandContext("bench")
    for n in range(count):
        rule = {"name": f"unused {n}", "narrative_contains": f"NOSUCH{n}", "fund_code": "CT"}
        add_rule(ledger, rule, ctx, "bench")


def run_app(backend: Backend, content: bytes, rules: int) -> tuple[float, list[Row]]:
    url = backend.fresh()
    with ledger_on(url) as ledger:
        add_rules(ledger, rules)
        backend.settle()
        before = ledger.max_position()
        start = time.perf_counter()
        outcome = import_file(ledger, content, CommandContext("bench"), file_name="big.txt")
        seconds = time.perf_counter() - start
        if not outcome.recorded:
            raise RuntimeError("the file was not imported")
        rows = [
            Row(n.originator_id, n.originator_version, n.topic, n.state)
            for n in notifications_after(ledger, after=before)
        ]
    return seconds, rows


def run_raw(backend: Backend, rows: list[Row]) -> float:
    """Seconds to insert the rows with the bare driver in one commit."""
    return record_payments_raw(backend, "batched", 0, rows, [len(rows)]).seconds


def measure(backend: Backend, lines: int, rules: int) -> dict[str, Any]:
    content = allpay_file(lines)
    app_seconds, rows = run_app(backend, content, rules)
    received = [row for row in rows if row.topic.endswith("Payment.Received")]
    if len(received) != lines:
        raise RuntimeError(f"{len(received)} receipts recorded for {lines} lines")
    return {
        "app_seconds": app_seconds,
        "app_events": len(rows),
        "raw_seconds": run_raw(backend, received),
        "raw_all_seconds": run_raw(backend, rows),
        "file_bytes": len(content),
    }


def summarise(runs: list[dict[str, Any]], lines: int) -> dict[str, Any]:
    app = statistics.median(run["app_seconds"] for run in runs)
    raw = statistics.median(run["raw_seconds"] for run in runs)
    raw_all = statistics.median(run["raw_all_seconds"] for run in runs)
    events = runs[0]["app_events"]
    return {
        "lines": lines,
        "app_seconds": app,
        "app_lines_per_second": lines / app,
        "app_events": events,
        "raw_seconds": raw,
        "raw_rows_per_second": lines / raw,
        "raw_all_seconds": raw_all,
        "raw_all_rows_per_second": events / raw_all,
        "ratio": raw / app,
        "ratio_all_events": raw_all / app,
        "file_bytes": runs[0]["file_bytes"],
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.imports", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rules", type=int, default=20, help="import rules, none matching")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN_URL)
    parser.add_argument("--pg-db", default=DEFAULT_PG_DB, help="scratch database (dropped!)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if set(args.backends) - {"sqlite", "postgresql"}:
        parser.error("backends are sqlite and postgresql")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console.print(
        f"[bold]imports benchmark[/]: an Allpay file of {args.lines:,} lines, {args.rules} "
        f"import rules, {args.repeats} repeats"
    )
    results = {}
    for name in args.backends:
        backend: Backend = (
            SQLiteBackend() if name == "sqlite" else PostgresBackend(args.pg_admin_url, args.pg_db)
        )
        try:
            console.print(f"  {name}: {backend.describe()}")
            measure(backend, 200, args.rules)  # untimed warm-up
            runs = []
            for repeat in range(args.repeats):
                runs.append(measure(backend, args.lines, args.rules))
                console.print(
                    f"  repeat {repeat + 1}/{args.repeats} {name}: app "
                    f"{runs[-1]['app_seconds']:.2f}s, raw {runs[-1]['raw_seconds']:.2f}s"
                )
            results[name] = summarise(runs, args.lines)
        finally:
            backend.close()
    for name, row in results.items():
        console.print(
            f"{name}: import {row['lines']:,} lines in {row['app_seconds']:.2f}s "
            f"({row['app_lines_per_second']:,.0f} lines/s, {row['app_events']:,} events); raw "
            f"{row['lines']:,} rows {row['raw_seconds']:.2f}s "
            f"({row['raw_rows_per_second']:,.0f} rows/s); app/raw {row['ratio']:.2f}x "
            f"(all {row['app_events']:,} events raw: {row['raw_all_seconds']:.2f}s, "
            f"{row['ratio_all_events']:.2f}x)"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": vars(args) | {"json": str(args.json)}, "results": results}, indent=2
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
