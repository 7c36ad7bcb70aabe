"""Benchmark: the write side of issue #9 on PostgreSQL, each figure against a raw baseline
measured in the same run. This is a measurement, not a test: it asserts nothing about speed.

1. POST /payments from --clients keep-alive HTTP clients (unique external ids, references from
   a pool of payer accounts, ~10% to suspense) against `income-ledger serve --workers
   --workers` with `income-ledger project` following, for --seconds after --warmup; the
   server's CPU per payment (from /proc) says where the time goes. Baseline: one psycopg2
   connection inserting one event-sized row and committing, for --baseline-seconds.
2. save -> visible: one client, --visible-requests times: POST /payments, then GET
   /balances/funds?min_position=<its Ledger-Position> (which waits until the read model has
   applied it); the time from sending the POST to the GET's answer, and the GET's alone.
Each repeat starts a new server on the same database (created once, with the sample chart).
The bulk path (`record_payments` in batches of 1,000 against `execute_values`) is
bench.record_payments: `--backends postgresql --batch 1000`.
--visible-only runs 2. alone, on a quiet server (after 30 requests to warm it), and adds the
CPU time the projector process spent per receipt.

    .venv/bin/python -m bench.write_path [--clients 32] [--workers 2] [--seconds 15]
        [--repeats 3] [--visible-only] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.http_baselines import raw_write_baselines
from bench.http_env import (
    DEFAULT_PG_ADMIN_URL,
    INTEGRATION_TOKEN,
    REPORTING_TOKEN,
    Database,
    Server,
    console,
    latency_summary,
    process_cpu,
    run_cli,
)
from bench.http_load import run_load

DEFAULT_PG_DB = "income_ledger_bench_write"


def prepare(db: Database) -> None:
    db.recreate()
    run_cli(db.url, "db", "init")
    from application.ledger import CommandContext
    from domain.sample_chart import SAMPLE_FUNDS
    from income_ledger.bootstrap import build_ledger
    from income_ledger.settings import Settings

    with build_ledger(Settings(database_url=db.url)) as ledger:
        ledger.add_funds(SAMPLE_FUNDS, CommandContext("bench:setup"))


def save_to_visible(base: str, requests: int, tag: str) -> dict[str, Any]:
    import httpx

    writes = {"Authorization": f"Bearer {INTEGRATION_TOKEN}"}
    reads = {"Authorization": f"Bearer {REPORTING_TOKEN}"}
    total, visible, posts = [], [], []
    errors: Counter[str] = Counter()
    with httpx.Client(base_url=base, timeout=30) as http:
        for i in range(requests):
            payment = {
                "channel": "card",
                "amount_pence": 1000 + i,
                "reference": "JUNK",
                "external_id": f"vis.{tag}.{i}",
            }
            started = time.perf_counter()
            try:
                posted = http.post("/payments", headers=writes, json=payment)
                answered = time.perf_counter()
                position = posted.headers.get("ledger-position", "0")
                got = http.get("/balances/funds", headers=reads, params={"min_position": position})
            except httpx.HTTPError as error:  # counted: a figure must not hide a failure
                errors[type(error).__name__] += 1
                continue
            done = time.perf_counter()
            if posted.status_code != 201 or got.status_code != 200:
                errors[f"{posted.status_code}/{got.status_code}"] += 1
                continue
            total.append((done - started) * 1000)
            posts.append((answered - started) * 1000)
            visible.append((done - answered) * 1000)
    return {
        "visible_errors": dict(errors),
        "post_to_visible": latency_summary(total),
        "get_after_post": latency_summary(visible),
        "single_post": latency_summary(posts),
    }


def measure(db: Database, args: argparse.Namespace) -> list[dict[str, Any]]:
    """--repeats runs on a ledger with tables and funds, each with a server of its own."""
    return [one_repeat(db, args, repeat) for repeat in range(args.repeats)]


def one_repeat(db: Database, args: argparse.Namespace, repeat: int) -> dict[str, Any]:
    run_cli(db.url, "project", "--once")  # the projector starts caught up, as in production
    with tempfile.TemporaryDirectory() as logs:
        server = Server(db.url, Path(logs), workers=args.workers)
        server.start()
        try:
            load = run_load("write", args.clients, server, db, args, tag=f"r{repeat}")
            visible = save_to_visible(server.base, args.visible_requests, f"r{repeat}")
        finally:
            server.stop()
    (raw,) = raw_write_baselines(db, [1], args.baseline_seconds)[:1]
    server_ms = 1000 * load.cores["server"] / load.per_second if load.per_second else 0.0
    return {
        "payments_per_s": load.per_second,
        "statuses": load.statuses,
        "latency": load.latency,
        "server_cpu_ms_per_payment": server_ms,
        "cores": load.cores,
        "locks": load.locks,
        "raw_rows_per_s": raw["per_second"],
        **visible,
    }


def visible_only(db: Database, args: argparse.Namespace, repeat: int) -> dict[str, Any]:
    """save -> visible alone: no load before it, no baseline after."""
    run_cli(db.url, "project", "--once")
    with tempfile.TemporaryDirectory() as logs:
        server = Server(db.url, Path(logs), workers=args.workers)
        server.start()
        try:
            save_to_visible(server.base, 30, f"warm{repeat}")
            projector = server.pids()["projector"]
            before = process_cpu(projector)
            visible = save_to_visible(server.base, args.visible_requests, f"r{repeat}")
            cpu_s = process_cpu(projector) - before
        finally:
            server.stop()
    return {**visible, "projector_cpu_ms_per_receipt": 1000 * cpu_s / args.visible_requests}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def median(get: Any) -> float:
        return statistics.median(get(run) for run in runs)

    return {
        "payments_per_s": median(lambda r: r["payments_per_s"]),
        "raw_rows_per_s": median(lambda r: r["raw_rows_per_s"]),
        "ratio": median(lambda r: r["payments_per_s"] / r["raw_rows_per_s"]),
        "median_ms": median(lambda r: r["latency"]["median_ms"]),
        "p99_ms": median(lambda r: r["latency"]["p99_ms"]),
        "server_cpu_ms_per_payment": median(lambda r: r["server_cpu_ms_per_payment"]),
        "server_cores": median(lambda r: r["cores"]["server"]),
        "postgres_cores": median(lambda r: r["cores"]["postgres (this db)"]),
        "lock_held_share": median(lambda r: r["locks"].get("lock_held_share", 0.0)),
        "visible_p50_ms": median(lambda r: r["post_to_visible"]["median_ms"]),
        "visible_p99_ms": median(lambda r: r["post_to_visible"]["p99_ms"]),
        "get_after_post_p99_ms": median(lambda r: r["get_after_post"]["p99_ms"]),
    }


def print_summary(summary: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    for i, run in enumerate(runs, 1):
        console.print(
            f"repeat {i}: {run['payments_per_s']:.0f} payments/s (statuses {run['statuses']}), "
            f"median {run['latency']['median_ms']:.0f} ms, p99 {run['latency']['p99_ms']:.0f} ms; "
            f"server CPU {run['server_cpu_ms_per_payment']:.2f} ms/payment; raw "
            f"{run['raw_rows_per_s']:.0f} rows/s; save->visible p99 "
            f"{run['post_to_visible']['p99_ms']:.1f} ms (errors {run['visible_errors']})"
        )
    console.print_json(json.dumps(summary))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.write_path", description=__doc__)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="serve --workers")
    parser.add_argument("--seconds", type=float, default=15, help="timed seconds per repeat")
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-seconds", type=float, default=5)
    parser.add_argument("--visible-requests", type=int, default=300)
    parser.add_argument(
        "--visible-only", action="store_true", help="only save -> visible, on a quiet server"
    )
    parser.add_argument("--client-procs", type=int, default=1, help="load generator processes")
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN_URL)
    parser.add_argument("--pg-db", default=DEFAULT_PG_DB, help="scratch database (dropped!)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    db = Database(args.pg_admin_url, args.pg_db)
    prepare(db)
    try:
        if args.visible_only:
            runs = [visible_only(db, args, repeat) for repeat in range(args.repeats)]
        else:
            runs = measure(db, args)
    finally:
        db.drop()
    if args.visible_only:
        console.print_json(json.dumps(runs))
        if args.json:
            args.json.write_text(json.dumps({"runs": runs}, indent=2))
        return 0
    summary = summarise(runs)
    print_summary(summary, runs)
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
