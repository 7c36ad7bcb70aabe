"""Benchmark: the CPU of POST /payments in one process, without uvicorn (issue #9).

--clients concurrent clients on one event loop post receipts to the app through httpx's
ASGI transport, against PostgreSQL (so the group commit is on); the figure is the process's
CPU time per payment, which a shared machine disturbs less than bench.write_path's
payments/s. The client's own CPU is in it too, the same for every version measured.

    .venv/bin/python -m bench.write_inprocess [--payments 2000] [--clients 32]
        [--pg-db income_ledger_bench_inprocess]   (dropped and recreated!)
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections import Counter

import httpx

from bench.http_env import DEFAULT_PG_ADMIN_URL, Database
from bench.write_path import prepare

TOKEN = "bench-inprocess-token-0123456789ab"
REFERENCES = ("1000000009", "1000000017", "1000000025")
WARM_UP = 50


async def post_all(app: object, payments: int, clients: int) -> tuple[Counter, float, float]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    tag = uuid.uuid4().hex[:8]
    statuses: Counter = Counter()
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:

        async def one(i: int) -> int:
            body = {
                "channel": "card",
                "amount_pence": 100 + abs(i) % 900,
                "reference": REFERENCES[i % len(REFERENCES)],
                "external_id": f"{tag}.{i}",
            }
            response = await http.post("/payments", headers=headers, json=body)
            return response.status_code

        for i in range(WARM_UP):  # the chart is read once and held, as in a running server
            await one(-1 - i)
        numbers = iter(range(payments))

        async def client() -> None:
            for i in numbers:
                statuses[await one(i)] += 1

        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return statuses, time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN_URL)
    parser.add_argument("--pg-db", default="income_ledger_bench_inprocess")
    args = parser.parse_args()
    from api.app import create_app
    from api.auth import ApiKeys
    from income_ledger.bootstrap import build_ledger
    from income_ledger.server import build_services
    from income_ledger.settings import Settings

    db = Database(args.pg_admin_url, args.pg_db)
    prepare(db)
    settings = Settings(database_url=db.url)
    ledger = build_ledger(settings)
    services = build_services(settings, ledger, ApiKeys.parse(f"bench:integration:{TOKEN}"))
    try:
        statuses, cpu_s, wall_s = asyncio.run(
            post_all(create_app(services), args.payments, args.clients)
        )
    finally:
        services.linking.close()
        services.read_engine.dispose()
        ledger.close()
    print(
        f"{args.payments} payments {dict(statuses)}: "
        f"{1000 * cpu_s / args.payments:.2f} ms CPU/payment, "
        f"{args.payments / wall_s:.0f} payments/s"
    )


if __name__ == "__main__":
    main()
