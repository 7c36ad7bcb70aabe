"""Reads for bench.http_api: one request at a time over HTTP, through the ASGI app, the
route functions and bare SQL (where the time of a read goes, layer by layer)."""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

# ---- 3. reads, one at a time --------------------------------------------------------------------
from bench.http_env import (
    API_KEYS,
    INTEGRATION_TOKEN,
    REPORTING_TOKEN,
    Database,
    References,
    latency_summary,
    process_cpu,
)


def sequential_reads(
    base: str, sample: list[tuple[str, str]], n: int, warmup: int, seed: int, server_pid: int
) -> dict[str, dict[str, float]]:
    """n GETs of each read, one at a time on one keep-alive connection (the bare client of
    bench.http_load, not httpx), after `warmup` untimed; CPU is the server's."""
    from bench.http_load import BareClient

    rng = random.Random(seed)
    out: dict[str, dict[str, float]] = {}
    client = BareClient(base, {"Authorization": f"Bearer {REPORTING_TOKEN}"})
    try:

        def funds() -> int:
            return client.get("/balances/funds")[0]

        def account() -> int:
            fund, reference = rng.choice(sample)
            return client.get(
                f"/accounts/{fund}/{urllib.parse.quote(reference, safe='')}?limit=100"
            )[0]

        for name, call in (("GET /balances/funds", funds), ("GET /accounts/{fund}/{ref}", account)):
            out[name] = time_calls(call, n, warmup, expect=200, cpu_pid=server_pid)
    finally:
        client.close()
    return out


def time_calls(
    call: Callable[[], Any], n: int, warmup: int, expect: Any = None, cpu_pid: int | None = None
) -> dict[str, float]:
    """Latency of n sequential calls, and CPU ms per call of this process (or of cpu_pid)."""
    for _ in range(warmup):
        call()
    latencies = []
    bad = 0
    cpu_before = process_cpu(cpu_pid) if cpu_pid else time.process_time()
    for _ in range(n):
        started = time.perf_counter()
        result = call()
        latencies.append((time.perf_counter() - started) * 1000)
        if expect is not None and result != expect:
            bad += 1
    cpu_after = process_cpu(cpu_pid) if cpu_pid else time.process_time()
    return latency_summary(latencies) | {
        "errors": bad,
        "cpu_ms": (cpu_after - cpu_before) / n * 1000,
    }


def in_process_reads(
    db: Database, sample: list[tuple[str, str]], n: int, warmup: int, seed: int
) -> dict[str, dict[str, float]]:
    """The route functions called directly: the app's own work for each query, no HTTP."""
    from api import routes_queries
    from api.auth import ApiKeys, ApiUser, Role
    from income_ledger.bootstrap import build_ledger
    from income_ledger.server import build_services
    from income_ledger.settings import Settings

    settings = Settings(database_url=db.url)
    rng = random.Random(seed)
    user = ApiUser("bench-rep", Role.REPORTING)
    out: dict[str, dict[str, float]] = {}
    with build_ledger(settings) as ledger:
        svc = build_services(settings, ledger, ApiKeys.parse(API_KEYS))
        try:

            def account() -> Any:
                fund, reference = rng.choice(sample)
                return routes_queries.account(fund, reference, svc, user, limit=100, offset=0)

            out["fund chart (ledger.funds())"] = time_calls(ledger.funds, n, warmup)
            out["GET /balances/funds"] = time_calls(
                lambda: routes_queries.fund_balances(svc, user), n, warmup
            )
            out["GET /accounts/{fund}/{ref}"] = time_calls(account, n, warmup)
        finally:
            svc.read_engine.dispose()
    return out


