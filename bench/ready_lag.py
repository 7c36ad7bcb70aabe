"""Benchmark: one /health/ready and one /metrics scrape with the read model far behind.

A measurement, not a test. Fills a scratch PostgreSQL database (--db, dropped and made again)
with ~50,000 real events (`bench.catch_up.fill`), then copies rows (fresh aggregate ids) with
SQL until --events are stored; the read model is never caught up (position 0: every event
behind). --no-vacuum copies the rows again into a table with autovacuum off, so its visibility
map is unset, as after a burst of writes autovacuum has not reached yet. Then, in process
(`TestClient`, the app as `serve` builds it), medians of --repeats after one warm-up of:

* raw count(*)     `SELECT count(*) FROM ledger_events WHERE id > 0`, bare psycopg2;
* raw bounded      the same counted only up to 10,000 ids (`LIMIT`), bare psycopg2;
* /health          liveness: the floor of a request that touches the database;
* /health/ready, /metrics.

Run it with cwd (and PYTHONPATH) in the tree whose code is measured:

    python -m bench.ready_lag [--events 1000000] [--no-vacuum] [--keep] [--reuse]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import psycopg2
from sqlalchemy import create_engine, text

ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def make_database(url: str, name: str, events: int, vacuum: bool) -> None:
    from bench.catch_up import fill
    from income_ledger.bootstrap import build_ledger, init_database
    from income_ledger.settings import Settings

    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    settings = Settings(database_url=url)
    init_database(settings)
    ledger = build_ledger(settings)
    fill(ledger, min(events, 50_000), 2)
    ledger.close()
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    other = "originator_version, topic, state"
    with engine.connect() as c:
        while (
            stored := c.execute(text("SELECT count(*) FROM ledger_events")).scalar_one()
        ) < events:
            c.execute(
                text(
                    f"INSERT INTO ledger_events (originator_id, {other}) "
                    f"SELECT md5(originator_id::text || random()::text)::uuid, {other} "
                    "FROM ledger_events ORDER BY id LIMIT :n"
                ),
                {"n": events - stored},
            )
        if vacuum:
            c.execute(text("VACUUM ANALYZE ledger_events"))
        else:
            c.execute(text("ALTER TABLE ledger_events SET (autovacuum_enabled = off)"))
            c.execute(text("CREATE TABLE copied AS SELECT * FROM ledger_events"))
            c.execute(text("TRUNCATE ledger_events"))
            c.execute(text("INSERT INTO ledger_events SELECT * FROM copied ORDER BY id"))
            c.execute(text("DROP TABLE copied"))
            c.execute(text("ANALYZE ledger_events"))
    engine.dispose()


def median_ms(call: Callable[[], object], repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="income_ledger_bench_ready")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-vacuum", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="measure the database as it is")
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    args = parser.parse_args()
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{args.db}"
    if not args.reuse:
        make_database(url, args.db, args.events, vacuum=not args.no_vacuum)

    from fastapi.testclient import TestClient

    import income_ledger
    from api.app import create_app
    from income_ledger.bootstrap import build_ledger
    from income_ledger.server import build_services
    from income_ledger.settings import Settings
    from tests.projections.test_stuck import KEYS, TOKEN

    print(f"code: {income_ledger.__file__}; load average {os.getloadavg()}")
    ledger = build_ledger(Settings(database_url=url))
    services = build_services(Settings(database_url=url), ledger, KEYS)
    raw = psycopg2.connect(f"dbname={args.db} user=postgres host=127.0.0.1")
    raw.autocommit = True

    def query(sql: str) -> Callable[[], object]:
        def run() -> object:
            with raw.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall()

        return run

    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(services)) as client:
        ready = client.get("/health/ready").json()
        print({k: ready.get(k) for k in ("read_model_position", "event_position", "lag_events")})
        rows = {
            "raw count(*)": query("SELECT count(*) FROM ledger_events WHERE id > 0"),
            "raw bounded": query(
                "SELECT count(*) FROM (SELECT id FROM ledger_events WHERE id > 0 "
                "ORDER BY id LIMIT 10000) s"
            ),
            "/health": lambda: client.get("/health"),
            "/health/ready": lambda: client.get("/health/ready"),
            "/metrics": lambda: client.get("/metrics", headers=bearer),
        }
        for name, call in rows.items():
            print(f"{name:14} {median_ms(call, args.repeats):7.1f} ms")
    services.read_engine.dispose()
    ledger.close()
    raw.close()
    if not args.keep and not args.reuse:
        admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
