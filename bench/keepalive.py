"""Benchmark: the latency of requests on one keep-alive connection, with 1 and 2 workers.

This is a measurement, not a test. `income-ledger serve --workers 2` once answered every
request on a kept-alive connection about 40 ms late (3 ms with one worker): uvicorn binds
the socket of several workers itself, declared with protocol 0, and asyncio sets
TCP_NODELAY only on accepted sockets whose protocol is IPPROTO_TCP; so Nagle's algorithm
held the body of each response until the client's delayed ACK of its headers. The bulk
benchmark (bench.http_api) opens a connection per request with one worker and could not
see it; this one can.

For each worker count, it starts `income-ledger serve --workers N` on a scratch PostgreSQL
database (--pg-db, dropped and created again; the sample chart of funds and a few receipts
recorded), opens one connection with Python's http.client, sends --warmup requests untimed,
then times --requests sequential GET --path on that same connection; --repeats times, each
on a new connection. It prints the median and p90 per repeat and the median of the medians.

    .venv/bin/python -m bench.keepalive [--workers 1,2] [--requests 300] [--repeats 3]
        [--path /balances/funds] [--pg-admin-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.http_env import BIN, DEFAULT_PG_ADMIN_URL, Database, cli_env, free_port, percentile

DEFAULT_PG_DB = "income_ledger_bench_keepalive"
TOKEN = "bench-reporting-token-0123456789ab"
API_KEYS = f"bench-rep:reporting:{TOKEN},bench-off:officer:{TOKEN}-officer"


def prepare(db: Database) -> None:
    db.recreate()
    env = cli_env(db.url)
    for args in (("db", "init"), ("funds", "add", "--sample")):
        subprocess.run(
            [str(BIN / "income-ledger"), *args], env=env, check=True, capture_output=True
        )
    for n in range(20):
        subprocess.run(
            [
                *(str(BIN / "income-ledger"), "payments", "record", "--channel", "cash"),
                *("--amount", f"{10 + n}.00", "--reference", "12345679"),
            ],
            env=env,
            check=True,
            capture_output=True,
        )


def start_server(db: Database, workers: int, logs: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [
            *(str(BIN / "income-ledger"), "serve", "--host", "127.0.0.1"),
            *("--port", str(port), "--workers", str(workers)),
        ],
        env=cli_env(db.url, LEDGER_API_KEYS=API_KEYS, LEDGER_RUN_PROJECTIONS="false"),
        stdout=open(logs / f"serve-{workers}.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: see {logs}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                connection.close()
                time.sleep(2 * workers)  # let every worker finish starting
                return process, port
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer /health: see {logs}")
        time.sleep(0.2)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def keepalive_latencies_ms(port: int, path: str, warmup: int, requests: int) -> list[float]:
    """Sequential GETs on one connection; the wall time of each, request sent to body read."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    latencies = []
    for n in range(warmup + requests):
        started = time.perf_counter()
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}")
        if n >= warmup:
            latencies.append((time.perf_counter() - started) * 1000)
    connection.close()
    return latencies


def run(args: argparse.Namespace) -> dict[str, Any]:
    db = Database(args.pg_admin_url, args.pg_db)
    prepare(db)
    results: dict[str, Any] = {"path": args.path, "requests": args.requests, "workers": {}}
    with tempfile.TemporaryDirectory(prefix="bench-keepalive-") as logs:
        for workers in args.workers:
            process, port = start_server(db, workers, Path(logs))
            try:
                repeats = []
                for _ in range(args.repeats):
                    latencies = keepalive_latencies_ms(port, args.path, args.warmup, args.requests)
                    repeats.append(
                        {
                            "median_ms": statistics.median(latencies),
                            "p90_ms": percentile(latencies, 90),
                        }
                    )
            finally:
                stop_server(process)
            results["workers"][workers] = {
                "median_ms": statistics.median(r["median_ms"] for r in repeats),
                "repeats": repeats,
            }
    db.drop()
    return results


def print_report(results: dict[str, Any]) -> None:
    print(f"GET {results['path']} on one keep-alive connection, {results['requests']} requests")
    print("| workers | median ms (median of repeats) | per repeat: median / p90 ms |")
    print("|---:|---:|---|")
    for workers, figures in results["workers"].items():
        repeats = ", ".join(f"{r['median_ms']:.2f} / {r['p90_ms']:.2f}" for r in figures["repeats"])
        print(f"| {workers} | {figures['median_ms']:.2f} | {repeats} |")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--path", default="/balances/funds")
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN_URL)
    parser.add_argument("--pg-db", default=DEFAULT_PG_DB)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    print_report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
