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
    import httpx

    rng = random.Random(seed)
    out: dict[str, dict[str, float]] = {}
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {REPORTING_TOKEN}"}, timeout=60
    ) as client:

        def funds() -> int:
            return client.get("/balances/funds").status_code

        def account() -> int:
            fund, reference = rng.choice(sample)
            return client.get(
                f"/accounts/{fund}/{urllib.parse.quote(reference, safe='')}",
                params={"limit": 100},
            ).status_code

        for name, call in (("GET /balances/funds", funds), ("GET /accounts/{fund}/{ref}", account)):
            out[name] = time_calls(call, n, warmup, expect=200, cpu_pid=server_pid)
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
