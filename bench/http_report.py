"""The report of bench.http_api: its tables, printed with rich."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

from rich.table import Table

# ---- the report -------------------------------------------------------------------------------
from bench.http_env import console


def fmt_ms(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.1f}"


def fmt_cores(cores: dict[str, float], keys: Sequence[str]) -> str:
    short = {
        "server": "srv",
        "projector": "proj",
        "postgres (this db)": "pg",
        "postgres (all)": "pg all",
        "load generator": "client",
        "bench (this process)": "bench",
        "machine": "machine",
        "others": "others",
    }
    return " ".join(f"{short.get(k, k)} {cores[k]:.2f}" for k in keys if k in cores)


SERVER_CORES = ("server", "projector", "postgres (this db)", "load generator", "others")


def fmt_errors(statuses: dict[str, int], ok: str) -> str:
    """The responses other than `ok`, by status, or "0"."""
    return ", ".join(f"{k}: {v}" for k, v in statuses.items() if k != ok) or "0"


def print_report(results: dict[str, Any], args: argparse.Namespace) -> None:
    data = results["data"]
    console.print()
    console.print(
        f"[bold]Data[/]: {data['events']:,} events, {data['receipts']:,} receipts in the read "
        f"model, {data['accounts_in_read_model']:,} payer accounts, {data['postings_rows']:,} "
        f"postings rows; statement length over 300 sampled accounts: median "
        f"{results['statement_length']['median']:.0f}, mean {results['statement_length']['mean']:.1f}, "
        f"max {results['statement_length']['max']}; database {data['database_size']}",
        highlight=False,
    )
    earlier = data.get("earlier", {})
    if "fill_seconds" in data:
        console.print(
            f"fill: {data['fill_events']:,} events in {data['fill_seconds']:,.0f}s "
            f"({data['fill_events_per_s']:,.0f} events/s, {data['fill_procs']} processes)",
            highlight=False,
        )
    elif "fill_seconds" in earlier:
        console.print(
            f"fill (reused; when filled): {earlier['fill_events']:,} events in "
            f"{earlier['fill_seconds']:,.0f}s ({earlier['fill_events_per_s']:,.0f} events/s, "
            f"{earlier.get('fill_procs', '?')} processes)",
            highlight=False,
        )
    if "catch_up_events_per_s" in data:
        console.print(
            f"read-model catch-up: {data['catch_up_events']:,} events in "
            f"{data['catch_up_seconds']:,.0f}s ({data['catch_up_events_per_s']:,.0f} events/s)",
            highlight=False,
        )
    elif "catch_up_events_per_s" in earlier:
        console.print(
            f"read-model catch-up (when filled): {earlier['catch_up_events']:,} events in "
            f"{earlier['catch_up_seconds']:,.0f}s ({earlier['catch_up_events_per_s']:,.0f} "
            "events/s)",
            highlight=False,
        )

    writes = Table(
        "path",
        "clients",
        "payments/s",
        "events/s",
        "median ms",
        "p99 ms",
        "max ms",
        "errors",
        "CPU cores used",
        "proj. lag at end / caught up after",
        title=f"Writes: POST /payments for {args.seconds:g}s per row (after {args.warmup:g}s warm-up)",
    )
    for row in [results["write_single"], *results["writes"]]:
        writes.add_row(
            "HTTP POST /payments",
            str(row["clients"]),
            f"{row['per_second']:,.0f}",
            f"{row['events'] / row['seconds']:,.0f}",
            fmt_ms(row["latency"]["median_ms"]),
            fmt_ms(row["latency"]["p99_ms"]),
            fmt_ms(row["latency"]["max_ms"]),
            fmt_errors(row["statuses"], "201"),
            fmt_cores(row["cores"], SERVER_CORES),
            f"{row['lag_at_end']:,} ev / {row['catch_up_after_s']:.1f}s",
        )
    for row in results.get("write_baselines", []):
        writes.add_row(
            row["path"],
            str(row["threads"]),
            f"{row['per_second']:,.0f}",
            "",
            fmt_ms(row["latency"]["median_ms"]),
            fmt_ms(row["latency"]["p99_ms"]),
            fmt_ms(row["latency"]["max_ms"]),
            ", ".join(f"{k}: {v}" for k, v in row["errors"].items()) or "0",
            fmt_cores(row["cores"], ("bench (this process)", "postgres (this db)", "others")),
            "",
        )
    console.print(writes)

    locks = Table(
        "path",
        "clients",
        "lock held",
        "holder running SQL",
        "holder idle in transaction",
        "waiting on the lock (mean)",
        "active backends (mean)",
        "writer CPU ms per payment",
        title="The event store's table lock (pg_stat_activity + pg_locks sampled every 50 ms)",
    )
    for label, rows, key, process in (
        ("HTTP POST /payments", [results["write_single"], *results["writes"]], "clients", "server"),
        ("", results.get("write_baselines", []), "threads", "bench (this process)"),
    ):
        for row in rows:
            lock = row.get("locks") or {}
            if not lock:
                continue
            per_s = row["per_second"]
            cpu_ms = row["cores"].get(process, math.nan) / per_s * 1000 if per_s else math.nan
            locks.add_row(
                label or row["path"],
                str(row[key]),
                f"{lock['lock_held_share']:.0%}",
                f"{lock['holder_active_share']:.0%}",
                f"{lock['holder_idle_in_tx_share']:.0%}",
                f"{lock['mean_waiting_on_lock']:.1f}",
                f"{lock['mean_active']:.1f}",
                fmt_ms(cpu_ms) if "record_payment" in (label or row["path"]) or label else "",
            )
    console.print(locks)

    reads = Table(
        "query",
        "path",
        "median ms",
        "p99 ms",
        "max ms",
        "requests",
        "errors",
        "CPU ms per request",
        title=f"One request at a time ({args.read_requests} reads, {args.single_requests} ASGI "
        f"writes, each after {args.read_warmup} warm-up; HTTP writes: 1 client for "
        f"{args.single_seconds:g}s)",
    )
    for path, block in (
        ("bare SQL (psycopg2)", results["reads_raw"]),
        ("in-process route function", results["reads_in_process"]),
        ("FastAPI app via ASGI (no uvicorn)", results["asgi"]),
        ("HTTP, idle server", results["reads_http"]),
    ):
        for query, stats in block.items():
            reads.add_row(
                query,
                path,
                fmt_ms(stats["median_ms"]),
                fmt_ms(stats["p99_ms"]),
                fmt_ms(stats["max_ms"]),
                str(stats["n"]),
                str(stats.get("errors", 0)),
                fmt_ms(stats.get("cpu_ms", math.nan)),
            )
    for row in results.get("write_baselines", []):
        if row["path"].startswith("in-process") and row["threads"] == 1:
            reads.add_row(
                "POST /payments",
                "in-process record_payment",
                fmt_ms(row["latency"]["median_ms"]),
                fmt_ms(row["latency"]["p99_ms"]),
                fmt_ms(row["latency"]["max_ms"]),
                str(row["ops"]),
                str(sum(row["errors"].values())),
                fmt_ms(row["cores"]["bench (this process)"] / row["per_second"] * 1000),
            )
    single = results["write_single"]
    reads.add_row(
        "POST /payments",
        "HTTP, 1 client",
        fmt_ms(single["latency"]["median_ms"]),
        fmt_ms(single["latency"]["p99_ms"]),
        fmt_ms(single["latency"]["max_ms"]),
        str(single["latency"]["n"]),
        str(sum(v for k, v in single["statuses"].items() if k != "201")),
        fmt_ms(single["cores"]["server"] / single["per_second"] * 1000)
        if single["per_second"]
        else "-",
    )
    console.print(reads)

    concurrent = Table(
        "query",
        "clients",
        "requests/s",
        "median ms",
        "p99 ms",
        "max ms",
        "errors",
        "CPU cores used",
        title=f"Reads from concurrent clients ({args.read_seconds:g}s each)",
    )
    for row in results["reads_concurrent"]:
        concurrent.add_row(
            "GET /balances/funds" if row["mode"] == "funds" else "GET /accounts/{fund}/{ref}",
            str(row["clients"]),
            f"{row['per_second']:,.0f}",
            fmt_ms(row["latency"]["median_ms"]),
            fmt_ms(row["latency"]["p99_ms"]),
            fmt_ms(row["latency"]["max_ms"]),
            fmt_errors(row["statuses"], "200"),
            fmt_cores(row["cores"], SERVER_CORES),
        )
    console.print(concurrent)
    console.print(
        "CPU ms per request: of the process doing the work (this process for bare SQL, "
        "in-process and ASGI; the uvicorn server process for HTTP); PostgreSQL's own CPU is not "
        "included. CPU cores: srv = uvicorn server process, proj = `income-ledger project`, pg = "
        "PostgreSQL backends of this database, client = the load generator's processes, "
        "others = the rest of the 2-core VM's busy time (other people's tests and benchmarks).",
        highlight=False,
    )