def asgi_measurements(
    db: Database, sample: list[tuple[str, str]], args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """The whole FastAPI app in this process through httpx.ASGITransport (routing, middleware,
    auth, validation, serialisation; no socket, no uvicorn), one request at a time."""
    import httpx

    from api.app import create_app
    from api.auth import ApiKeys
    from income_ledger.bootstrap import build_ledger
    from income_ledger.server import build_services
    from income_ledger.settings import Settings

    settings = Settings(database_url=db.url, run_projections=False)
    rng = random.Random(args.seed)
    refs = References(args.accounts)
    tag = "".join(random.SystemRandom().choice("abcdefghjkmnpqrstuvwxyz") for _ in range(6))
    reader = {"Authorization": f"Bearer {REPORTING_TOKEN}"}
    writer = {"Authorization": f"Bearer {INTEGRATION_TOKEN}"}
    out: dict[str, dict[str, float]] = {}
    counter = iter(range(10**9))

    async def measure(app: Any) -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

            async def funds() -> int:
                return (await client.get("/balances/funds", headers=reader)).status_code

            async def account() -> int:
                fund, reference = rng.choice(sample)
                response = await client.get(
                    f"/accounts/{fund}/{urllib.parse.quote(reference, safe='')}",
                    params={"limit": 100},
                    headers=reader,
                )
                return response.status_code

            async def payment() -> int:
                i = next(counter)
                response = await client.post(
                    "/payments",
                    json=refs.payment(rng, i, f"ha.{tag}.s{i}"),
                    headers=writer,
                )
                return response.status_code

            for name, call, expect, n in (
                ("GET /balances/funds", funds, 200, args.read_requests),
                ("GET /accounts/{fund}/{ref}", account, 200, args.read_requests),
                ("POST /payments", payment, 201, args.single_requests),
            ):
                for _ in range(args.read_warmup):
                    await call()
                latencies = []
                bad = 0
                cpu_before = time.process_time()
                for _ in range(n):
                    started = time.perf_counter()
                    status = await call()
                    latencies.append((time.perf_counter() - started) * 1000)
                    bad += status != expect
                cpu = (time.process_time() - cpu_before) / n * 1000
                out[name] = latency_summary(latencies) | {"errors": bad, "cpu_ms": cpu}

    # The app as `serve` builds it (app_from_environment), without the projection thread:
    # `income-ledger project` follows beside it, as in production on PostgreSQL.
    with build_ledger(settings) as ledger:
        services = build_services(settings, ledger, ApiKeys.parse(API_KEYS))
        try:
            asyncio.run(measure(create_app(services)))
        finally:
            services.read_engine.dispose()
    return out


RAW_POSITION_SQL = "SELECT position FROM projection_tracking WHERE projection_name = %s"
RAW_FUNDS_SQL = "SELECT * FROM fund_balances ORDER BY fund_code"
RAW_ACCOUNT_TOTALS_SQL = """
SELECT coalesce(sum(-amount_pence), 0),
       coalesce(sum(CASE WHEN account = 'vat:output' THEN -amount_pence ELSE 0 END), 0),
       count(DISTINCT position)
FROM postings WHERE fund_code = %s AND reference = %s
"""
RAW_ACCOUNT_PAGE_SQL = """
SELECT position, payment_id, action, min(effective_at), min(recorded_at), sum(-amount_pence),
       sum(CASE WHEN account = 'vat:output' THEN -amount_pence ELSE 0 END)
FROM postings WHERE fund_code = %s AND reference = %s
GROUP BY position, payment_id, action ORDER BY position LIMIT 100 OFFSET 0
"""


def raw_reads(
    db: Database, sample: list[tuple[str, str]], n: int, warmup: int, seed: int
) -> dict[str, dict[str, float]]:
    """The SQL the two endpoints send, through bare psycopg2, one read transaction each."""
    from projections.schema import PROJECTION_NAME

    rng = random.Random(seed)
    connection = db.connect()
    cursor = connection.cursor()

    def funds() -> None:
        cursor.execute(RAW_POSITION_SQL, (PROJECTION_NAME,))
        cursor.fetchall()
        cursor.execute(RAW_FUNDS_SQL)
        cursor.fetchall()
        connection.rollback()

    def account() -> None:
        fund, reference = rng.choice(sample)
        cursor.execute(RAW_POSITION_SQL, (PROJECTION_NAME,))
        cursor.fetchall()
        cursor.execute(RAW_ACCOUNT_TOTALS_SQL, (fund, reference))
        cursor.fetchall()
        cursor.execute(RAW_ACCOUNT_PAGE_SQL, (fund, reference))
        cursor.fetchall()
        connection.rollback()

    try:
        return {
            "GET /balances/funds": time_calls(funds, n, warmup),
            "GET /accounts/{fund}/{ref}": time_calls(account, n, warmup),
        }
    finally:
        connection.close()


def statement_length(db: Database, sample: list[tuple[str, str]]) -> dict[str, float]:
    connection = db.connect()
    try:
        with connection.cursor() as cursor:
            lengths = []
            for fund, reference in sample[:300]:
                cursor.execute(
                    "SELECT count(DISTINCT position) FROM postings "
                    "WHERE fund_code = %s AND reference = %s",
                    (fund, reference),
                )
                lengths.append(cursor.fetchone()[0])
        return {
            "median": statistics.median(lengths),
            "max": max(lengths),
            "mean": statistics.mean(lengths),
        }
    finally:
        connection.rollback()
        connection.close()


# ---- old and new, alternated ------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Sequential reads (and optionally reads from concurrent clients) over HTTP to one idle
    `serve` worker, for each given code tree in turn, alternated `--rounds` times, on a ledger
    that `bench.http_api --fill-only` filled. Each tree's server runs with PYTHONPATH set to
    it; the bench itself is this tree's."""
    import json
    import tempfile
    from pathlib import Path
    from types import SimpleNamespace

    from bench.http_env import DEFAULT_PG_ADMIN_URL, Server, console, uptime
    from bench.http_load import run_load

    parser = argparse.ArgumentParser(prog="python -m bench.http_reads", description=main.__doc__)
    parser.add_argument("--pg-db", required=True, help="a ledger filled by bench.http_api")
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN_URL)
    parser.add_argument(
        "--code", action="append", default=[], help="NAME=DIR, a code tree to serve (repeat)"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--clients", type=int, default=0, help="also N concurrent clients")
    parser.add_argument("--seconds", type=float, default=10, help="per concurrent run")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    trees = [tuple(c.split("=", 1)) for c in args.code] or [("this", str(Path.cwd()))]
    db = Database(args.pg_admin_url, args.pg_db)
    from bench.http_api import sample_accounts

    sample = sample_accounts(db, 2000, args.seed)
    load_args = SimpleNamespace(client_procs=1, warmup=2.0, seed=args.seed, accounts=50_000)
    results: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        for name, tree in trees:
            logs = Path(tempfile.mkdtemp(prefix=f"bench-reads-{name}-"))
            server = Server(db.url, logs, env={"PYTHONPATH": tree})
            server.start()
            try:
                load = uptime().split("load average:")[-1].strip()
                row: dict[str, Any] = {"round": round_ + 1, "code": name, "load": load}
                row["sequential"] = sequential_reads(
                    server.base,
                    sample,
                    args.requests,
                    args.warmup,
                    args.seed + round_,
                    server.pids()["server"],
                )
                for path, figures in row["sequential"].items():
                    console.print(
                        f"round {round_ + 1} {name:>5} {path:<28} median "
                        f"{figures['median_ms']:.2f} p99 {figures['p99_ms']:.2f} max "
                        f"{figures['max_ms']:.1f} ms, server CPU {figures['cpu_ms']:.2f} ms, "
                        f"errors {figures['errors']} (load {load})",
                        highlight=False,
                    )
                if args.clients:
                    row["concurrent"] = {}
                    for mode in ("funds", "accounts"):
                        got = run_load(
                            mode,
                            args.clients,
                            server,
                            db,
                            load_args,  # type: ignore[arg-type]
                            sample=sample,
                            seconds=args.seconds,
                        )
                        server_cores = got.cores.get("server", 0.0)
                        row["concurrent"][mode] = {
                            "per_second": got.per_second,
                            "latency": got.latency,
                            "statuses": got.statuses,
                            "server_cpu_ms": server_cores / max(got.per_second, 1e-9) * 1000,
                            "cores": got.cores,
                        }
                        console.print(
                            f"round {round_ + 1} {name:>5} {mode} x{args.clients}: "
                            f"{got.per_second:,.0f}/s, median {got.latency['median_ms']:.1f} "
                            f"p99 {got.latency['p99_ms']:.1f} ms, server "
                            f"{server_cores:.2f} cores, statuses {got.statuses}",
                            highlight=False,
                        )
                results.append(row)
            finally:
                server.stop()
    db.admin.dispose()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
