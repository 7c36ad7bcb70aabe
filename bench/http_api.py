"""Benchmark: the HTTP API on PostgreSQL with at least 1,000,000 events stored (issue #4).

This is a measurement, not a test: it asserts nothing about speed. In one run it:

1. fills a scratch PostgreSQL database (--pg-db, default income_ledger_bench_http; dropped
   and created again, or with --reuse kept and topped up) to at least --events events
   through `IncomeLedger.record_payments` in batches of 1000 receipts (about 10% with
   references that match no fund: 1 event; the rest allocated automatically: 2 events),
   spread over --accounts payer accounts in five funds and over the last year. Then
   `VACUUM ANALYZE` and `income-ledger project --once --page-size 5000` (the read model's
   catch-up), each timed;
2. starts a real server, `income-ledger serve` (uvicorn, one worker), with
   LEDGER_RUN_PROJECTIONS=false, and `income-ledger project` following beside it, as they
   run in production on PostgreSQL;
3. reads, one request at a time (after a warm-up): GET /balances/funds and
   GET /accounts/{fund}/{reference}?limit=100 for random existing accounts, over HTTP (one
   keep-alive connection of bench.http_load's bare client, not a client library); the
   same through the FastAPI app in this process (httpx.ASGITransport: no socket, no
   uvicorn); the route functions called directly (no FastAPI); and the endpoints' SQL
   through bare psycopg2. Then the same two reads from --read-clients concurrent clients;
4. writes: one client for --single-seconds; then, for each of --clients, that many
   concurrent clients POST /payments with unique external ids for --seconds (after
   --warmup seconds not counted): payments/s, events/s (from the positions returned),
   latency median/p99/max, errors by status, and how far the projection fell behind.
   Meanwhile pg_stat_activity and pg_locks are sampled every 50 ms: how often the event
   store's table lock is held, whether its holder is running SQL or idle in its transaction
   (waiting for the Python process that owns it), and how many wait for it;
5. with the server stopped, baselines: in-process `IncomeLedger.record_payment` from
   --baseline-in-process-threads threads (the app without HTTP), bare psycopg2 INSERT +
   COMMIT of one event-sized row, and the event store's write pattern in bare SQL (LOCK
   TABLE ... IN EXCLUSIVE MODE, INSERT 2 rows, NOTIFY, COMMIT), at each of --clients.

CPU use (in cores) of the server, the projector, PostgreSQL and the load generator is read
from /proc over every timed window: on a 2-core machine it tells which of them limits a figure.
The load generator is a bare asyncio HTTP/1.1 client (bench.http_load) in --client-procs
processes (default 1). `python -m bench.http_reads` repeats step 3's HTTP reads against
several code trees in turn, alternated, on a ledger this module filled (--fill-only).

    .venv/bin/python -m bench.http_api [--events 1000000] [--clients 16,32,64] [--seconds 20]
        [--reuse] [--drop] [--fill-only] [--client-procs 1] [--read-requests 500]
        [--json results.json]

PostgreSQL: the scratch database is dropped and created through an AUTOCOMMIT connection to
--pg-admin-url. It is kept at the end (so that --reuse saves the fill next time) unless
--drop is given.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# ---- 1. fill ----------------------------------------------------------------------------------
from bench.http_baselines import in_process_write_baselines, raw_write_baselines
from bench.http_env import (
    DEFAULT_PG_ADMIN_URL,
    DEFAULT_PG_DB,
    EVENTS_PER_RECEIPT,
    FILL_BATCH,
    Database,
    References,
    Server,
    console,
    fill_commands,
    run_cli,
    uptime,
)
from bench.http_load import run_load
from bench.http_reads import (
    asgi_measurements,
    in_process_reads,
    raw_reads,
    sequential_reads,
    statement_length,
)
from bench.http_report import SERVER_CORES, fmt_cores, fmt_ms, print_report


def fill_worker(url: str, worker: int, batches: int, accounts: int, seed: int) -> int:
    """Record `batches` batches of FILL_BATCH receipts; returns the receipts recorded."""
    from application.ledger import CommandContext
    from income_ledger.bootstrap import build_ledger
    from income_ledger.settings import Settings

    rng = random.Random(seed * 7919 + worker)
    refs = References(accounts)
    now = datetime.now(UTC)
    recorded = 0
    run_tag = "".join(random.SystemRandom().choice("abcdefghjkmnpqrstuvwxyz") for _ in range(6))
    with build_ledger(Settings(database_url=url)) as ledger:
        for batch in range(batches):
            commands = fill_commands(rng, refs, FILL_BATCH, f"{run_tag}.w{worker}.b{batch}", now)
            outcomes = ledger.record_payments(commands, CommandContext("bench:fill"))
            recorded += sum(o.recorded for o in outcomes)
    return recorded


def fill(db: Database, args: argparse.Namespace) -> dict[str, Any]:
    """Fill (or top up) to at least args.events events; catch the read model up; time both."""
    result: dict[str, Any] = {}
    reused = args.reuse and db.exists() and db.has_table("ledger_events")
    if not reused:
        db.recreate()
        db.set_meta(accounts=args.accounts)
    elif db.meta().get("accounts") not in (None, args.accounts):
        console.print(
            f"[yellow]note[/]: reusing a database filled with --accounts "
            f"{db.meta()['accounts']}, not {args.accounts}"
        )
    run_cli(db.url, "db", "init")
    run_cli(db.url, "funds", "add", "--sample")
    start_position = db.max_position()
    missing = args.events - start_position
    result["reused"] = bool(reused)
    result["events_before"] = start_position
    if missing > 0:
        batches = math.ceil(missing / (FILL_BATCH * EVENTS_PER_RECEIPT)) + 2
        procs = max(1, min(args.fill_procs, batches))
        share = [batches // procs + (1 if w < batches % procs else 0) for w in range(procs)]
        console.print(
            f"filling {missing:,}+ events: {batches} batches of {FILL_BATCH} receipts in "
            f"{procs} process(es) ({uptime()})"
        )
        started = time.perf_counter()
        context = multiprocessing.get_context("spawn")
        with context.Pool(procs) as pool:
            pending = pool.starmap_async(
                fill_worker,
                [
                    (db.url, w, share[w], args.accounts, args.seed + start_position)
                    for w in range(procs)
                ],
            )
            while not pending.ready():
                pending.wait(30)
                if not pending.ready():
                    done = db.max_position() - start_position
                    elapsed = time.perf_counter() - started
                    console.print(
                        f"  {done:,} events in {elapsed:,.0f}s ({done / elapsed:,.0f}/s)",
                        highlight=False,
                    )
            receipts = sum(pending.get())
        seconds = time.perf_counter() - started
        while db.max_position() < args.events:  # rare: fewer 2-event receipts than expected
            fill_worker(db.url, 99, 1, args.accounts, args.seed + db.max_position())
        seconds = time.perf_counter() - started
        added = db.max_position() - start_position
        result.update(
            fill_seconds=seconds,
            fill_receipts=receipts,
            fill_events=added,
            fill_events_per_s=added / seconds,
            fill_procs=procs,
        )
        console.print(
            f"filled {added:,} events ({receipts:,}+ receipts) in {seconds:,.0f}s: "
            f"{added / seconds:,.0f} events/s",
            highlight=False,
        )
        vacuum_started = time.perf_counter()
        db.execute("VACUUM ANALYZE")
        result["vacuum_events_seconds"] = time.perf_counter() - vacuum_started
        db.set_meta(**{k: v for k, v in result.items() if k.startswith("fill_")})
    lag = db.max_position() - db.read_model_position()
    console.print(f"catching up the read model: {lag:,} events behind ({uptime()})")
    seconds, output = run_cli(db.url, "project", "--once", "--page-size", "5000")
    result["catch_up_events"] = lag
    result["catch_up_seconds"] = seconds
    console.print(f"  {output} in {seconds:,.0f}s", highlight=False)
    if lag > 50_000:
        result["catch_up_events_per_s"] = lag / seconds
        vacuum_started = time.perf_counter()
        db.execute("VACUUM ANALYZE")
        result["vacuum_read_model_seconds"] = time.perf_counter() - vacuum_started
        db.set_meta(
            catch_up_events=lag,
            catch_up_seconds=seconds,
            catch_up_events_per_s=lag / seconds,
        )
    result["earlier"] = db.meta()
    result["events"] = db.max_position()
    result["receipts"] = int(db.scalar("SELECT count(*) FROM payments"))
    result["accounts_in_read_model"] = int(
        db.scalar("SELECT count(*) FROM account_balances WHERE account LIKE 'income:%'")
    )
    result["postings_rows"] = int(db.scalar("SELECT count(*) FROM postings"))
    result["database_size"] = db.size()
    return result


def sample_accounts(db: Database, n: int, seed: int) -> list[tuple[str, str]]:
    """Random existing payer accounts (fund, reference) from the read model."""
    connection = db.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT setseed(%s)", (((seed % 1000) / 1000.0),))
            cursor.execute(
                "SELECT fund_code, reference FROM account_balances "
                "WHERE account LIKE 'income:%%' ORDER BY random() LIMIT %s",
                (n,),
            )
            return [(row[0], row[1]) for row in cursor.fetchall()]
    finally:
        connection.rollback()
        connection.close()


# ---- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.http_api", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="at least this many events")
    parser.add_argument("--accounts", type=int, default=50_000, help="payer accounts (5 funds)")
    parser.add_argument("--clients", default="16,32,64", help="concurrent writers per run")
    parser.add_argument("--seconds", type=float, default=20, help="timed seconds per write run")
    parser.add_argument("--warmup", type=float, default=3, help="untimed seconds before each run")
    parser.add_argument("--client-procs", type=int, default=1, help="load generator processes")
    parser.add_argument("--read-requests", type=int, default=500)
    parser.add_argument("--read-warmup", type=int, default=50)
    parser.add_argument("--read-clients", type=int, default=16)
    parser.add_argument("--read-seconds", type=float, default=10)
    parser.add_argument("--baseline-seconds", type=float, default=8)
    parser.add_argument("--single-seconds", type=float, default=10, help="1-client HTTP writes")
    parser.add_argument("--single-requests", type=int, default=500, help="ASGI writes")
    parser.add_argument("--baseline-in-process-threads", default="1,4,16")
    parser.add_argument("--no-baselines", action="store_true", help="skip the write baselines")
    parser.add_argument("--fill-procs", type=int, default=2, help="processes filling in parallel")
    parser.add_argument("--reuse", action="store_true", help="keep an existing scratch database")
    parser.add_argument("--fill-only", action="store_true", help="fill (and catch up), then exit")
    parser.add_argument("--drop", action="store_true", help="drop the scratch database at the end")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN_URL)
    parser.add_argument("--pg-db", default=DEFAULT_PG_DB, help="scratch database (dropped!)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    args.clients = [int(c) for c in str(args.clients).split(",") if c.strip()]
    args.baseline_in_process_threads = [
        int(c) for c in str(args.baseline_in_process_threads).split(",") if c.strip()
    ]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    db = Database(args.pg_admin_url, args.pg_db)
    results: dict[str, Any] = {
        "environment": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "postgres": db.settings(),
            "uptime_at_start": uptime(),
        }
    }
    console.print(
        f"[bold]HTTP API benchmark[/]: >= {args.events:,} events, writers {args.clients}, "
        f"{args.seconds:g}s per run; Python {platform.python_version()}, {os.cpu_count()} CPUs; "
        f"{results['environment']['postgres']}",
        highlight=False,
    )
    console.print(f"load before starting: {uptime()}", highlight=False)

    results["data"] = fill(db, args)
    if args.fill_only:
        console.print(
            f"--fill-only: stopping after the fill ({results['data']['events']:,} events)"
        )
        db.admin.dispose()
        return 0
    sample = sample_accounts(db, 2000, args.seed)
    results["statement_length"] = statement_length(db, sample)

    console.print(f"reads: bare SQL and in-process ({uptime()})")
    results["reads_raw"] = raw_reads(db, sample, args.read_requests, args.read_warmup, args.seed)
    results["reads_in_process"] = in_process_reads(
        db, sample, args.read_requests, args.read_warmup, args.seed
    )
    console.print(f"the FastAPI app in-process (ASGI, no uvicorn) ({uptime()})")
    results["asgi"] = asgi_measurements(db, sample, args)

    logs = Path(tempfile.mkdtemp(prefix="bench-http-"))
    server = Server(db.url, logs)
    tag = "".join(random.SystemRandom().choice("abcdefghjkmnpqrstuvwxyz") for _ in range(6))
    try:
        server.start()
        console.print(f"server on {server.base} (logs in {logs}); reads over HTTP ({uptime()})")
        results["reads_http"] = sequential_reads(
            server.base,
            sample,
            args.read_requests,
            args.read_warmup,
            args.seed,
            server.pids()["server"],
        )
        console.print(f"writes: 1 client ({uptime()})")
        results["write_single"] = asdict(
            run_load("write", 1, server, db, args, tag=tag, seconds=args.single_seconds)
        )
        results["reads_concurrent"] = []
        for mode in ("funds", "accounts"):
            row = run_load(
                mode, args.read_clients, server, db, args, sample=sample, seconds=args.read_seconds
            )
            results["reads_concurrent"].append(asdict(row))
            console.print(
                f"  {mode} x{args.read_clients}: {row.per_second:,.0f}/s, median "
                f"{fmt_ms(row.latency['median_ms'])} ms, p99 {fmt_ms(row.latency['p99_ms'])} ms "
                f"[{fmt_cores(row.cores, ('server', 'postgres (this db)', 'load generator', 'others'))}]",
                highlight=False,
            )
        results["writes"] = []
        for clients in args.clients:
            console.print(f"writes: {clients} clients ({uptime()})")
            row = run_load("write", clients, server, db, args, tag=tag)
            results["writes"].append(asdict(row))
            console.print(
                f"  {row.per_second:,.0f} payments/s, median {fmt_ms(row.latency['median_ms'])} "
                f"ms, p99 {fmt_ms(row.latency['p99_ms'])} ms, statuses {row.statuses}, lag at end "
                f"{row.lag_at_end:,}; lock held {row.locks['lock_held_share']:.0%} (holder idle in tx "
                f"{row.locks['holder_idle_in_tx_share']:.0%}), waiting on it "
                f"{row.locks['mean_waiting_on_lock']:.1f} [{fmt_cores(row.cores, SERVER_CORES)}]",
                highlight=False,
            )
    finally:
        server.stop()
    if not args.no_baselines:
        console.print(f"baselines without HTTP ({uptime()})")
        results["write_baselines"] = in_process_write_baselines(
            db, args.baseline_in_process_threads, args.baseline_seconds, args.accounts, args.seed
        ) + raw_write_baselines(db, args.clients, args.baseline_seconds)
    results["environment"]["uptime_at_end"] = uptime()
    results["total_seconds"] = time.perf_counter() - started
    print_report(results, args)
    console.print(
        f"total {results['total_seconds']:,.0f}s; load at the end: {uptime()}", highlight=False
    )
    if args.drop:
        db.drop()
    db.admin.dispose()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
